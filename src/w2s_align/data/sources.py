"""Reading data sources: local CSV / JSONL / parquet files and Hugging Face datasets (`hf:<id>`)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from w2s_align.errors import PipelineError

HF_PREFIX = "hf:"


def load_source(source: str, hf_split: str = "train") -> pd.DataFrame:
    """Read a local CSV / JSONL / parquet file, a plain-text file (one record per line, column `text`), or a
    Hugging Face dataset given as `hf:<id>`."""
    if source.startswith(HF_PREFIX):
        import datasets

        name = source[len(HF_PREFIX) :]
        try:
            return datasets.load_dataset(name, split=hf_split).to_pandas()
        except Exception as exc:
            offline = (
                " (HF_HUB_OFFLINE is set: the hub cannot be reached)"
                if os.environ.get("HF_HUB_OFFLINE")
                else ""
            )
            raise PipelineError(f"cannot load Hugging Face dataset {name!r}{offline}: {exc}") from exc
    path = Path(source)
    if not path.is_file():
        raise PipelineError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, encoding="utf-8")
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=suffix == ".jsonl", encoding="utf-8", dtype=False)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".txt":  # prompt lists (e.g. red-team sets): one per line, blank lines skipped
            lines = path.read_text(encoding="utf-8").splitlines()
            df = pd.DataFrame({"text": [line for line in lines if line.strip()]})
        else:
            raise PipelineError(
                f"unsupported data file type {suffix!r} for {path} (use .csv, .jsonl, .parquet or .txt)"
            )
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not valid UTF-8: {exc}") from exc
    except (ValueError, pd.errors.ParserError) as exc:
        raise PipelineError(f"cannot parse {path}: {exc}") from exc
    return df


def label_strings(values: pd.Series) -> pd.Series:
    """Raw labels as strings; integral floats (1.0) read as '1' so numeric columns map cleanly."""
    if pd.api.types.is_float_dtype(values) and values.dropna().apply(float.is_integer).all():
        values = values.astype("Int64")
    return values.astype("string")
