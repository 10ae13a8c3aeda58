"""TF-IDF + logistic regression (model kind `tfidf`): a bag-of-words classifier, fitted by scikit-learn.

Stored as arrays (safetensors) + vocabulary (JSON): nothing is unpickled when it is read back."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from w2s_align.errors import PipelineError
from w2s_align.files import write_atomic, write_text
from w2s_align.models.classifier import joined_texts, selection_score
from w2s_align.registry import CLASSIFIER_KINDS
from w2s_align.settings.specs import ModelSpec, TfidfOptions, canonical_json

log = logging.getLogger(__name__)


@CLASSIFIER_KINDS.register("tfidf", gpu=False, losses=("xent",))
class TfidfClassifier:
    def __init__(self, vectorizer, classifier):
        self.vectorizer, self.classifier = vectorizer, classifier

    @classmethod
    def build(cls, spec: ModelSpec, train_df: pd.DataFrame, max_length: int) -> TfidfClassifier:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        opts = TfidfOptions.from_dict(spec.tfidf)
        vec = TfidfVectorizer(
            ngram_range=(1, opts.ngram_max),
            min_df=opts.min_df,
            max_features=opts.max_features,
            sublinear_tf=True,
        )
        return cls(vec, LogisticRegression(C=opts.C, max_iter=2000))

    def trainable_parameters(self) -> int:
        return 0

    def parameters(self) -> int:
        """The fitted logistic regression's weights and intercept (one per vocabulary entry, plus one)."""
        return int(self.classifier.coef_.size + self.classifier.intercept_.size)

    def fit(
        self,
        train_df: pd.DataFrame,
        p1: np.ndarray,
        val_df: pd.DataFrame,
        val_reference: np.ndarray,
        hp,
        strategy,
        device,
        seed: int,
    ) -> dict[str, Any]:
        """Logistic regression on the argmax of the soft labels `p1` (plain cross-entropy only)."""
        self.classifier.fit(self.vectorizer.fit_transform(joined_texts(train_df)), (p1 >= 0.5).astype(int))
        score = selection_score(val_reference, self.predict_proba(val_df))
        log.info("validation score %.4f", score)
        return {"val_score": score}

    def predict_proba(self, df: pd.DataFrame, batch_size: int = 0) -> np.ndarray:
        return self.classifier.predict_proba(self.vectorizer.transform(joined_texts(df)))[:, 1]

    def save(self, model_file: str, meta_file: str, extra: dict[str, Any]) -> None:
        from safetensors.numpy import save_file

        vec, clf = self.vectorizer, self.classifier
        arrays = {"idf": vec.idf_, "coef": clf.coef_, "intercept": clf.intercept_, "classes": clf.classes_}
        write_atomic(
            model_file,
            lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp)),
        )
        meta = {
            "kind": "tfidf",
            "vectorizer": {**vec.get_params(), "dtype": None},
            "vocabulary": {k: int(v) for k, v in vec.vocabulary_.items()},
            **extra,
        }
        write_text(canonical_json(meta), meta_file)

    @classmethod
    def load(cls, model_file: str, meta: dict[str, Any], device=None) -> TfidfClassifier:
        from safetensors.numpy import load_file
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        try:
            arrays = load_file(model_file)
        except Exception as exc:
            raise PipelineError(f"cannot read checkpoint {model_file}: {exc}") from exc
        params = {**meta["vectorizer"], "ngram_range": tuple(meta["vectorizer"]["ngram_range"])}
        params.pop("dtype")
        vec = TfidfVectorizer(**params)
        vec.vocabulary_ = meta["vocabulary"]
        vec.idf_ = arrays["idf"]
        if len(vec.idf_) != len(vec.vocabulary_) or arrays["coef"].shape != (1, len(vec.vocabulary_)):
            raise PipelineError(f"checkpoint {model_file} does not match its vocabulary in its metadata")
        clf = LogisticRegression()
        clf.coef_, clf.intercept_, clf.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
        return cls(vec, clf)
