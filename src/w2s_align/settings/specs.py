"""Every settings object of the pipeline with its defaults: the one home of defaults. Each dataclass mirrors
one block of config.yaml (workflow/schemas/config.schema.yaml documents the same keys; a test checks that they
agree key by key). Rules receive `canonical()` strings, which leave default-valued keys out, so adding an
option with a default changes no job's params. Standard library only."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


class SpecError(ValueError):
    """A settings block that does not fit its dataclass (unknown key)."""


@dataclass(frozen=True)
class Spec:
    """Base: construction from dicts / JSON and the canonical (defaults-free) JSON form."""

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None):
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SpecError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(names)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | None):
        return cls.from_dict(json.loads(text or "{}"))

    def non_defaults(self) -> dict[str, Any]:
        """Fields whose value differs from the default (a field without a default is always kept)."""
        missing = dataclasses.MISSING
        default = lambda f: f.default_factory() if f.default_factory is not missing else f.default  # noqa: E731
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if default(f) is missing or getattr(self, f.name) != default(f)
        }

    def canonical(self) -> str:
        """Sorted, compact JSON of the non-default fields: the form in which settings reach rules."""
        return canonical_json(self.non_defaults())


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal settings give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TrainParams(Spec):
    """Optimisation: AdamW, linear warmup then decay, the best validation epoch kept."""

    lr: float = 1e-4
    epochs: int = 2
    batch_size: int = 16
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    effective_batch_size: int | None = (
        None  # rows per optimizer step (a multiple of batch_size); None = batch_size
    )

    def accumulation_steps(self) -> int:
        """Micro-batches of `batch_size` per optimizer step."""
        return (self.effective_batch_size or self.batch_size) // self.batch_size


@dataclass(frozen=True)
class TfidfOptions(Spec):
    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 50000
    C: float = 4.0


@dataclass(frozen=True)
class ModelSpec(Spec):
    """One entry of `models:` without its training settings and cluster request."""

    kind: str  # a name in CLASSIFIER_KINDS / LM_KINDS (scratch, pretrained, tfidf), or ensemble
    path: str | None = None  # pretrained: hub id, local directory or pypi:<module>/<subdir>
    architecture: str = "gpt2"  # scratch: a transformers model_type such as gpt2 or bert
    size: dict[str, Any] = field(default_factory=dict)  # scratch: architecture config values
    vocab_size: int = 8000  # scratch: BPE vocabulary trained on the training texts
    lora: dict[str, Any] | None = None  # peft LoraConfig arguments; None = full fine-tuning
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32: frozen weights' dtype (trainable ones stay fp32)
    layers: int | None = None  # pretrained LM: keep only its first `layers` blocks (a weaker pretrained LM)
    revision: str | None = None
    tfidf: dict[str, Any] = field(default_factory=dict)  # TfidfOptions
    gguf_file: str | None = None  # pretrained: a GGUF file inside `path`, converted once
    archive: dict[str, Any] | None = (
        None  # pretrained: {parts, sha256} of a zip holding folder `path`, unpacked once
    )
    members: list[str] = field(default_factory=list)  # ensemble: weak models whose labels are averaged


@dataclass(frozen=True)
class Resources(Spec):
    """Cluster request of one training job of a model (scheduling only: never part of params)."""

    mem_mb: int = 8000
    runtime: int = 60


@dataclass(frozen=True)
class Strategy(Spec):
    """How a W2S student uses weak labels; the defaults are the naive baseline."""

    loss: str = "xent"  # a name in LOSSES
    hard_labels: bool = False  # train on argmax weak labels instead of probabilities
    alpha: float | None = None  # logconf: final coefficient (0.5); product: weak exponent (1)
    beta: float = 1.0  # product: student exponent
    warmup_frac: float = 0.2  # logconf: fraction of training over which the coefficient ramps up
    buffer_size: int = 32  # logconf: recent predictions that set the prior-matching threshold
    confidence_threshold: float | None = None  # keep weak labels with max(p, 1-p) >= threshold
    top_fraction: float | None = None  # keep the most confident fraction of each weak class
    bootstrap_rounds: int = 0  # extra rounds: a fresh student learns from the previous one
    best_of: int | None = None  # generation: N weak continuations per prompt ...
    selector: str | None = None  # ... of which this scorer keeps the least toxic
    dpo_weighting: str | None = (
        None  # preference track: "none" (plain DPO) or "confidence" (CW-PO pair weights)
    )

    def describe(self) -> str:
        changed = self.non_defaults()
        return json.dumps(changed) if changed else "naive (cross-entropy on weak soft labels)"


@dataclass(frozen=True)
class TaskData(Spec):
    """How to read one classification task (the `data:` block)."""

    source: str
    text_fields: list[str]
    label_field: str
    label_map: dict[str, int]
    sizes: dict[str, int]
    group_field: str | None = None
    hf_split: str = "train"
    test_seed: int = 0


@dataclass(frozen=True)
class ScorerData(Spec):
    """Labelled texts of a trained scorer (label 1 = toxic)."""

    source: str
    text_fields: list[str]
    label_field: str
    label_map: dict[str, int]
    sizes: dict[str, int]  # train, val, test
    hf_split: str = "train"
    test_seed: int = 0
    seed: int = 0  # training sample and initialisation
    balance: bool = True  # downsample training rows to equal classes


@dataclass(frozen=True)
class CorpusSpec(Spec):
    """The `corpus:` block of a generation task: gold prompt/continuation pairs."""

    source: str
    format: str = "rtp"  # a name in CORPUS_FORMATS
    sizes: dict[str, int] = field(default_factory=dict)
    text_field: str = "tweet"  # tweets: the text column
    label_field: str | None = None  # tweets: keep only rows whose label is in keep_labels
    keep_labels: list[str] = field(default_factory=list)
    min_words: int = 6  # tweets: shorter texts are dropped
    max_toxicity: float = 0.5  # rtp: gold continuations must score below this (when scored)
    hf_split: str = "train"
    gold: dict[str, Any] | None = None  # GoldSpec: generate the gold continuations instead of reading them


@dataclass(frozen=True)
class GoldSpec(Spec):
    """Gold continuations built once per task: `generator` (an untuned pretrained LM) samples `samples`
    continuations of each training prompt and `judge` (a scorer, preferably not the evaluation scorer) keeps
    the least toxic among those whose perplexity under the generator is within `max_perplexity_ratio` x the
    median of the prompt's."""

    generator: str
    judge: str
    samples: int = 4
    max_perplexity_ratio: float = 1.5
    seed: int = 0  # which prompts of the pool are used


@dataclass(frozen=True)
class PreferenceSpec(Spec):
    """The `preferences:` block of a generation task (the DPO track): `generator` (the untuned strong model)
    samples `samples` continuations per prompt; a judge's pair is its least vs its most toxic; students learn
    from weak judges' pairs, the ceiling from the gold judge's."""

    generator: str
    gold_judge: str
    weak_judges: list[str]
    strategies: list[str]
    sizes: dict[str, int]  # train, val, test: prompts (one pair each per judge)
    samples: int = 4  # candidates per prompt (k)
    strong_models: list[str] = field(
        default_factory=list
    )  # DPO policies (LoRA); empty: the task's strong_models
    train: dict[str, Any] = field(default_factory=dict)  # TrainParams overrides of the strong model's `train`
    beta: float = 0.1  # DPO temperature, shared by students and ceiling
    min_gold_margin: float = 0.2  # test pairs: the gold judge's two scores differ by at least this
    seed: int = 0  # which prompts of the pool are drawn and how they are split


@dataclass(frozen=True)
class PromptSpec(Spec):
    """The `prompts:` block: evaluation prompts, the same for every seed."""

    source: str | list[str]  # one source or several, pooled
    n: int = 100
    challenging_only: bool = True  # RTP records: keep those flagged `challenging`
    test_seed: int = 0
    hf_split: str = "train"


@dataclass(frozen=True)
class Decoding(Spec):
    """Sampling settings; continuations are `max_new_tokens` new tokens, sliced at the token level."""

    max_new_tokens: int = 20
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 0  # 0 = off (transformers' generate would apply top_k=50 when unset)
    samples: int = 1  # continuations per prompt
    batch_size: int = 128  # sequences per forward pass at most (infer/generate.py:sequences_per_call)


@dataclass(frozen=True)
class TaskDefaults(Spec):
    """Task-level keys with defaults."""

    kind: str = "classification"  # or generation
    eval_samples: int = 4  # generation: k continuations per evaluation prompt


@dataclass(frozen=True)
class RunDefaults(Spec):
    """Top-level keys with defaults."""

    seeds: list[int] = field(default_factory=lambda: [0])
    strategies: dict[str, Any] = field(default_factory=lambda: {"naive": {}})
    student_strategies: list[str] = field(default_factory=lambda: ["naive"])
    controls: list[str] = field(default_factory=list)  # settings.CONTROLS to run beside the students
    scorers: dict[str, Any] = field(default_factory=dict)
    score_cache: str | None = "results/cache/scores"
    only: list[str] = field(default_factory=list)  # run only these tasks (empty: all)
    threads: int = 2  # threads per torch job


@dataclass(frozen=True)
class MetricsSpec(Spec):
    bootstrap: int = 1000  # resamples for the 95% CIs
