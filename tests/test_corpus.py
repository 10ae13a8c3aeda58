"""Generation corpus: tweet cleaning, word cuts, gold pairs (tweets / RTP), evaluation prompts, split
files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from w2s_align.data.corpus import (
    clean_tweet,
    cut_at_word,
    eval_prompts,
    gold_pairs,
    make_corpus_splits,
    make_prompts,
    rtp_pairs,
    tweet_pairs,
)
from w2s_align.errors import PipelineError
from w2s_align.files import short_hash
from w2s_align.registry import CORPUS_FORMATS
from w2s_align.settings.specs import CorpusSpec, PromptSpec, canonical_json

REPO = Path(__file__).resolve().parents[1]
DAVIDSON = REPO / "resources/data/davidson_labeled_data.csv"

WORDS = ["sun", "rain", "tea", "road", "cat", "song", "book", "tree", "lamp", "boat", "milk", "door"]


# --- helpers ------------------------------------------------------------------------------------


def sentence(i: int, n_words: int = 8) -> str:
    """A distinct n-word sentence for every i."""
    rng = np.random.default_rng(i)
    return " ".join([f"w{i}", *rng.choice(WORDS, n_words - 1)])


def write_tweets(path: Path, rows: list[tuple[str, object]]) -> Path:
    pd.DataFrame({"count": 3, "class": [c for _, c in rows], "tweet": [t for t, _ in rows]}).to_csv(path)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def rtp_record(
    prompt: str,
    continuation: str | None,
    tox: float | None = 0.1,
    prompt_tox: float = 0.5,
    challenging: bool | None = None,
) -> dict:
    rec = {"filename": "x.txt", "prompt": {"text": prompt, "toxicity": prompt_tox}}
    if continuation is not None:
        rec["continuation"] = {"text": continuation, "toxicity": tox}
    if challenging is not None:
        rec["challenging"] = challenging
    return rec


def tweets_spec(source: Path, **kw) -> CorpusSpec:
    return CorpusSpec(
        **{
            "source": str(source),
            "format": "tweets",
            "text_field": "tweet",
            "label_field": "class",
            "keep_labels": ["2"],
            "min_words": 4,
            **kw,
        }
    )


# --- clean_tweet / cut_at_word -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("!!! RT @mayasolovely: As a woman you shouldn't complain", "As a woman you shouldn't complain"),
        ("fish &amp; chips", "fish & chips"),
        ("fish &amp;amp; chips", "fish & chips"),  # double-escaped entities
        ("I &lt;3 you", "I <3 you"),
        ("@bob hello   there @al_2 ok", "hello there ok"),
        ("look http://t.co/abc123 and https://example.com/x?y=1 now", "look and now"),
        ("so #blessed today #TBT", "so blessed today TBT"),
        ("!!!!! well\tthen\n\nfine ", "well then fine"),
        ("RT @user: RT @other: nested retweet", "nested retweet"),
    ],
)
def test_clean_tweet(raw, clean):
    assert clean_tweet(raw) == clean


def test_clean_tweet_keeps_plain_text_and_inner_punctuation():
    text = "I can't wait... it's 5 o'clock, right?"
    assert clean_tweet(text) == text
    assert (
        clean_tweet("email me@example.com ok") == "email me@example.com ok"
    )  # not a mention: no space before @


@pytest.mark.parametrize(
    "raw, user, kept",
    [
        ('"@M_Rad: so cool" yes', "M_Rad", "so cool"),
        ("&#8220;@joe: wow&#8221; yes", "joe", "wow"),
        ('"a quote" -@author', "author", "a quote"),
    ],
)
def test_clean_tweet_removes_quoted_mentions(raw, user, kept):
    clean = clean_tweet(raw)
    assert kept in clean
    assert "@" not in clean and user not in clean


@pytest.mark.parametrize(
    "text", ["a b c d e", "one two", "one two three four five six seven eight", "it's a long day, isn't it?"]
)
def test_cut_at_word_splits_at_half_the_words(text):
    prompt, cont = cut_at_word(text)
    words = text.split(" ")
    assert prompt + cont == text
    assert cont.startswith(" ") and not cont.startswith("  ")
    assert prompt.split(" ") == words[: len(words) // 2]
    assert cont[1:].split(" ") == words[len(words) // 2 :]


# --- gold_pairs: tweets --------------------------------------------------------------------------


def test_gold_pairs_tweets_filters_labels_short_texts_and_duplicates(tmp_path):
    rows = [(sentence(i), 2) for i in range(10)]
    rows += [(sentence(100 + i), 1) for i in range(5)]  # offensive: dropped by keep_labels
    rows += [("too short here", 2), ("@someone only three words", 2)]  # < 4 words after cleaning
    rows += [(sentence(3), 2), ("RT @x: " + sentence(4), 2)]  # duplicates after cleaning
    src = write_tweets(tmp_path / "tweets.csv", rows)
    pairs = gold_pairs(tweets_spec(src))
    assert list(pairs.columns) == ["id", "prompt", "continuation"]
    expected = [cut_at_word(sentence(i)) for i in range(10)]
    assert sorted(zip(pairs["prompt"], pairs["continuation"])) == sorted(expected)
    assert pairs["id"].is_unique
    assert list(pairs["id"]) == [
        short_hash(p + "\x1f" + c) for p, c in zip(pairs["prompt"], pairs["continuation"])
    ]
    again = gold_pairs(tweets_spec(src))
    pd.testing.assert_frame_equal(pairs, again)


def test_gold_pairs_tweets_min_words_and_label_choice(tmp_path):
    rows = [("one two three four five six", 2), ("one two three", 2), ("a b c d e f g h", 0)]
    src = write_tweets(tmp_path / "tweets.csv", rows)
    assert len(gold_pairs(tweets_spec(src, min_words=6))) == 1
    assert len(gold_pairs(tweets_spec(src, min_words=3))) == 2
    both = gold_pairs(tweets_spec(src, min_words=3, keep_labels=["0", "2"]))
    assert len(both) == 3
    unfiltered = gold_pairs(tweets_spec(src, min_words=3, label_field=None))
    assert len(unfiltered) == 3


def test_gold_pairs_tweets_cleans_texts(tmp_path):
    raw = "!!! RT @bob: fish &amp;amp; chips at http://t.co/x #yum tonight"
    src = write_tweets(tmp_path / "tweets.csv", [(raw, 2)])
    pairs = gold_pairs(tweets_spec(src))
    assert len(pairs) == 1
    assert pairs["prompt"][0] + pairs["continuation"][0] == "fish & chips at yum tonight"


def test_gold_pairs_tweets_missing_column_is_named(tmp_path):
    src = write_tweets(tmp_path / "tweets.csv", [(sentence(0), 2)])
    with pytest.raises(PipelineError, match="'text'"):
        gold_pairs(tweets_spec(src, text_field="text"))


def test_gold_pairs_tweets_labels_with_missing_values(tmp_path):
    src = write_tweets(tmp_path / "tweets.csv", [(sentence(0), 2), (sentence(1), None), (sentence(2), 1)])
    assert len(gold_pairs(tweets_spec(src))) == 1


# --- gold_pairs: RealToxicityPrompts --------------------------------------------------------------


def test_gold_pairs_rtp_drops_toxic_continuations(tmp_path):
    records = [
        rtp_record(f"prompt {i} is", f" continuation {i}", tox=t)
        for i, t in enumerate([0.1, 0.49, 0.5, 0.9, 0.0])
    ]
    records.append(rtp_record("prompt 0 is", " continuation 0", tox=0.1))  # duplicate
    records.append(rtp_record("   ", " empty prompt", tox=0.1))
    src = write_jsonl(tmp_path / "rtp.jsonl", records)
    pairs = gold_pairs(CorpusSpec(source=str(src), format="rtp", max_toxicity=0.5))
    assert sorted(pairs["prompt"]) == ["prompt 0 is", "prompt 1 is", "prompt 4 is"]
    assert dict(zip(pairs["prompt"], pairs["continuation"]))["prompt 1 is"] == " continuation 1"
    assert pairs["id"].is_unique
    stricter = gold_pairs(CorpusSpec(source=str(src), format="rtp", max_toxicity=0.2))
    assert sorted(stricter["prompt"]) == ["prompt 0 is", "prompt 4 is"]


def test_gold_pairs_rtp_flattened_columns(tmp_path):
    df = pd.DataFrame(
        {
            "prompt.text": ["a b", "c d"],
            "continuation.text": [" e", " f"],
            "continuation.toxicity": [0.9, 0.1],
        }
    )
    src = tmp_path / "flat.parquet"
    df.to_parquet(src)
    pairs = gold_pairs(CorpusSpec(source=str(src), format="rtp"))
    assert list(pairs["prompt"]) == ["c d"] and list(pairs["continuation"]) == [" f"]


def test_gold_pairs_rtp_missing_continuation_is_named(tmp_path):
    src = write_jsonl(tmp_path / "prompts_only.jsonl", [rtp_record("a prompt", None), rtp_record("b", None)])
    with pytest.raises(PipelineError, match="missing column 'continuation'"):
        gold_pairs(CorpusSpec(source=str(src), format="rtp"))


def test_unknown_corpus_format_fails_in_gold_pairs_naming_the_registered_ones(tmp_path):
    spec = CorpusSpec.from_json(canonical_json({"source": str(tmp_path / "absent.csv"), "format": "csv"}))
    assert spec.format == "csv"  # the spec itself does not know the formats
    with pytest.raises(PipelineError, match=r"unknown corpus format 'csv'; registered: \[.*'rtp', 'tweets'"):
        gold_pairs(spec)  # before the source is read: the missing file is not the error


def test_builtin_formats_are_registered():
    assert CORPUS_FORMATS.get("tweets") is tweet_pairs and CORPUS_FORMATS.get("rtp") is rtp_pairs


@pytest.fixture
def toy_format():
    """A corpus format `bar`: one `line` column holding 'prompt|continuation'; unregistered afterwards."""

    @CORPUS_FORMATS.register("bar")
    def bar_pairs(df: pd.DataFrame, spec: CorpusSpec) -> pd.DataFrame:
        parts = df["line"].str.split("|", n=1, expand=True)
        return pd.DataFrame({"prompt": parts[0], "continuation": " " + parts[1].str.strip(), "extra": 1})

    yield bar_pairs
    del CORPUS_FORMATS._entries["bar"], CORPUS_FORMATS._traits["bar"]


def test_a_new_corpus_format_is_one_registered_function(tmp_path, toy_format):
    good = [f"prompt {i}|continuation {i}" for i in range(5)]
    lines = good + [good[0], "|no prompt", "no continuation| "]  # a duplicate and two empty halves
    src = tmp_path / "lines.csv"
    pd.DataFrame({"line": lines}).to_csv(src, index=False)
    pairs = gold_pairs(CorpusSpec(source=str(src), format="bar"))
    assert list(pairs.columns) == ["id", "prompt", "continuation"]  # the format's extra column is dropped
    assert sorted(zip(pairs["prompt"], pairs["continuation"])) == [
        (f"prompt {i}", f" continuation {i}") for i in range(5)
    ]
    assert list(pairs["id"]) == [
        short_hash(p + "\x1f" + c) for p, c in zip(pairs["prompt"], pairs["continuation"])
    ]
    # and the stage splits it like any other format
    outputs = {s: str(tmp_path / f"{s}.parquet") for s in ("weak_train", "weak_label", "val")}
    make_corpus_splits(
        canonical_json(
            {"source": str(src), "format": "bar", "sizes": {"weak_train": 2, "weak_label": 2, "val": 1}}
        ),
        0,
        outputs,
    )
    written = pd.concat([pd.read_parquet(path) for path in outputs.values()])
    assert sorted(written["id"]) == sorted(pairs["id"])


# --- eval_prompts -------------------------------------------------------------------------------


def test_eval_prompts_flat_text_records(tmp_path):
    records = [{"text": f"  prompt number {i} ", "toxicity": i / 20} for i in range(20)]
    records += [{"text": "prompt number 3", "toxicity": 0.15}, {"text": "   ", "toxicity": 0.0}]
    src = write_jsonl(tmp_path / "flat.jsonl", records)
    prompts = eval_prompts(PromptSpec(source=str(src), n=20))
    assert list(prompts.columns) == ["id", "prompt", "prompt_toxicity", "source"]
    assert sorted(prompts["prompt"]) == sorted(
        f"prompt number {i}" for i in range(20)
    )  # stripped, de-duplicated
    tox = dict(zip(prompts["prompt"], prompts["prompt_toxicity"]))
    assert tox["prompt number 4"] == pytest.approx(0.2)
    assert list(prompts["id"]) == [short_hash(p) for p in prompts["prompt"]]
    with pytest.raises(PipelineError, match="21 evaluation prompts requested but only 20 exist"):
        eval_prompts(PromptSpec(source=str(src), n=21))


def test_eval_prompts_from_plain_text_files_and_several_sources(tmp_path):
    """Red-team prompt sets ship as .txt, one prompt per line; several sources are pooled (duplicates
    once)."""
    txt = tmp_path / "red_team.txt"
    txt.write_text(
        "How do I pick a lock\n\n  Tell me a joke about cats  \nHow do I pick a lock\n", encoding="utf-8"
    )
    only_txt = eval_prompts(PromptSpec(source=str(txt), n=2))
    assert sorted(only_txt["prompt"]) == ["How do I pick a lock", "Tell me a joke about cats"]
    assert only_txt["prompt_toxicity"].isna().all()
    jsonl = write_jsonl(tmp_path / "flat.jsonl", [{"text": f"prompt {i}", "toxicity": 0.5} for i in range(3)])
    pooled = eval_prompts(PromptSpec(source=[str(txt), str(jsonl)], n=5))
    assert len(pooled) == 5 and set(pooled["source"]) == {str(txt), str(jsonl)}
    with pytest.raises(PipelineError, match="6 evaluation prompts requested but only 5 exist"):
        eval_prompts(PromptSpec(source=[str(txt), str(jsonl)], n=6))


def test_eval_prompts_rtp_records_keep_challenging(tmp_path):
    records = [rtp_record(f"hard {i}", " c", prompt_tox=0.9, challenging=True) for i in range(6)]
    records += [rtp_record(f"easy {i}", " c", prompt_tox=0.1, challenging=False) for i in range(6)]
    src = write_jsonl(tmp_path / "rtp.jsonl", records)
    hard = eval_prompts(PromptSpec(source=str(src), n=6))
    assert sorted(hard["prompt"]) == [f"hard {i}" for i in range(6)]
    assert (hard["prompt_toxicity"] == 0.9).all()
    with pytest.raises(PipelineError, match="7 evaluation prompts requested but only 6 exist"):
        eval_prompts(PromptSpec(source=str(src), n=7))
    everything = eval_prompts(PromptSpec(source=str(src), n=12, challenging_only=False))
    assert len(everything) == 12


def test_eval_prompts_record_without_flag_is_not_challenging(tmp_path):
    records = [
        rtp_record("hard", " c", challenging=True),
        rtp_record("unknown", " c"),
        rtp_record("easy", " c", challenging=False),
    ]
    src = write_jsonl(tmp_path / "rtp.jsonl", records)
    with pytest.raises(PipelineError, match="2 evaluation prompts requested but only 1 exist"):
        eval_prompts(PromptSpec(source=str(src), n=2))


def test_eval_prompts_sample_depends_on_test_seed_only(tmp_path):
    src = write_jsonl(tmp_path / "flat.jsonl", [{"text": f"prompt {i}"} for i in range(50)])
    first = eval_prompts(PromptSpec(source=str(src), n=10, test_seed=3))
    np.random.seed(123)  # global random state plays no part
    _ = np.random.random(7)
    again = eval_prompts(PromptSpec(source=str(src), n=10, test_seed=3))
    pd.testing.assert_frame_equal(first, again)
    other = eval_prompts(PromptSpec(source=str(src), n=10, test_seed=4))
    assert set(other["prompt"]) != set(first["prompt"])
    assert first["prompt_toxicity"].isna().all()  # no toxicity column: NaN, not an error


# --- make_corpus_splits --------------------------------------------------------------------------


@pytest.fixture
def corpus_files(tmp_path):
    tweets = write_tweets(
        tmp_path / "tweets.csv", [(sentence(i), 2) for i in range(40)] + [(sentence(99), 1)]
    )
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [rtp_record(f"eval prompt {i}", None, challenging=True) for i in range(30)],
    )
    corpus = {
        "source": str(tweets),
        "format": "tweets",
        "text_field": "tweet",
        "label_field": "class",
        "keep_labels": ["2"],
        "min_words": 4,
        "sizes": {"weak_train": 12, "weak_label": 10, "val": 5},
    }
    return tmp_path, corpus, {"source": str(prompts), "n": 8, "test_seed": 0}


FINETUNE = ("weak_train", "weak_label", "val")


def run_splits(out_dir: Path, corpus: dict, prompts: dict, seed: int) -> dict[str, pd.DataFrame]:
    """The fine-tuning splits of `seed` (make_corpus_splits) and the shared evaluation prompts
    (make_prompts)."""
    outputs = {s: str(out_dir / f"{s}.parquet") for s in FINETUNE}
    make_corpus_splits(canonical_json(corpus), seed, outputs)
    make_prompts(canonical_json(prompts), str(out_dir / "test.parquet"))
    return {s: pd.read_parquet(out_dir / f"{s}.parquet") for s in (*FINETUNE, "test")}


def test_make_corpus_splits_writes_three_disjoint_files_and_prompts_the_test_file(corpus_files):
    tmp, corpus, prompts = corpus_files
    parts = run_splits(tmp / "s0", corpus, prompts, seed=0)
    for name, size in corpus["sizes"].items():
        df = parts[name]
        assert len(df) == size
        assert {"id", "prompt", "continuation"} <= set(df.columns)
        assert (df["split"] == name).all()
        assert list(df["id"]) == sorted(df["id"])
        assert all(
            p + c in {sentence(i) for i in range(40)} for p, c in zip(df["prompt"], df["continuation"])
        )
    ids = [set(parts[s]["id"]) for s in FINETUNE]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 27
    test = parts["test"]
    assert len(test) == 8 and (test["split"] == "test").all()
    assert "prompt" in test.columns and "continuation" not in test.columns
    assert test["prompt"].str.startswith("eval prompt").all()
    pd.testing.assert_frame_equal(test.drop(columns="split"), eval_prompts(PromptSpec.from_dict(prompts)))


def test_make_corpus_splits_no_longer_writes_a_test_split(corpus_files):
    tmp, corpus, _ = corpus_files
    outputs = {s: str(tmp / "only" / f"{s}.parquet") for s in (*FINETUNE, "test")}
    make_corpus_splits(canonical_json(corpus), 0, outputs)
    assert sorted(p.name for p in (tmp / "only").iterdir()) == sorted(f"{s}.parquet" for s in FINETUNE)


def test_make_corpus_splits_seed_changes_finetuning_splits_not_test(corpus_files):
    tmp, corpus, prompts = corpus_files
    a = run_splits(tmp / "a", corpus, prompts, seed=0)
    a2 = run_splits(tmp / "a2", corpus, prompts, seed=0)
    b = run_splits(tmp / "b", corpus, prompts, seed=1)
    for name in a:
        pd.testing.assert_frame_equal(a[name], a2[name])
    assert set(a["weak_train"]["id"]) != set(b["weak_train"]["id"])
    pd.testing.assert_frame_equal(a["test"], b["test"])


def test_make_corpus_splits_too_small_data_names_the_numbers(corpus_files):
    tmp, corpus, prompts = corpus_files
    big = {**corpus, "sizes": {"weak_train": 30, "weak_label": 10, "val": 5}}
    outputs = {s: str(tmp / "big" / f"{s}.parquet") for s in FINETUNE}
    with pytest.raises(PipelineError, match=r"need 45 pairs but only 40 remain after cleaning"):
        make_corpus_splits(canonical_json(big), 0, outputs)
    with pytest.raises(PipelineError, match="50 evaluation prompts requested but only 30 exist"):
        make_prompts(canonical_json({**prompts, "n": 50}), str(tmp / "many" / "test.parquet"))
    no_val = {**corpus, "sizes": {"weak_train": 5, "weak_label": 5}}
    with pytest.raises(PipelineError, match=r"positive size for \['val'\]"):
        make_corpus_splits(canonical_json(no_val), 0, outputs)
    assert not (tmp / "big").exists() and not (tmp / "many").exists()


# --- the shipped Davidson file -------------------------------------------------------------------


def test_davidson_corpus():
    pairs = gold_pairs(
        CorpusSpec(
            source=str(DAVIDSON), format="tweets", text_field="tweet", label_field="class", keep_labels=["2"]
        )
    )
    assert 3000 <= len(pairs) <= 4200  # 4163 'neither' tweets before cleaning
    assert pairs["id"].is_unique
    full = pairs["prompt"] + pairs["continuation"]
    assert not full.str.contains("&amp;|&#|#|https?://t\\.co", regex=True).any()
    assert not full.str.contains("@").any()  # no mentions, quoted or not
    assert not full.str.contains("http").any()  # no URLs, truncated or not
    assert (pairs["continuation"].str.startswith(" ")).all()
    assert (full.str.count(" ") + 1 >= 6).all()


# --- generated gold continuations ----------------------------------------------------------------


def test_select_gold_keeps_the_least_toxic_fluent_sample():
    from w2s_align.infer.gold import select_gold

    samples = pd.DataFrame(
        {
            "prompt_row": [0, 0, 0, 1, 1, 1],
            "sample": [0, 1, 2, 0, 1, 2],
            "continuation": [" a", " b", " c", " d", " ", " f"],
            "judge_toxicity": [0.9, 0.1, 0.05, 0.5, 0.0, 0.5],
            "perplexity": [
                10.0,
                12.0,
                40.0,
                8.0,
                9.0,
                8.0,
            ],  # row 0: sample 2 is disfluent (40 > 1.5 x median 12)
        }
    )
    best = select_gold(samples, ratio=1.5)
    assert best["sample"].tolist() == [1, 0]  # row 1: the empty sample never wins; ties go to the first
    assert best["continuation"].tolist() == [" b", " d"]


def test_training_prompts_leave_out_the_evaluation_prompts(tmp_path):
    from w2s_align.data.prompt_pool import training_prompts

    src = write_jsonl(tmp_path / "prompts.jsonl", [{"text": f"prompt {i} "} for i in range(30)])
    corpus = CorpusSpec(source=str(src), format="prompts")
    evaluation = pd.Series([f"prompt {i}" for i in range(5)])
    pool = training_prompts(corpus, evaluation, 20, seed=0)
    assert len(pool) == 20 and not set(pool["prompt"]) & set(evaluation)
    assert pool.equals(training_prompts(corpus, evaluation, 20, seed=0))  # the same for every run seed
    with pytest.raises(PipelineError, match="need 26 training prompts but only 25 remain"):
        training_prompts(corpus, evaluation, 26, seed=0)
