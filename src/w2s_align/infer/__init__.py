"""Inference: predictions, sampling, generation and perplexity stages."""
