"""w2s-align: weak-to-strong generalization on alignment tasks, as a cached Snakemake workflow."""
