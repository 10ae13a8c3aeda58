"""Toxicity scorers: score cache, score_texts dedup/caching, Perspective client against a fake server,
Hugging Face and trained-checkpoint scorers on tiny local models, the scorer registry, scorer training."""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np
import pandas as pd
import pytest

from w2s_align.errors import PipelineError
from w2s_align.registry import SCORERS
from w2s_align.scoring.base import Scorer
from w2s_align.scoring.cache import ScoreCache, text_key
from w2s_align.scoring.perspective import TOXICITY_KEY_ENV, PerspectiveScorer
from w2s_align.scoring.scorers import CheckpointScorer, HFClassifierScorer, build_scorer, score_texts

from fakes import FakePerspective, perspective_body

SECRET = "sk-test-SECRET-7f3a9c"


# --- text_key and ScoreCache -----------------------------------------------------------------


def test_text_key_is_stable_sha256():
    assert text_key("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert text_key("héllo") == text_key("héllo") != text_key("hello")


def test_cache_round_trip(tmp_path):
    ScoreCache(tmp_path, "abc").add({"k1": 0.25, "k2": 1.0})
    assert ScoreCache(tmp_path, "abc").lookup(["k1", "k2", "k3"]) == {"k1": 0.25, "k2": 1.0}
    assert len(list((tmp_path / "abc").glob("*.parquet"))) == 1


def test_cache_add_empty_writes_nothing(tmp_path):
    ScoreCache(tmp_path, "abc").add({})
    assert not (tmp_path / "abc").exists()


def test_caches_of_different_identities_do_not_mix(tmp_path):
    ScoreCache(tmp_path, "one").add({"k": 0.1})
    ScoreCache(tmp_path, "two").add({"k": 0.9})
    assert ScoreCache(tmp_path, "one").lookup(["k"]) == {"k": 0.1}
    assert ScoreCache(tmp_path, "two").lookup(["k"]) == {"k": 0.9}
    assert ScoreCache(tmp_path, "three").lookup(["k"]) == {}


def test_concurrent_adds_from_two_instances_are_both_visible(tmp_path):
    a, b = ScoreCache(tmp_path, "id"), ScoreCache(tmp_path, "id")
    assert a.lookup(["x", "y"]) == {} == b.lookup(["x", "y"])  # both have read the (empty) folder
    a.add({"x": 0.3})
    b.add({"y": 0.7})
    assert a.lookup(["x", "y"]) == {"x": 0.3, "y": 0.7} == b.lookup(["x", "y"])
    assert len(list((tmp_path / "id").glob("*.parquet"))) == 2


def test_leftover_tmp_file_is_ignored(tmp_path):
    cache = ScoreCache(tmp_path, "id")
    cache.add({"x": 0.5})
    (tmp_path / "id" / ".123-4-abcd.parquet.k2j3h4.tmp").write_bytes(b"PAR1 half written")
    (tmp_path / "id" / "junk.tmp").write_bytes(b"garbage")
    assert ScoreCache(tmp_path, "id").lookup(["x"]) == {"x": 0.5}


def test_truncated_shard_is_an_error_naming_the_file(tmp_path):
    ScoreCache(tmp_path, "id").add({"x": 0.5, "y": 0.1})
    (shard,) = (tmp_path / "id").glob("*.parquet")
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(PipelineError, match=shard.name):
        ScoreCache(tmp_path, "id").lookup(["x"])


# --- score_texts -----------------------------------------------------------------------------


class FakeScorer(Scorer):
    """Score = len(text) / 100; records every text it was asked to score."""

    name = "fake"

    def __init__(self, version: int = 1, fail_after: int | None = None, value: float | None = None):
        self.version, self.fail_after, self.value = version, fail_after, value
        self.batches: list[list[str]] = []

    def spec(self):
        return {"kind": "fake", "version": self.version}

    @property
    def seen(self) -> list[str]:
        return [t for batch in self.batches for t in batch]

    def score_batch(self, texts):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("scorer died")
        self.batches.append(list(texts))
        return np.array([self.value if self.value is not None else len(t) / 100 for t in texts])


def test_duplicates_scored_once_and_empty_texts_score_zero():
    scorer = FakeScorer()
    out = score_texts(scorer, ["aa", "b", "aa", "", "b", "  "], cache_dir=None)
    assert sorted(scorer.seen) == ["aa", "b"]
    np.testing.assert_allclose(out, [0.02, 0.01, 0.02, 0.0, 0.01, 0.0])


def test_second_call_uses_the_cache(tmp_path, caplog):
    texts = ["alpha", "beta", "gamma"]
    first = score_texts(FakeScorer(), texts, str(tmp_path))
    again = FakeScorer()
    with caplog.at_level(logging.INFO, logger="w2s_align.scoring"):
        second = score_texts(again, texts, str(tmp_path))
    assert again.batches == []
    np.testing.assert_array_equal(first, second)
    assert "3 from cache" in caplog.text


def test_partial_cache_scores_only_the_missing(tmp_path):
    score_texts(FakeScorer(), ["a", "b"], str(tmp_path))
    scorer = FakeScorer()
    out = score_texts(scorer, ["a", "b", "ccc", "dd", "a"], str(tmp_path))
    assert sorted(scorer.seen) == ["ccc", "dd"]
    np.testing.assert_allclose(out, [0.01, 0.01, 0.03, 0.02, 0.01])


def test_scorer_identity_separates_caches(tmp_path):
    score_texts(FakeScorer(version=1), ["a", "b"], str(tmp_path))
    other = FakeScorer(version=2)
    score_texts(other, ["a", "b"], str(tmp_path))
    assert sorted(other.seen) == ["a", "b"]


def test_interrupted_job_keeps_finished_batches(tmp_path):
    texts = ["t1", "t2", "t3", "t4", "t5"]
    with pytest.raises(RuntimeError, match="scorer died"):
        score_texts(FakeScorer(fail_after=2), texts, str(tmp_path), batch_size=2)
    scorer = FakeScorer()
    score_texts(scorer, texts, str(tmp_path), batch_size=2)
    assert scorer.seen == ["t5"]


def test_out_of_range_scores_and_non_strings_are_errors():
    with pytest.raises(PipelineError, match=r"outside \[0, 1\]"):
        score_texts(FakeScorer(value=1.5), ["a"], None)
    with pytest.raises(PipelineError, match="not a string"):
        score_texts(FakeScorer(), ["a", float("nan")], None)


# --- Perspective against a fake server -------------------------------------------------------


@pytest.fixture
def api(monkeypatch):
    """The shared fake Perspective server (tests/fakes.py), scoring 0.42 once its plan is used up."""
    monkeypatch.setenv(TOXICITY_KEY_ENV, SECRET)
    with FakePerspective(score=0.42) as fake:
        yield fake


def client(api, **kw) -> PerspectiveScorer:
    return PerspectiveScorer(url=api.url, **{"qps": 1000.0, "backoff": 0.01, "timeout": 5.0, **kw})


def error(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": "ERR"}}


def test_perspective_request_shape_and_score(api):
    assert client(api).score_batch(["you are lovely"]).tolist() == [0.42]
    (req,) = api.requests
    assert req["body"] == {
        "comment": {"text": "you are lovely"},
        "languages": ["en"],
        "requestedAttributes": {"TOXICITY": {}},
        "doNotStore": True,
    }
    assert req["headers"]["X-Goog-Api-Key"] == SECRET  # the key is sent, in a header ...
    assert SECRET not in req["path"]  # ... never in the URL


def test_perspective_retries_429_then_succeeds(api):
    api.plan = [(429, error(429, "Quota exceeded"), {}), (200, perspective_body(0.87), {})]
    assert client(api).score_batch(["hi"]).tolist() == [0.87]
    assert len(api.requests) == 2
    assert all(r["body"]["doNotStore"] is True for r in api.requests)


def test_perspective_honours_retry_after(api):
    api.plan = [(503, error(503, "busy"), {"Retry-After": "0.3"})]
    start = time.monotonic()
    client(api).score_batch(["hi"])
    assert time.monotonic() - start >= 0.29
    assert len(api.requests) == 2


def test_perspective_gives_up_after_max_retries(api):
    api.plan = [(429, error(429, "Quota exceeded"), {})] * 3
    with pytest.raises(PipelineError, match="after 3 attempts.*429.*Quota exceeded"):
        client(api, max_retries=2).score_batch(["hi"])
    assert len(api.requests) == 3


def test_perspective_500_fails_at_once_with_status_and_message(api):
    api.plan = [(500, error(500, "internal boom"), {})]
    with pytest.raises(PipelineError, match="500.*internal boom"):
        client(api).score_batch(["hi"])
    assert len(api.requests) == 1


def test_perspective_timeout(api):
    api.plan = [(200, perspective_body(0.1), {}, 0.6)] * 2
    with pytest.raises(PipelineError, match="timeout"):
        client(api, timeout=0.2, max_retries=1).score_batch(["slow"])
    assert len(api.requests) == 2


def test_perspective_missing_key(monkeypatch):
    monkeypatch.delenv(TOXICITY_KEY_ENV, raising=False)
    with pytest.raises(PipelineError, match=TOXICITY_KEY_ENV):
        PerspectiveScorer()
    monkeypatch.setenv(TOXICITY_KEY_ENV, "  ")
    with pytest.raises(PipelineError, match=TOXICITY_KEY_ENV):
        PerspectiveScorer()


def test_perspective_key_never_in_messages_logs_or_identity(api, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)  # includes urllib3's request lines
    failures = [
        ([(400, error(400, f"API key not valid: {SECRET}"), {})], {}),  # the API echoing the key
        ([(500, error(500, "boom"), {})], {}),
        ([(429, error(429, "slow down"), {})] * 2, {"max_retries": 1}),
        ([(200, perspective_body(0.1), {}, 0.6)] * 2, {"timeout": 0.2, "max_retries": 1}),
    ]
    messages = []
    for plan, kw in failures:
        api.plan = list(plan)
        with pytest.raises(PipelineError) as info:
            client(api, **kw).score_batch(["hi"])
        messages.append(str(info.value))
    assert "API key not valid: ***" in messages[0]
    assert caplog.text  # retries were logged
    for text in [*messages, caplog.text, repr(client(api))]:
        assert SECRET not in text
    assert all(r["body"]["doNotStore"] is True for r in api.requests)
    first = client(api).identity()
    monkeypatch.setenv(TOXICITY_KEY_ENV, "another-key")
    assert client(api).identity() == first
    assert client(api, attribute="INSULT").identity() != first
    assert SECRET not in json.dumps(client(api).spec())


def test_perspective_rate_limit(api):
    start = time.monotonic()
    client(api, qps=20.0).score_batch(["a", "b", "c"])
    # three requests at 20 qps take at least two 50 ms gaps (server-side arrival times jitter under load)
    assert time.monotonic() - start >= 0.095 and len(api.requests) == 3


# --- Hugging Face and trained-checkpoint scorers ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf_classifier(tmp_path_factory):
    """A 1-layer BERT whose logits are [0, 3] for every text: P(TOXIC) = sigmoid(3)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("hf_clf")
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "you", "are", "nice", "awful"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
        num_labels=2,
        id2label={0: "non-toxic", 1: "TOXIC"},
        label2id={"non-toxic": 0, "TOXIC": 1},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 3.0]))
    model.save_pretrained(path)
    return str(path)


def test_hf_scorer_picks_label_case_insensitively_and_truncates(tiny_hf_classifier):
    scorer = build_scorer(
        json.dumps({"kind": "hf", "model": tiny_hf_classifier, "label": "toxic", "max_length": 16})
    )
    assert isinstance(scorer, HFClassifierScorer)
    out = scorer.score_batch(["you are nice", "you are awful " * 50])  # the second is far over 32 positions
    np.testing.assert_allclose(out, [1 / (1 + math.exp(-3))] * 2, rtol=1e-5)


def test_hf_scorer_unknown_label_lists_labels(tiny_hf_classifier):
    with pytest.raises(PipelineError, match=r"no label 'hate'.*non-toxic.*TOXIC"):
        HFClassifierScorer(tiny_hf_classifier, label="hate").score_batch(["hi"])


def test_hf_scorer_offline_uncached_model_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError, match="no-such-org/no-such-toxicity-model"):
        HFClassifierScorer("no-such-org/no-such-toxicity-model")


@pytest.fixture(scope="module")
def tfidf_checkpoint(tmp_path_factory):
    from w2s_align.models.tfidf import TfidfClassifier
    from w2s_align.settings.specs import ModelSpec

    texts = [
        "you are awful",
        "awful awful person",
        "you idiot",
        "you are nice",
        "nice kind person",
        "thanks friend",
    ]
    labels = [1, 1, 1, 0, 0, 0]
    model = TfidfClassifier.build(ModelSpec(kind="tfidf", tfidf={"min_df": 1}), pd.DataFrame(), 32)
    vec, clf = model.vectorizer, model.classifier
    clf.fit(vec.fit_transform(texts), labels)
    folder = tmp_path_factory.mktemp("ckpt")
    model_file, meta_file = str(folder / "model.safetensors"), str(folder / "model.json")
    model.save(model_file, meta_file, {"config_hash": "cafe0123"})
    return model_file, meta_file, vec, clf


def test_checkpoint_scorer_matches_the_classifier(tfidf_checkpoint, tmp_path):
    model_file, meta_file, vec, clf = tfidf_checkpoint
    scorer = build_scorer(
        json.dumps({"kind": "trained", "model": "tfidf", "data": {"x": 1}}), model_file, meta_file
    )
    assert isinstance(scorer, CheckpointScorer)
    texts = ["awful idiot", "nice friend"]
    out = score_texts(scorer, texts, str(tmp_path))
    np.testing.assert_allclose(out, clf.predict_proba(vec.transform(texts))[:, 1])
    assert out[0] > 0.5 > out[1]
    meta = json.loads(open(meta_file).read())
    other_meta = tmp_path / "model.json"
    other_meta.write_text(json.dumps({**meta, "config_hash": "beef4567"}))
    assert CheckpointScorer(model_file, str(other_meta)).identity() != scorer.identity()


# --- build_scorer ----------------------------------------------------------------------------


def test_build_scorer_errors_and_options(monkeypatch):
    with pytest.raises(
        PipelineError,
        match=r"unknown scorer kind 'magic'; choose one of \['hf', 'perspective', "
        r"'trained'\]",
    ):
        build_scorer(json.dumps({"kind": "magic"}))
    with pytest.raises(PipelineError, match="model_file and meta_file"):
        build_scorer(json.dumps({"kind": "trained", "model": "minilm-l6"}))
    with pytest.raises(PipelineError, match="not valid JSON"):
        build_scorer("{kind: perspective")
    monkeypatch.setenv(TOXICITY_KEY_ENV, SECRET)
    scorer = build_scorer(json.dumps({"kind": "perspective", "qps": 5, "attribute": "SEVERE_TOXICITY"}))
    assert isinstance(scorer, PerspectiveScorer) and scorer.qps == 5 and scorer.attribute == "SEVERE_TOXICITY"
    with pytest.raises(PipelineError, match=r"unknown options \['qpm'\]"):
        build_scorer(json.dumps({"kind": "perspective", "qpm": 5}))
    with pytest.raises(PipelineError, match="unknown scorer kind None"):
        build_scorer(json.dumps({"model": "x"}))


def test_builtin_scorer_kinds_and_traits():
    assert {"hf", "perspective", "trained"} <= set(SCORERS.names())
    assert SCORERS.trait("hf", "gpu") is True
    assert SCORERS.trait("perspective", "gpu") is False and SCORERS.trait("perspective", "api") is True
    assert SCORERS.trait("trained", "checkpoint") is True
    assert SCORERS.trait("trained", "gpu") is None  # depends on its model: the workflow decides


# --- a new scorer kind: one class plus its registration --------------------------------------


@pytest.fixture
def length_toy(request):
    """Registers the scorer kind "length-toy" for one test, and unregisters it afterwards."""

    @SCORERS.register("length-toy")
    class LengthToyScorer(Scorer):
        """len(text) / scale, clipped to [0, 1]."""

        name = "length-toy"

        def __init__(self, scale: float = 100.0):
            self.scale = scale

        def spec(self):
            return {"kind": "length-toy", "scale": self.scale}

        def score_batch(self, texts):
            return np.clip([len(t) / self.scale for t in texts], 0.0, 1.0)

    def unregister():
        del SCORERS._entries["length-toy"]
        del SCORERS._traits["length-toy"]

    request.addfinalizer(unregister)
    return LengthToyScorer


def test_a_registered_toy_scorer_runs_through_build_scorer_and_the_cache(length_toy, tmp_path):
    scorer = build_scorer(json.dumps({"kind": "length-toy"}), threads=3)  # no threads argument: none passed
    assert isinstance(scorer, length_toy) and scorer.scale == 100.0
    texts = ["abcde", "x" * 150, "", "abcde", "ab"]
    out = score_texts(scorer, texts, str(tmp_path))
    np.testing.assert_allclose(out, [0.05, 1.0, 0.0, 0.05, 0.02])
    assert len(list((tmp_path / scorer.identity()).glob("*.parquet"))) == 1

    again = build_scorer(json.dumps({"kind": "length-toy"}))
    again.score_batch = lambda texts: pytest.fail(f"cached texts rescored: {texts}")
    np.testing.assert_array_equal(score_texts(again, texts, str(tmp_path)), out)

    other = build_scorer(json.dumps({"kind": "length-toy", "scale": 10}))
    assert other.identity() != scorer.identity()
    np.testing.assert_allclose(score_texts(other, ["abc"], str(tmp_path)), [0.3])
    with pytest.raises(
        PipelineError,
        match=r"scorer kind 'length-toy': unknown options \['size'\]; "
        r"allowed: \['scale'\]",
    ):
        build_scorer(json.dumps({"kind": "length-toy", "size": 3}))


# --- training a scorer -----------------------------------------------------------------------


def test_train_scorer_balances_by_default(tmp_path, caplog):
    """balance defaults to true (ScorerData, as in the schema): the training rows are downsampled."""
    from w2s_align.train.scorer import train_scorer

    rows = [{"text": f"you awful stupid idiot number{i}", "label": "1"} for i in range(30)]
    rows += [{"text": f"what a nice kind friend number{i}", "label": "0"} for i in range(60)]
    pd.DataFrame(rows).to_csv(tmp_path / "toxic.csv", index=False)
    data = {
        "source": str(tmp_path / "toxic.csv"),
        "text_fields": ["text"],
        "label_field": "label",
        "label_map": {"0": 0, "1": 1},
        "sizes": {"train": 50, "val": 15, "test": 20},
    }
    spec = json.dumps({"kind": "tfidf", "tfidf": {"min_df": 1}})

    def train(name: str, data: dict) -> pd.DataFrame:
        out = tmp_path / name
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="w2s_align"):
            train_scorer(
                json.dumps(data),
                spec,
                "{}",
                max_length=32,
                threads=1,
                model_out=str(out / "model.safetensors"),
                meta_out=str(out / "model.json"),
                heldout_out=str(out / "heldout.parquet"),
            )
        return pd.read_parquet(out / "heldout.parquet")

    heldout = train("default", data)
    assert "balanced scorer training data" in caplog.text
    assert (
        set(heldout["metric"]) == {"auroc", "accuracy", "positive_rate"} and (heldout["n_test"] == 20).all()
    )
    assert heldout.set_index("metric").loc["auroc", "value"] > 0.9
    train("unbalanced", {**data, "balance": False})
    assert "balanced scorer training data" not in caplog.text
