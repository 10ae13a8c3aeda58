"""Training: the one loop, losses, strategies and the training stages."""
