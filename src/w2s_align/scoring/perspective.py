"""The Perspective API scorer (Google's comments:analyze endpoint): rate-limited, retrying, and careful
that the API key never reaches a URL, a log line, an error message or the score cache's key."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np

from w2s_align.errors import PipelineError
from w2s_align.registry import SCORERS
from w2s_align.scoring.base import Scorer

log = logging.getLogger(__name__)

TOXICITY_KEY_ENV = "PERSPECTIVE_API_KEY"
PERSPECTIVE_URL = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
RETRY_STATUS = {429, 503}


@SCORERS.register("perspective", gpu=False, api=True, key_env=TOXICITY_KEY_ENV)
class PerspectiveScorer(Scorer):
    """Google's Perspective API, one POST per text, rate-limited to `qps`, retrying 429/503/timeouts.

    The key is read from $PERSPECTIVE_API_KEY, sent in the X-Goog-Api-Key header (not the URL, so it
    stays out of request logs) and redacted from every message."""

    name = "perspective"

    def __init__(
        self,
        url: str = PERSPECTIVE_URL,
        attribute: str = "TOXICITY",
        qps: float = 1.0,
        max_retries: int = 5,
        timeout: float = 30.0,
        backoff: float = 1.0,
        languages: list[str] | None = ["en"],  # noqa: B006 - copied below, never mutated
    ):
        key = os.environ.get(TOXICITY_KEY_ENV, "").strip()
        if not key:
            raise PipelineError(
                f"the Perspective scorer needs an API key: set the environment variable {TOXICITY_KEY_ENV}"
            )
        if qps <= 0 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise PipelineError(
                f"Perspective options need qps > 0, max_retries >= 0, timeout > 0, backoff >= 0; "
                f"got qps={qps}, max_retries={max_retries}, timeout={timeout}, backoff={backoff}"
            )
        self.url = url.split("?", 1)[0]
        self.attribute = attribute
        self.qps, self.max_retries, self.timeout, self.backoff = qps, max_retries, timeout, backoff
        self.languages = list(languages) if languages is not None else None
        self._key = key
        self._session = None
        self._next_request = 0.0  # time.monotonic() before which no request may start

    def __repr__(self) -> str:
        return f"PerspectiveScorer(url={self.url!r}, attribute={self.attribute!r}, qps={self.qps})"

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "perspective",
            "url": self.url,
            "attribute": self.attribute,
            "languages": self.languages,
        }

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***")

    def _throttle(self) -> None:
        wait = self._next_request - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next_request = time.monotonic() + 1.0 / self.qps

    def _body(self, text: str) -> dict[str, Any]:
        body = {"comment": {"text": text}, "requestedAttributes": {self.attribute: {}}, "doNotStore": True}
        if self.languages is not None:
            body["languages"] = self.languages
        return body

    def _post(self, text: str):
        """One HTTP attempt: (response, None), or (None, reason) for a timeout or connection error."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        self._throttle()
        try:
            resp = self._session.post(
                self.url, json=self._body(text), timeout=self.timeout, headers={"X-Goog-Api-Key": self._key}
            )
        except requests.Timeout as exc:
            return None, f"timeout after {self.timeout}s ({type(exc).__name__})"
        except requests.ConnectionError as exc:
            return None, f"connection error: {self._redact(str(exc))}"
        except requests.RequestException as exc:
            raise PipelineError(
                f"Perspective request to {self.url} failed: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None
        return resp, None

    def _error_message(self, resp) -> str:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:500]
        return self._redact(str(message))

    def _retry_delay(self, resp, attempt: int) -> float:
        """backoff * 2**attempt, or longer if the server's Retry-After (seconds) asks for it."""
        delay = self.backoff * 2**attempt
        try:
            return max(delay, float(resp.headers.get("Retry-After") or 0)) if resp is not None else delay
        except ValueError:  # an HTTP date: keep our own backoff
            return delay

    def _parse(self, resp) -> float:
        try:
            value = float(resp.json()["attributeScores"][self.attribute]["summaryScore"]["value"])
        except (ValueError, KeyError, TypeError):
            raise PipelineError(
                f"unexpected Perspective response (no attributeScores.{self.attribute}"
                f".summaryScore.value): {self._redact(resp.text[:300])}"
            ) from None
        if not math.isfinite(value):
            raise PipelineError(f"Perspective returned a non-finite {self.attribute} score {value}")
        return value

    def score_one(self, text: str) -> float:
        """P(attribute) for one text, retrying 429/503/timeouts with exponential backoff."""
        reason = ""
        for attempt in range(self.max_retries + 1):
            resp, reason = self._post(text)
            if resp is not None:
                if resp.status_code == 200:
                    return self._parse(resp)
                if resp.status_code not in RETRY_STATUS:
                    raise PipelineError(
                        f"Perspective API returned HTTP {resp.status_code}: {self._error_message(resp)}"
                    )
                reason = f"HTTP {resp.status_code}: {self._error_message(resp)}"
            if attempt < self.max_retries:
                delay = self._retry_delay(resp, attempt)
                log.warning(
                    "Perspective %s; retry %d/%d in %.2fs", reason, attempt + 1, self.max_retries, delay
                )
                time.sleep(delay)
        raise PipelineError(f"Perspective API request failed after {self.max_retries + 1} attempts: {reason}")

    def score_batch(self, texts: list[str]) -> np.ndarray:
        return np.array([self.score_one(t) for t in texts], dtype="float64")
