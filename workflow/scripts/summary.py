"""Aggregate every run's metrics into results/tables/summary.{csv,md}."""

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.report.tables import summarize

summarize(list(snakemake.input.metrics), snakemake.output.csv, snakemake.output.parquet, snakemake.output.md)
