"""Student losses: small pure functions of logits (B x 2) and target probabilities (B x 2).

`xent` is the baseline (soft cross-entropy); `logconf` and `product` are the W2S strategies of
Burns et al. 2023 (openai/weak-to-strong), with the intended logconf warmup schedule.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets; with one-hot targets it is the usual hard-label CE."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def logconf_coef(step: int, total_steps: int, alpha: float, warmup_frac: float) -> float:
    """c = alpha * min(1, progress / warmup_frac): a linear ramp, then flat (no jump at the end of warmup)."""
    progress = step / max(1, total_steps)
    return alpha * (1.0 if warmup_frac <= 0 else min(1.0, progress / warmup_frac))


def prior_threshold(recent_p1: torch.Tensor, prior: float) -> torch.Tensor:
    """Threshold on P(class 1) above which a `prior` fraction of the recent predictions lie."""
    return torch.quantile(recent_p1.float(), 1.0 - prior)


def logconf_loss(logits: torch.Tensor, weak: torch.Tensor, coef: float, threshold: torch.Tensor) -> torch.Tensor:
    """Auxiliary confidence loss: CE against (1-c)*weak + c*hardened student predictions.

    The student's P(class 1) is hardened at `threshold` (chosen so that the hardened labels match the
    weak labels' class prior) and detached."""
    p1 = torch.softmax(logits.float(), dim=-1)[:, 1].detach()
    hard = F.one_hot((p1 > threshold).long(), 2).to(weak.dtype)
    return soft_cross_entropy(logits, (1 - coef) * weak + coef * hard)


def product_loss(logits: torch.Tensor, weak: torch.Tensor, alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """CE against the normalised product weak^alpha * student^beta (detached)."""
    student = torch.softmax(logits.float(), dim=-1).detach()
    target = weak.float().pow(alpha) * student.pow(beta)
    target = target / target.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return soft_cross_entropy(logits, target)


class StudentLoss:
    """The configured loss with its state: step count and a ring buffer of recent student predictions,
    so logconf's prior-matching threshold covers the effective batch even when micro-batches are small."""

    def __init__(self, name: str = "xent", total_steps: int = 1, alpha: float = 0.5, warmup_frac: float = 0.2,
                 buffer_size: int = 32, beta: float = 1.0):
        if name not in ("xent", "logconf", "product"):
            raise ValueError(f"unknown loss {name!r}; expected xent, logconf or product")
        self.name, self.total_steps, self.alpha, self.warmup_frac, self.beta = name, total_steps, alpha, warmup_frac, beta
        self.recent_student: deque[float] = deque(maxlen=buffer_size)
        self.recent_weak: deque[float] = deque(maxlen=buffer_size)
        self.step = 0

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.step += 1
        if self.name == "xent":
            return soft_cross_entropy(logits, targets)
        if self.name == "product":
            return product_loss(logits, targets, self.alpha, self.beta)
        self.recent_student.extend(torch.softmax(logits.detach().float(), dim=-1)[:, 1].tolist())
        self.recent_weak.extend(targets[:, 1].float().tolist())
        prior = sum(self.recent_weak) / len(self.recent_weak)
        threshold = prior_threshold(torch.tensor(list(self.recent_student)), prior)
        coef = logconf_coef(self.step - 1, self.total_steps, self.alpha, self.warmup_frac)
        return logconf_loss(logits, targets, coef, threshold)
