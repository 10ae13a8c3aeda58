"""Prompt + continuation as token ids, built so that fine-tuning sequences equal what generation sees and
produces (BOS where the tokenizer adds one, no extra token at the join), and right-padded batches of them."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of prompts as generation feeds them: with the tokenizer's own specials (Llama's BOS), without
    a trailing EOS."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(list(prompts))["input_ids"]
    return [x[:-1] if x and x[-1] == eos and len(x) > 1 else x for x in ids]


def continuation_ids(
    tokenizer, prompts: list[str], continuations: list[str], p_ids: list[list[int]]
) -> list[list[int]]:
    """Token ids of each continuation as generation would produce them after its prompt's ids.

    Prompt and continuation are tokenized together and the prompt's ids cut off. Where the joint tokens do not
    start with the prompt's (a merge across the join), the continuation is tokenized alone; a SentencePiece
    tokenizer then prepends its own prefix space, so a leading space is dropped when that decodes right."""
    joint = prompt_ids(tokenizer, [p + c for p, c in zip(prompts, continuations)])
    out, merged = [], 0
    for p, j, cont in zip(p_ids, joint, continuations):
        if j[: len(p)] == p:
            out.append(j[len(p) :])
            continue
        merged += 1
        target = tokenizer.decode(j, skip_special_tokens=True)
        candidates = [
            tokenizer(text, add_special_tokens=False)["input_ids"]
            for text in dict.fromkeys([cont, cont[1:] if cont.startswith(" ") else cont])
        ]
        out.append(
            next(
                (c for c in candidates if tokenizer.decode(p + c, skip_special_tokens=True) == target),
                candidates[0],
            )
        )
    if merged:
        log.info(
            "%d of %d prompt/continuation pairs merge tokens across the join; tokenized apart",
            merged,
            len(prompts),
        )
    return out


def encode_pairs(
    tokenizer, prompts: list[str], continuations: list[str], max_length: int, add_eos: bool = True
) -> list[dict]:
    """Token ids of prompt + continuation (+ EOS), equal to what generation sees and produces; labels are -100
    on the prompt, so the loss and the perplexity count continuation tokens only. Over-long rows lose prompt
    tokens from the left."""
    p_ids = prompt_ids(tokenizer, prompts)
    c_ids = continuation_ids(tokenizer, prompts, continuations, p_ids)
    eos = [tokenizer.eos_token_id] if add_eos else []
    feats = []
    for p, c in zip(p_ids, c_ids):
        c = (c + eos)[: max_length - 1]
        p = p[-(max_length - len(c)) :] if len(p) + len(c) > max_length else p
        feats.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
    return feats


def collate(feats: list[dict], pad_id: int) -> dict[str, Any]:
    """Right padding: pad ids in the inputs, -100 in the labels, zeros in the attention mask."""
    import torch

    width = max(len(f["input_ids"]) for f in feats)
    ids = torch.full((len(feats), width), pad_id, dtype=torch.long)
    labels = torch.full((len(feats), width), -100, dtype=torch.long)
    mask = torch.zeros((len(feats), width), dtype=torch.long)
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
