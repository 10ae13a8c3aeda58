"""Student losses: small pure functions of logits (B x 2) and target probabilities (B x 2), in the LOSSES
registry. `xent` is the baseline (soft cross-entropy); `logconf` and `product` are the W2S strategies of
Burns et al. 2023 (openai/weak-to-strong), with the intended logconf warmup schedule.

A loss is `fn(logits, targets, state, strategy) -> scalar tensor`; `state` carries the step count and the
recent predictions, `strategy` the options. Only tensor methods are used here, so registering a loss
needs no torch import at DAG time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from w2s_align.registry import LOSSES
from w2s_align.settings.specs import Strategy


def soft_cross_entropy(logits, targets):
    """Cross-entropy against soft targets; with one-hot targets it is the usual hard-label CE."""
    return -(targets * logits.float().log_softmax(dim=-1)).sum(dim=-1).mean()


def logconf_coef(step: int, total_steps: int, alpha: float, warmup_frac: float) -> float:
    """c = alpha * min(1, progress / warmup_frac): a linear ramp, then flat (no jump at the end of warmup)."""
    progress = step / max(1, total_steps)
    return alpha * (1.0 if warmup_frac <= 0 else min(1.0, progress / warmup_frac))


def prior_threshold(recent_p1, prior: float):
    """Threshold on P(class 1) above which a `prior` fraction of the recent predictions lie."""
    return recent_p1.float().quantile(1.0 - prior)


def logconf_loss(logits, weak, coef: float, threshold):
    """Auxiliary confidence loss: CE against (1-c)*weak + c*hardened student predictions.

    The student's P(class 1) is hardened at `threshold` (chosen so that the hardened labels match the
    weak labels' class prior) and detached."""
    p1 = logits.float().softmax(dim=-1)[:, 1].detach()
    hard = weak.new_zeros(weak.shape).scatter_(1, (p1 > threshold).long().unsqueeze(1), 1.0)
    return soft_cross_entropy(logits, (1 - coef) * weak + coef * hard)


def product_loss(logits, weak, alpha: float = 1.0, beta: float = 1.0):
    """CE against the normalised product weak^alpha * student^beta (detached)."""
    student = logits.float().softmax(dim=-1).detach()
    target = weak.float().pow(alpha) * student.pow(beta)
    target = target / target.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return soft_cross_entropy(logits, target)


def sequence_logps(logits, labels):
    """Summed log-probability of each row's labelled tokens (labels -100 elsewhere; logits unshifted, B x T x
    V)."""
    labels = labels[:, 1:]
    logps = logits[:, :-1].float().log_softmax(dim=-1)
    mask = labels != -100
    picked = logps.gather(2, labels.clamp_min(0).unsqueeze(2)).squeeze(2)
    return (picked * mask).sum(dim=1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, weights=None):
    """DPO (Rafailov et al. 2023), sigmoid form: -log sigmoid(beta * (chosen log-ratio - rejected log-ratio)),
    averaged over pairs; `weights` (per pair, e.g. a judge's confidence as in CW-PO) scale each pair's term.
    Inputs are summed sequence log-probabilities under the policy and the frozen reference."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    losses = (-margin).clamp_min(0) + (
        -margin.abs()
    ).exp().log1p()  # softplus(-margin) = -log sigmoid(margin)
    return (losses * weights).mean() if weights is not None else losses.mean()


@dataclass
class LossState:
    """What a loss may remember between steps: the step count and a ring buffer of recent student and
    weak P(class 1), so logconf's prior-matching threshold covers the effective batch."""

    total_steps: int = 1
    buffer_size: int = 32
    step: int = 0
    recent_student: deque = field(default_factory=deque)
    recent_weak: deque = field(default_factory=deque)

    def __post_init__(self):
        self.recent_student = deque(maxlen=self.buffer_size)
        self.recent_weak = deque(maxlen=self.buffer_size)


@LOSSES.register("xent")
def xent(logits, targets, state: LossState, strategy: Strategy):
    return soft_cross_entropy(logits, targets)


@LOSSES.register("product")
def product(logits, targets, state: LossState, strategy: Strategy):
    return product_loss(logits, targets, 1.0 if strategy.alpha is None else strategy.alpha, strategy.beta)


@LOSSES.register("logconf")
def logconf(logits, targets, state: LossState, strategy: Strategy):
    state.recent_student.extend(logits.detach().float().softmax(dim=-1)[:, 1].tolist())
    state.recent_weak.extend(targets[:, 1].float().tolist())
    prior = sum(state.recent_weak) / len(state.recent_weak)
    threshold = prior_threshold(logits.detach().float().new_tensor(list(state.recent_student)), prior)
    coef = logconf_coef(
        state.step - 1,
        state.total_steps,
        0.5 if strategy.alpha is None else strategy.alpha,
        strategy.warmup_frac,
    )
    return logconf_loss(logits, targets, coef, threshold)


class StudentLoss:
    """The strategy's loss with its state; called once per training step."""

    def __init__(self, strategy: Strategy = Strategy(), total_steps: int = 1):  # noqa: B008 - a frozen dataclass
        self.fn, self.strategy = LOSSES.get(strategy.loss), strategy
        self.state = LossState(total_steps=total_steps, buffer_size=strategy.buffer_size)

    def __call__(self, logits, targets):
        self.state.step += 1
        return self.fn(logits, targets, self.state, self.strategy)


def as_targets(p1, hard: bool):
    """N x 2 target probabilities (one-hot when `hard`) from P(class 1)."""
    import numpy as np
    import torch

    if hard:
        p1 = (p1 >= 0.5).astype(np.float64)
    return torch.tensor(np.stack([1 - p1, p1], axis=1), dtype=torch.float32)
