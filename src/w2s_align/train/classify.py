"""Training stage of the weak, student and ceiling classifiers (any kind in CLASSIFIER_KINDS)."""

from __future__ import annotations

import json
import logging
from functools import partial

import numpy as np
import pandas as pd

from w2s_align.errors import PipelineError
from w2s_align.files import read_split, short_hash
from w2s_align.models import classifier, tfidf  # noqa: F401  (register the classifier kinds)
from w2s_align.models.classifier import TransformerClassifier, selection_score
from w2s_align.registry import CLASSIFIER_KINDS
from w2s_align.settings.specs import ModelSpec, Strategy, TrainParams
from w2s_align.train.loop import fit, total_steps
from w2s_align.train.losses import StudentLoss, as_targets
from w2s_align.train.strategies import confidence_mask

log = logging.getLogger(__name__)

TARGETS = ("gt", "weak")


def supervision(df: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(P(class 1) to learn from, reference labels for epoch selection) for ground truth or weak labels."""
    if target == "gt":
        return df["gt_label"].to_numpy(dtype=np.float64), df["gt_label"].to_numpy()
    if target == "weak":
        return df["weak_p1"].to_numpy(dtype=np.float64), df["weak_hard"].to_numpy()
    raise PipelineError(f"unknown training target {target!r}; expected one of {TARGETS}")


def classifier_kind(spec: ModelSpec, strategy: Strategy):
    """The registered kind of `spec`; a strategy it cannot train with is an error naming both."""
    try:
        kind = CLASSIFIER_KINDS.get(spec.kind)
    except KeyError as exc:
        raise PipelineError(str(exc.args[0])) from None
    losses = CLASSIFIER_KINDS.trait(spec.kind, "losses", "any")
    if losses != "any" and (strategy.loss not in losses or strategy.bootstrap_rounds):
        raise PipelineError(
            f"{spec.kind} models train with {list(losses)} and no bootstrapping; use a transformer "
            f"for strategy {strategy.describe()}"
        )
    return kind


def train_classifier(
    train_path: str,
    train_split: str,
    val_path: str,
    target: str,
    spec_json: str,
    hparams_json: str,
    max_length: int,
    seed: int,
    threads: int,
    model_out: str,
    meta_out: str,
    strategy_json: str = "{}",
    local_dir: str | None = None,
) -> None:
    """Train one classifier on `train_split` rows (ground truth, or weak labels used as the strategy
    says) and save its checkpoint. Epochs are selected on `val` with the same kind of labels."""
    needs = ["text", "text_pair", "gt_label"] + (["weak_p1", "weak_hard"] if target == "weak" else [])
    train_df = read_split(train_path, train_split, needs)
    val_df = read_split(val_path, "val", needs)
    fit_classifier(
        train_df,
        val_df,
        target,
        spec_json,
        hparams_json,
        max_length,
        seed,
        threads,
        model_out,
        meta_out,
        strategy_json,
        source=f"{train_split} rows of {train_path}",
        local_dir=local_dir,
    )


def fit_classifier(
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    target: str,
    spec_json: str,
    hparams_json: str,
    max_length: int,
    seed: int,
    threads: int,
    model_out: str,
    meta_out: str,
    strategy_json: str = "{}",
    source: str = "training rows",
    local_dir: str | None = None,
) -> None:
    """Train on the rows of `train_df` and select epochs on `val_df`; see train_classifier.

    With bootstrap_rounds, a fresh model learns from the previous round's soft predictions."""
    spec, hp, strategy = (
        ModelSpec.from_json(spec_json),
        TrainParams.from_json(hparams_json),
        Strategy.from_json(strategy_json),
    )
    kind = classifier_kind(spec, strategy)
    train_p1, _ = supervision(train_df, target)
    _, val_reference = supervision(val_df, target)
    keep = confidence_mask(train_p1, strategy.confidence_threshold, strategy.top_fraction)
    if not keep.all():
        log.info("confidence filter keeps %d of %d weak labels", keep.sum(), len(keep))
        train_df, train_p1 = train_df[keep].reset_index(drop=True), train_p1[keep]
    if len(np.unique(train_p1 >= 0.5)) < 2:
        raise PipelineError(f"{source}: the {len(train_df)} training labels are all one class")
    log.info(
        "training %s model on %d %s (target: %s, strategy: %s), validating on %d rows",
        spec.kind,
        len(train_df),
        source,
        target,
        strategy.describe(),
        len(val_df),
    )
    device = None
    if CLASSIFIER_KINDS.trait(spec.kind, "gpu", True):
        from w2s_align.device import setup_torch

        device = setup_torch(threads, seed)
    rounds, model = [], None
    for round_ in range(1 + strategy.bootstrap_rounds):
        if model is not None:
            from w2s_align.device import set_seed

            previous = train_p1
            train_p1 = model.predict_proba(train_df, hp.eval_batch_size)
            log.info(
                "bootstrap round %d: student labels agree with the previous targets on %.1f%% of rows",
                round_,
                100 * np.mean((train_p1 >= 0.5) == (previous >= 0.5)),
            )
            set_seed(seed + round_)
        model = kind.build(spec, train_df, max_length, **({"local_dir": local_dir} if local_dir else {}))
        if not round_ and model.trainable_parameters():
            log.info(
                "model: %s, %.2fM trainable parameters",
                spec.path or spec.architecture,
                model.trainable_parameters() / 1e6,
            )
        train_one = (
            model.fit if hasattr(model, "fit") else partial(fit_transformer, model)
        )  # TF-IDF fits itself
        rounds.append(
            train_one(train_df, train_p1, val_df, val_reference, hp, strategy, device, seed + round_)
        )
    extra = {
        "spec": json.loads(spec_json),
        "hparams": json.loads(hparams_json),
        "target": target,
        "strategy": json.loads(strategy_json),
        "max_length": max_length,
        "seed": seed,
        "config_hash": short_hash(spec_json + hparams_json + strategy_json),
    }
    if hasattr(model, "parameters"):  # optional for a registered kind; the ladder figure's x axis
        extra["parameters"] = model.parameters()
    model.save(model_out, meta_out, {**extra, **rounds[-1], "rounds": len(rounds)})


def fit_transformer(
    model: TransformerClassifier,
    train_df: pd.DataFrame,
    p1: np.ndarray,
    val_df: pd.DataFrame,
    val_reference: np.ndarray,
    hp: TrainParams,
    strategy: Strategy,
    device,
    seed: int,
) -> dict:
    """Train a transformer classifier on the soft labels `p1` = P(class 1) with the strategy's loss, in the
    one training loop; keep the epoch with the best validation score against `val_reference` (no test labels).
    """
    from transformers import DataCollatorWithPadding

    model.device = device
    feats, val_feats = model.encode(train_df), model.encode(val_df)
    targets = as_targets(p1, strategy.hard_labels)
    loss = StudentLoss(strategy, total_steps(len(feats), hp))
    return fit(
        model.model,
        feats,
        DataCollatorWithPadding(model.tokenizer),
        lambda out, idx: loss(out.logits, targets[idx].to(device)),
        lambda: selection_score(
            val_reference, model.predict_features(val_feats, hp.eval_batch_size, "validate")
        ),
        hp,
        device,
        seed,
        metric="val_score",
        higher_is_better=True,
        compute=model.compute,
    )
