"""Causal LMs: continuation-only labels, masked loss, scoring, fine-tuning through the one training loop,
checkpoints (scratch, LoRA), sampling and generation, and the train_lm / weak_generations stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from w2s_align.device import setup_torch
from w2s_align.errors import PipelineError
from w2s_align.infer.generate import generate, weak_generations
from w2s_align.infer.sampling import NucleusWarper, sampling_warpers
from w2s_align.models.causal_lm import EOS, build_lm, continuation_nll, load_lm, save_lm, trained_state
from w2s_align.models.sequences import collate, encode_pairs
from w2s_align.settings.specs import Decoding, ModelSpec, TrainParams, canonical_json
from w2s_align.train.lm import train_lm
from w2s_align.train.loop import fit, trainable_snapshot

from helpers import WORDS, make_pairs

CPU = torch.device("cpu")
SCRATCH = ModelSpec(
    kind="scratch", architecture="gpt2", size={"n_layer": 1, "n_embd": 32, "n_head": 2}, vocab_size=300
)
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
FAST = dict(weight_decay=0.0, warmup_ratio=0.0, eval_batch_size=16)


# --- helpers ------------------------------------------------------------------------------------


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def model_loss(model, batch: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def build_scratch(seed: int = 0, spec: ModelSpec = SCRATCH):
    setup_torch(1, seed)
    prompts, conts = make_pairs(64, seed=99)
    return build_lm(spec, [p + c for p, c in zip(prompts, conts)], max_length=32)[:2]


def fit_lm(model, tokenizer, feats, val_feats, hp: TrainParams, seed: int = 0) -> dict:
    """The one training loop on an LM, as the train_lm stage runs it: mean token loss, the epoch with the
    lowest validation loss per continuation token kept."""

    def val_loss() -> float:
        nll, count = continuation_nll(model, tokenizer, val_feats, hp.eval_batch_size, CPU)
        return float(nll.sum() / count.sum())

    return fit(
        model,
        feats,
        lambda fs: collate(fs, tokenizer.pad_token_id),
        lambda out, idx: out.loss,
        val_loss,
        hp,
        CPU,
        seed,
        metric="val_loss",
        higher_is_better=False,
    )


@pytest.fixture(scope="module")
def scratch():
    """A tiny random-init GPT-2 and its own BPE (do not train it: tests share it)."""
    return build_scratch()


@pytest.fixture(scope="module")
def fitted():
    """A tiny GPT-2 fitted on 16 memorisable pairs: (model, tokenizer, feats, info, initial nll per token)."""
    model, tokenizer = build_scratch(seed=1)
    feats = encode_pairs(tokenizer, *make_pairs(16, seed=1), max_length=32)
    nll, count = continuation_nll(model, tokenizer, feats, 16, CPU)
    hp = TrainParams(lr=1e-2, epochs=8, batch_size=4, **FAST)  # 32 steps
    info = fit_lm(model, tokenizer, feats, feats, hp, seed=0)
    return model, tokenizer, feats, info, float(nll.sum() / count.sum())


# --- encode_pairs / collate ----------------------------------------------------------------------


def test_encode_pairs_labels_only_the_continuation_and_eos(scratch):
    _, tok = scratch
    prompts, conts = make_pairs(6)
    feats = encode_pairs(tok, prompts, conts, max_length=32)
    assert len(feats) == 6
    for p, c, f in zip(prompts, conts, feats):
        p_ids, c_ids = ids(tok, p), ids(tok, c)
        assert f["input_ids"] == p_ids + c_ids + [tok.eos_token_id]
        assert f["labels"] == [-100] * len(p_ids) + c_ids + [tok.eos_token_id]
        assert tok.decode(f["input_ids"], skip_special_tokens=True) == p + c


def test_encode_pairs_without_eos(scratch):
    _, tok = scratch
    prompts, conts = make_pairs(4)
    feats = encode_pairs(tok, prompts, conts, max_length=32, add_eos=False)
    for p, c, f in zip(prompts, conts, feats):
        assert f["input_ids"] == ids(tok, p) + ids(tok, c)
        assert f["labels"] == [-100] * len(ids(tok, p)) + ids(tok, c)
        assert tok.eos_token_id not in f["input_ids"]


def test_encode_pairs_over_long_rows_lose_prompt_tokens_from_the_left(scratch):
    _, tok = scratch
    prompt, cont = " ".join(WORDS * 3), " cat song book"
    p_ids, c_ids = ids(tok, prompt), ids(tok, cont) + [tok.eos_token_id]
    assert len(p_ids) > 16
    (f,) = encode_pairs(tok, [prompt], [cont], max_length=16)
    assert len(f["input_ids"]) == 16
    assert f["input_ids"] == p_ids[-(16 - len(c_ids)) :] + c_ids
    assert f["labels"] == [-100] * (16 - len(c_ids)) + c_ids
    # a continuation longer than the window keeps one prompt token of context and its own first tokens
    long_cont = " " + " ".join(WORDS * 2)
    (g,) = encode_pairs(tok, ["tea"], [long_cont], max_length=10)
    assert g["input_ids"] == ids(tok, "tea")[-1:] + ids(tok, long_cont)[:9]
    assert g["labels"][0] == -100 and -100 not in g["labels"][1:]


def test_collate_pads_on_the_right(scratch):
    _, tok = scratch
    feats = encode_pairs(tok, ["sun", "sun rain tea road lamp"], [" cat", " cat song book"], max_length=32)
    lens = [len(f["input_ids"]) for f in feats]
    batch = collate(feats, pad_id=tok.pad_token_id)
    width = max(lens)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(v.shape == (2, width) and v.dtype == torch.long for v in batch.values())
    for i, (f, n) in enumerate(zip(feats, lens)):
        assert batch["input_ids"][i, :n].tolist() == f["input_ids"]
        assert batch["labels"][i, :n].tolist() == f["labels"]
        assert batch["attention_mask"][i, :n].tolist() == [1] * n
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
        assert (batch["attention_mask"][i, n:] == 0).all()
        assert (batch["labels"][i, n:] == -100).all()
    assert lens[0] < width  # the short row really is padded


# --- masked loss ----------------------------------------------------------------------------------


def manual_loss(logits_: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged over labelled (continuation) targets only."""
    logits_, targets = logits_[:, :-1], labels[:, 1:]
    keep = targets != -100
    return torch.nn.functional.cross_entropy(logits_[keep], targets[keep])


def test_model_loss_counts_continuation_tokens_only(scratch):
    model, tok = scratch
    feats = encode_pairs(tok, *make_pairs(5, seed=2), max_length=32)
    batch = collate(feats, tok.pad_token_id)
    loss = model_loss(model, batch)
    assert loss == pytest.approx(manual_loss(logits(model, batch), batch["labels"]).item(), rel=1e-5)
    # scoring every token (prompt included) gives a different value: the masking matters
    everything = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    assert abs(model_loss(model, {**batch, "labels": everything}) - loss) > 1e-4


def test_loss_gradient_reaches_continuation_targets_only(scratch):
    """d loss / d logits is zero at every position whose target is a prompt token or padding."""
    model, tok = scratch
    feats = encode_pairs(tok, *make_pairs(4, seed=3), max_length=32)
    batch = collate(feats, tok.pad_token_id)
    captured = {}

    def keep_logits(_module, _inputs, output):
        output.retain_grad()
        captured["logits"] = output

    model.eval()
    handle = model.get_output_embeddings().register_forward_hook(keep_logits)
    try:
        model(**batch).loss.backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    grad_norm = captured["logits"].grad.abs().sum(-1)[:, :-1]  # position t predicts token t + 1
    target_is_continuation = batch["labels"][:, 1:] != -100
    assert (grad_norm[~target_is_continuation] == 0).all()
    assert (grad_norm[target_is_continuation] > 0).all()
    assert (~target_is_continuation).sum() > 0 and target_is_continuation.sum() > 0


def test_prompt_targets_do_not_matter_continuation_targets_do(scratch):
    """Labels built for a different prompt (same length) leave the loss unchanged; for a different
    continuation not."""
    model, tok = scratch
    (inputs,) = encode_pairs(tok, ["sun rain tea road"], [" cat song book"], max_length=32)

    def loss_with_labels_of(prompt: str, cont: str) -> float:
        (f,) = encode_pairs(tok, [prompt], [cont], max_length=32)
        assert len(f["labels"]) == len(inputs["input_ids"])
        return model_loss(model, collate([{**inputs, "labels": f["labels"]}], tok.pad_token_id))

    base = loss_with_labels_of("sun rain tea road", " cat song book")
    assert loss_with_labels_of("sun rain cat road", " cat song book") == base
    assert loss_with_labels_of("tea road sun rain", " cat song book") == base
    assert abs(loss_with_labels_of("sun rain tea road", " cat song lamp") - base) > 1e-5
    assert abs(loss_with_labels_of("sun rain tea road", " tea song book") - base) > 1e-5


def test_padding_never_contributes(scratch):
    model, tok = scratch
    feats = encode_pairs(tok, *make_pairs(4, seed=4), max_length=32)
    batch = collate(feats, tok.pad_token_id)
    loss = model_loss(model, batch)
    extra = 7
    padded = {
        "input_ids": torch.cat([batch["input_ids"], torch.full((4, extra), tok.pad_token_id)], 1),
        "attention_mask": torch.cat([batch["attention_mask"], torch.zeros((4, extra), dtype=torch.long)], 1),
        "labels": torch.cat([batch["labels"], torch.full((4, extra), -100)], 1),
    }
    assert model_loss(model, padded) == pytest.approx(loss, rel=1e-6)
    # whatever sits in the padded positions is invisible
    noisy = {**padded, "input_ids": padded["input_ids"].masked_fill(padded["attention_mask"] == 0, 42)}
    assert model_loss(model, noisy) == pytest.approx(loss, rel=1e-6)
    # a row padded to a longer width in another batch keeps its own loss
    alone = [model_loss(model, collate([f], tok.pad_token_id)) for f in feats]
    counts = [sum(label != -100 for label in f["labels"]) for f in feats]
    assert loss == pytest.approx(np.dot(alone, counts) / sum(counts), rel=1e-5)


# --- continuation_nll ------------------------------------------------------------------------------


def test_continuation_nll_sums_the_masked_loss(scratch):
    model, tok = scratch
    prompts, conts = make_pairs(7, seed=6)
    feats = encode_pairs(tok, prompts, conts, max_length=32)
    nll, count = continuation_nll(model, tok, feats, batch_size=3, device=CPU)
    assert nll.shape == count.shape == (7,)
    assert list(count) == [len(ids(tok, c)) + 1 for c in conts]  # continuation + EOS
    loss = model_loss(model, collate(feats, tok.pad_token_id))
    assert nll.sum() == pytest.approx(loss * count.sum(), rel=1e-5)
    for i in (0, 3, 6):  # rows come back in input order, not in length order
        assert nll[i] == pytest.approx(
            model_loss(model, collate([feats[i]], tok.pad_token_id)) * count[i], rel=1e-5
        )
    nll2, _ = continuation_nll(model, tok, feats, batch_size=7, device=CPU)
    np.testing.assert_allclose(nll, nll2, rtol=1e-5)


# --- fit_lm ----------------------------------------------------------------------------------------


def test_fit_lm_lowers_the_loss(fitted):
    model, tok, feats, info, initial = fitted
    history = info["history"]
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    best = min(history, key=lambda h: h["val_loss"])
    assert info["selected_epoch"] == best["epoch"]
    nll, count = continuation_nll(model, tok, feats, 16, CPU)
    assert nll.sum() / count.sum() == pytest.approx(
        best["val_loss"], rel=1e-5
    )  # the selected epoch's weights
    assert nll.sum() / count.sum() < 0.6 * initial
    assert next(model.parameters()).device.type == "cpu"


# --- checkpoints: scratch ------------------------------------------------------------------------


def save(model, tok, spec: ModelSpec, folder: Path) -> tuple[str, str]:
    model_file, meta_file = folder / "lm.safetensors", folder / "lm.json"
    save_lm(model, tok, spec, str(model_file), str(meta_file), {"seed": 0, "config_hash": "c0ffee"})
    return str(model_file), str(meta_file)


def test_scratch_lm_round_trip(tmp_path, fitted):
    model, tok, feats, _, _ = fitted
    model_file, meta_file = save(model, tok, SCRATCH, tmp_path)
    meta = json.loads(Path(meta_file).read_text())
    assert meta["kind"] == "causal_lm" and meta["adapter"] is False and meta["seed"] == 0
    assert ModelSpec.from_dict(meta["spec"]) == SCRATCH
    loaded, tok2, meta2 = load_lm(model_file, meta_file)
    assert meta2 == meta
    assert not loaded.training
    batch = collate(feats[:6], tok.pad_token_id)
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), rtol=0, atol=0)
    text = "sun rain tea road cat <eos>"
    assert (
        tok2(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    )
    assert (tok2.eos_token, tok2.pad_token) == (EOS, "<pad>")
    assert (tok2.eos_token_id, tok2.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)


def test_truncated_checkpoint_names_the_file(tmp_path, scratch):
    model, tok = scratch
    model_file, meta_file = save(model, tok, SCRATCH, tmp_path)
    data = Path(model_file).read_bytes()
    Path(model_file).write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match=r"cannot read checkpoint .*lm\.safetensors"):
        load_lm(model_file, meta_file)


def shrink_embedding(tensors):
    key = next(k for k in tensors if k.endswith(("wte.weight", "lm_head.weight")))  # tied: saved once
    return {**tensors, key: tensors[key][:, :-1].contiguous()}


def drop_final_norm(tensors):
    return {k: v for k, v in tensors.items() if "ln_f" not in k}


@pytest.mark.parametrize("corrupt", [shrink_embedding, drop_final_norm])
def test_wrong_or_missing_tensor_names_the_file(tmp_path, scratch, corrupt):
    from safetensors.torch import load_file, save_file

    model, tok = scratch
    model_file, meta_file = save(model, tok, SCRATCH, tmp_path)
    save_file(corrupt(load_file(model_file)), model_file)
    with pytest.raises(PipelineError, match=r"lm\.safetensors does not match its metadata"):
        load_lm(model_file, meta_file)


def test_wrong_checkpoint_kind_is_an_error(tmp_path, scratch):
    model, tok = scratch
    model_file, meta_file = save(model, tok, SCRATCH, tmp_path)
    meta = json.loads(Path(meta_file).read_text())
    Path(meta_file).write_text(json.dumps({**meta, "kind": "scratch"}))  # a scratch classifier's checkpoint
    with pytest.raises(PipelineError, match="not a language-model checkpoint \\(kind 'scratch'\\)"):
        load_lm(model_file, meta_file)


# --- checkpoints: pretrained + LoRA ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(tiny_llama_dir, tmp_path_factory):
    """Two LoRA steps on the tiny Llama, saved: (trained model, tokenizer, spec, model_file, meta_file,
    feats)."""
    spec = ModelSpec(kind="pretrained", path=str(tiny_llama_dir), lora=LORA)
    setup_torch(1, 0)
    model, tok, _ = build_lm(spec, [], max_length=32)
    assert hasattr(model, "peft_config")
    feats = encode_pairs(tok, *make_pairs(16, seed=7), max_length=32)
    fit_lm(model, tok, feats, feats[:4], TrainParams(lr=1e-2, epochs=1, batch_size=8, **FAST), seed=0)
    model_file, meta_file = save(model, tok, spec, tmp_path_factory.mktemp("lora_ckpt"))
    return model, tok, spec, model_file, meta_file, feats


def test_lora_checkpoint_holds_the_adapter_only(lora_run):
    from safetensors.torch import load_file

    _, _, _, model_file, meta_file, _ = lora_run
    keys = list(load_file(model_file))
    assert len(keys) == 8  # 2 layers x (q_proj, v_proj) x (lora_A, lora_B)
    assert all("lora" in k for k in keys)
    meta = json.loads(Path(meta_file).read_text())
    assert meta["adapter"] is True and "tokenizer" not in meta and "config" not in meta


def test_lora_lm_snapshot_holds_the_adapter_only(lora_run, scratch, monkeypatch):
    """The loop's best-epoch snapshot of a LoRA LM is the adapter (what the checkpoint holds), not the model,
    and restoring it puts the best epoch's adapter back."""
    from w2s_align.train import loop

    _, tok, spec, _, _, feats = lora_run
    setup_torch(1, 0)
    model, _, _ = build_lm(spec, [], max_length=32)
    snapshots, adapters = [], []
    real_snapshot = loop.trainable_snapshot
    monkeypatch.setattr(
        loop, "trainable_snapshot", lambda m: snapshots.append(real_snapshot(m)) or snapshots[-1]
    )

    def validate():  # epoch 1 has the lowest loss
        adapters.append({k: v.detach().clone() for k, v in trained_state(model).items()})
        return [1.0, 2.0][len(adapters) - 1]

    hp = TrainParams(lr=1e-2, epochs=2, batch_size=8, **FAST)
    info = fit(
        model,
        feats,
        lambda fs: collate(fs, tok.pad_token_id),
        lambda out, idx: out.loss,
        validate,
        hp,
        CPU,
        0,
        metric="val_loss",
        higher_is_better=False,
    )
    assert info["selected_epoch"] == 1 and len(snapshots) == 1
    (snapshot,) = snapshots
    assert len(snapshot) == 8 and all(".lora_A." in k or ".lora_B." in k for k in snapshot)
    assert {k.replace(".default", "") for k in snapshot} == set(trained_state(model))
    assert all(t.device.type == "cpu" for t in snapshot.values())
    assert any(not torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
    for k, v in trained_state(model).items():
        assert torch.equal(v, adapters[0][k])
    # full fine-tuning snapshots every trainable weight (the tied output embedding once)
    full, _ = scratch
    assert set(trainable_snapshot(full)) == {n for n, p in full.named_parameters()}


def test_lora_reload_matches_the_trained_model(lora_run, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model, tok, _, model_file, meta_file, feats = lora_run
    batch = collate(feats[:6], tok.pad_token_id)
    trained = logits(model, batch)
    loaded, tok2, _ = load_lm(model_file, meta_file)
    assert not hasattr(loaded, "peft_config")  # merged
    assert tok2.pad_token_id == tok.pad_token_id and tok2.eos_token == EOS
    torch.testing.assert_close(logits(loaded, batch), trained, rtol=1e-4, atol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert (logits(base, batch) - trained).abs().max() > 1e-3  # the adapter really changed the model


def test_lora_checkpoint_missing_adapter_weight_is_an_error(lora_run, tmp_path):
    from safetensors.torch import load_file, save_file

    _, _, _, model_file, meta_file, _ = lora_run
    tensors = load_file(model_file)
    key = next(k for k in tensors if "lora_A" in k)
    broken = tmp_path / "lm.safetensors"
    save_file({k: v for k, v in tensors.items() if k != key}, str(broken))
    with pytest.raises(
        PipelineError, match=r"lm\.safetensors does not match its metadata: adapter weights missing"
    ):
        load_lm(str(broken), meta_file)


def test_lora_checkpoint_unexpected_weight_is_an_error(lora_run, tmp_path):
    from safetensors.torch import load_file, save_file

    _, _, _, model_file, meta_file, _ = lora_run
    tensors = load_file(model_file)
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key.replace("lora_A", "lora_X")] = torch.zeros(2)
    broken = tmp_path / "lm.safetensors"
    save_file(tensors, str(broken))
    with pytest.raises(PipelineError, match=r"lm\.safetensors does not match .*unexpected"):
        load_lm(str(broken), meta_file)


# --- stages: train_lm, weak_generations -----------------------------------------------------------


def pairs_parquet(path: Path, splits: dict[str, int], seed: int) -> Path:
    import pandas as pd

    n = sum(splits.values())
    prompts, conts = make_pairs(n, seed=seed)
    names = [name for name, k in splits.items() for _ in range(k)]
    pd.DataFrame(
        {"id": [f"p{i}" for i in range(n)], "prompt": prompts, "continuation": conts, "split": names}
    ).to_parquet(path)
    return path


def test_train_lm_stage_saves_the_selected_epoch(tmp_path):
    data = pairs_parquet(tmp_path / "pairs.parquet", {"weak_train": 16, "val": 6}, seed=11)
    spec_json = canonical_json(
        {"kind": "scratch", "size": {"n_layer": 1, "n_embd": 32, "n_head": 2}, "vocab_size": 300}
    )
    hp = canonical_json({"lr": 1e-2, "epochs": 3, "batch_size": 8, **FAST})
    model_file, meta_file = tmp_path / "lm.safetensors", tmp_path / "lm.json"
    train_lm(
        str(data),
        "weak_train",
        str(data),
        "gt",
        spec_json,
        hp,
        max_length=32,
        seed=0,
        threads=1,
        model_out=str(model_file),
        meta_out=str(meta_file),
    )
    model, tok, meta = load_lm(str(model_file), str(meta_file))
    assert meta["target"] == "gt" and meta["config_hash"] and meta["max_length"] == 32
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3]
    best = min(meta["history"], key=lambda h: h["val_loss"])
    assert meta["selected_epoch"] == best["epoch"]
    import pandas as pd

    val = pd.read_parquet(data).query("split == 'val'")
    feats = encode_pairs(tok, val["prompt"].tolist(), val["continuation"].tolist(), 32)
    nll, count = continuation_nll(model, tok, feats, 16, CPU)
    assert nll.sum() / count.sum() == pytest.approx(
        best["val_loss"], rel=1e-4
    )  # the saved weights are the best


def test_weak_generations_label_weak_label_and_val_prompts(tmp_path, fitted):
    import pandas as pd

    model, tok, _, _, _ = fitted
    model_file, meta_file = save(model, tok, SCRATCH, tmp_path)
    data = pairs_parquet(tmp_path / "pairs.parquet", {"weak_label": 5, "val": 3, "weak_train": 2}, seed=12)
    out = tmp_path / "weak.parquet"
    weak_generations(
        model_file,
        meta_file,
        str(data),
        str(data),
        canonical_json({"max_new_tokens": 4}),
        str(out),
        "weak-lm",
        seed=0,
        threads=1,
    )
    df = pd.read_parquet(out)
    source = pd.read_parquet(data)
    assert df["prompt_id"].tolist() == source.query("split != 'weak_train'")["id"].tolist()
    assert df["split"].tolist() == ["weak_label"] * 5 + ["val"] * 3
    assert (df["sample"] == 0).all() and (df["n_new_tokens"] <= 4).all()
    assert df["gold_continuation"].tolist() == source.query("split != 'weak_train'")["continuation"].tolist()
    assert df["weak_continuation"].notna().all() and (df["model"] == "weak-lm").all()
    assert (df["config_hash"] == "c0ffee").all()
    assert json.loads(df["decoding"][0]) == {
        **json.loads(canonical_json(Decoding().__dict__)),
        "max_new_tokens": 4,
        "samples": 1,
    }


# --- generation ------------------------------------------------------------------------------------


PROMPTS = ["sun", "lamp boat milk door sun rain", "cat song book"]


def greedy(model, tok, prompt: str, max_new_tokens: int) -> list[int]:
    """New token ids of plain greedy decoding of one unpadded prompt."""
    input_ids = torch.tensor([ids(tok, prompt)])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    return out[0, input_ids.shape[1] :].tolist()


def test_generate_rows_and_token_level_slicing(scratch):
    model, tok = scratch
    tok.padding_side = "right"
    dec = Decoding(max_new_tokens=5, temperature=1.0, top_p=0.9, samples=3, batch_size=4)
    gen = generate(model, tok, PROMPTS, dec, CPU, seed=0)
    assert tok.padding_side == "right"
    assert list(gen.columns) == ["row", "sample", "continuation", "n_new_tokens"]
    assert len(gen) == len(PROMPTS) * 3
    assert gen["row"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert gen["sample"].tolist() == [0, 1, 2] * 3
    assert (gen["n_new_tokens"] <= 5).all() and (gen["n_new_tokens"] >= 0).all()
    for row, cont in zip(gen["row"], gen["continuation"]):
        assert not cont.startswith(PROMPTS[row])
    again = generate(model, tok, PROMPTS, dec, CPU, seed=0)
    assert again.equals(gen)  # seeded
    other = generate(model, tok, PROMPTS, dec, CPU, seed=1)
    assert not other["continuation"].equals(gen["continuation"])


@pytest.mark.parametrize("scale", [0.5, 3.0, 10.0])  # flat rows need the wide top-k or the full sort
def test_nucleus_warper_keeps_what_transformers_top_p_keeps(scale):
    """The same tokens as TopPLogitsWarper, through each of its three paths (top-64, top-4096, full sort),
    except where float rounding of a cumulative sum decides the least likely token of the nucleus: the two
    sum the probabilities in opposite orders."""
    from transformers import TopPLogitsWarper

    scores = torch.randn(64, 5000, generator=torch.Generator().manual_seed(0)) * scale
    ids = torch.zeros(64, 1, dtype=torch.long)
    for top_p in (0.1, 0.5, 0.9, 0.99):
        ours, theirs = NucleusWarper(top_p, k=64)(ids, scores), TopPLogitsWarper(top_p)(ids, scores)
        kept, their_kept = ~torch.isinf(ours), ~torch.isinf(theirs)
        assert torch.equal(ours[kept], scores[kept])
        differ = (kept != their_kept).any(dim=1)
        if top_p <= 0.9:
            assert not differ.any(), top_p
        for row in differ.nonzero().flatten():  # one token: the least likely of the larger nucleus
            extra = (kept[row] ^ their_kept[row]).nonzero().flatten()
            bigger = kept[row] if kept[row].sum() > their_kept[row].sum() else their_kept[row]
            assert len(extra) == 1 and scores[row, extra[0]] == scores[row][bigger].min()
        assert differ.sum() <= 2, (top_p, int(differ.sum()))


def test_sampling_warpers_apply_temperature_before_top_k_and_top_p():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper

    kinds = [type(w) for w in sampling_warpers(Decoding(temperature=0.7, top_k=50, top_p=0.9))]
    assert kinds == [TemperatureLogitsWarper, TopKLogitsWarper, NucleusWarper]
    assert not sampling_warpers(Decoding(temperature=1.0, top_k=0, top_p=1.0))


def test_top_k_warper_only_when_configured():
    from transformers import TopKLogitsWarper

    scores = torch.randn(4, 300, generator=torch.Generator().manual_seed(0))
    ids_ = torch.zeros(4, 1, dtype=torch.long)
    (top_k,) = sampling_warpers(Decoding(top_k=5, top_p=1.0))
    assert isinstance(top_k, TopKLogitsWarper) and top_k.top_k == 5
    kept = ~torch.isinf(top_k(ids_, scores))
    assert (kept.sum(-1) == 5).all()
    assert torch.equal(kept, torch.zeros_like(kept).scatter_(1, scores.topk(5).indices, True))
    assert Decoding().top_k == 0
    assert not any(isinstance(w, TopKLogitsWarper) for w in sampling_warpers(Decoding()))
    assert not sampling_warpers(Decoding(top_p=1.0))  # top_k 0: every token stays


@pytest.mark.parametrize("top_k", [0, 5, 50])
def test_generate_applies_top_k_only_when_configured(scratch, top_k):
    """transformers' generate() filters to the 50 most likely tokens unless top_k is passed; the RTP
    protocol is nucleus sampling only, so top_k=0 must leave the top-k filter out. The untrained model's
    next-token distribution is spread over its 300 tokens: 200 draws give more than 60 distinct first
    tokens without a top-k filter (84 with seed 0), at most k with top_k=k."""
    model, tok = scratch
    dec = Decoding(max_new_tokens=1, top_k=top_k, top_p=1.0, samples=200, batch_size=200)
    gen = generate(model, tok, ["sun rain"], dec, CPU, seed=0)
    distinct = gen["continuation"].nunique()
    assert distinct <= top_k if top_k else distinct > 60


def test_generate_left_padding_matches_unpadded_greedy(scratch, fitted):
    """Near-zero temperature is greedy: batched, left-padded prompts give what each prompt gives alone."""
    for model, tok in (scratch, fitted[:2]):
        dec = Decoding(max_new_tokens=6, temperature=1e-4, top_p=1.0, samples=2, batch_size=8)
        assert len({len(ids(tok, p)) for p in PROMPTS}) == 3  # different lengths: the batch is left-padded
        gen = generate(model, tok, PROMPTS, dec, CPU, seed=0)
        assert tok.padding_side == "right"
        for i, prompt in enumerate(PROMPTS):
            expected_ids = greedy(model, tok, prompt, 6)
            expected = tok.decode(expected_ids, skip_special_tokens=True)
            n_expected = sum(t not in tok.all_special_ids for t in expected_ids)
            rows = gen[gen["row"] == i]
            assert rows["continuation"].tolist() == [expected, expected]
            assert rows["n_new_tokens"].tolist() == [n_expected, n_expected]
            alone = generate(model, tok, [prompt], dec, CPU, seed=0)
            assert alone["continuation"].tolist() == [expected, expected]


def test_generate_does_not_depend_on_how_sequences_are_batched(scratch):
    """Each continuation draws from its own random numbers: one sequence per call, a few, or all at once
    give the same continuations, and a prompt's samples do not change when later prompts are added."""
    model, tok = scratch
    runs = [
        generate(model, tok, PROMPTS, Decoding(max_new_tokens=6, samples=3, batch_size=n), CPU, seed=0)
        for n in (1, 4, 9)
    ]
    assert runs[0].equals(runs[1]) and runs[0].equals(runs[2])
    first = generate(model, tok, PROMPTS[:1], Decoding(max_new_tokens=6, samples=3, batch_size=4), CPU, 0)
    assert first["continuation"].tolist() == runs[0]["continuation"][:3].tolist()


def test_keyed_sampler_draws_from_the_warped_distribution():
    """20,000 draws from a fixed distribution over 6 tokens (one filtered out): frequencies within 4
    standard errors of the probabilities, the filtered token never; the same keys give the same tokens."""
    from w2s_align.infer.sampling import KeyedSampler, sequence_keys

    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0, 0.0])
    scores = probs.log().expand(20_000, -1).clone()  # log 0 = -inf: filtered
    keys = sequence_keys(7, np.arange(20_000), np.zeros(20_000))
    ids_ = torch.zeros(20_000, 3, dtype=torch.long)
    out = KeyedSampler(keys, prompt_length=2)(ids_, scores)
    assert (torch.isfinite(out).sum(1) == 1).all()
    tokens = out.argmax(1)
    freq = torch.bincount(tokens, minlength=6).double() / 20_000
    se = (probs * (1 - probs) / 20_000).sqrt().double()
    assert ((freq - probs.double()).abs() <= 4 * se + 1e-12).all(), freq
    assert torch.equal(tokens, KeyedSampler(keys, prompt_length=2)(ids_, scores).argmax(1))
    other_step = KeyedSampler(keys, prompt_length=1)(ids_, scores).argmax(1)  # step 2 instead of 1
    assert not torch.equal(tokens, other_step)


def test_sequences_per_call_is_capped_by_the_config_and_by_memory(scratch, monkeypatch):
    from w2s_align import device as device_module
    from w2s_align.infer import generate as gen_module

    model, _ = scratch
    dec = Decoding(max_new_tokens=20, batch_size=64)
    assert gen_module.sequences_per_call(model, dec, 30, CPU) == 64
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(device_module, "job_memory", lambda device: 4 * weights + 4 * 10**6)
    few = gen_module.sequences_per_call(model, dec, 30, CPU)
    assert 1 <= few < 64
    assert gen_module.sequences_per_call(model, dec, 30, CPU, with_nll=True) <= few
    monkeypatch.setattr(device_module, "job_memory", lambda device: 0)
    assert gen_module.sequences_per_call(model, dec, 30, CPU) == 1


def test_length_batches_respect_rows_and_tokens():
    from w2s_align.device import length_batches

    lengths = [5, 1, 9, 3, 3, 7, 2, 30]
    batches = length_batches(lengths, max_rows=3, max_tokens=12)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 12
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # shortest first
    assert [7] in batches  # longer than the budget allows with a neighbour: alone
    assert length_batches(lengths, 100, 10**9) == [sorted(range(8), key=lambda i: lengths[i])]
