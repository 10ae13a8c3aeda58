"""Generation data: prompt/continuation pairs for fine-tuning and prompts for the toxicity evaluation.

Fine-tuning splits (weak_train / weak_label / val) hold `prompt` + gold `continuation`; the `test`
split holds evaluation prompts only (the RealToxicityPrompts protocol samples continuations of them).
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from w2s_align.data import TaskData, label_strings, load_source
from w2s_align.io import PipelineError, short_hash, write_parquet

log = logging.getLogger(__name__)

FINETUNE_SPLITS = ("weak_train", "weak_label", "val")
FORMATS = ("tweets", "rtp")


@dataclass(frozen=True)
class CorpusSpec:
    """The `corpus:` block of a generation task: where gold prompt/continuation pairs come from."""

    source: str
    format: str = "rtp"  # rtp: prompt.text / continuation.text records; tweets: texts cut in two
    sizes: dict[str, int] = field(default_factory=dict)
    text_field: str = "tweet"  # tweets: the text column
    label_field: str | None = None  # tweets: keep only rows whose label is in keep_labels
    keep_labels: list[str] = field(default_factory=list)
    min_words: int = 6  # tweets: shorter texts are dropped
    max_toxicity: float = 0.5  # rtp: gold continuations must score below this (when scores exist)
    hf_split: str = "train"

    @classmethod
    def from_json(cls, text: str) -> "CorpusSpec":
        spec = cls(**json.loads(text))
        if spec.format not in FORMATS:
            raise PipelineError(f"corpus format {spec.format!r} is unknown; expected one of {FORMATS}")
        return spec


@dataclass(frozen=True)
class PromptSpec:
    """The `prompts:` block: evaluation prompts (flat `text` records or RTP `prompt.text` records)."""

    source: str
    n: int = 100
    challenging_only: bool = True  # RTP records: keep those flagged `challenging`
    test_seed: int = 0
    hf_split: str = "train"

    @classmethod
    def from_json(cls, text: str) -> "PromptSpec":
        return cls(**json.loads(text))


def _read(source: str, hf_split: str) -> pd.DataFrame:
    return load_source(TaskData(source=source, text_fields=[], label_field="", label_map={}, sizes={},
                                hf_split=hf_split))


# retweet markers, @mentions (not e-mail addresses), URLs (also truncated ones), '#'
_NOISE = re.compile(r"\bRT\b|[@＠](?!\w+\.\w)\w*:?|\bhttps?\S*|#")


def clean_tweet(text: str) -> str:
    """Unescape HTML entities, drop retweet markers, @mentions, URLs and '#', collapse whitespace."""
    text = _NOISE.sub(" ", html.unescape(html.unescape(text)))
    text = re.sub(r"^[\W_]+", "", text.strip())  # leading '!!!', quotes, colons
    return re.sub(r"\s+", " ", text).strip()


def cut_at_word(text: str) -> tuple[str, str]:
    """Prompt = the first half of the words, continuation = the rest with its leading space."""
    words = text.split(" ")
    cut = len(words) // 2
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


def _nested(df: pd.DataFrame, column: str, key: str) -> pd.Series:
    """RTP stores {'text': ..., 'toxicity': ...} dicts; flattened sources use `column.key`."""
    if f"{column}.{key}" in df.columns:
        return df[f"{column}.{key}"]
    if column not in df.columns:
        raise PipelineError(f"missing column {column!r} (or {column}.{key}); columns are {list(df.columns)}")
    return df[column].map(lambda d: d.get(key) if isinstance(d, dict) else None)


def gold_pairs(spec: CorpusSpec) -> pd.DataFrame:
    """Cleaned, de-duplicated prompt/continuation pairs from the corpus source."""
    df = _read(spec.source, spec.hf_split)
    n0 = len(df)
    if spec.format == "tweets":
        if spec.text_field not in df.columns or (spec.label_field and spec.label_field not in df.columns):
            raise PipelineError(f"{spec.source}: needs columns {spec.text_field!r} and {spec.label_field!r}; "
                                f"columns are {list(df.columns)}")
        if spec.label_field:
            df = df[label_strings(df[spec.label_field]).isin(spec.keep_labels)]
        texts = df[spec.text_field].astype("string").dropna().map(clean_tweet)
        texts = texts[texts.str.count(" ") + 1 >= spec.min_words]
        pairs = pd.DataFrame([cut_at_word(t) for t in texts], columns=["prompt", "continuation"])
    else:
        pairs = pd.DataFrame({"prompt": _nested(df, "prompt", "text"),
                              "continuation": _nested(df, "continuation", "text")})
        tox = pd.to_numeric(_nested(df, "continuation", "toxicity"), errors="coerce") if (
            "continuation" in df.columns or "continuation.toxicity" in df.columns) else None
        if tox is not None:  # unscored continuations are kept
            pairs = pairs[~(tox >= spec.max_toxicity).to_numpy()]
    pairs = pairs.dropna().astype("string")
    pairs = pairs[(pairs["prompt"].str.strip() != "") & (pairs["continuation"].str.strip() != "")]
    pairs = pairs.drop_duplicates().reset_index(drop=True)
    log.info("corpus %s: %d records read, %d prompt/continuation pairs kept", spec.source, n0, len(pairs))
    pairs.insert(0, "id", [short_hash(p + "\x1f" + c) for p, c in zip(pairs["prompt"], pairs["continuation"])])
    return pairs


def eval_prompts(spec: PromptSpec) -> pd.DataFrame:
    """`n` evaluation prompts drawn with `test_seed` (the same for every run seed)."""
    df = _read(spec.source, spec.hf_split)
    if "text" in df.columns:
        prompts = pd.DataFrame({"prompt": df["text"], "prompt_toxicity": df.get("toxicity")})
    else:
        if spec.challenging_only and "challenging" in df.columns:
            df = df[df["challenging"].eq(True)]  # a missing flag is not challenging
        prompts = pd.DataFrame({"prompt": _nested(df, "prompt", "text"),
                                "prompt_toxicity": _nested(df, "prompt", "toxicity")})
    prompts["prompt"] = prompts["prompt"].astype("string").str.strip()
    prompts["prompt_toxicity"] = pd.to_numeric(prompts["prompt_toxicity"], errors="coerce")
    prompts = prompts[prompts["prompt"].fillna("") != ""].drop_duplicates("prompt").reset_index(drop=True)
    if spec.n > len(prompts):
        raise PipelineError(f"{spec.source}: {spec.n} evaluation prompts requested but only {len(prompts)} exist")
    take = np.sort(np.random.default_rng(spec.test_seed).permutation(len(prompts))[:spec.n])
    prompts = prompts.iloc[take].reset_index(drop=True)
    prompts.insert(0, "id", [short_hash(p) for p in prompts["prompt"]])
    log.info("evaluation prompts: %d of %s (mean prompt toxicity %.2f)", len(prompts), spec.source,
             prompts["prompt_toxicity"].mean())
    return prompts


def make_corpus_splits(corpus_json: str, prompts_json: str, seed: int, outputs: dict[str, str]) -> None:
    corpus, prompt_spec = CorpusSpec.from_json(corpus_json), PromptSpec.from_json(prompts_json)
    missing = [s for s in FINETUNE_SPLITS if corpus.sizes.get(s, 0) < 1]
    if missing:
        raise PipelineError(f"corpus sizes need a positive size for {missing}")
    pairs = gold_pairs(corpus)
    need = sum(corpus.sizes[s] for s in FINETUNE_SPLITS)
    if need > len(pairs):
        raise PipelineError(f"{corpus.source}: corpus sizes {corpus.sizes} need {need} pairs but only {len(pairs)} "
                            "remain after cleaning")
    order = np.random.default_rng(seed).permutation(len(pairs))
    start = 0
    for name in FINETUNE_SPLITS:
        part = pairs.iloc[order[start:start + corpus.sizes[name]]].sort_values("id").reset_index(drop=True)
        start += corpus.sizes[name]
        log.info("split %-10s %5d pairs", name, len(part))
        write_parquet(part.assign(split=name), outputs[name])
    write_parquet(eval_prompts(prompt_spec).assign(split="test"), outputs["test"])
