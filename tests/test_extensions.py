"""Extending the pipeline is one function or class plus its registration: a toy loss, scorer kind and
classifier model kind, appended to the modules of a repository copy, run through the tiny workflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import CORES, copy_run, executed_rules, snakemake

SUMMARY = "results/tables/summary.csv"
TOY_LOSS = '''

@LOSSES.register("toy-hinge")
def toy_hinge(logits, targets, state, strategy):
    """A margin loss on the weak labels' argmax."""
    sign = targets[:, 1].round() * 2 - 1
    return (1 - sign * (logits[:, 1] - logits[:, 0])).clamp_min(0).mean()
'''

TOY_SCORER = '''

@SCORERS.register("toy-length", gpu=False)
class LengthScorer(Scorer):
    """Longer continuations are 'more toxic': len / scale, clipped to [0, 1]."""

    name = "toy-length"

    def __init__(self, scale: float = 100.0):
        self.scale = scale

    def spec(self):
        return {"kind": "toy-length", "scale": self.scale}

    def score_batch(self, texts):
        return np.clip(np.array([len(t) for t in texts], dtype="float64") / self.scale, 0.0, 1.0)
'''

TOY_KIND = '''

@CLASSIFIER_KINDS.register("toy-length", gpu=False, losses=("xent",))
class LengthClassifier:
    """P(class 1) = 0.75 for texts at least as long as the training median, else 0.25."""

    def __init__(self, median: float = 0.0):
        self.median = median

    @classmethod
    def build(cls, spec, train_df, max_length):
        return cls()

    def trainable_parameters(self):
        return 0

    def fit(self, train_df, p1, val_df, val_reference, hp, strategy, device, seed):
        self.median = float(train_df["text"].str.len().median())
        return {"median": self.median}

    def predict_proba(self, df, batch_size=0):
        return np.where(df["text"].str.len().to_numpy() >= self.median, 0.75, 0.25)

    def save(self, model_file, meta_file, extra):
        write_text(canonical_json({"median": self.median}), model_file)
        write_text(canonical_json({"kind": "toy-length", **extra}), meta_file)

    @classmethod
    def load(cls, model_file, meta, device=None):
        import json

        return cls(json.loads(open(model_file).read())["median"])
'''


@pytest.fixture
def extended_run(tiny_run, tmp_path) -> Path:
    """A copy of the finished tiny run whose package has the three toy extensions."""
    work = copy_run(tiny_run, tmp_path / "extended")
    src = work / "src/w2s_align"
    for module, code in (
        ("train/losses.py", TOY_LOSS),
        ("scoring/scorers.py", TOY_SCORER),
        ("models/tfidf.py", TOY_KIND),
    ):
        text = (src / module).read_text() + code
        (src / module).write_text(text)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["models"]["toy"] = {"kind": "toy-length"}
    cfg["strategies"]["toy-loss"] = {"loss": "toy-hinge"}
    cfg["tasks"]["safety"] |= {
        "weak_models": ["tiny-gpt2", "toy"],
        "student_strategies": ["naive", "toy-loss"],
    }
    cfg["scorers"]["length"] = {"kind": "toy-length", "scale": 80.0}
    cfg["tasks"]["toxicity"]["scorer"] = "length"
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return work


def test_toy_loss_scorer_and_model_kind_run_through_the_workflow(extended_run):
    # the summary table and what it is made of: every job the extensions touch, no plots
    proc = snakemake(extended_run, SUMMARY, "--cores", CORES, "--config", "only=[safety,toxicity]")  # target
    # first: after --config it would be read as one more config entry
    ran = executed_rules(proc)
    # the edited modules (losses, tfidf, scorers) are in every classifier's and scorer's code closure, so
    # safety retrains (4 students: 2 weak models x 2 strategies); toxicity rescores every model's generations
    # with the toy scorer but fine-tunes and generates nothing (no LM stage uses those modules)
    assert (
        ran.count("train_weak") == 2
        and ran.count("train_student") == 4
        and ran.count("score_generations") == 4
    )
    assert not {
        "train_weak_lm",
        "train_lm_ceiling",
        "train_lm_student",
        "lm_generations",
        "train_scorer",
    } & set(ran)
    summary = pd.read_csv(extended_run / SUMMARY)
    toy = summary[(summary.weak_model == "toy") & (summary.role == "weak") & (summary.metric == "accuracy")]
    assert (
        len(toy) == 2 and toy["value"].between(0, 1).all()
    )  # naive and toy-loss students of the toy weak model
    assert set(summary.loc[summary.task == "safety", "strategy"]) == {"naive", "toy-loss"}
    labels = pd.read_parquet(extended_run / "results/safety/weak/toy/seed0/weak_labels.parquet")
    assert set(labels["weak_p1"]) == {0.25, 0.75}  # the toy kind's two soft labels
    scores = pd.read_parquet(
        extended_run / "results/toxicity/ceiling/smollm2-135m/seed0/toxicity_length.parquet"
    )
    gens = pd.read_parquet(extended_run / "results/toxicity/ceiling/smollm2-135m/seed0/generations.parquet")
    expected = (gens["continuation"].fillna("").str.len() / 80.0).clip(0, 1)
    expected[gens["continuation"].fillna("").str.strip() == ""] = 0.0  # empty texts score 0 without a call
    assert scores["toxicity"].to_numpy() == pytest.approx(expected.to_numpy())
