"""Bad input fails with an error that names the cause, and leaves no output behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import snakemake


def set_config(work: Path, change) -> None:
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    change(cfg)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def outputs(work: Path) -> list[Path]:
    return [p for p in (work / "results").rglob("*") if p.is_file()] if (work / "results").exists() else []


# Config errors: every case is a unit test in test_config.py; these few check what a user of Snakemake sees.
@pytest.mark.parametrize(
    "change, fragments",
    [
        (lambda c: c.update(seeds="zero"), ["config seeds: 'zero' is not of type 'array'"]),  # schema
        (
            lambda c: c.update(seeds=[0] * 3000),
            ["config seeds: [0, 0", "has non-unique elements"],
        ),  # a huge value
        (
            lambda c: (c["strategies"].update(odd={"loss": "hinge"}), c["student_strategies"].append("odd")),
            ["config strategies.odd.loss: unknown loss 'hinge'"],
        ),  # cross-field
        (
            lambda c: c["tasks"]["safety"]["data"].update(source="resources/data/missing.csv"),
            ["config tasks.safety.data.source: data file not found: resources/data/missing.csv"],
        ),
    ],
    ids=["schema", "huge-value", "cross-field", "missing-file"],
)
def test_config_errors_at_dag_time_are_one_short_message(workflow_copy, change, fragments):
    set_config(workflow_copy, change)
    proc = snakemake(workflow_copy, "-n", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert len(output.splitlines()) < 40, output[:3000]  # no dump of the schema or the config
    assert "additionalProperties" not in output and "wts_safety.csv" not in output
    lines = [line for line in output.splitlines() if line.startswith("config ")]
    assert len(lines) == 1, output
    assert all(fragment in lines[0] for fragment in fragments), output
    assert outputs(workflow_copy) == []


def bad_task(work: Path, rows: pd.DataFrame, **data) -> str:
    rows.to_csv(work / "resources/data/bad.csv", index=False)

    def change(cfg):
        cfg["tasks"] = {
            "bad": {
                "max_length": 16,
                "data": {
                    "source": "resources/data/bad.csv",
                    "text_fields": ["prompt"],
                    "label_field": "label",
                    "label_map": {"yes": 1, "no": 0},
                    "sizes": {"weak_train": 20, "weak_label": 20, "val": 10, "test": 10},
                    **data,
                },
            }
        }

    set_config(work, change)
    return "results/bad/splits/seed0/test.parquet"


def rows(n=100, labels=("yes", "no")):
    return pd.DataFrame(
        {"prompt": [f"text {i}" for i in range(n)], "label": [labels[i % len(labels)] for i in range(n)]}
    )


@pytest.mark.parametrize(
    "data, extra, message",
    [
        (rows(labels=("yes", "no", "maybe")), {}, "['maybe'] in column 'label' are not in label_map"),
        (rows().assign(prompt="   "), {}, "no rows left after cleaning"),
        (rows(labels=("yes",) * 50 + ("no",)), {}, "has only one class"),
        (rows(40), {}, "need 60 rows but only 40 remain"),
        (rows().rename(columns={"prompt": "body"}), {}, "missing column(s) ['prompt']"),
        (rows(), {"label_field": "gold"}, "missing column(s) ['gold']"),
    ],
)
def test_data_errors_name_the_cause_and_leave_nothing(workflow_copy, data, extra, message):
    target = bad_task(workflow_copy, data, **extra)
    proc = snakemake(workflow_copy, "--cores", "1", target, check=False)
    assert proc.returncode != 0
    log = (workflow_copy / "logs/bad/splits/seed0.log").read_text()
    assert message in log
    assert outputs(workflow_copy) == []


def test_non_utf8_data_file(workflow_copy):
    target = bad_task(workflow_copy, rows())
    (workflow_copy / "resources/data/bad.csv").write_bytes(b"prompt,label\n\xff\xfebroken,yes\n")
    proc = snakemake(workflow_copy, "--cores", "1", target, check=False)
    assert proc.returncode != 0
    assert "is not valid UTF-8" in (workflow_copy / "logs/bad/splits/seed0.log").read_text()
    assert outputs(workflow_copy) == []


def perspective_scores(work: Path, env: dict[str, str], url: str | None = None):
    """Score the tiny weak LM's continuations with the Perspective scorer (built on the way)."""

    def change(cfg):
        cfg["scorers"]["perspective"] = {
            "kind": "perspective",
            "qps": 50,
            "max_retries": 0,
            "timeout": 5,
            **({"url": url} if url else {}),
        }

    set_config(work, change)
    target = "results/toxicity/weak/tiny-gpt2/seed0/toxicity_perspective.parquet"
    return target, snakemake(work, "--cores", "2", target, check=False, env=env)


def test_perspective_scorer_without_key_fails_and_leaves_no_scores(workflow_copy):
    """A pending job that queries the API stops the run before its first job (even one that names the scorer
    only in its target); the scorer's own check (test_scoring.py) backs it up inside the job."""
    target, proc = perspective_scores(workflow_copy, {"PERSPECTIVE_API_KEY": ""})
    assert proc.returncode != 0
    assert "the environment variable PERSPECTIVE_API_KEY is not set" in proc.stdout + proc.stderr
    assert outputs(workflow_copy) == [] and not (workflow_copy / "logs").exists()


def test_perspective_key_never_reaches_results_or_logs(workflow_copy, fake_perspective):
    secret = "sk-test-SECRET-0123456789"
    target, proc = perspective_scores(workflow_copy, {"PERSPECTIVE_API_KEY": secret}, url=fake_perspective)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pd.read_parquet(workflow_copy / target)["toxicity"].between(0, 1).all()
    for folder in ("results", "logs", ".snakemake/log"):
        for path in (workflow_copy / folder).rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert secret not in proc.stdout + proc.stderr
