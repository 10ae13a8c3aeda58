"""Strategy pieces: losses, the logconf schedule and threshold, filtering, ensembles."""

import numpy as np
import pandas as pd
import pytest
import torch

from w2s_align.io import PipelineError
from w2s_align.losses import (StudentLoss, logconf_coef, logconf_loss, prior_threshold, product_loss,
                              soft_cross_entropy)
from w2s_align.strategies import Strategy, average_weak_labels, confidence_mask


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 2, generator=g)
    p1 = torch.rand(n, generator=g)
    return logits, torch.stack([1 - p1, p1], dim=1)


def test_logconf_with_zero_coefficient_is_soft_cross_entropy():
    logits, weak = batch()
    assert torch.allclose(logconf_loss(logits, weak, 0.0, torch.tensor(0.5)), soft_cross_entropy(logits, weak))


def test_logconf_schedule_ramps_linearly_then_stays():
    assert logconf_coef(0, 100, alpha=0.5, warmup_frac=0.2) == 0.0
    assert logconf_coef(10, 100, alpha=0.5, warmup_frac=0.2) == pytest.approx(0.25)
    assert logconf_coef(20, 100, alpha=0.5, warmup_frac=0.2) == pytest.approx(0.5)
    assert logconf_coef(21, 100, alpha=0.5, warmup_frac=0.2) == pytest.approx(0.5)  # no jump after warmup
    assert logconf_coef(100, 100, alpha=0.75, warmup_frac=0.2) == pytest.approx(0.75)
    assert logconf_coef(0, 100, alpha=0.5, warmup_frac=0.0) == 0.5


def test_hardened_labels_match_the_weak_prior():
    student_p1 = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    for prior in (0.1, 0.3, 0.5, 0.8):
        threshold = prior_threshold(student_p1, prior)
        assert (student_p1 > threshold).float().mean().item() == pytest.approx(prior, abs=0.002)


def test_ring_buffer_keeps_the_threshold_sensible_with_tiny_microbatches():
    """With micro-batches of 2 the prior is taken over the last `buffer_size` examples, not the micro-batch."""
    loss = StudentLoss("logconf", total_steps=100, alpha=0.5, warmup_frac=0.1, buffer_size=32)
    logits, weak = batch(64)
    for i in range(0, 64, 2):
        value = loss(logits[i:i + 2], weak[i:i + 2])
        assert torch.isfinite(value)
    assert len(loss.recent_student) == 32 and len(loss.recent_weak) == 32


def test_product_loss_target_is_normalised_product():
    logits, weak = batch(8)
    student = torch.softmax(logits, dim=-1)
    target = weak * student / (weak * student).sum(dim=-1, keepdim=True)
    assert torch.allclose(product_loss(logits, weak), soft_cross_entropy(logits, target))
    assert torch.allclose(product_loss(logits, weak, alpha=1.0, beta=0.0), soft_cross_entropy(logits, weak))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["xent", "logconf", "product"])
def test_gradients_are_finite_for_low_precision_logits(dtype, name):
    logits, weak = batch(16)
    logits = (logits * 30).to(dtype).requires_grad_()
    loss = StudentLoss(name, total_steps=10)(logits, weak)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad.float()).all()


def test_confidence_filter_keeps_the_fraction_of_each_weak_class():
    p1 = np.random.default_rng(0).random(1001)
    conf, positive = np.maximum(p1, 1 - p1), p1 >= 0.5
    for fraction in (0.1, 0.5, 0.75, 1.0):
        keep = confidence_mask(p1, top_fraction=fraction)
        for cls in (positive, ~positive):
            assert (keep & cls).sum() == round(fraction * cls.sum())
            dropped = cls & ~keep
            assert not dropped.any() or conf[keep & cls].min() >= conf[dropped].max()
    keep = confidence_mask(p1, threshold=0.9)
    assert (conf[keep] >= 0.9).all() and keep.sum() == (conf >= 0.9).sum()


def test_confidence_filter_keeps_the_prior_when_one_class_is_more_confident():
    # every class-1 label is more confident than every class-0 label: a global top half would keep
    # only class 1 (the student then cannot train); per class it keeps half of each
    p1 = np.concatenate([np.full(60, 0.4), np.full(40, 0.99)])
    keep = confidence_mask(p1, top_fraction=0.5)
    assert keep[:60].sum() == 30 and keep[60:].sum() == 20


def test_strategy_defaults_and_unknown_loss():
    assert Strategy().loss_kwargs()["name"] == "xent"
    assert Strategy(loss="logconf").loss_kwargs()["alpha"] == 0.5
    assert Strategy(loss="product").loss_kwargs()["alpha"] == 1.0
    with pytest.raises(ValueError, match="unknown loss"):
        StudentLoss("hinge")


def test_ensemble_averages_soft_labels_by_id():
    a = pd.DataFrame({"id": ["x", "y"], "weak_p1": [0.2, 0.9], "gt_label": [0, 1]})
    b = pd.DataFrame({"id": ["y", "x"], "weak_p1": [0.5, 0.6], "gt_label": [1, 0]})
    out = average_weak_labels({"a": a, "b": b}).set_index("id")
    assert out.loc["x", "weak_p1"] == pytest.approx(0.4) and out.loc["y", "weak_p1"] == pytest.approx(0.7)
    assert out.loc["x", "weak_hard"] == 0 and out.loc["y", "weak_hard"] == 1
    with pytest.raises(PipelineError, match="labelled different rows"):
        average_weak_labels({"a": a, "b": b.assign(id=["y", "z"])})
