"""Sampling: transformers' temperature -> top-k -> top-p warpers, with top-p computed on the most likely
tokens only (NucleusWarper: the same tokens as TopPLogitsWarper, without sorting the whole vocabulary)."""

from __future__ import annotations

import math

import torch

from w2s_align.settings.specs import Decoding


def sampling_warpers(decoding: Decoding):
    """transformers' temperature -> top-k -> top-p warpers, top-p done on the most likely tokens only
    (see NucleusWarper). Passed to generate() as its logits_processor, with its own warpers turned off."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

    warpers = LogitsProcessorList()
    if decoding.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(decoding.temperature))
    if decoding.top_k:
        warpers.append(TopKLogitsWarper(decoding.top_k))
    if decoding.top_p < 1.0:
        warpers.append(NucleusWarper(decoding.top_p))
    return warpers


class NucleusWarper:
    """Nucleus (top-p) filtering that sorts only the `k` most likely tokens when they hold at least
    `top_p` of the probability (nearly every row of a trained LM), else the row's whole vocabulary
    (transformers' TopPLogitsWarper). Keeps the same tokens: the most likely ones until their mass
    reaches top_p, at least one. Sorting SmolLM2's 49k-token vocabulary for 32 rows took 60 ms a step,
    top-256 takes 4 ms."""

    def __init__(self, top_p: float, k: int = 256):
        from transformers import TopPLogitsWarper

        self.top_p, self.k, self.full_sort = top_p, k, TopPLogitsWarper(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        top, idx = scores.topk(min(self.k, scores.shape[-1]), dim=-1)  # descending
        probs = (top - scores.logsumexp(dim=-1, keepdim=True)).exp()
        more_likely_mass = probs.cumsum(dim=-1) - probs
        keep = more_likely_mass < self.top_p
        keep[:, 0] = True
        out = torch.full_like(scores, -math.inf).scatter_(1, idx, top.masked_fill(~keep, -math.inf))
        short = probs.sum(dim=-1) < self.top_p  # the nucleus reaches past the top k
        if short.any():
            out[short] = self.full_sort(input_ids[short], scores[short])
        return out
