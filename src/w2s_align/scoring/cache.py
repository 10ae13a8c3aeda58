"""On-disk score cache keyed by text hash, so no text is ever paid for twice."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from w2s_align.files import read_parquet, short_hash, write_parquet


def text_key(text: str) -> str:
    """sha256 hex digest of the UTF-8 text: the cache key of its score."""
    return short_hash(text, 64)


class ScoreCache:
    """Append-only cache of scores for one scorer identity: a folder of parquet shards (columns key, score).

    Lookups read all shards; new scores go into a new shard with a unique name written atomically
    (temp file + rename), so concurrent jobs never corrupt each other and a killed job leaves nothing
    half-written."""

    def __init__(self, root: str | os.PathLike, scorer_id: str):
        self.folder = Path(root) / scorer_id
        self._scores: dict[str, float] = {}
        self._read: set[str] = set()  # shard names already merged into _scores

    def _refresh(self) -> None:
        """Merge shards written since the last look (by this or any other process)."""
        if not self.folder.is_dir():
            return
        for shard in sorted(self.folder.glob("*.parquet")):
            if shard.name in self._read:
                continue
            df = read_parquet(shard, ["key", "score"])
            self._scores.update(zip(df["key"].astype(str), df["score"].astype("float64")))
            self._read.add(shard.name)

    def lookup(self, keys: list[str]) -> dict[str, float]:
        """Cached scores of those `keys` that have one."""
        self._refresh()
        return {k: self._scores[k] for k in keys if k in self._scores}

    def add(self, scores: dict[str, float]) -> None:
        """Write `scores` as one new shard; no-op for an empty dict."""
        if not scores:
            return
        name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        df = pd.DataFrame(
            {
                "key": pd.Series(list(scores), dtype="string"),
                "score": np.asarray(list(scores.values()), dtype="float64"),
            }
        )
        write_parquet(df, self.folder / name)
        self._scores.update(scores)
        self._read.add(name)
