"""Pluggable toxicity scorers (registered in SCORERS) with an on-disk score cache keyed by text hash."""
