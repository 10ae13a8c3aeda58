"""The one training loop, for classifiers and causal LMs alike: length-grouped batches, AdamW with warmup
and decay, and the best validation epoch kept (only trainable weights are snapshotted)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from w2s_align.device import autocast
from w2s_align.errors import PipelineError
from w2s_align.settings.specs import TrainParams

log = logging.getLogger(__name__)


def length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: shuffle, sort within windows of 50 batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def optimizer_steps(n_rows: int, hp: TrainParams) -> int:
    """Optimizer updates over training: micro-batches of batch_size, accumulation_steps of them per update."""
    return hp.epochs * math.ceil(math.ceil(n_rows / hp.batch_size) / hp.accumulation_steps())


def total_steps(n_rows: int, hp: TrainParams) -> int:
    """Forward passes (micro-batches) over training: what a loss with a schedule counts."""
    return hp.epochs * math.ceil(n_rows / hp.batch_size)


class Optimisation:
    """AdamW with linear warmup then decay over `steps` updates, gradient clipping at norm 1, and gradient
    accumulation (`backward` per micro-batch, `update` once per step); fp16 compute gets a gradient scaler.

    AdamW runs fused (one kernel over all parameters): torch's CPU default updates one tensor at a
    time, which profiled at 14% of a MiniLM training job (docs/measurements.md, benchmark 6)."""

    def __init__(self, model, hp: TrainParams, steps: int, compute: torch.dtype = torch.float32):
        from transformers import get_linear_schedule_with_warmup

        self.params = [p for p in model.parameters() if p.requires_grad]
        device_type = self.params[0].device.type
        self.optimizer = torch.optim.AdamW(
            self.params, lr=hp.lr, weight_decay=hp.weight_decay, fused=device_type in ("cpu", "cuda")
        )
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(hp.warmup_ratio * steps), steps)
        self.scaler = torch.amp.GradScaler(device_type, enabled=compute == torch.float16)

    def backward(self, loss: torch.Tensor, weight: float, epoch: int) -> float:
        """Gradients of `weight` x `loss` (a micro-batch's share of the step); a non-finite loss stops
        training."""
        if not torch.isfinite(loss):
            raise PipelineError(f"training diverged: loss {loss.item()} at epoch {epoch}; lower the lr")
        self.scaler.scale(loss * weight).backward()
        return loss.item()

    def update(self) -> None:
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights that train (LoRA adapters and heads: megabytes, not the model)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def fit(
    model,
    feats: list[dict],
    collate: Callable[[list[dict]], dict],
    loss_fn: Callable,
    validate: Callable[[], float],
    hp: TrainParams,
    device: torch.device,
    seed: int,
    metric: str = "val_score",
    higher_is_better: bool = True,
    compute: torch.dtype = torch.float32,
):
    """Train `model` for hp.epochs on `feats` and keep its best epoch by `validate()`.

    `collate` pads a list of features into a batch; `loss_fn(output, idx)` is the mean loss of the model's
    output on the rows `idx`. Micro-batches of a step are weighted by their rows, so k accumulated batches of
    b rows give the update of one batch of k*b. Returns {"selected_epoch", "history"}; the model keeps its
    best epoch's weights."""
    model.to(device)
    accumulate = hp.accumulation_steps()
    optimisation = Optimisation(model, hp, optimizer_steps(len(feats), hp), compute)
    rng = np.random.default_rng(seed)
    lengths = [len(f["input_ids"]) for f in feats]
    sign = 1.0 if higher_is_better else -1.0
    best_value, best_epoch, best_state, history = -math.inf, -1, None, []
    for epoch in range(1, hp.epochs + 1):
        model.train()
        batches = length_grouped_batches(lengths, hp.batch_size, rng)
        total = 0.0
        bar = tqdm(total=len(batches), desc=f"epoch {epoch}/{hp.epochs}", leave=False)
        for first in range(0, len(batches), accumulate):
            step = batches[first : first + accumulate]
            rows = sum(len(idx) for idx in step)
            for idx in step:
                batch = {k: v.to(device) for k, v in collate([feats[i] for i in idx]).items()}
                with autocast(device, compute):
                    output = model(**batch)
                value = optimisation.backward(loss_fn(output, idx), len(idx) / rows, epoch)
                total += value
                bar.update()
                bar.set_postfix(loss=f"{value:.4f}")
            optimisation.update()
        bar.close()
        score = validate()
        history.append({"epoch": epoch, "train_loss": total / len(batches), metric: score})
        log.info(
            "epoch %d/%d: train loss %.4f, %s %.4f", epoch, hp.epochs, total / len(batches), metric, score
        )
        if sign * score > best_value:
            best_value, best_epoch = sign * score, epoch
            best_state = trainable_snapshot(model) if epoch < hp.epochs else None
    if best_epoch not in (-1, hp.epochs):
        model.load_state_dict(best_state, strict=False)
    log.info("selected epoch %d (%s %.4f)", best_epoch, metric, sign * best_value)
    return {"selected_epoch": best_epoch, "history": history}
