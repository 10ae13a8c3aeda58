"""The training prompts of a generation task: the corpus's prompts without the evaluation prompts (shared by
the gold corpus and the preference track's candidates, so no model ever trains on an evaluation prompt)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

import w2s_align.data.corpus  # noqa: F401  (registers the corpus formats that CORPUS_FORMATS looks up)
from w2s_align.data.sources import load_source
from w2s_align.errors import PipelineError
from w2s_align.registry import CORPUS_FORMATS
from w2s_align.settings.specs import CorpusSpec

log = logging.getLogger(__name__)


def training_prompts(corpus: CorpusSpec, eval_prompts: pd.Series, n: int, seed: int) -> pd.DataFrame:
    """`n` training prompts: the corpus's prompts (read as its `format` reads them) without the evaluation
    prompts, drawn with `seed` (the same for every run seed) and kept in pool order."""
    pairs = CORPUS_FORMATS.get(corpus.format)(load_source(corpus.source, corpus.hf_split), corpus)
    prompts = pairs["prompt"].astype("string").str.strip().dropna()
    prompts = prompts[prompts != ""].drop_duplicates()
    held_out = set(eval_prompts.astype("string").str.strip())
    pool = prompts[~prompts.isin(held_out)].reset_index(drop=True)
    log.info(
        "prompt pool of %s: %d prompts, %d of them evaluation prompts (left out), %d needed",
        corpus.source,
        len(prompts),
        len(prompts) - len(pool),
        n,
    )
    if n > len(pool):
        raise PipelineError(
            f"{corpus.source}: need {n} training prompts but only {len(pool)} remain without the "
            "evaluation prompts"
        )
    take = np.sort(np.random.default_rng(seed).permutation(len(pool))[:n])
    return pd.DataFrame({"prompt": pool.iloc[take].to_numpy()})
