"""Student losses: small pure functions of logits (B x 2) and target probabilities (B x 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets; with one-hot targets it is the usual hard-label CE."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def harden(probs: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax: hard labels from soft ones."""
    return F.one_hot(probs.argmax(dim=-1), probs.shape[-1]).to(probs.dtype)
