"""Benchmark 3: generation throughput of `w2s_align.infer.generate.generate` by sequences per call
(SmolLM2-135M; the weak scratch GPT-2 LM too when a pipeline run left its checkpoint), the same
continuations at every size, and the nucleus sampling of `w2s_align.infer.sampling` against
transformers' full-vocabulary sort."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from _harness import REPO, Row, Section, model_spec, quiet, stopwatch

WEAK_LM = REPO / "results/toxicity/weak/gpt2-scratch/seed0"  # the pipeline's train_weak_lm output


def time_generation(model, tokenizer, prompts: list[str], decoding, seed: int):
    """(Timing, continuations frame, new tokens) of one generate() call on CPU."""
    import torch

    from w2s_align.infer.generate import generate

    with stopwatch() as timing, quiet():
        df = generate(model, tokenizer, prompts, decoding, torch.device("cpu"), seed)
    return timing, df, int(df["n_new_tokens"].sum())


def smollm2_folder(cfg: dict, stack: contextlib.ExitStack, details: list[str]) -> Path:
    """The pipeline's converted SmolLM2 folder (convert_gguf), else a temporary one converted here."""
    from w2s_align.models.gguf import convert_gguf
    from w2s_align.settings.paths import CONVERTED, fill, gguf_name

    folder = REPO / fill(CONVERTED, gguf=gguf_name(model_spec(cfg, "smollm2-135m")))
    if not (folder / "model.safetensors").exists():
        folder = (
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="w2s-bench-gguf-"))) / "smollm2-135m"
        )
        start = time.perf_counter()
        with quiet():
            convert_gguf(model_spec(cfg, "smollm2-135m"), str(folder))
        details.append(
            f"SmolLM2: no converted folder under results/models/, converted from its GGUF file into a "
            f"temporary folder ({time.perf_counter() - start:.1f} s, not timed below)."
        )
    return folder


def smollm2(cfg: dict, stack: contextlib.ExitStack, details: list[str]):
    """The base SmolLM2 from the pipeline's converted folder, else converted here into a temporary one."""
    from w2s_align.models.causal_lm import pretrained_lm

    folder = smollm2_folder(cfg, stack, details)
    with quiet():
        return pretrained_lm(model_spec(cfg, "smollm2-135m"), local_dir=str(folder))


def nucleus_check(model, tokenizer, prompts: list[str], top_p: float) -> str:
    """NucleusWarper vs transformers' TopPLogitsWarper on the next-token logits of `prompts`: the same
    kept tokens? and milliseconds per call (best of 5)."""
    import torch
    from transformers import TopPLogitsWarper

    from w2s_align.infer.sampling import NucleusWarper

    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = padding_side
    with torch.inference_mode():
        scores = model(**batch).logits[:, -1].float()
    ids = batch["input_ids"]
    result = {}
    for label, warper in (
        ("NucleusWarper", NucleusWarper(top_p)),
        ("TopPLogitsWarper", TopPLogitsWarper(top_p)),
    ):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            out = warper(ids, scores.clone())
            times.append(time.perf_counter() - start)
        result[label] = (torch.isfinite(out), 1000 * min(times))
    same = bool(torch.equal(result["NucleusWarper"][0], result["TopPLogitsWarper"][0]))
    k = NucleusWarper(top_p).k
    full_sort = int((scores.softmax(-1).topk(min(k, scores.shape[1]), dim=-1).values.sum(-1) < top_p).sum())
    return (
        f"top-p {top_p} on {len(prompts)} rows × {scores.shape[1]:,} tokens: `NucleusWarper` "
        f"{result['NucleusWarper'][1]:.1f} ms, `TopPLogitsWarper` {result['TopPLogitsWarper'][1]:.1f} ms "
        f"per call; "
        f"rows whose top {k} hold less than top_p (full sort): {full_sort}; "
        f"same kept tokens: {'yes' if same else '**no**'}"
    )


def run(args, cfg: dict) -> Section:
    import torch

    from w2s_align.data.corpus import eval_prompts
    from w2s_align.models.causal_lm import load_lm
    from w2s_align.settings.specs import Decoding, PromptSpec

    sec = Section("3. Generation throughput by sequences per call")
    torch.set_num_threads(args.threads)
    tox = cfg["tasks"]["toxicity"]
    prompts = eval_prompts(PromptSpec(source=str(REPO / tox["prompts"]["source"]), n=args.prompts))[
        "prompt"
    ].tolist()
    decoding = {k: v for k, v in tox["decoding"].items() if k != "batch_size"}
    decoding |= {"max_new_tokens": args.new_tokens, "samples": args.gen_samples}
    sizes = sorted({*args.gen_sizes, args.gen_batch})
    sec.details.append(
        f"{len(prompts)} RTP challenging prompts (`eval_prompts`, test_seed 0) × {args.gen_samples} "
        f"samples × {args.new_tokens} new tokens ({len(prompts) * args.gen_samples} sequences), top_p "
        f"{decoding['top_p']}, temperature {decoding['temperature']}, `w2s_align.infer.generate.generate` "
        f"on CPU ({torch.get_num_threads()} threads), sequences per call (`decoding.batch_size`) "
        f"{', '.join(map(str, sizes))}; one warm-up call first; calls shorter than 2 s in all are repeated "
        f"(best of up to 10). Same sampling seed at every size; 'same' says whether the continuations equal "
        f"those of {args.gen_batch} per call (the previous default: 32 sequences per call)."
    )
    with contextlib.ExitStack() as stack:
        models = [("smollm2-135m (base)", *smollm2(cfg, stack, sec.details))]
        if (WEAK_LM / "lm.safetensors").exists():
            with quiet():
                model, tokenizer, _ = load_lm(str(WEAK_LM / "lm.safetensors"), str(WEAK_LM / "lm.json"))
            models.append(("gpt2-scratch (weak LM)", model, tokenizer))
        else:
            sec.details.append(
                f"The weak LM is skipped: no checkpoint in {WEAK_LM.relative_to(REPO)}/ "
                f"(run the pipeline once)."
            )
        sec.details += [
            "",
            "| model | sequences per call | seconds | CPU s | continuations/s | new tokens | new tokens/s "
            "| same |",
            "|---|---|---|---|---|---|---|---|",
        ]
        nucleus = []
        for label, model, tokenizer in models:
            warm = Decoding.from_dict({**decoding, "max_new_tokens": 2, "samples": 1, "batch_size": 2})
            time_generation(model, tokenizer, prompts[:2], warm, 0)
            timed = {}
            for size in sizes:
                spec = Decoding.from_dict({**decoding, "batch_size": size})
                runs = [time_generation(model, tokenizer, prompts, spec, 0)]
                while sum(r[0].wall for r in runs) < 2.0 and len(runs) < 10:  # short: repeat, keep the best
                    runs.append(time_generation(model, tokenizer, prompts, spec, 0))
                timed[size] = min(runs, key=lambda r: r[0].wall)
            rate = {size: t[2] / t[0].wall for size, t in timed.items()}
            best = max(sizes, key=rate.get)
            for size, (t, frame, tokens) in timed.items():
                same = frame["continuation"].equals(timed[args.gen_batch][1]["continuation"])
                sec.details.append(
                    f"| {label} | {size} | {t.wall:.2f} | {t.cpu:.2f} | {len(frame) / t.wall:.2f} | "
                    f"{tokens} | {rate[size]:.1f} | {'yes' if same else '**no**'} |"
                )
            sec.rows.append(
                Row(
                    "3",
                    f"new tokens/s, {label}, {best} vs {args.gen_batch} sequences per call",
                    f"{best} per call: {rate[best]:.1f}/s",
                    f"{args.gen_batch} per call: {rate[args.gen_batch]:.1f}/s",
                    rate[best] / rate[args.gen_batch],
                    ">= 2",
                )
            )
            nucleus.append(f"- {label}: {nucleus_check(model, tokenizer, prompts, decoding['top_p'])}")
    sec.details += [
        "",
        "A batch runs until every row has stopped (EOS or max_new_tokens): sequences are sorted by prompt "
        "length, so a call holds prompts of similar length.",
        "",
        "Nucleus sampling (`w2s_align.infer.sampling`), one step on the prompts' next-token logits:",
        *nucleus,
    ]
    return sec
