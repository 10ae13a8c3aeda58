"""Generated gold continuations in the workflow: one cached stage per task, every seed's fine-tuning splits
cut from it, and no evaluation prompt among the training prompts."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import yaml

from helpers import CORES, SHARED_WEIGHTS, copy_repo, executed_rules, snakemake

GOLD_CORPUS = {
    "source": "resources/data/rtp_challenging_prompts.jsonl",
    "format": "prompts",
    "sizes": {"weak_train": 8, "weak_label": 8, "val": 4},
    "gold": {"generator": "smollm2-135m", "judge": "tfidf-davidson", "samples": 2},
}


def test_gold_pairs_are_made_once_and_split_for_every_seed(tiny_run, tmp_path):
    work = copy_repo(tmp_path)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["seeds"] = [0, 1]
    cfg["tasks"]["toxicity"]["corpus"] = GOLD_CORPUS
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    # the converted SmolLM2, hard-linked: read by the jobs, remade by none (helpers.copy_run)
    shutil.copytree(tiny_run / SHARED_WEIGHTS, work / SHARED_WEIGHTS, copy_function=os.link)
    targets = [
        f"results/toxicity/pairs/seed{s}/{split}.parquet"
        for s in (0, 1)
        for split in ("weak_train", "weak_label", "val")
    ]
    proc = snakemake(work, *targets, "--cores", CORES, "--config", "only=[toxicity]")
    assert executed_rules(proc).count("gold_corpus") == 1 and executed_rules(proc).count("split_corpus") == 2
    gold = pd.read_parquet(work / "results/toxicity/gold.parquet")
    evaluation = pd.read_parquet(work / "results/toxicity/prompts.parquet")
    assert len(gold) == 20 and gold["continuation"].str.strip().ne("").all()
    assert not set(gold["prompt"]) & set(evaluation["prompt"])  # evaluation prompts are never trained on
    assert gold["selected_sample"].isin([0, 1]).all() and gold["judge_toxicity"].between(0, 1).all()
    for seed in (0, 1):
        parts = [
            pd.read_parquet(work / f"results/toxicity/pairs/seed{seed}/{s}.parquet")
            for s in ("weak_train", "weak_label", "val")
        ]
        assert sorted(pd.concat(parts)["id"]) == sorted(gold["id"])  # each seed cuts the same gold pairs
    seeds = [
        set(pd.read_parquet(work / f"results/toxicity/pairs/seed{s}/weak_label.parquet")["id"])
        for s in (0, 1)
    ]
    assert seeds[0] != seeds[1]
