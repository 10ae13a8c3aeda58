"""Benchmark 7: DPO throughput of the preference track (`w2s_align.train.dpo.fit_dpo`, the one training loop
with the DPO loss) in pairs/s, against a plain LoRA fine-tuning epoch of the same model over the same tokens
(each pair's chosen and rejected texts as two rows, batches of twice as many rows)."""

from __future__ import annotations

import contextlib
import json

import pandas as pd
from b3_generation import smollm2_folder

from _harness import REPO, Row, Section, model_spec, quiet, stopwatch, train_params

MODEL = "smollm2-135m"


def pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """n prompt / chosen / rejected triples of RTP challenging prompts, the texts other prompts' first 12
    words (about the 20 new tokens of a candidate)."""
    with open(REPO / "resources/data/rtp_challenging_prompts.jsonl") as fh:
        texts = [json.loads(line)["text"] for line in fh][: 3 * n]
    cut = [" " + " ".join(t.split()[:12]) for t in texts]
    return pd.DataFrame({"prompt": texts[:n], "chosen": cut[n : 2 * n], "rejected": cut[2 * n : 3 * n]})


def run(args, cfg: dict) -> Section:
    import torch

    from w2s_align.device import setup_torch
    from w2s_align.models.causal_lm import build_lm
    from w2s_align.models.sequences import collate
    from w2s_align.train.dpo import encode_preferences, fit_dpo, reference_logps
    from w2s_align.train.loop import fit

    sec = Section("7. DPO throughput vs LoRA fine-tuning on the same tokens")
    spec, max_length = model_spec(cfg, MODEL), cfg["tasks"]["toxicity"]["max_length"]
    hp = train_params(cfg, MODEL, epochs=1, warmup_ratio=0.0)
    n = args.dpo_steps * hp.batch_size
    df = pairs(n + 8)
    train, val = df.iloc[:n].reset_index(drop=True), df.iloc[n:].reset_index(drop=True)
    with quiet(), contextlib.ExitStack() as stack:
        folder = smollm2_folder(cfg, stack, sec.details)
        device = setup_torch(args.threads, 0)
        model, tokenizer, dtypes = build_lm(spec, [], max_length, str(folder))
        init = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
        feats, val_feats = (
            encode_preferences(tokenizer, train, max_length),
            encode_preferences(tokenizer, val, max_length),
        )
        rows = [f[side] for f in feats for side in ("chosen", "rejected")]
        tokens = sum(len(r["input_ids"]) for r in rows)
        with stopwatch() as ref_time:
            ref = {
                name: torch.tensor(
                    reference_logps(model, tokenizer, fs, hp.eval_batch_size, device, dtypes.compute),
                    dtype=torch.float32,
                )
                for name, fs in (("train", feats), ("val", val_feats))
            }
        dpo, sft = [], []
        for r in range(args.dpo_repeats):
            for which in ("dpo", "sft") if r % 2 == 0 else ("sft", "dpo"):
                model.load_state_dict(init, strict=False)
                if which == "dpo":
                    with stopwatch() as timing:
                        fit_dpo(
                            model,
                            tokenizer,
                            feats,
                            val_feats,
                            ref,
                            torch.ones(n),
                            0.1,
                            hp,
                            device,
                            0,
                            dtypes.compute,
                        )
                    dpo.append(timing)
                else:
                    sft_hp = train_params(
                        cfg, MODEL, epochs=1, warmup_ratio=0.0, batch_size=2 * hp.batch_size
                    )
                    with stopwatch() as timing:
                        fit(
                            model,
                            rows,
                            lambda fs: collate(fs, tokenizer.pad_token_id),
                            lambda out, idx: out.loss,
                            lambda: 0.0,
                            sft_hp,
                            device,
                            0,
                            compute=dtypes.compute,
                        )
                    sft.append(timing)
    d, s = min(t.wall for t in dpo), min(t.wall for t in sft)
    sec.rows.append(
        Row(
            "7",
            f"DPO pairs/s, {MODEL} LoRA ({args.dpo_steps} steps × {hp.batch_size} pairs)",
            f"DPO {n / d:.2f} pairs/s ({d:.1f} s)",
            f"LoRA fine-tuning {n / s:.2f} pairs/s = {2 * n / s:.2f} rows/s ({s:.1f} s)",
            s / d,
            ">= 0.8",
        )
    )
    sec.details += [
        f"Model: {MODEL} as in config.yaml (LoRA {spec.lora['r']}, {spec.dtype}), {n} pairs of RTP "
        f"prompts with 12-word texts ({tokens} tokens in {2 * n} sequences), {args.dpo_steps} steps; "
        f"DPO: {hp.batch_size} pairs per step (chosen + rejected = {2 * hp.batch_size} sequences), "
        f"LoRA fine-tuning: the same {2 * n} sequences, {2 * hp.batch_size} per step, mean token loss. "
        f"Each `fit` call is timed (DPO's includes its validation on 8 pairs, one forward pass of 16 "
        f"sequences), alternating, {args.dpo_repeats} runs of each, best of each: "
        f"DPO {', '.join(f'{t.wall:.1f}' for t in dpo)} s, fine-tuning "
        f"{', '.join(f'{t.wall:.1f}' for t in sft)} s. The reference pass (base with the adapter "
        f"off, train + val pairs, once per DPO job) took {ref_time.wall:.1f} s more.",
        "",
        "Ratio = fine-tuning time ÷ DPO time over the same tokens: DPO's extra work is the "
        "per-sequence log-prob gather over the vocabulary and the pair loss.",
    ]
    return sec
