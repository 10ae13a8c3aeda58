"""Settings: the config read once with the defaults of specs.py, validated, and the paths of every
artifact."""
