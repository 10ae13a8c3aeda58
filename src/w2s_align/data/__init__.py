"""Data: sources, classification splits, generation pairs and prompts."""
