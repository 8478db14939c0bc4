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

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import (
    HALF_PRECISION,
    INTEGER_DTYPES,
    as_float,
    as_int,
    require_choice,
    require_positive_int,
    require_rank,
    require_size,
    shape_text,
)

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


@contextmanager
def reproducible(threads: int) -> Iterator[None]:
    """Run the ``with`` block so that it computes the same numbers, bit for bit, every time it runs
    on this machine: ``threads`` torch threads and PyTorch's deterministic algorithms; then restore
    both settings.

    How the work is split between threads decides the order of floating-point sums, so the thread
    count is part of the recipe. Some kernels add into shared memory in whatever order the threads
    arrive (the gradient of an embedding lookup ``table[token_ids]``, for one); the deterministic
    algorithms sort first. Seeds and the order of the data are the recipe's job.

    Built in lesson 10 (train a translator); reused in lesson 11.
    """
    threads = require_positive_int("reproducible", "threads", threads)
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


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
    step = as_int(where, "step", step, minimum=0)
    warmup_steps = as_int(where, "warmup_steps", warmup_steps, minimum=0)
    total_steps = require_positive_int(where, "total_steps", total_steps)
    peak_lr = as_float(where, "peak_lr", peak_lr, "a finite number > 0", low=0.0, low_open=True)
    min_lr_ratio = as_float(where, "min_lr_ratio", min_lr_ratio, "in [0, 1]", low=0.0, high=1.0)

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
    if not logits.is_floating_point():
        raise ValueError(f"{where}: logits must be a float tensor (N, V), got dtype {logits.dtype}")
    require_rank(where, "targets", targets, "(N,)", 1, hint="flatten with targets.reshape(-1)")
    require_size(where, "targets", targets, 0, logits.shape[0], f"(N,) with N={logits.shape[0]} like logits")
    smoothing = as_float(where, "smoothing", smoothing, "in [0, 1)", low=0.0, high=1.0, high_open=True)
    keep = check_targets(where, targets, logits.shape[1], ignore_index)  # (N,)

    work = logits.float() if logits.dtype in HALF_PRECISION else logits  # log-softmax in float32 for half logits
    log_probs = F.log_softmax(work[keep], dim=-1)  # (N_kept, V)
    safe_targets = targets[keep].long()  # (N_kept,); gather wants int64 indices
    nll = -log_probs.gather(1, safe_targets.unsqueeze(1)).squeeze(1)  # (N_kept,)
    uniform = -log_probs.mean(dim=-1)  # (N_kept,)  cross-entropy against the uniform distribution
    per_token = (1.0 - smoothing) * nll + smoothing * uniform  # (N_kept,)
    return per_token.mean().to(logits.dtype)


def check_targets(where: str, targets: torch.Tensor, V: int, ignore_index: int = -100) -> torch.Tensor:
    """Check class targets (N,) for a loss over V classes; return the mask of targets that count.

    Every target must be an integer id in [0, V) or ``ignore_index`` (padding), and at least one
    must count: a mean over no tokens is 0 / 0. An out-of-range target would otherwise be an
    IndexError (CPU) or a device-side assert (GPU) deep inside the loss.

    Shapes:
        targets (N,) -> keep (N,) bool

    Built in lesson 10 (train a translator).
    """
    if targets.dtype not in INTEGER_DTYPES:
        raise ValueError(f"{where}: targets must be integer class ids, got dtype {targets.dtype} {shape_text(targets)}")
    ignore_index = as_int(where, "ignore_index", ignore_index)
    if V == 0:
        raise ValueError(f"{where}: logits must be (N, V) with V >= 1 classes, got V=0")
    keep = targets != ignore_index  # (N,)
    out_of_range = keep & ((targets < 0) | (targets >= V))  # (N,)
    any_out_of_range, any_kept = torch.stack((out_of_range.any(), keep.any())).tolist()  # one device sync
    if any_out_of_range:
        bad = targets[out_of_range]
        raise ValueError(
            f"{where}: targets must be class ids in [0, V) with V={V} (or ignore_index={ignore_index}), "
            f"got values from {int(bad.min())} to {int(bad.max())}; do the targets match the model's vocabulary?"
        )
    if not any_kept:
        raise ValueError(
            f"{where}: every target is ignore_index={ignore_index} (padding), so there is nothing to average; "
            "the batch has no real tokens"
        )
    return keep


def language_model_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``F.cross_entropy`` over (N, V) logits with its targets checked first (``check_targets``).

    Shapes:
        logits (N, V), targets (N,) -> scalar

    Built in lesson 11 (train a tiny GPT).
    """
    where = "language_model_cross_entropy"
    require_rank(where, "logits", logits, "(N, V)", 2, hint="flatten with logits.reshape(-1, V)")
    if not logits.is_floating_point():
        raise ValueError(f"{where}: logits must be a float tensor (N, V), got dtype {logits.dtype}")
    require_rank(where, "targets", targets, "(N,)", 1, hint="flatten with targets.reshape(-1)")
    require_size(where, "targets", targets, 0, logits.shape[0], f"(N,) with N={logits.shape[0]} like logits")
    check_targets(where, targets, logits.shape[1], ignore_index)
    work = logits.float() if logits.dtype in HALF_PRECISION else logits
    return F.cross_entropy(work, targets.long(), ignore_index=ignore_index).to(logits.dtype)


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
    fused_adamw: bool = False,
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
    machine still completes the warm-up and the decay within ``time_limit_s``. Without
    ``time_limit_s`` nothing depends on the clock: the same seed, data and thread count give
    the same weights, bit for bit. ``fused_adamw=True`` takes PyTorch's fused AdamW kernel
    (one call updates every parameter, instead of a Python loop over them): the same update,
    rounded differently, and faster for models with many small parameter tensors.

    Built in lesson 10 (train a translator); reused in lesson 11.
    """
    where = "train"
    steps = require_positive_int(where, "steps", steps)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    for name, function in (("next_batch", next_batch), ("loss_fn", loss_fn)):
        if not callable(function):
            raise ValueError(f"{where}: {name} must be a function, got {type(function).__name__}")
    require_choice(where, "schedule", schedule, SCHEDULES)
    peak_lr = as_float(where, "peak_lr", peak_lr, "a finite number > 0", low=0.0, low_open=True)
    warmup_steps = as_int(where, "warmup_steps", warmup_steps, minimum=0)
    weight_decay = as_float(where, "weight_decay", weight_decay, "a finite number >= 0", low=0.0)
    if grad_clip is not None:
        grad_clip = as_float(where, "grad_clip", grad_clip, "a finite number >= 0 or None (0 or None: off)", low=0.0)
    eval_every = as_int(where, "eval_every", eval_every, minimum=0)
    snapshot_every = as_int(where, "snapshot_every", snapshot_every, minimum=0)
    log_every = as_int(where, "log_every", log_every, minimum=0)
    seed = as_int(where, "seed", seed, minimum=0)
    min_lr_ratio = as_float(where, "min_lr_ratio", min_lr_ratio, "in [0, 1]", low=0.0, high=1.0)
    if time_limit_s is not None:
        time_limit_s = as_float(
            where,
            "time_limit_s",
            time_limit_s,
            "a number of seconds > 0 or None",
            low=0.0,
            low_open=True,
            allow_inf=True,
        )
    if eval_every and evaluate is None:
        raise ValueError(f"{where}: eval_every={eval_every} needs an evaluate function")
    if schedule_by_time and time_limit_s is None:
        raise ValueError(f"{where}: schedule_by_time=True needs a time_limit_s")
    if snapshot_every and snapshot is None:
        raise ValueError(f"{where}: snapshot_every={snapshot_every} needs a snapshot function")
    if not isinstance(fused_adamw, bool):
        raise ValueError(f"{where}: fused_adamw must be True or False, got {fused_adamw!r}")
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ValueError(f"{where}: model has no trainable parameters (requires_grad=True) to train")

    from tqdm.auto import tqdm  # imported here so the module loads fast

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=peak_lr, weight_decay=weight_decay, fused=True if fused_adamw else None
    )
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
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            got = shape_text(loss) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"{where}: loss_fn must return a scalar tensor (0-d), got {got}; average it with .mean()")
        if not loss.requires_grad:
            raise ValueError(f"{where}: the loss from loss_fn is not connected to the model's parameters (no gradient)")
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
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                bar.close()
                raise ValueError(
                    f"{where}: the loss became {loss_value} at step {done} (learning rate {lr:.3g}); training "
                    "diverged: lower peak_lr, raise warmup_steps, or keep grad_clip on"
                )
            history.steps.append(done)
            history.train_loss.append(loss_value)
            history.lr.append(lr)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
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


# ---------------------------------------------------------------- checkpoint files (lessons 10 and 11)

_PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_CHECKPOINT_DIR = _PACKAGE_DIR.parent / "checkpoints"
"""``checkpoints/`` in the course folder, where the lessons and ``python -m course_lib.train`` keep them."""
PACKAGED_CHECKPOINT_DIR = _PACKAGE_DIR / "checkpoints"
"""The copy a wheel ships inside the package (``pip install .``): see setup.py."""
WEIGHTS_HASH_KEY = "weights_sha256"
"""The key, in a checkpoint's JSON file, of the SHA-256 of its ``.safetensors`` file."""


def default_checkpoint_dir() -> Path:
    """Where the shipped checkpoints are.

    Running from the course folder (a clone, or ``pip install -e .``), that is its
    ``checkpoints/`` folder; from a regular install (``pip install .``), the copy shipped
    inside the package. Without either, the course folder's path (loading then says which
    file is missing and how to rebuild it).
    """
    in_course_folder = (_PACKAGE_DIR.parent / "pyproject.toml").is_file() and SOURCE_CHECKPOINT_DIR.is_dir()
    if not in_course_folder and PACKAGED_CHECKPOINT_DIR.is_dir():
        return PACKAGED_CHECKPOINT_DIR
    return SOURCE_CHECKPOINT_DIR


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, damaged, or not fitting the model.

    The message names the file and the command that rebuilds it.
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file that does not exist (both a ``ValueError`` and a ``FileNotFoundError``)."""


def weights_fingerprint(model: nn.Module) -> str:
    """The SHA-256 of every weight's bytes, in ``state_dict`` order: equal exactly when the trained
    weights are equal bit for bit, whatever else a checkpoint file holds (the translator's file
    rounds them to float16; the tiny GPT's file also holds attention snapshots, taken on the
    readable path, whose code may change without the training changing)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    directory: Path | str, name: str, tensors: Mapping[str, torch.Tensor], info: dict, hashed: tuple[str, ...] = ()
) -> dict:
    """Write ``name.safetensors`` and ``name.json``; the JSON records the weights' SHA-256.

    ``hashed`` names other files already written in ``directory`` whose SHA-256 goes into the
    JSON too, under ``"<file name>_sha256"`` (e.g. the translator's attention snapshots).
    Returns the info dictionary as written.

    Built in lesson 10 (train a translator); reused in lesson 11.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / f"{name}.safetensors"
    save_file({key: tensor.detach().contiguous() for key, tensor in tensors.items()}, str(weights_path))
    info = {**info, WEIGHTS_HASH_KEY: file_sha256(weights_path)}
    for file_name in hashed:
        info[f"{file_name}_sha256"] = file_sha256(directory / file_name)
    text = json.dumps(info, ensure_ascii=False, indent=1) + "\n"
    (directory / f"{name}.json").write_text(text, encoding="utf-8")
    return info


def _not_found(where: str, path: Path, rebuild: str) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(f"{where}: {path} not found; rebuild the checkpoint with `{rebuild}`")


def verify_file_hash(where: str, path: Path, expected: object, rebuild: str) -> None:
    """Raise ``CheckpointError`` unless ``path`` exists and its SHA-256 is ``expected``."""
    if not path.is_file():
        raise _not_found(where, path, rebuild)
    if not isinstance(expected, str):
        raise CheckpointError(
            f"{where}: the JSON next to {path} records no SHA-256 for it, so its integrity cannot be checked; "
            f"rebuild the checkpoint with `{rebuild}` (the training code records it)"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"{where}: {path} is damaged or was replaced: its SHA-256 is {actual[:16]}..., but its JSON "
            f"records {expected[:16]}...; restore it (e.g. `git checkout -- {path.name}` in its folder) "
            f"or rebuild it with `{rebuild}`"
        )


def read_checkpoint_info(
    where: str, directory: Path | str, name: str, rebuild: str, required: tuple[str, ...] = ()
) -> dict:
    """Read a checkpoint's ``name.json``: a JSON object holding every key in ``required``.

    Built in lesson 10 (train a translator); reused in lesson 11.
    """
    json_path = Path(directory) / f"{name}.json"
    if not json_path.is_file():
        raise _not_found(where, json_path, rebuild)
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{where}: {json_path} is not valid JSON ({error}); rebuild it with `{rebuild}`"
        ) from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: {json_path} must hold a JSON object; rebuild it with `{rebuild}`")
    missing = [key for key in required if key not in info]
    if missing:
        raise CheckpointError(f"{where}: {json_path} lacks {missing}; rebuild it with `{rebuild}`")
    return info


def load_checkpoint(
    where: str, directory: Path | str, name: str, rebuild: str, required: tuple[str, ...] = ()
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``name.json`` and ``name.safetensors`` from ``directory``, checking everything that can go wrong.

    * a missing file: ``CheckpointNotFoundError`` (a ``FileNotFoundError`` and a ``ValueError``);
    * a JSON file that is not valid JSON or lacks a ``required`` key;
    * a weights file that is empty, truncated or not safetensors, or whose SHA-256 differs from
      the one its JSON records (damaged bytes), or that holds NaN or infinite values.

    Every error is a ``CheckpointError`` naming the file and ``rebuild``, the command that rebuilds it.
    Returns ``(tensors, info)``.

    Built in lesson 10 (train a translator); reused in lesson 11.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    info = read_checkpoint_info(where, directory, name, rebuild, required)
    weights_path = directory / f"{name}.safetensors"
    if not weights_path.is_file():
        raise _not_found(where, weights_path, rebuild)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{where}: {weights_path} cannot be read as safetensors (empty, truncated or another format: {error}); "
            f"restore it or rebuild it with `{rebuild}`"
        ) from None
    verify_file_hash(where, weights_path, info.get(WEIGHTS_HASH_KEY), rebuild)
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{where}: {weights_path} holds NaN or infinite values in {key!r}; rebuild it with `{rebuild}`"
            )
    return tensors, info


def check_checkpoint_keys(
    where: str, path: Path, rebuild: str, model: nn.Module, tensors: Mapping[str, torch.Tensor], tied: tuple = ()
) -> None:
    """Raise ``CheckpointError`` unless ``tensors`` holds exactly the model's weights (less the ``tied``
    ones, stored once), each with the model's shape."""
    expected = {key: value for key, value in model.state_dict().items() if key not in tied}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: {path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            f"{' (and more)' if len(missing) > 5 or len(unexpected) > 5 else ''}; rebuild it with `{rebuild}`"
        )
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{where}: {path}: {key} must be {shape_text(expected[key])} for this configuration, "
                f"got {shape_text(tensor)}; rebuild it with `{rebuild}`"
            )
