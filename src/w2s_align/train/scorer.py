"""Scorer-training stage: the offline toxicity scorer, a classifier trained by the pipeline (class 1 = toxic),
with its held-out AUROC."""

from __future__ import annotations

import logging

import pandas as pd

from w2s_align.files import write_parquet
from w2s_align.settings.specs import ScorerData

log = logging.getLogger(__name__)


def balanced(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Downsample every class to the size of the smallest."""
    n = int(df["gt_label"].value_counts().min())
    out = df.groupby("gt_label", group_keys=False).sample(n=n, random_state=seed).sort_values("id")
    log.info("balanced scorer training data: %d rows per class (%d dropped)", n, len(df) - len(out))
    return out.reset_index(drop=True)


def train_scorer(
    data_json: str,
    spec_json: str,
    hparams_json: str,
    max_length: int,
    threads: int,
    model_out: str,
    meta_out: str,
    heldout_out: str,
) -> None:
    """A toxicity classifier (class 1 = toxic) trained by the pipeline, with its held-out AUROC.

    `data_json` is the scorer's `data` block (ScorerData: its defaults, e.g. balance=True, live in specs.py).
    Its `seed` (default 0) seeds the training sample and initialisation."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from w2s_align.data.classification import clean, labelled, split
    from w2s_align.data.sources import load_source
    from w2s_align.models.checkpoint import predict_rows
    from w2s_align.train.classify import fit_classifier

    data = ScorerData.from_json(data_json)
    seed, spec = data.seed, labelled(data)
    parts = split(clean(load_source(spec.source, spec.hf_split), spec), spec, seed)
    if data.balance:  # equal classes: an imbalanced scorer calls any unfamiliar text toxic
        parts["train"] = balanced(parts["train"], seed)
    fit_classifier(
        parts["train"],
        parts["val"],
        "gt",
        spec_json,
        hparams_json,
        max_length,
        seed,
        threads,
        model_out,
        meta_out,
        source=f"rows of {spec.source}",
    )
    test = parts["test"]
    p1 = predict_rows(model_out, meta_out, test, threads)
    y = test["gt_label"].to_numpy()
    table = pd.DataFrame(
        [
            {"metric": "auroc", "value": roc_auc_score(y, p1)},
            {"metric": "accuracy", "value": accuracy_score(y, p1 >= 0.5)},
            {"metric": "positive_rate", "value": float(y.mean())},
        ]
    ).assign(n_test=len(y))
    log.info("scorer held-out AUROC %.4f, accuracy %.4f on %d rows", *table["value"][:2], len(y))
    write_parquet(table, heldout_out)
