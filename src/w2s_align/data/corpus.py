"""Generation data: prompt/continuation pairs for fine-tuning and prompts for the toxicity evaluation.

Fine-tuning splits (weak_train / weak_label / val) hold `prompt` + gold `continuation` per run seed; the
evaluation prompts (split `test`, no continuations: the RealToxicityPrompts protocol samples them) are one
file shared by every seed and model, so changing them never retrains a model. Corpus formats are
functions `(df, spec) -> DataFrame[prompt, continuation]` in CORPUS_FORMATS.
"""

from __future__ import annotations

import html
import logging
import re

import numpy as np
import pandas as pd

from w2s_align.data.sources import label_strings, load_source
from w2s_align.errors import PipelineError
from w2s_align.files import read_parquet, short_hash, write_parquet
from w2s_align.registry import CORPUS_FORMATS
from w2s_align.settings.specs import CorpusSpec, PromptSpec

log = logging.getLogger(__name__)

FINETUNE_SPLITS = ("weak_train", "weak_label", "val")


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


@CORPUS_FORMATS.register("tweets")
def tweet_pairs(df: pd.DataFrame, spec: CorpusSpec) -> pd.DataFrame:
    """Single texts (e.g. tweets) with an optional label filter, cleaned and cut in two at a word boundary."""
    if spec.text_field not in df.columns or (spec.label_field and spec.label_field not in df.columns):
        raise PipelineError(
            f"{spec.source}: needs columns {spec.text_field!r} and {spec.label_field!r}; "
            f"columns are {list(df.columns)}"
        )
    if spec.label_field:
        df = df[label_strings(df[spec.label_field]).isin(spec.keep_labels)]
    texts = df[spec.text_field].astype("string").dropna().map(clean_tweet)
    texts = texts[texts.str.count(" ") + 1 >= spec.min_words]
    return pd.DataFrame([cut_at_word(t) for t in texts], columns=["prompt", "continuation"])


@CORPUS_FORMATS.register("rtp")
def rtp_pairs(df: pd.DataFrame, spec: CorpusSpec) -> pd.DataFrame:
    """RealToxicityPrompts records (prompt.text, continuation.text); continuations scored at or above
    `max_toxicity` are dropped, unscored ones kept."""
    pairs = pd.DataFrame(
        {"prompt": _nested(df, "prompt", "text"), "continuation": _nested(df, "continuation", "text")}
    )
    if "continuation" in df.columns or "continuation.toxicity" in df.columns:
        tox = pd.to_numeric(_nested(df, "continuation", "toxicity"), errors="coerce")
        pairs = pairs[~(tox >= spec.max_toxicity).to_numpy()]
    return pairs


@CORPUS_FORMATS.register("prompts")
def prompt_records(df: pd.DataFrame, spec: CorpusSpec) -> pd.DataFrame:
    """Prompts without continuations (records with `text`, or RTP's prompt.text), for `gold` to continue."""
    prompts = df["text"] if "text" in df.columns else _nested(df, "prompt", "text")
    return pd.DataFrame({"prompt": prompts, "continuation": pd.NA})


def gold_pairs(spec: CorpusSpec) -> pd.DataFrame:
    """Cleaned, de-duplicated prompt/continuation pairs from the corpus source, read by its format."""
    try:
        to_pairs = CORPUS_FORMATS.get(spec.format)
    except KeyError as exc:
        raise PipelineError(f"corpus format: {exc.args[0]}") from None
    df = load_source(spec.source, spec.hf_split)
    n0 = len(df)
    pairs = to_pairs(df, spec)[["prompt", "continuation"]]
    pairs = pairs.dropna().astype("string")
    pairs = pairs[(pairs["prompt"].str.strip() != "") & (pairs["continuation"].str.strip() != "")]
    pairs = pairs.drop_duplicates().reset_index(drop=True)
    log.info("corpus %s: %d records read, %d prompt/continuation pairs kept", spec.source, n0, len(pairs))
    pairs.insert(
        0, "id", [short_hash(p + "\x1f" + c) for p, c in zip(pairs["prompt"], pairs["continuation"])]
    )
    return pairs


def eval_prompts(spec: PromptSpec) -> pd.DataFrame:
    """`n` evaluation prompts drawn with `test_seed` from the pooled sources (the same for every run seed)."""
    sources = [spec.source] if isinstance(spec.source, str) else list(spec.source)
    prompts = pd.concat([source_prompts(source, spec) for source in sources], ignore_index=True)
    prompts["prompt"] = prompts["prompt"].astype("string").str.strip()
    prompts["prompt_toxicity"] = pd.to_numeric(prompts["prompt_toxicity"], errors="coerce")
    prompts = prompts[prompts["prompt"].fillna("") != ""].drop_duplicates("prompt").reset_index(drop=True)
    if spec.n > len(prompts):
        raise PipelineError(
            f"{', '.join(sources)}: {spec.n} evaluation prompts requested but only {len(prompts)} exist"
        )
    take = np.sort(np.random.default_rng(spec.test_seed).permutation(len(prompts))[: spec.n])
    prompts = prompts.iloc[take].reset_index(drop=True)
    prompts.insert(0, "id", [short_hash(p) for p in prompts["prompt"]])
    log.info(
        "evaluation prompts: %d of %s (mean prompt toxicity %.2f)",
        len(prompts),
        ", ".join(sources),
        prompts["prompt_toxicity"].mean(),
    )
    return prompts


def source_prompts(source: str, spec: PromptSpec) -> pd.DataFrame:
    """Prompts of one source: records with `text` (JSONL, CSV, one per line in .txt) or RTP records."""
    df = load_source(source, spec.hf_split)
    if "text" in df.columns:
        prompts = pd.DataFrame({"prompt": df["text"], "prompt_toxicity": df.get("toxicity")})
    else:
        if spec.challenging_only and "challenging" in df.columns:
            df = df[df["challenging"].eq(True)]  # a missing flag is not challenging
        prompts = pd.DataFrame(
            {"prompt": _nested(df, "prompt", "text"), "prompt_toxicity": _nested(df, "prompt", "toxicity")}
        )
    return prompts.assign(source=source)


def make_corpus_splits(
    corpus_json: str, seed: int, outputs: dict[str, str], gold_path: str | None = None
) -> None:
    """The fine-tuning splits (weak_train / weak_label / val) of gold pairs for run `seed`: the corpus's own
    pairs, or the generated gold pairs of `gold_path` (data/gold.py)."""
    corpus = CorpusSpec.from_json(corpus_json)
    missing = [s for s in FINETUNE_SPLITS if corpus.sizes.get(s, 0) < 1]
    if missing:
        raise PipelineError(f"corpus sizes need a positive size for {missing}")
    pairs = read_parquet(gold_path, ["id", "prompt", "continuation"]) if gold_path else gold_pairs(corpus)
    need = sum(corpus.sizes[s] for s in FINETUNE_SPLITS)
    if need > len(pairs):
        raise PipelineError(
            f"{corpus.source}: corpus sizes {corpus.sizes} need {need} pairs but only {len(pairs)} "
            "remain after cleaning"
        )
    order = np.random.default_rng(seed).permutation(len(pairs))
    start = 0
    for name in FINETUNE_SPLITS:
        part = pairs.iloc[order[start : start + corpus.sizes[name]]].sort_values("id").reset_index(drop=True)
        start += corpus.sizes[name]
        log.info("split %-10s %5d pairs", name, len(part))
        write_parquet(part.assign(split=name), outputs[name])


def make_prompts(prompts_json: str, out: str) -> None:
    """The evaluation prompts (split `test`), shared by every seed and model."""
    write_parquet(eval_prompts(PromptSpec.from_json(prompts_json)).assign(split="test"), out)
