"""The cluster plan at DAG time (no torch): per-job memory, time, GPU and web-API volume."""
