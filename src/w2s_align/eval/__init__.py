"""Evaluation: one paired bootstrap engine for the classification and generation metrics."""
