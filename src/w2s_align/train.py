"""Training and inference for the weak, student and ceiling classifiers (one loop for all)."""

from __future__ import annotations

import copy
import json
import logging
import math

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, roc_auc_score
from tqdm.auto import tqdm

from w2s_align.io import PipelineError, read_split, short_hash
from w2s_align.losses import StudentLoss
from w2s_align.loop import Optimisation, TrainParams, autocast, length_grouped_batches, set_seed, setup_torch
from w2s_align.models import ModelSpec, build_tfidf, build_transformer, save_tfidf, save_transformer
from w2s_align.strategies import Strategy, confidence_mask

log = logging.getLogger(__name__)

TARGETS = ("gt", "weak")


def joined_texts(df: pd.DataFrame) -> list[str]:
    """Text and optional text_pair as one string (for TF-IDF and tokenizer training)."""
    pair = df["text_pair"].fillna("")
    return [a if not b else f"{a} [SEP] {b}" for a, b in zip(df["text"], pair)]


def encode(tokenizer, df: pd.DataFrame, max_length: int) -> list[dict]:
    pairs = df["text_pair"].notna().any()
    enc = tokenizer(
        df["text"].tolist(), df["text_pair"].tolist() if pairs else None,
        truncation="only_second" if pairs else True, max_length=max_length,
    )
    return [{k: enc[k][i] for k in enc.keys()} for i in range(len(df))]


def predict_proba(model, tokenizer, features: list[dict], batch_size: int, device: torch.device,
                  desc: str = "predict") -> np.ndarray:
    """P(class 1) per row, batched by length with dynamic padding."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    out = np.empty(len(features), dtype=np.float64)
    model.eval()
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
            idx = order[start:start + batch_size]
            batch = collate([features[i] for i in idx]).to(device)
            with autocast(device):
                logits = model(**batch).logits
            out[idx] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return out


def selection_score(reference: np.ndarray, p1: np.ndarray) -> float:
    """AUROC against the reference labels (ground truth, or weak labels for students)."""
    if len(np.unique(reference)) < 2:
        return float(accuracy_score(reference, p1 >= 0.5))
    return float(roc_auc_score(reference, p1))


def fit_transformer(model, tokenizer, train_feats, targets: torch.Tensor, val_feats, val_reference: np.ndarray,
                    hp: TrainParams, device: torch.device, seed: int, strategy: Strategy = Strategy()):
    """AdamW + linear warmup/decay; keeps the epoch with the best validation score (no test labels)."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model.to(device)
    steps = hp.epochs * math.ceil(len(train_feats) / hp.batch_size)
    optimisation = Optimisation(model, hp, steps)
    loss_fn = StudentLoss(total_steps=steps, **strategy.loss_kwargs())
    rng = np.random.default_rng(seed)
    lengths = [len(f["input_ids"]) for f in train_feats]
    best = (-math.inf, -1, None)
    history = []
    for epoch in range(hp.epochs):
        model.train()
        batches = length_grouped_batches(lengths, hp.batch_size, rng)
        total = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{hp.epochs}", leave=False)
        for idx in bar:
            batch = collate([train_feats[i] for i in idx]).to(device)
            with autocast(device):
                logits = model(**batch).logits
            loss = loss_fn(logits, targets[idx].to(device))
            value = optimisation.step(loss, epoch + 1)
            total += value
            bar.set_postfix(loss=f"{value:.4f}")
        score = selection_score(val_reference, predict_proba(model, tokenizer, val_feats, hp.eval_batch_size,
                                                             device, "validate"))
        history.append({"epoch": epoch + 1, "train_loss": total / len(batches), "val_score": score})
        log.info("epoch %d/%d: train loss %.4f, validation score %.4f", epoch + 1, hp.epochs,
                 total / len(batches), score)
        if score > best[0]:
            best = (score, epoch + 1, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
    model.load_state_dict(best[2])
    log.info("selected epoch %d (validation score %.4f)", best[1], best[0])
    return model.cpu(), {"selected_epoch": best[1], "history": history}


def supervision(df: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(P(class 1) to learn from, reference labels for epoch selection) for ground truth or weak labels."""
    if target == "gt":
        return df["gt_label"].to_numpy(dtype=np.float64), df["gt_label"].to_numpy()
    if target == "weak":
        return df["weak_p1"].to_numpy(dtype=np.float64), df["weak_hard"].to_numpy()
    raise PipelineError(f"unknown training target {target!r}; expected one of {TARGETS}")


def as_targets(p1: np.ndarray, hard: bool) -> torch.Tensor:
    """N x 2 target probabilities (one-hot when `hard`)."""
    if hard:
        p1 = (p1 >= 0.5).astype(np.float64)
    return torch.tensor(np.stack([1 - p1, p1], axis=1), dtype=torch.float32)


def train_classifier(train_path: str, train_split: str, val_path: str, target: str, spec_json: str,
                     hparams_json: str, max_length: int, seed: int, threads: int, model_out: str,
                     meta_out: str, strategy_json: str = "{}") -> None:
    """Train one classifier on `train_split` rows (ground truth, or weak labels used as the strategy
    says) and save its checkpoint. Epochs are selected on `val` with the same kind of labels."""
    needs = ["text", "text_pair", "gt_label"] + (["weak_p1", "weak_hard"] if target == "weak" else [])
    train_df = read_split(train_path, train_split, needs)
    val_df = read_split(val_path, "val", needs)
    fit_classifier(train_df, val_df, target, spec_json, hparams_json, max_length, seed, threads, model_out, meta_out,
                   strategy_json, source=f"{train_split} rows of {train_path}")


def fit_classifier(train_df: pd.DataFrame, val_df: pd.DataFrame, target: str, spec_json: str, hparams_json: str,
                   max_length: int, seed: int, threads: int, model_out: str, meta_out: str,
                   strategy_json: str = "{}", source: str = "training rows") -> None:
    """Train on the rows of `train_df` and select epochs on `val_df`; see train_classifier."""
    spec, hp, strategy = ModelSpec.from_json(spec_json), TrainParams.from_json(hparams_json), Strategy.from_json(strategy_json)
    train_p1, _ = supervision(train_df, target)
    _, val_reference = supervision(val_df, target)
    keep = confidence_mask(train_p1, strategy.confidence_threshold, strategy.top_fraction)
    if not keep.all():
        log.info("confidence filter keeps %d of %d weak labels", keep.sum(), len(keep))
        train_df, train_p1 = train_df[keep].reset_index(drop=True), train_p1[keep]
    if len(np.unique(train_p1 >= 0.5)) < 2:
        raise PipelineError(f"{source}: the {len(train_df)} training labels are all one class")
    log.info("training %s model on %d %s (target: %s, strategy: %s), validating on %d rows",
             spec.kind, len(train_df), source, target, strategy.describe(), len(val_df))
    extra = {"spec": json.loads(spec_json), "hparams": json.loads(hparams_json), "target": target,
             "strategy": json.loads(strategy_json), "max_length": max_length, "seed": seed,
             "config_hash": short_hash(spec_json + hparams_json + strategy_json)}
    if spec.kind == "tfidf":
        if strategy.loss != "xent" or strategy.bootstrap_rounds:
            raise PipelineError("tfidf models train with plain cross-entropy; use a transformer for this strategy")
        vec, clf = build_tfidf(spec)
        clf.fit(vec.fit_transform(joined_texts(train_df)), (train_p1 >= 0.5).astype(int))
        val_p1 = clf.predict_proba(vec.transform(joined_texts(val_df)))[:, 1]
        log.info("validation score %.4f", selection_score(val_reference, val_p1))
        save_tfidf(vec, clf, model_out, meta_out, extra)
        return
    device = setup_torch(threads, seed)
    rounds = []
    for round_ in range(1 + strategy.bootstrap_rounds):
        if round_:  # bootstrapping: a fresh student learns from the previous student's soft predictions
            train_p1 = predict_proba(model.to(device), tokenizer, train_feats, hp.eval_batch_size, device, "relabel")
            log.info("bootstrap round %d: student labels agree with the previous targets on %.1f%% of rows",
                     round_, 100 * np.mean((train_p1 >= 0.5) == (targets[:, 1].numpy() >= 0.5)))
            set_seed(seed + round_)
        model, tokenizer = build_transformer(spec, joined_texts(train_df), max_length)
        if not round_:
            n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
            log.info("model: %s, %.2fM trainable parameters", spec.path or spec.architecture, n_train / 1e6)
        train_feats = encode(tokenizer, train_df, max_length)
        targets = as_targets(train_p1, strategy.hard_labels)
        model, info = fit_transformer(model, tokenizer, train_feats, targets, encode(tokenizer, val_df, max_length),
                                      val_reference, hp, device, seed + round_, strategy)
        rounds.append(info)
    save_transformer(model, tokenizer, model_out, meta_out, {**extra, **rounds[-1], "rounds": len(rounds)})
