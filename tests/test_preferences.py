"""The preference (DPO) track: the DPO loss, confidence weighting, the reference model, pairs and judges,
implicit-reward accuracy, and a tiny end-to-end run with its rerun scope."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from w2s_align.data.preferences import gold_test_pairs, pair_weights, preference_pairs, split_prompts
from w2s_align.errors import PipelineError
from w2s_align.eval.preference import implicit_p1, judge_p1, preference_scores
from w2s_align.models.causal_lm import build_lm, continuation_nll, pretrained_lm
from w2s_align.models.sequences import collate, encode_pairs
from w2s_align.settings.specs import ModelSpec
from w2s_align.train.dpo import encode_preferences, pair_batch, policy_logps, reference_logps
from w2s_align.train.losses import dpo_loss, sequence_logps

from helpers import CORES, copy_repo, make_pairs, pending_jobs, snakemake

CPU = torch.device("cpu")
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}


# --- the loss -----------------------------------------------------------------------------------


def test_dpo_loss_matches_hand_computed_values():
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0])
    # margins: 0.5 * ((-1 + 1.5) - (-2 + 1.5)) = 0.5; 0.5 * ((-3 + 2) - (-1 + 2)) = -1.0
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(1.0))) / 2
    assert dpo_loss(pc, pr, rc, rr, beta=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_dpo_loss_is_trls_sigmoid_loss_on_random_inputs():
    """TRL's DPOTrainer (loss_type sigmoid, no label smoothing): -logsigmoid(beta * (chosen - rejected
    log-ratios))."""
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(64, generator=g) * 20 for _ in range(4))
    for beta in (0.01, 0.1, 1.0, 5.0):
        trl = -torch.nn.functional.logsigmoid(beta * ((pc - pr) - (rc - rr))).mean()
        assert dpo_loss(pc, pr, rc, rr, beta).item() == pytest.approx(trl.item(), rel=1e-5)


def test_dpo_loss_is_finite_for_huge_margins_and_has_the_right_gradient_sign():
    pc = torch.tensor([500.0, -500.0], requires_grad=True)
    loss = dpo_loss(pc, torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=1.0)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(250.0)
    loss.backward()
    assert (pc.grad <= 0).all()  # raising the chosen log-prob lowers the loss


def test_confidence_weights_of_one_equal_plain_dpo_and_otherwise_scale_each_pair():
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (torch.randn(16, generator=g) for _ in range(4))
    plain = dpo_loss(pc, pr, rc, rr, 0.1)
    assert dpo_loss(pc, pr, rc, rr, 0.1, torch.ones(16)).item() == pytest.approx(plain.item(), rel=1e-7)
    w = torch.linspace(0.1, 2.0, 16)
    per_pair = torch.stack(
        [dpo_loss(pc[i : i + 1], pr[i : i + 1], rc[i : i + 1], rr[i : i + 1], 0.1) for i in range(16)]
    )
    assert dpo_loss(pc, pr, rc, rr, 0.1, w).item() == pytest.approx((w * per_pair).mean().item(), rel=1e-6)


def test_pair_weights_are_one_or_the_margin_scaled_to_mean_one():
    conf = np.array([0.1, 0.3, 0.8])
    assert np.array_equal(pair_weights(conf, "none"), np.ones(3))
    w = pair_weights(conf, "confidence")
    assert w.mean() == pytest.approx(1.0) and np.allclose(w / w[0], conf / conf[0])
    with pytest.raises(PipelineError, match="dpo_weighting"):
        pair_weights(conf, "softmax")


# --- log-probs and the reference -----------------------------------------------------------------


def test_sequence_logps_equal_the_negative_continuation_nll(tiny_llama_dir):
    model, tokenizer = pretrained_lm(ModelSpec(kind="pretrained", path=str(tiny_llama_dir)))
    feats = encode_pairs(tokenizer, *make_pairs(6, seed=3), max_length=32, add_eos=False)
    nll, _ = continuation_nll(model, tokenizer, feats, 4, CPU)
    batch = collate(feats, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert np.allclose(sequence_logps(logits, batch["labels"]).numpy(), -nll, atol=1e-4)


def _pairs(n: int, seed: int) -> pd.DataFrame:
    prompts, chosen = make_pairs(n, seed=seed)
    _, rejected = make_pairs(n, seed=seed + 100)
    return pd.DataFrame({"prompt": prompts, "chosen": chosen, "rejected": rejected})


def test_reference_log_probs_come_from_the_base_with_the_adapter_disabled(tiny_llama_dir):
    spec = ModelSpec(kind="pretrained", path=str(tiny_llama_dir), lora=LORA)
    model, tokenizer, dtypes = build_lm(spec, [], 32)
    with torch.no_grad():  # a trained-looking adapter: LoRA B is zero at initialisation
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    feats = encode_preferences(tokenizer, _pairs(8, seed=4), 32)
    ref = reference_logps(model, tokenizer, feats, 4, CPU, dtypes.compute)
    base, _ = pretrained_lm(ModelSpec(kind="pretrained", path=str(tiny_llama_dir)))
    separate = policy_logps(base, tokenizer, feats, 4, CPU, torch.float32)
    assert np.allclose(ref, separate, atol=1e-4)
    adapted = policy_logps(model, tokenizer, feats, 4, CPU, dtypes.compute)
    assert not np.allclose(adapted, ref, atol=1e-2)  # the adapter is back on after the reference pass


def test_pair_batch_puts_chosen_rows_first_then_rejected(tiny_llama_dir):
    _, tokenizer = pretrained_lm(ModelSpec(kind="pretrained", path=str(tiny_llama_dir)))
    feats = encode_preferences(tokenizer, _pairs(3, seed=5), 32)
    batch = pair_batch(feats, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 6
    for i, f in enumerate(feats):
        assert batch["input_ids"][i, : len(f["chosen"]["input_ids"])].tolist() == f["chosen"]["input_ids"]
        assert (
            batch["input_ids"][3 + i, : len(f["rejected"]["input_ids"])].tolist()
            == f["rejected"]["input_ids"]
        )


# --- pairs, judges and accuracy ------------------------------------------------------------------


def _candidates(scores: list[list[float]], split: str = "train") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates p<i>/<sample> with texts t<i>.<sample>, and a judge's scores of them."""
    rows = [
        {"id": f"p{i}", "split": split, "prompt": f"prompt {i}", "sample": j, "text": f"t{i}.{j}", "score": x}
        for i, per_prompt in enumerate(scores)
        for j, x in enumerate(per_prompt)
    ]
    df = pd.DataFrame(rows)
    return df.drop(columns="score"), df[["id", "split", "sample", "score"]]


def test_a_judges_pair_is_its_least_against_its_most_toxic_candidate():
    cands, judged = _candidates(
        [[0.9, 0.1, 0.5, 0.3], [0.2, 0.2, 0.2, 0.2], [0.4, 0.6, 0.1, 0.6], [0.3, 0.8, 0.3, 0.5]]
    )
    cands.loc[(cands.id == "p3") & (cands["sample"] == 1), "text"] = "t3.0"  # the same text as its best
    pairs = preference_pairs(cands, judged, "train")
    assert pairs["id"].tolist() == ["p0", "p2"]  # p1: all tied; p3: best and worst are the same text
    assert pairs["chosen"].tolist() == ["t0.1", "t2.2"]
    assert pairs["rejected"].tolist() == ["t0.0", "t2.3"]  # ties for the most toxic: the last sample
    assert np.allclose(pairs["confidence"], [0.8, 0.5])
    top = preference_pairs(cands, judged, "train", top_fraction=0.5)
    assert top["id"].tolist() == ["p0"]


def test_preference_pairs_need_scores_for_every_candidate():
    cands, judged = _candidates([[0.1, 0.2], [0.3, 0.1]])
    with pytest.raises(PipelineError, match="do not cover every train candidate"):
        preference_pairs(cands, judged.iloc[:3], "train")


def test_split_prompts_are_disjoint_sized_and_seeded():
    pool = pd.DataFrame({"prompt": [f"p{i}" for i in range(50)], "id": [f"id{i}" for i in range(50)]})
    out = split_prompts(pool, {"train": 20, "val": 5, "test": 10}, seed=3)
    assert out.split.value_counts().to_dict() == {"train": 20, "test": 10, "val": 5}
    assert out["id"].is_unique
    assert out.equals(split_prompts(pool, {"train": 20, "val": 5, "test": 10}, seed=3))
    assert not out.equals(split_prompts(pool, {"train": 20, "val": 5, "test": 10}, seed=4))


def test_implicit_reward_accuracy_on_pairs_whose_order_is_known():
    rng = np.random.default_rng(0)
    gold_scores = rng.uniform(0, 1, (60, 3)).tolist()
    cands, gold = _candidates(gold_scores, split="test")
    pairs = gold_test_pairs(cands, gold, min_margin=0.1)
    assert len(pairs) == int((np.ptp(gold_scores, axis=1) >= 0.1).sum())
    assert 0.2 < pairs["y"].mean() < 0.8  # both orders occur
    ref = cands[["id", "sample"]].assign(logp=rng.normal(-20, 3, len(cands)))
    clean = gold.set_index(["id", "sample"])["score"]
    cleaner = -clean.loc[list(zip(ref["id"], ref["sample"]))].to_numpy()  # higher for the less toxic text
    right = ref.assign(
        logp=ref["logp"] + 5 * cleaner
    )  # raises each text by how clean the gold judge finds it
    wrong = ref.assign(logp=ref["logp"] - 5 * cleaner)
    weak = gold.assign(score=1 - gold["score"])  # a judge that always prefers the more toxic text
    table = preference_scores(
        pairs, weak, {"reference": ref, "w2s": wrong, "ceiling": right}, beta=0.1, n_boot=50, seed=0
    )
    acc = table[table.metric == "preference_accuracy"].set_index("role")["value"]
    assert (acc["weak"], acc["w2s"], acc["ceiling"]) == (0.0, 0.0, 1.0)
    assert table["n_pairs"].iloc[0] == len(pairs)


def test_implicit_p1_and_judge_p1():
    p = implicit_p1(
        (np.array([-1.0, -5.0]), np.array([-2.0, -1.0])), (np.full(2, -1.0), np.full(2, -1.0)), beta=1.0
    )
    assert p[0] == pytest.approx(1 / (1 + math.exp(-1.0))) and p[1] == pytest.approx(1 / (1 + math.exp(4.0)))
    assert np.allclose(judge_p1(np.array([0.0, 1.0, 0.3]), np.array([1.0, 0.0, 0.3])), [1.0, 0.0, 0.5])


def test_too_few_decisive_test_pairs_is_a_clear_error():
    cands, gold = _candidates([[0.1, 0.15]] * 4, split="test")
    with pytest.raises(PipelineError, match="margin >= 0.2"):
        gold_test_pairs(cands, gold, 0.2)


# --- the workflow --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preference_run(tmp_path_factory):
    """The tiny config with the preference track alone (tests/configs/tiny-preferences.yaml), run to the
    end."""
    work = copy_repo(tmp_path_factory.mktemp("prefs"))
    snakemake(work, "--cores", CORES, "--configfile", "config.yaml", "tests/configs/tiny-preferences.yaml")
    return work


def test_the_track_runs_end_to_end_with_its_tables(preference_run):
    md = (preference_run / "results/tables/summary.md").read_text()
    assert "## Preference track (DPO): per run" in md
    assert "| weak preferences | tfidf-davidson-b → smollm2-135m | dpo |" in md
    summary = pd.read_parquet(preference_run / "results/tables/summary.parquet")
    pref = summary[summary.metric == "preference_accuracy"]
    assert set(pref.role) >= {"weak", "w2s", "ceiling", "pgr", "gap"}
    assert pref.loc[pref.role.isin(["weak", "w2s", "ceiling"]), "value"].between(0, 1).all()
    assert set(summary.loc[summary.metric == "expected_max_toxicity", "role"]) >= {"base", "w2s", "ceiling"}
    cands = pd.read_parquet(preference_run / "results/toxicity/preferences/candidates.parquet")
    prompts = pd.read_parquet(preference_run / "results/toxicity/prompts.parquet")
    assert not set(cands.prompt) & set(prompts.prompt)  # evaluation prompts are never trained on
    assert cands.groupby("split")["id"].nunique().to_dict() == {"test": 40, "train": 24, "val": 8}
    assert (cands.groupby("id")["sample"].nunique() == 3).all()
    assert (preference_run / "results/plots/toxicity_tracks.png").stat().st_size > 0


def test_changing_the_weak_judge_reruns_its_preferences_students_and_metrics_only(preference_run):
    (preference_run / "weak-judge.yaml").write_text("scorers: {tfidf-davidson-b: {data: {seed: 7}}}\n")
    jobs = pending_jobs(
        preference_run,
        "--configfile",
        "config.yaml",
        "tests/configs/tiny-preferences.yaml",
        "weak-judge.yaml",
    )
    assert set(jobs) == {
        "train_scorer",
        "judge_candidates",
        "train_dpo_student",
        "lm_generations",
        "score_generations",
        "perplexity",
        "pair_logps",
        "preference_metrics",
        "summary",
        "plots",
        "all",
    }
    assert len(jobs["train_dpo_student"]) == 2 and len(jobs["judge_candidates"]) == 1
    assert "train_dpo_ceiling" not in jobs and "preference_candidates" not in jobs
