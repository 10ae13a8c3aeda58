"""Sampling: transformers' temperature -> top-k -> top-p warpers, with top-p computed on the most likely
tokens only (NucleusWarper: the same tokens as TopPLogitsWarper, without sorting the whole vocabulary), and
the draw itself from random numbers that belong to each continuation (KeyedSampler).

A continuation's random numbers are a function of (seed, prompt, sample, step) only: which other
sequences share its batch, how many sequences a call holds and how many jobs run at once do not change
them (in bf16 the logits themselves move with the batch's shape, and with them most draws). The draw
is inverse-CDF sampling: one uniform number per sequence and step picks the token whose
interval of the cumulative (warped) distribution holds it, an exact draw from that distribution."""

from __future__ import annotations

import math

import numpy as np
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
    `top_p` of the probability (nearly every row of a trained LM), else the `wide` most likely (the flatter
    rows of a fine-tuned LM at temperature 1), else the row's whole vocabulary (transformers'
    TopPLogitsWarper). Keeps the same tokens, the most likely ones until their mass reaches top_p (at least
    one), except where float rounding decides the least likely one (the two add the probabilities in opposite
    orders; at top_p 0.99 on flat random rows, 2 of 64 rows differed by that one token). On this 2-core CPU,
    for 128 rows of SmolLM2's 49k-token vocabulary: the full sort took 250 ms a step, top-4096 35 ms,
    top-256 10 ms."""

    def __init__(self, top_p: float, k: int = 256, wide: int = 4096):
        from transformers import TopPLogitsWarper

        self.top_p, self.ks, self.full_sort = top_p, (k, wide), TopPLogitsWarper(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = torch.full_like(scores, -math.inf)
        rows = torch.arange(len(scores), device=scores.device)  # rows whose nucleus is still unknown
        for k in self.ks:
            if k >= scores.shape[-1] or not len(rows):
                break
            part = scores[rows]
            top, idx = part.topk(k, dim=-1)  # descending
            probs = (top - part.logsumexp(dim=-1, keepdim=True)).exp()
            keep = probs.cumsum(dim=-1) - probs < self.top_p  # the mass of the more likely tokens
            keep[:, 0] = True
            done = probs.sum(dim=-1) >= self.top_p  # else the nucleus reaches past the top k
            kept = top.masked_fill(~keep, -math.inf)
            if len(rows) == len(scores) and done.all():  # the usual case: every row at once, no copies
                return out.scatter_(1, idx, kept)
            out[rows[done]] = out[rows[done]].scatter_(1, idx[done], kept[done])
            rows = rows[~done]
        if len(rows):
            out[rows] = self.full_sort(input_ids[rows], scores[rows])
        return out


_U64 = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014) on uint64 arrays: a well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def sequence_keys(seed: int, rows, samples) -> np.ndarray:
    """One 64-bit key per continuation: (seed, prompt row, sample number)."""
    rows = np.asarray(rows, dtype=np.uint64)
    samples = np.asarray(samples, dtype=np.uint64)
    return splitmix64(splitmix64(splitmix64(np.full_like(rows, seed)) ^ rows) ^ samples)


def uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """A uniform number in (0, 1) per key for decoding step `step` (53 bits, float64)."""
    z = splitmix64(keys ^ splitmix64(np.full_like(keys, step)))
    return ((z >> _U64(11)).astype(np.float64) + 0.5) / float(2**53)


class KeyedSampler:
    """The last logits processor of sampling: draws each row's token from its warped distribution with the
    row's own uniform number (`uniforms(keys, step)`) and leaves only that token finite, so that
    generate()'s greedy step takes it. `prompt_length` is the batch's padded prompt length (step 0 is the
    first new token)."""

    def __init__(self, keys: np.ndarray, prompt_length: int):
        self.keys, self.prompt_length = keys, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        u = torch.from_numpy(uniforms(self.keys, step)).to(scores.device)
        probs = torch.softmax(scores.float(), dim=-1)  # filtered tokens (-inf) get 0: an empty interval
        cdf = probs.cumsum(dim=-1, dtype=torch.float64)  # float64: tokens of 1e-9 keep their share
        token = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
        token = token.clamp_(max=probs.shape[1] - 1)
        empty = probs.gather(1, token.unsqueeze(1)).squeeze(1) == 0  # rounding at the top end of the cdf
        if empty.any():
            token[empty] = probs[empty].argmax(dim=1)
        return torch.full_like(scores, -math.inf).scatter_(1, token.unsqueeze(1), 0.0)
