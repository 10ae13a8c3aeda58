"""Transformers sequence classifiers (model kinds `scratch` and `pretrained`): build, fit, predict, save, load.

A checkpoint is two files: `classifier.safetensors` (weights; LoRA merged) and `classifier.json` (kind,
architecture config, tokenizer), so it loads without the original source.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from w2s_align.io import PipelineError, canonical_json, write_atomic, write_text
from w2s_align.models.base import (add_lora, check_reachable, model_from_config, resolve_path, tokenizer_from_meta,
                                   tokenizer_meta, train_scratch_tokenizer)
from w2s_align.registry import CLASSIFIER_KINDS
from w2s_align.specs import ModelSpec

log = logging.getLogger(__name__)


def joined_texts(df: pd.DataFrame) -> list[str]:
    """Text and optional text_pair as one string (for TF-IDF and tokenizer training)."""
    pair = df["text_pair"].fillna("")
    return [a if not b else f"{a} [SEP] {b}" for a, b in zip(df["text"], pair)]


def selection_score(reference: np.ndarray, p1: np.ndarray) -> float:
    """AUROC against the reference labels (ground truth, or weak labels for students)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    if len(np.unique(reference)) < 2:
        return float(accuracy_score(reference, p1 >= 0.5))
    return float(roc_auc_score(reference, p1))


@CLASSIFIER_KINDS.register("scratch", gpu=True, losses="any")
@CLASSIFIER_KINDS.register("pretrained", gpu=True, losses="any")
class TransformerClassifier:
    """A two-class transformers classifier: randomly initialised with its own BPE (scratch) or pretrained."""

    def __init__(self, model, tokenizer, max_length: int, device=None):
        self.model, self.tokenizer, self.max_length, self.device = model, tokenizer, max_length, device or "cpu"

    @classmethod
    def build(cls, spec: ModelSpec, train_df: pd.DataFrame, max_length: int) -> "TransformerClassifier":
        """Fresh classifier and tokenizer for training."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        if spec.kind == "scratch":
            tokenizer = train_scratch_tokenizer(joined_texts(train_df), spec.vocab_size)
            extra = {"n_positions": max_length} if spec.architecture == "gpt2" else {
                "max_position_embeddings": max_length}
            config = AutoConfig.for_model(spec.architecture, vocab_size=len(tokenizer), num_labels=2,
                                          pad_token_id=tokenizer.pad_token_id, **extra, **spec.size)
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            path = resolve_path(spec.path)
            check_reachable(path)
            tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=2, revision=spec.revision, pad_token_id=tokenizer.pad_token_id)
        return cls(add_lora(model, spec, "SEQ_CLS"), tokenizer, max_length)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def encode(self, df: pd.DataFrame) -> list[dict]:
        pairs = df["text_pair"].notna().any()
        enc = self.tokenizer(df["text"].tolist(), df["text_pair"].tolist() if pairs else None,
                             truncation="only_second" if pairs else True, max_length=self.max_length)
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(df))]

    def fit(self, train_df: pd.DataFrame, p1: np.ndarray, val_df: pd.DataFrame, val_reference: np.ndarray, hp,
            strategy, device, seed: int) -> dict[str, Any]:
        """Train on the soft labels `p1` = P(class 1) with the strategy's loss; keep the epoch with the best
        validation score against `val_reference` (no test labels)."""
        from transformers import DataCollatorWithPadding

        from w2s_align.train.losses import StudentLoss, as_targets
        from w2s_align.train.loop import fit, total_steps

        self.device = device
        feats, val_feats = self.encode(train_df), self.encode(val_df)
        targets = as_targets(p1, strategy.hard_labels)
        loss = StudentLoss(strategy, total_steps(len(feats), hp))
        return fit(self.model, feats, DataCollatorWithPadding(self.tokenizer),
                   lambda out, idx: loss(out.logits, targets[idx].to(device)),
                   lambda: selection_score(val_reference, self.predict_features(val_feats, hp.eval_batch_size,
                                                                                "validate")),
                   hp, device, seed, metric="val_score", higher_is_better=True)

    def predict_features(self, features: list[dict], batch_size: int, desc: str = "predict") -> np.ndarray:
        """P(class 1) per row, batched by length with dynamic padding."""
        import torch
        from transformers import DataCollatorWithPadding

        from w2s_align.device import autocast

        collate = DataCollatorWithPadding(self.tokenizer)
        order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
        out = np.empty(len(features), dtype=np.float64)
        device = torch.device(self.device)
        self.model.to(device).eval()
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
                idx = order[start:start + batch_size]
                batch = collate([features[i] for i in idx]).to(device)
                with autocast(device):
                    logits = self.model(**batch).logits
                out[idx] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
        return out

    def predict_proba(self, df: pd.DataFrame, batch_size: int = 64) -> np.ndarray:
        return self.predict_features(self.encode(df), batch_size)

    def save(self, model_file: str, meta_file: str, extra: dict[str, Any]) -> None:
        from safetensors.torch import save_model

        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        meta = {"kind": extra["spec"]["kind"], "config": model.config.to_dict(), **tokenizer_meta(self.tokenizer),
                "max_length": self.max_length, **extra}
        write_atomic(model_file, lambda tmp: save_model(model, str(tmp)))
        write_text(canonical_json(meta), meta_file)

    @classmethod
    def load(cls, model_file: str, meta: dict[str, Any], device) -> "TransformerClassifier":
        from safetensors.torch import load_model
        from transformers import AutoModelForSequenceClassification

        model = model_from_config(AutoModelForSequenceClassification, meta["config"])
        try:
            load_model(model, model_file, strict=True)
        except Exception as exc:
            raise PipelineError(f"checkpoint {model_file} does not match its metadata: {exc}") from exc
        return cls(model.eval(), tokenizer_from_meta(meta), int(meta["max_length"]), device)
