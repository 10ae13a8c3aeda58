"""Benchmark 3: generation throughput of `w2s_align.infer.generate.generate`, batched vs one prompt at
a time (SmolLM2-135M; the weak scratch GPT-2 LM too when a pipeline run left its checkpoint), and the
nucleus sampling of `w2s_align.infer.sampling` against transformers' full-vocabulary sort."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from _harness import REPO, Row, Section, Timing, model_spec, quiet, stopwatch

WEAK_LM = REPO / "results/toxicity/weak/gpt2-scratch/seed0"  # the pipeline's train_weak_lm output


def time_generation(model, tokenizer, prompts: list[str], decoding, seed: int) -> tuple[Timing, int, int]:
    """(Timing, continuations, new tokens) of one generate() call on CPU."""
    import torch

    from w2s_align.infer.generate import generate

    with stopwatch() as timing, quiet():
        df = generate(model, tokenizer, prompts, decoding, torch.device("cpu"), seed)
    return timing, len(df), int(df["n_new_tokens"].sum())


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

    sec = Section("3. Generation throughput: batched vs one prompt at a time")
    torch.set_num_threads(args.threads)
    tox = cfg["tasks"]["toxicity"]
    prompts = eval_prompts(PromptSpec(source=str(REPO / tox["prompts"]["source"]), n=args.prompts))[
        "prompt"
    ].tolist()
    decoding = {k: v for k, v in tox["decoding"].items() if k != "batch_size"}
    decoding["max_new_tokens"] = args.new_tokens
    sec.details.append(
        f"{len(prompts)} RTP challenging prompts (`eval_prompts`, test_seed 0) × 1 sample × "
        f"{args.new_tokens} new tokens, top_p {decoding['top_p']}, "
        f"temperature {decoding['temperature']}, `w2s_align.infer.generate.generate` on CPU "
        f"({torch.get_num_threads()} threads); batch size {args.gen_batch} vs 1; one warm-up call "
        f"first; calls shorter than 2 s in all are repeated (best of up to 10). Same sampling seed "
        f"both ways."
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
            "| model | batch | seconds | CPU s | continuations/s | new tokens | new tokens/s |",
            "|---|---|---|---|---|---|---|",
        ]
        cpu_ratios, nucleus = [], []
        for label, model, tokenizer in models:
            warm = Decoding.from_dict({**decoding, "max_new_tokens": 2, "batch_size": 2})
            time_generation(model, tokenizer, prompts[:2], warm, 0)
            result = {}
            for batch_size in (args.gen_batch, 1):
                spec = Decoding.from_dict({**decoding, "batch_size": batch_size})
                runs = [time_generation(model, tokenizer, prompts, spec, 0)]
                while sum(r[0].wall for r in runs) < 2.0 and len(runs) < 10:  # short: repeat, keep the best
                    runs.append(time_generation(model, tokenizer, prompts, spec, 0))
                t, n, tokens = min(runs, key=lambda r: r[0].wall)
                result[batch_size] = (t, n)
                sec.details.append(
                    f"| {label} | {batch_size} | {t.wall:.2f} | {t.cpu:.2f} | {n / t.wall:.2f} | "
                    f"{tokens} | {tokens / t.wall:.1f} |"
                )
            (tb, nb), (t1, n1) = result[args.gen_batch], result[1]
            cpu_ratios.append(f"{label}: {(nb / tb.cpu) / (n1 / t1.cpu):.2f}")
            sec.rows.append(
                Row(
                    "3",
                    f"continuations/s, {label}, batch {args.gen_batch} vs 1",
                    f"batched {nb / tb.wall:.2f}/s ({tb.wall:.1f} s)",
                    f"one at a time {n1 / t1.wall:.2f}/s ({t1.wall:.1f} s)",
                    (nb / tb.wall) / (n1 / t1.wall),
                    ">= 8",
                )
            )
            nucleus.append(f"- {label}: {nucleus_check(model, tokenizer, prompts, decoding['top_p'])}")
    sec.details += [
        "",
        f"Ratio of continuations per CPU-second (batched / one at a time): {'; '.join(cpu_ratios)}. "
        "A prompt generated alone stops at its EOS; a batch runs until every row has stopped (or "
        "max_new_tokens), so a model that often ends early (few new tokens) gains little from batching.",
        "",
        "Nucleus sampling (`w2s_align.infer.sampling`), one step on the prompts' next-token logits:",
        *nucleus,
    ]
    return sec
