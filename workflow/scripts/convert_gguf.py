"""Dequantise a GGUF model once into a transformers folder."""

import os

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.models.gguf import convert_gguf
from w2s_align.settings.specs import ModelSpec

convert_gguf(ModelSpec.from_json(snakemake.params.spec), os.path.dirname(snakemake.output[0]))
