"""Model kinds: transformers classifiers, causal LMs, TF-IDF, GGUF conversion."""
