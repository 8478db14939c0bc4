"""The training loop shared by the translator (lesson 10) and the tiny GPT (lesson 11).

One loop, written out in full so a learner can read every step:

1. ask ``next_batch(step)`` for a batch;
2. compute the loss with ``loss_fn(model, batch)``;
3. back-propagate, clip the gradient norm, set the learning rate for this step;
4. take an AdamW step;
5. now and then, evaluate (model in eval mode, no gradients) and take a snapshot
   (for example the attention maps, to watch them form).

Everything the loop sees is recorded in a ``History`` so the lesson can plot it.

Built in lesson 10 (train a translator); reused in lesson 11 (train a tiny GPT).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import require_choice, require_rank, require_size, shape_text

SCHEDULES = ("cosine", "inverse_sqrt")


@dataclass
class History:
    """What happened during training, for plotting.

    ``steps``/``train_loss``/``lr`` are logged every ``log_every`` steps (and at the
    last step); ``eval_steps``/``eval_metrics`` every ``eval_every`` steps (and at the
    end); ``snapshots`` holds ``(step, snapshot(model))`` pairs; ``seconds`` is the
    wall-clock time of the whole call, the final evaluation included, and
    ``train_seconds`` the time until the last step was done (the evaluations and
    snapshots during training included: that is the time ``time_limit_s`` bounds).
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_metrics: list[dict[str, float]] = field(default_factory=list)
    snapshots: list[tuple[int, Any]] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0

    def metric(self, name: str) -> list[float]:
        """The values of one evaluation metric, aligned with ``eval_steps``."""
        return [metrics[name] for metrics in self.eval_metrics]

    def to_dict(self) -> dict[str, Any]:
        """Everything but the snapshots, as plain lists (JSON-ready)."""
        return {
            "steps": list(self.steps),
            "train_loss": list(self.train_loss),
            "lr": list(self.lr),
            "eval_steps": list(self.eval_steps),
            "eval_metrics": [dict(m) for m in self.eval_metrics],
            "seconds": self.seconds,
            "train_seconds": self.train_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a History (without snapshots) from ``to_dict`` output."""
        return cls(
            steps=list(data["steps"]),
            train_loss=list(data["train_loss"]),
            lr=list(data["lr"]),
            eval_steps=list(data["eval_steps"]),
            eval_metrics=[dict(m) for m in data["eval_metrics"]],
            seconds=float(data["seconds"]),
            train_seconds=float(data.get("train_seconds", 0.0)),
        )


def lr_at(
    step: int,
    *,
    peak_lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
) -> float:
    """The learning rate at ``step`` (counted from 0): a linear warm-up, then a decay.

    * Warm-up (学习率预热): the rate climbs in equal steps from
      ``peak_lr / (warmup_steps + 1)`` at step 0 to exactly ``peak_lr`` at step
      ``warmup_steps``. Early gradients are large and noisy; small steps first keep
      AdamW's moment estimates from being thrown off.
    * ``"cosine"``: from ``peak_lr`` at ``warmup_steps`` down to ``min_lr_ratio * peak_lr``
      at ``total_steps``, along half a cosine (and flat after that).
    * ``"inverse_sqrt"``: the schedule of "Attention Is All You Need",
      ``peak_lr * sqrt(warmup_steps / step)`` after the warm-up (no floor).

    Built in lesson 10 (train a translator).
    """
    where = "lr_at"
    require_choice(where, "schedule", schedule, SCHEDULES)
    if step < 0:
        raise ValueError(f"{where}: step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"{where}: warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps <= 0:
        raise ValueError(f"{where}: total_steps must be > 0, got {total_steps}")
    if peak_lr <= 0:
        raise ValueError(f"{where}: peak_lr must be > 0, got {peak_lr}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"{where}: min_lr_ratio must be in [0, 1], got {min_lr_ratio}")

    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    if schedule == "inverse_sqrt":
        return peak_lr * math.sqrt(max(warmup_steps, 1) / max(step, 1))
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    min_lr = min_lr_ratio * peak_lr
    return min_lr + (peak_lr - min_lr) * cosine


def label_smoothed_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    smoothing: float = 0.1,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Cross-entropy against a smoothed target (标签平滑, label smoothing).

    The target distribution puts ``1 - smoothing`` on the right token and spreads
    ``smoothing`` evenly over all ``V`` tokens, so the model is never pushed to infinite
    confidence. Positions whose target is ``ignore_index`` (padding) do not count; the
    loss is the mean over the others. Equal to
    ``F.cross_entropy(logits, targets, ignore_index=..., label_smoothing=smoothing)``.

    Shapes:
        logits (N, V), targets (N,) -> scalar

    Built in lesson 10 (train a translator).
    """
    where = "label_smoothed_cross_entropy"
    require_rank(where, "logits", logits, "(N, V)", 2, hint="flatten with logits.reshape(-1, V)")
    require_rank(where, "targets", targets, "(N,)", 1, hint="flatten with targets.reshape(-1)")
    require_size(where, "targets", targets, 0, logits.shape[0], f"(N,) with N={logits.shape[0]} like logits")
    if targets.is_floating_point():
        raise ValueError(f"{where}: targets must be integer class ids, got dtype {targets.dtype} {shape_text(targets)}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"{where}: smoothing must be in [0, 1), got {smoothing}")

    keep = targets != ignore_index  # (N,)
    log_probs = F.log_softmax(logits[keep], dim=-1)  # (N_kept, V)
    safe_targets = targets[keep]  # (N_kept,)
    nll = -log_probs.gather(1, safe_targets.unsqueeze(1)).squeeze(1)  # (N_kept,)
    uniform = -log_probs.mean(dim=-1)  # (N_kept,)  cross-entropy against the uniform distribution
    per_token = (1.0 - smoothing) * nll + smoothing * uniform  # (N_kept,)
    return per_token.mean()


def train(
    model: nn.Module,
    next_batch: Callable[[int], Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    *,
    steps: int,
    peak_lr: float = 1e-3,
    warmup_steps: int = 100,
    schedule: str = "cosine",
    weight_decay: float = 0.01,
    grad_clip: float | None = 1.0,
    eval_every: int = 0,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    snapshot_every: int = 0,
    snapshot: Callable[[nn.Module], Any] | None = None,
    seed: int = 0,
    time_limit_s: float | None = None,
    progress: bool = True,
    log_every: int = 10,
    min_lr_ratio: float = 0.1,
    schedule_by_time: bool = False,
) -> History:
    """Train ``model`` in place with AdamW, a warm-up + decay schedule and gradient clipping.

    ``next_batch(step)`` returns the batch for a step; ``loss_fn(model, batch)`` returns a
    scalar loss. ``evaluate(model)`` (every ``eval_every`` steps and at the end) returns a
    dict of metrics; ``snapshot(model)`` (at step 0, every ``snapshot_every`` steps and at
    the end) returns anything worth keeping. Both run in eval mode without gradients.
    ``seed`` seeds torch before training (dropout, and anything ``next_batch`` draws from
    torch's generator). ``time_limit_s`` stops the loop early, after the step that
    crosses it. The schedule assumes ``steps`` steps; with ``schedule_by_time=True`` it
    follows whichever is further along, the steps or the clock, so that a slower
    machine still completes the warm-up and the decay within ``time_limit_s``.

    Built in lesson 10 (train a translator); reused in lesson 11.
    """
    where = "train"
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"{where}: steps must be a positive int, got {steps!r}")
    require_choice(where, "schedule", schedule, SCHEDULES)
    if eval_every and evaluate is None:
        raise ValueError(f"{where}: eval_every={eval_every} needs an evaluate function")
    if schedule_by_time and time_limit_s is None:
        raise ValueError(f"{where}: schedule_by_time=True needs a time_limit_s")
    if snapshot_every and snapshot is None:
        raise ValueError(f"{where}: snapshot_every={snapshot_every} needs a snapshot function")

    from tqdm.auto import tqdm  # imported here so the module loads fast

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=weight_decay)
    history = History()
    start = time.perf_counter()

    def run_eval(step: int) -> None:
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                history.eval_metrics.append({k: float(v) for k, v in evaluate(model).items()})
            history.eval_steps.append(step)
            model.train()

    def take_snapshot(step: int) -> None:
        if snapshot is not None:
            model.eval()
            with torch.no_grad():
                history.snapshots.append((step, snapshot(model)))
            model.train()

    if snapshot is not None:
        take_snapshot(0)
    bar = tqdm(range(steps), desc="training", disable=not progress, leave=False)
    last_step = 0
    model.train()
    for step in bar:
        schedule_step = step
        if schedule_by_time:
            elapsed_share = (time.perf_counter() - start) / time_limit_s
            schedule_step = max(step, min(int(elapsed_share * steps), steps))
        lr = lr_at(
            schedule_step,
            peak_lr=peak_lr,
            warmup_steps=warmup_steps,
            total_steps=steps,
            schedule=schedule,
            min_lr_ratio=min_lr_ratio,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr

        batch = next_batch(step)
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None and grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()

        done = step + 1  # steps completed so far
        last_step = done
        out_of_time = time_limit_s is not None and time.perf_counter() - start >= time_limit_s
        is_last = done == steps or out_of_time
        if done % max(log_every, 1) == 0 or is_last or step == 0:
            history.steps.append(done)
            history.train_loss.append(loss.item())
            history.lr.append(lr)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
        if eval_every and done % eval_every == 0 and not is_last:
            run_eval(done)
        if snapshot_every and done % snapshot_every == 0 and not is_last:
            take_snapshot(done)
        history.train_seconds = time.perf_counter() - start
        if out_of_time:
            break
    bar.close()

    run_eval(last_step)
    if snapshot is not None and (not history.snapshots or history.snapshots[-1][0] != last_step):
        take_snapshot(last_step)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
