"""Strategy pieces: losses (the LOSSES registry), the logconf schedule and threshold, filtering, ensembles."""

import numpy as np
import pandas as pd
import pytest
import torch

from w2s_align.errors import PipelineError
from w2s_align.infer.weak_labels import average_weak_labels
from w2s_align.registry import LOSSES
from w2s_align.settings.specs import Strategy
from w2s_align.train import losses
from w2s_align.train.losses import (
    LossState,
    StudentLoss,
    as_targets,
    logconf_coef,
    logconf_loss,
    prior_threshold,
    product_loss,
    soft_cross_entropy,
)
from w2s_align.train.strategies import confidence_mask


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 2, generator=g)
    p1 = torch.rand(n, generator=g)
    return logits, torch.stack([1 - p1, p1], dim=1)


def test_logconf_with_zero_coefficient_is_soft_cross_entropy():
    logits, weak = batch()
    assert torch.allclose(
        logconf_loss(logits, weak, 0.0, torch.tensor(0.5)), soft_cross_entropy(logits, weak)
    )


def test_logconf_with_full_coefficient_is_cross_entropy_on_hardened_predictions():
    logits, weak = batch()
    p1 = logits.softmax(-1)[:, 1]
    hard = torch.stack([(p1 <= 0.3).float(), (p1 > 0.3).float()], dim=1)
    assert torch.allclose(
        logconf_loss(logits, weak, 1.0, torch.tensor(0.3)), soft_cross_entropy(logits, hard)
    )


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


def test_ring_buffer_threshold_matches_the_weak_prior_with_tiny_microbatches(monkeypatch):
    """With micro-batches of 2 the threshold is taken over the last `buffer_size` examples, not the
    micro-batch: the student predictions above it are the weak labels' positive rate of those examples."""
    n, size = 96, 32
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(n, 2, generator=g)
    weak_p1 = (torch.rand(n, generator=g) < 0.3).float()  # hard weak labels, ~30% positive
    weak = torch.stack([1 - weak_p1, weak_p1], dim=1)
    student_p1 = logits.softmax(-1)[:, 1]
    seen = []
    original = losses.logconf_loss
    monkeypatch.setattr(
        losses,
        "logconf_loss",
        lambda lg, wk, coef, threshold: seen.append((coef, threshold)) or original(lg, wk, coef, threshold),
    )
    loss = StudentLoss(
        Strategy(loss="logconf", alpha=0.5, warmup_frac=0.1, buffer_size=size), total_steps=n // 2
    )
    rates = set()
    for step, i in enumerate(range(0, n, 2)):
        value = loss(logits[i : i + 2], weak[i : i + 2])
        assert torch.isfinite(value)
        coef, threshold = seen[-1]
        assert coef == pytest.approx(logconf_coef(step, n // 2, 0.5, 0.1))
        recent = slice(max(0, i + 2 - size), i + 2)  # the buffer: this micro-batch and those before it
        prior = weak_p1[recent].mean().item()
        above = (student_p1[recent] > threshold).float().mean().item()
        assert above == pytest.approx(prior, abs=1 / (i + 2 - recent.start) + 1e-6)
        if i + 2 >= size:
            rates.add(round(prior, 4))
            assert len(loss.state.recent_student) == size and len(loss.state.recent_weak) == size
    assert loss.state.step == n // 2
    # the buffer's prior moves with the data but stays near 30%, where a micro-batch of 2 has 0, 50 or 100%
    assert len(rates) > 1 and all(0.1 < r < 0.45 for r in rates)


def test_ring_buffer_holds_the_last_predictions_in_order():
    logits, weak = batch(10)
    loss = StudentLoss(Strategy(loss="logconf", buffer_size=4), total_steps=5)
    for i in range(0, 10, 2):
        loss(logits[i : i + 2], weak[i : i + 2])
    np.testing.assert_allclose(list(loss.state.recent_student), logits.softmax(-1)[6:, 1].tolist(), rtol=1e-6)
    np.testing.assert_allclose(list(loss.state.recent_weak), weak[6:, 1].tolist(), rtol=1e-6)


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
    loss = StudentLoss(Strategy(loss=name), total_steps=10)(logits, weak)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad.float()).all()


def test_registered_losses_are_the_pure_functions():
    assert {"xent", "logconf", "product"} <= set(LOSSES.names())
    logits, weak = batch(8)
    state = LossState()
    assert torch.equal(LOSSES.get("xent")(logits, weak, state, Strategy()), soft_cross_entropy(logits, weak))
    assert torch.allclose(
        LOSSES.get("product")(logits, weak, state, Strategy(loss="product", alpha=2.0, beta=0.5)),
        product_loss(logits, weak, 2.0, 0.5),
    )


def test_strategy_defaults_alpha_per_loss_and_unknown_loss():
    assert Strategy().loss == "xent" and Strategy().non_defaults() == {}
    assert Strategy().describe().startswith("naive")
    assert Strategy(loss="logconf", alpha=0.5).non_defaults() == {"loss": "logconf", "alpha": 0.5}
    assert Strategy.from_json('{"loss": "product"}') == Strategy(loss="product")
    logits, weak = batch(8)
    # logconf: alpha unset = 0.5 (checked after warmup, where the coefficient is alpha)
    for alpha, expected in ((None, 0.5), (0.5, 0.5), (0.9, 0.9)):
        loss = StudentLoss(Strategy(loss="logconf", alpha=alpha, warmup_frac=0.0), total_steps=1)
        p1 = logits.softmax(-1)[:, 1]
        threshold = prior_threshold(p1, weak[:, 1].mean().item())
        assert torch.allclose(loss(logits, weak), logconf_loss(logits, weak, expected, threshold))
    # product: alpha unset = 1.0
    assert torch.allclose(
        StudentLoss(Strategy(loss="product"))(logits, weak), product_loss(logits, weak, 1.0, 1.0)
    )
    assert not torch.allclose(
        StudentLoss(Strategy(loss="product", alpha=3.0))(logits, weak), product_loss(logits, weak, 1.0, 1.0)
    )
    with pytest.raises(KeyError, match=r"unknown loss 'hinge'; registered: \[.*'logconf'"):
        StudentLoss(Strategy(loss="hinge"))


def test_as_targets_soft_and_hard():
    p1 = np.array([0.2, 0.5, 0.9])
    torch.testing.assert_close(as_targets(p1, hard=False), torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]]))
    torch.testing.assert_close(as_targets(p1, hard=True), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))


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


def test_ensemble_averages_soft_labels_by_id():
    a = pd.DataFrame({"id": ["x", "y"], "weak_p1": [0.2, 0.9], "gt_label": [0, 1]})
    b = pd.DataFrame({"id": ["y", "x"], "weak_p1": [0.5, 0.6], "gt_label": [1, 0]})
    out = average_weak_labels({"a": a, "b": b}).set_index("id")
    assert out.loc["x", "weak_p1"] == pytest.approx(0.4) and out.loc["y", "weak_p1"] == pytest.approx(0.7)
    assert out.loc["x", "weak_hard"] == 0 and out.loc["y", "weak_hard"] == 1
    with pytest.raises(PipelineError, match="labelled different rows"):
        average_weak_labels({"a": a, "b": b.assign(id=["y", "z"])})
