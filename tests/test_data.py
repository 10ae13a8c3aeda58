"""Cleaning and splitting: what is dropped, and that splits never overlap."""

import pandas as pd
import pytest

from w2s_align.data.classification import SPLITS, clean, make_splits, split
from w2s_align.data.sources import label_strings, load_source
from w2s_align.errors import PipelineError
from w2s_align.settings.specs import SpecError, TaskData, canonical_json


def spec(**kw) -> TaskData:
    base = dict(
        source="mem.csv",
        text_fields=["prompt"],
        label_field="label",
        label_map={"yes": 1, "no": 0},
        sizes={"weak_train": 40, "weak_label": 40, "val": 20, "test": 30},
    )
    return TaskData(**{**base, **kw})


def frame(n: int = 200, groups: int | None = None) -> pd.DataFrame:
    rows = {
        "prompt": [f"prompt number {i}" for i in range(n)],
        "label": ["yes" if i % 3 else "no" for i in range(n)],
    }
    if groups:
        rows["question"] = [f"q{i % groups}" for i in range(n)]
    return pd.DataFrame(rows)


def test_clean_strips_drops_empty_conflicting_and_duplicates(caplog):
    df = pd.DataFrame(
        {
            "prompt": [
                "  hello world \n",
                "Hello   World",
                "",
                None,
                "both labels",
                "BOTH labels ",
                "fine",
                "fine",
            ],
            "label": ["yes", "yes", "no", "yes", "yes", "no", "no", "no"],
        }
    )
    with caplog.at_level("INFO"):
        out = clean(df, spec())
    assert out["text"].tolist() == ["hello world", "fine"]
    assert out["gt_label"].tolist() == [1, 0]
    assert out["id"].is_unique
    assert "1 empty text" in caplog.text or "2 empty text" in caplog.text
    assert "2 with both labels" in caplog.text and "2 duplicates" in caplog.text


def test_clean_numeric_and_boolean_labels():
    df = pd.DataFrame({"prompt": ["a", "b", "c"], "label": [1.0, 0.0, 2.0]})
    out = clean(df, spec(label_map={"1": 1, "2": 1, "0": 0}))
    assert out["gt_label"].tolist() == [1, 0, 1]
    df = pd.DataFrame({"prompt": ["a", "b"], "label": [True, False]})
    assert clean(df, spec(label_map={"True": 1, "False": 0}))["gt_label"].tolist() == [1, 0]


def test_label_outside_mapping_names_the_value():
    df = pd.DataFrame({"prompt": ["a", "b"], "label": ["yes", "maybe"]})
    with pytest.raises(PipelineError, match=r"\['maybe'\].*not in label_map"):
        clean(df, spec())


def test_missing_text_column_and_empty_data():
    with pytest.raises(PipelineError, match=r"missing column\(s\) \['prompt'\]"):
        clean(pd.DataFrame({"text": ["a"], "label": ["yes"]}), spec())
    with pytest.raises(PipelineError, match="no rows left after cleaning"):
        clean(pd.DataFrame({"prompt": ["  ", None], "label": ["yes", "no"]}), spec())


def test_split_sizes_disjoint_and_test_pool_seed_independent():
    s = spec()
    df = clean(frame(), s)
    a, b = split(df, s, seed=0), split(df, s, seed=1)
    for name in SPLITS:
        assert len(a[name]) == s.sizes[name]
        assert (a[name]["split"] == name).all()
    ids = [set(a[n]["id"]) for n in SPLITS]
    assert sum(map(len, ids)) == len(set().union(*ids))
    assert a["test"]["id"].tolist() == b["test"]["id"].tolist()
    assert a["weak_train"]["id"].tolist() != b["weak_train"]["id"].tolist()


def test_grouped_split_keeps_each_group_in_one_split():
    s = spec(group_field="question")
    parts = split(clean(frame(400, groups=40), s), s, seed=3)
    owners = {}
    for name, part in parts.items():
        for g in part["group"].unique():
            assert owners.setdefault(g, name) == name, f"group {g} in {owners[g]} and {name}"


def test_split_errors_name_the_cause():
    s = spec(sizes={"weak_train": 100, "weak_label": 100, "val": 100, "test": 100})
    with pytest.raises(PipelineError, match="need 400 rows but only 200"):
        split(clean(frame(), s), s, seed=0)
    one_class = frame().assign(label="yes")
    one_class.loc[0, "label"] = "no"
    with pytest.raises(PipelineError, match="has only one class"):
        split(clean(one_class, spec()), spec(), seed=0)


def test_load_source_formats_and_errors(tmp_path):
    df = frame(10)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.jsonl", "d.parquet"):
        loaded = load_source(str(tmp_path / name))
        assert loaded["prompt"].tolist() == df["prompt"].tolist()
        assert loaded["label"].tolist() == df["label"].tolist()
    with pytest.raises(PipelineError, match="data file not found"):
        load_source(str(tmp_path / "absent.csv"))
    (tmp_path / "bad.csv").write_bytes(b"prompt,label\n\xff\xfe bad,yes\n")
    with pytest.raises(PipelineError, match="not valid UTF-8"):
        load_source(str(tmp_path / "bad.csv"))
    (tmp_path / "d.tsv").write_text("prompt\n")
    with pytest.raises(PipelineError, match=r"unsupported data file type '\.tsv'"):
        load_source(str(tmp_path / "d.tsv"))
    (tmp_path / "d.txt").write_text("first prompt\n\nsecond prompt\n")
    assert load_source(str(tmp_path / "d.txt"))["text"].tolist() == ["first prompt", "second prompt"]


def test_label_strings_reads_integral_floats_as_integers():
    assert label_strings(pd.Series([1.0, 0.0, None])).tolist()[:2] == ["1", "0"]
    assert label_strings(pd.Series([0.5, 1.0])).tolist() == ["0.5", "1.0"]
    assert label_strings(pd.Series(["yes", "no"])).tolist() == ["yes", "no"]


def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError, match="HF_HUB_OFFLINE"):
        load_source("hf:someone/not-cached-dataset", "train")


def test_task_data_rejects_unknown_keys():
    with pytest.raises(SpecError, match=r"TaskData: unknown option\(s\) \['label_column'\]"):
        TaskData.from_dict({**spec().__dict__, "label_column": "label"})


def test_make_splits_writes_every_split(tmp_path):
    frame().to_csv(tmp_path / "d.csv", index=False)
    outs = {n: str(tmp_path / f"{n}.parquet") for n in SPLITS}
    s = spec(source=str(tmp_path / "d.csv"))
    make_splits(canonical_json(s.__dict__), 0, outs)
    cols = {"id", "split", "text", "text_pair", "gt_label", "group"}
    expected = split(clean(frame(), s), s, seed=0)
    for n in SPLITS:
        written = pd.read_parquet(outs[n])
        assert cols <= set(written.columns)
        assert len(written) == s.sizes[n] and (written["split"] == n).all()
        assert written["id"].tolist() == expected[n]["id"].tolist()


def test_make_splits_writes_all_or_nothing(tmp_path):
    """A split that fails after others were cut (here the last one, test, holds a single row and so a
    single class) leaves no output at all, not the splits cut before it."""
    frame().to_csv(tmp_path / "d.csv", index=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    outs = {n: str(bad / f"{n}.parquet") for n in SPLITS}
    one_row_test = {"weak_train": 40, "weak_label": 40, "val": 20, "test": 1}
    assert SPLITS[-1] == "test"  # weak_train, weak_label and val are cut before the failing split
    with pytest.raises(PipelineError, match=r"split 'test' \(1 rows\) has only one class"):
        make_splits(
            canonical_json(spec(source=str(tmp_path / "d.csv"), sizes=one_row_test).__dict__), 0, outs
        )
    assert list(bad.iterdir()) == []  # no split file and no temporary file
