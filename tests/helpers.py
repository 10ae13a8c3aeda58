"""Running the workflow in a temporary copy of the repository: shared by the tests and the benchmarks."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SHIMS = Path(__file__).resolve().parent / "bin"  # see bin/scontrol
COPIED = ["Snakefile", "config.yaml", "workflow", "envs", "profiles", "resources", "src", "tests/configs"]
SHARED_WEIGHTS = "results/models"  # converted pretrained weights: read by jobs, rewritten by none
CORES = "1" if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 else "2"
"""`--cores` of the tests' own Snakemake runs: 2 in a single pytest process; 1 under pytest-xdist with
several workers, whose runs share the machine's cores (2 runs of 2 two-thread jobs on 2 cores only add
switching). A test that compares results of two runs makes both with the same value."""
TINY_CORES = "2"
"""`--cores` of the shared tiny run and of the reruns compared with it byte for byte: its jobs get the
config's 2 threads, as a user's run and a stage run outside Snakemake (`python -m w2s_align.debug`) do."""


def copy_repo(dest: Path, config: str | Path = REPO / "tests/configs/tiny.yaml") -> Path:
    """The workflow files (not results, venv or git) in `dest`, with `config` (default: the tiny one) as
    config.yaml. Jobs import the copy's own `src/` (see `snakemake`), so editing the copy's modules drives
    the rerun-scope and extension tests."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = REPO / name
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    shutil.copy2(config, dest / "config.yaml")
    return dest


def copy_run(src: Path, dest: Path) -> Path:
    """A private copy of the finished run in `src` (workflow files, config, results, logs and Snakemake's
    records, modification times kept) to edit, rerun or break without touching `src`. The converted weights
    under results/models are hard links: no test writes into them and a job that remakes them deletes its
    outputs first, so a rerun writes new files instead of changing the shared ones."""
    shared = src / SHARED_WEIGHTS

    def link_or_copy(path: str, target: str) -> str:
        if Path(path).is_relative_to(shared):
            os.link(path, target)
            return target
        return shutil.copy2(path, target)

    shutil.copytree(src, dest, symlinks=True, copy_function=link_or_copy)
    return dest


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`snakemake ARGS` in `workdir`, offline, importing the package from `workdir/src`."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(Path(workdir) / "src"),
        **(env or {}),
    }
    proc = subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}"
        )
    return proc


def executed_rules(proc: subprocess.CompletedProcess) -> list[str]:
    """The rule of every job a (real) snakemake run executed, from its `rule X:` / `localrule X:` lines."""
    return re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, flags=re.M)


def pending_jobs(workdir: Path, *args: str) -> dict[str, list[str]]:
    """Rule name -> reasons of every job a dry run would execute."""
    out = snakemake(workdir, "-n", *args).stdout
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            reason = re.search(r"reason: (.*)", block)
            jobs.setdefault(m.group(1), []).append(reason.group(1) if reason else "")
    return jobs


WORDS = ["sun", "rain", "tea", "road", "cat", "song", "book", "tree", "lamp", "boat", "milk", "door"]


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n prompts of 2-6 words and continuations of 2-5 words (leading space), from a small vocabulary."""
    rng = np.random.default_rng(seed)
    prompts = [" ".join(rng.choice(WORDS, rng.integers(2, 7))) for _ in range(n)]
    conts = [" " + " ".join(rng.choice(WORDS, rng.integers(2, 6))) for _ in range(n)]
    return prompts, conts


def tiny_bert_folder(folder: Path) -> None:
    """A random two-layer BERT with a word-level tokenizer, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "how", "to", "make", "a", "cake", "bomb", "safe", "unsafe"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def split_archive(tmp_path: Path, parts: int = 3, inner: str = "tiny-bert") -> tuple[list[str], str]:
    """The tiny BERT zipped under `inner/`, cut into `parts` files; (their paths, the archive's SHA-256)."""
    model = tmp_path / "model"
    tiny_bert_folder(model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(model.iterdir()):
            archive.write(file, f"{inner}/{file.name}")
        archive.writestr(f"{inner}/extra/readme.txt", "kept")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = tmp_path / f"archive.zip.{i + 1:03d}"
        path.write_bytes(data[i * size : (i + 1) * size])
        paths.append(str(path))
    return paths, hashlib.sha256(data).hexdigest()
