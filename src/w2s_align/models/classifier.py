"""Transformers sequence classifiers (model kinds `scratch` and `pretrained`): build, predict, save, load; the
training stage (train/classify.py) trains them in the one loop.

A checkpoint is two files: `classifier.safetensors` and `classifier.json`. A LoRA run saves the adapter and
its trained head (megabytes) and names its base model, which loads once at reload; full fine-tuning saves
every weight with the architecture config and tokenizer, so it loads without the original source.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from w2s_align.errors import PipelineError
from w2s_align.files import write_atomic, write_text
from w2s_align.models.common import (
    add_lora,
    apply_adapter,
    job_precision,
    model_from_config,
    pretrained_source,
    pretrained_tokenizer,
    tokenizer_from_meta,
    tokenizer_meta,
    train_scratch_tokenizer,
)
from w2s_align.registry import CLASSIFIER_KINDS
from w2s_align.settings.specs import ModelSpec, canonical_json

log = logging.getLogger(__name__)


def joined_texts(df: pd.DataFrame) -> list[str]:
    """Text and optional text_pair as one string (for TF-IDF and tokenizer training)."""
    pair = df["text_pair"].fillna("")
    return [a if not b else f"{a} [SEP] {b}" for a, b in zip(df["text"], pair)]


def pair_separator(tokenizer) -> str:
    """Text put between a pair's texts when the tokenizer marks no boundary itself (GPT-2, Qwen join pairs
    with nothing; BERT-style and the scratch tokenizers insert a separator token)."""
    joined = tokenizer("a", "b")["input_ids"]
    plain = tokenizer("a")["input_ids"] + tokenizer("b", add_special_tokens=False)["input_ids"]
    return "\n\n" if joined == plain else ""


def selection_score(reference: np.ndarray, p1: np.ndarray) -> float:
    """AUROC against the reference labels (ground truth, or weak labels for students)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    if len(np.unique(reference)) < 2:
        return float(accuracy_score(reference, p1 >= 0.5))
    return float(roc_auc_score(reference, p1))


@CLASSIFIER_KINDS.register("scratch", gpu=True, losses="any")
@CLASSIFIER_KINDS.register("pretrained", gpu=True, losses="any", published=True)
class TransformerClassifier:
    """A two-class transformers classifier: randomly initialised with its own BPE (scratch) or pretrained."""

    def __init__(self, model, tokenizer, max_length: int, device=None, compute=None):
        import torch

        self.model, self.tokenizer, self.max_length, self.device = (
            model,
            tokenizer,
            max_length,
            device or "cpu",
        )
        self.compute = compute or torch.float32  # autocast dtype (device.Precision.compute)
        self.separator = pair_separator(tokenizer)

    @classmethod
    def build(
        cls, spec: ModelSpec, train_df: pd.DataFrame, max_length: int, local_dir: str | None = None
    ) -> TransformerClassifier:
        """Fresh classifier and tokenizer for training (`local_dir`: the prepared folder of a GGUF or archive
        model)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        if spec.kind == "scratch":
            tokenizer = train_scratch_tokenizer(joined_texts(train_df), spec.vocab_size)
            extra = (
                {"n_positions": max_length}
                if spec.architecture == "gpt2"
                else {"max_position_embeddings": max_length}
            )
            config = AutoConfig.for_model(
                spec.architecture,
                vocab_size=len(tokenizer),
                num_labels=2,
                pad_token_id=tokenizer.pad_token_id,
                **extra,
                **spec.size,
            )
            model = AutoModelForSequenceClassification.from_config(config)
            dtypes = job_precision(spec, "full")
        else:
            dtypes = job_precision(spec, "lora" if spec.lora else "full")
            model, tokenizer = pretrained_classifier(spec, dtypes.weights, local_dir)
        return cls(add_lora(model, spec, "SEQ_CLS"), tokenizer, max_length, compute=dtypes.compute)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def parameters(self) -> int:
        """Every parameter of the model without LoRA's additions (its adapters and the trained copy of the
        head): the base and the head, as without LoRA."""
        extra = ("lora_", ".modules_to_save.")
        return sum(p.numel() for n, p in self.model.named_parameters() if not any(e in n for e in extra))

    def encode(self, df: pd.DataFrame) -> list[dict]:
        pairs = df["text_pair"].notna().any()
        texts = [t + self.separator for t in df["text"]] if pairs else df["text"].tolist()
        enc = self.tokenizer(
            texts,
            df["text_pair"].tolist() if pairs else None,
            truncation="only_second" if pairs else True,
            max_length=self.max_length,
        )
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(df))]

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
                idx = order[start : start + batch_size]
                batch = collate([features[i] for i in idx]).to(device)
                with autocast(device, self.compute):
                    logits = self.model(**batch).logits
                out[idx] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
        return out

    def predict_proba(self, df: pd.DataFrame, batch_size: int = 64) -> np.ndarray:
        return self.predict_features(self.encode(df), batch_size)

    def save(self, model_file: str, meta_file: str, extra: dict[str, Any]) -> None:
        """LoRA on a pretrained model: the adapter and head, naming the base; otherwise every weight."""
        from safetensors.torch import save_file, save_model

        meta = {"kind": extra["spec"]["kind"], "max_length": self.max_length, **extra}
        if hasattr(self.model, "peft_config") and CLASSIFIER_KINDS.trait(
            extra["spec"]["kind"], "published", False
        ):
            from peft import get_peft_model_state_dict

            state = {k: v.contiguous() for k, v in get_peft_model_state_dict(self.model).items()}
            write_atomic(model_file, lambda tmp: save_file(state, str(tmp)))
            meta["adapter"] = True
        else:
            model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
            write_atomic(model_file, lambda tmp: save_model(model, str(tmp)))
            meta |= {"config": model.config.to_dict(), **tokenizer_meta(self.tokenizer)}
        write_text(canonical_json(meta), meta_file)

    @classmethod
    def load(
        cls, model_file: str, meta: dict[str, Any], device, local_dir: str | None = None
    ) -> TransformerClassifier:
        from safetensors.torch import load_file, load_model
        from transformers import AutoModelForSequenceClassification

        spec = ModelSpec.from_dict(meta["spec"])
        dtypes = job_precision(spec)
        try:
            if meta.get("adapter"):
                base, tokenizer = pretrained_classifier(spec, dtypes.weights, local_dir)
                model = apply_adapter(base, spec.lora, "SEQ_CLS", load_file(model_file))
            else:
                model = model_from_config(AutoModelForSequenceClassification, meta["config"])
                load_model(model, model_file, strict=True)
                model, tokenizer = model.to(dtypes.weights), tokenizer_from_meta(meta)
        except PipelineError:
            raise
        except Exception as exc:
            raise PipelineError(f"checkpoint {model_file} does not match its metadata: {exc}") from exc
        return cls(model.eval(), tokenizer, int(meta["max_length"]), device, dtypes.compute)


def pretrained_classifier(spec: ModelSpec, dtype, local_dir: str | None = None):
    """A pretrained model with a fresh two-class head, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification

    path = pretrained_source(spec, local_dir)
    tokenizer = pretrained_tokenizer(path, spec.revision)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, revision=spec.revision, pad_token_id=tokenizer.pad_token_id, dtype=dtype
    )
    return model, tokenizer
