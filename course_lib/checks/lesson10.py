"""Checkers of exercises 10: train a translator (the loss, one training step, the learning-rate schedule)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from course_lib.checks._machinery import (
    _as_number,
    _call,
    _checker,
    _close,
    _compare,
    _default_dtype,
    _dtype_name,
    _randomize_parameters,
    _require_float,
    _require_tensor,
    _shape,
)
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.training import label_smoothed_cross_entropy, language_model_cross_entropy, lr_at

# ---------------------------------------------------------------------------------------------
# 10.1 cross-entropy from logits, padding left out
# ---------------------------------------------------------------------------------------------

_PADDING_HINT = (
    "padding was counted: leave out the positions whose target is pad_id, and average over the real tokens only "
    "(F.cross_entropy(..., ignore_index=pad_id) does this)"
)
_STABLE_HINT = (
    "the loss is infinite: torch.log(torch.softmax(...)) rounds a tiny probability to 0 and log(0) = -inf; "
    "use torch.log_softmax (or F.cross_entropy), which computes the log-probabilities without forming them"
)


def _cross_entropy_error_hint(error: Exception) -> str:
    text = str(error)
    if "in-place" in text:
        return "leave logits as they are (no in-place changes): build new tensors, e.g. with masked_fill or a mask"
    if "Expected target size" in text or "expected" in text.lower() and "size" in text.lower():
        return (
            "F.cross_entropy wants the classes in dimension 1: flatten to logits.reshape(-1, V) and "
            "targets.reshape(-1), or pass logits.transpose(1, 2)"
        )
    if "index" in text.lower():
        return (
            "targets hold token ids in [0, V): pick each target's log-probability with .gather(-1, targets[..., None])"
        )
    return "read the error message; the steps are log_softmax over V, pick the target's entry, mask, average"


@_checker("10.1", "cross_entropy_loss")
def check_cross_entropy_loss(ex, cross_entropy_fn):
    """10.1: ``cross_entropy_loss(logits (B, T, V), targets (B, T), pad_id) -> 0-d tensor``: the mean, over the
    positions whose target is not ``pad_id``, of ``-log_softmax(logits)[target]``; differentiable."""
    settings = [
        (2, 5, 7, 0, [5, 3], torch.float64, 2.0),
        (3, 4, 10, 3, [4, 2, 1], torch.float32, 2.0),
        (4, 3, 6, 0, [3, 3, 1, 2], torch.float64, 1.0),
        (1, 6, 5, 0, [6], torch.float64, 3.0),
        (2, 4, 8, 0, [4, 3], torch.float32, 40.0),
    ]
    for B, T, V, pad_id, lengths, dtype, scale in settings:
        logits = ex.randn(B, T, V, dtype=dtype, scale=scale)  # (B, T, V)
        real_ids = [i for i in range(V) if i != pad_id]
        targets = torch.tensor(real_ids)[ex.randint(0, len(real_ids), (B, T))]  # (B, T)
        real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T): True at real tokens
        targets = targets.masked_fill(~real, pad_id)  # (B, T)
        if scale > 10:  # a confident mistake: the right token far below the largest logit
            logits[0, 0, targets[0, 0]] = logits[0, 0].max() - 150.0
        case = f"logits {_shape(logits)}, targets {_shape(targets)}, pad_id={pad_id}, {int(real.sum())} real tokens"
        case += " (one target 150 below the largest logit)" if scale > 10 else ""
        case += f" {_dtype_name(dtype)}"
        with torch.enable_grad():
            logits.requires_grad_(True)
            got = _call(ex, cross_entropy_fn, logits, targets, pad_id, case=case, default_dtype=dtype,
                        error_hint=_cross_entropy_error_hint)  # fmt: skip
            expected = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=pad_id)  # ()
        if isinstance(got, int | float) and not isinstance(got, bool):
            ex.fail("returned a Python number, not a tensor", "return the loss tensor itself (no .item() or float()): "
                    "training calls loss.backward() on it", case)  # fmt: skip
        _require_tensor(ex, got, "loss", case, "of shape () (one number)")
        values = got.detach()
        if values.shape != ():
            hint = "one number for the whole batch: average the per-token losses over the real tokens"
            if values.numel() == 1:
                hint = (
                    "return a 0-d tensor (shape ()): .mean() or .sum() / count gives one; don't keep extra dimensions"
                )
            ex.fail(f"the loss must be one number, shape (), got {_shape(values)}", hint, case)
        _check_cross_entropy_value(ex, values, expected.detach(), logits.detach(), targets, real, case)
        if not got.requires_grad:
            ex.fail("the loss is not connected to the logits (no gradient can flow back)", "build the loss from logits "
                    "with torch operations only: no .item(), .numpy(), .detach() or torch.tensor(...)", case)  # fmt: skip
        with torch.enable_grad():
            (mine,) = torch.autograd.grad(got, logits)
            (theirs,) = torch.autograd.grad(expected, logits)
        if not _close(mine, theirs, 1e-4 if dtype == torch.float32 else 1e-9):
            ex.fail("the gradient of the loss with respect to the logits is not right", "compute the loss from logits "
                    "directly; clamping or detaching parts of it changes the gradient", case)  # fmt: skip
    return f"correct on {len(settings)} cases (padding left out, pad_id 0 and 3, float32 and float64, stable, differentiable)"


def _check_cross_entropy_value(ex, got, expected, logits, targets, real, case):
    if not bool(torch.isfinite(got)) and bool(torch.isfinite(expected)):
        ex.fail(f"the loss is {got.item()}", _STABLE_HINT, case)
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V)

    def picked(values):
        return values.gather(-1, targets[..., None]).squeeze(-1)  # (B, T)

    nll = -picked(log_probs)  # (B, T)
    count = real.sum()
    masked = nll * real  # (B, T)
    per_sequence = masked.sum(dim=-1) / real.sum(dim=-1).clamp(min=1)  # (B,)
    variants = [
        (_PADDING_HINT, nll.mean()),
        ("divided by every position: after leaving out the padding, divide by the number of real tokens "
         "(real.sum()), not by B * T", masked.sum() / nll.numel()),
        ("summed: the loss is the mean over the real tokens, not their sum", masked.sum()),
        ("averaged each sequence first: average over all real tokens of the batch at once, so a longer sequence "
         "counts more", per_sequence.mean()),
        ("forgot the log: the loss is -log p(target), from log_softmax", -(picked(torch.softmax(logits, -1)) * real)
         .sum() / count),
        ("forgot log_softmax: the raw logits are not log-probabilities", -(picked(logits) * real).sum() / count),
        ("log_softmax over the wrong dimension: normalise over the vocabulary, dim=-1",
         -(picked(torch.log_softmax(logits, dim=1)) * real).sum() / count),
        ("forgot the minus sign: the loss is the negative log-probability (a positive number)", -masked.sum() / count),
    ]  # fmt: skip
    tol = 1e-4 if logits.dtype == torch.float32 else 1e-9
    _compare(ex, got, expected, case=case, what="loss", variants=variants, tol=tol,
             generic_hint="take log_softmax over V, pick each target's entry, negate, and average over the positions "
             "whose target is not pad_id")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 10.2 one training step
# ---------------------------------------------------------------------------------------------


def _translation_loss(model, batch):
    """Teacher forcing with label smoothing 0.1, like lesson 10's translation_loss."""
    source, target = batch
    logits = model(source, target[:, :-1])  # (B, T - 1, V)
    V = logits.shape[-1]
    return label_smoothed_cross_entropy(logits.reshape(-1, V), target[:, 1:].reshape(-1), 0.1, ignore_index=0)


def _language_model_loss(model, ids):
    """Next-token cross-entropy, padding (id 0) left out, like lesson 11's language_model_loss."""
    logits = model(ids[:, :-1])  # (B, T - 1, V)
    return language_model_cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=0)


_NO_CLIP_HINT = (
    "the step used the unclipped gradient: call torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) after "
    "loss.backward() and before optimizer.step()"
)
_CLIP_AFTER_HINT = (
    "clipped after optimizer.step(): the step had already used the unclipped gradient; clip between "
    "loss.backward() and optimizer.step()"
)
_MODES = {
    "no_zero_grad": (
        "gradients add up in .grad from step to step: call optimizer.zero_grad() once per step, before "
        "loss.backward() (or after optimizer.step())"
    ),
    "zero_between": (
        "the parameters did not change: optimizer.zero_grad() between loss.backward() and optimizer.step() wipes "
        "the gradients just computed; call it before backward (or after the step)"
    ),
    "no_step": "the parameters did not change: call optimizer.step() after clipping",
    "no_clip": _NO_CLIP_HINT,
    "clip_after": _CLIP_AFTER_HINT,
    "clip_value": (
        "clipped each gradient value: clip the norm of all the gradients together, "
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)"
    ),
    "clip_each": (
        "clipped each parameter's gradient on its own: pass all the parameters to one clip_grad_norm_ call, so the "
        "norm is that of the whole gradient"
    ),
    "clip_one": "clipped to 1.0: use the max_norm argument, clip_grad_norm_(model.parameters(), max_norm)",
}


def _reference_step(model, batch, loss_fn, optimizer, max_norm, mode="correct"):
    """One training step, right (``mode="correct"``) or with one of the mistakes in ``_MODES``."""
    parameters = list(model.parameters())
    if mode != "no_zero_grad":
        optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    if mode == "zero_between":
        optimizer.zero_grad()
    elif mode == "clip_value":
        torch.nn.utils.clip_grad_value_(parameters, max_norm)
    elif mode == "clip_each":
        for parameter in parameters:
            torch.nn.utils.clip_grad_norm_([parameter], max_norm)
    elif mode == "clip_one":
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    elif mode in ("correct", "no_zero_grad", "no_step"):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    if mode != "no_step":
        optimizer.step()
    if mode == "clip_after":
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    return loss.item()


def _state(model):
    """The parameters as one vector, and the gradients as one vector (None when none are left)."""
    parameters = torch.cat([p.detach().flatten() for p in model.parameters()])  # (n_parameters,)
    grads = [p.grad for p in model.parameters()]
    if all(g is None or not bool(g.any()) for g in grads):
        return parameters, None
    filled = [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), grads, strict=True)]
    return parameters, torch.cat([g.detach().flatten() for g in filled])  # (n_parameters,) each


def _tiny_translator(ex):
    config = TransformerConfig(src_vocab_size=12, tgt_vocab_size=12, d_model=16, n_heads=2, n_encoder_layers=1,
                               n_decoder_layers=1, d_ff=32, dropout=0.0, norm_first=True)  # fmt: skip
    with _default_dtype(torch.float64):
        model = Transformer(config)
    _randomize_parameters(ex, model)
    return model.double()


def _tiny_gpt(ex):
    with _default_dtype(torch.float64):
        model = GPT(GPTConfig(vocab_size=12, context_length=16, d_model=16, n_heads=2, n_layers=1))
    _randomize_parameters(ex, model)
    return model.double()


def _padded_ids(ex, B, T, first=None):
    ids = ex.randint(2, 12, (B, T))  # (B, T)
    if first is not None:
        ids[:, 0] = first
    for row in range(1, B):
        ids[row, T - row :] = 0  # padding (id 0) at the end of the later rows
    return ids


def _train_step_error_hint(error: Exception) -> str:
    text = str(error)
    if "backward through the graph a second time" in text:
        return "call loss.backward() once per step, on the loss computed in this step"
    if "does not require grad" in text:
        return "compute the loss outside torch.no_grad(): the forward pass must be recorded for backward()"
    return "read the error message; the order is: zero_grad, loss = loss_fn(model, batch), backward, clip, step"


@_checker("10.2", "train_step")
def check_train_step(ex, train_step_fn):
    """10.2: ``train_step(model, batch, loss_fn, optimizer, max_norm) -> float``: ``loss = loss_fn(model, batch)``,
    backward, clip the norm of all the gradients to ``max_norm``, ``optimizer.step()``, with the gradients cleared
    once per step (before backward or after the step); returns the loss as a Python float. Three steps in a row
    on a tiny translator and a tiny GPT, compared with the reference step."""
    settings = [
        ("a tiny translator (Transformer, d_model 16), lesson 10's loss, SGD(lr=0.5)", _tiny_translator,
         _translation_loss, dict(lr=0.5), 0.3),
        ("a tiny GPT (d_model 16), lesson 11's loss, SGD(lr=0.2, momentum=0.9)", _tiny_gpt, _language_model_loss,
         dict(lr=0.2, momentum=0.9), 0.2),
    ]  # fmt: skip
    n_steps = 3
    for description, build, loss_fn, sgd, max_norm in settings:
        base = build(ex)
        if loss_fn is _translation_loss:
            batches = [(_padded_ids(ex, 4, 5), _padded_ids(ex, 4, 6, first=1)) for _ in range(n_steps)]
        else:
            batches = [_padded_ids(ex, 4, 7, first=1) for _ in range(n_steps)]
        learner = copy.deepcopy(base)
        learner_optimizer = torch.optim.SGD(learner.parameters(), **sgd)
        runs = {}
        for mode in ("correct", *_MODES):
            model = copy.deepcopy(base)
            runs[mode] = (model, torch.optim.SGD(model.parameters(), **sgd))
        for step, batch in enumerate(batches, start=1):
            case = f"{description}, max_norm={max_norm}, step {step} of {n_steps}"
            with torch.enable_grad():
                got = _call(ex, train_step_fn, learner, batch, loss_fn, learner_optimizer, max_norm, case=case,
                            default_dtype=torch.float64, error_hint=_train_step_error_hint)  # fmt: skip
                losses = {mode: _reference_step(model, batch, loss_fn, optimizer, max_norm, mode)
                          for mode, (model, optimizer) in runs.items()}  # fmt: skip
            states = {mode: _state(model) for mode, (model, _) in runs.items()}
            if states["correct"][1].norm() < max_norm * (1 - 1e-6):  # clipped gradients have norm max_norm
                raise RuntimeError("check_train_step: the case's gradient is too small to be clipped")  # a bad case
            _compare_step(ex, _state(learner), states, case)
            value = _require_float(ex, got, "returned loss", case)
            if not math.isclose(value, losses["correct"], rel_tol=1e-9, abs_tol=1e-12):
                ex.fail(f"returned loss {value:.6g}, expected {losses['correct']:.6g}",
                        "return loss.item() of the loss computed in this step (before the update)", case)  # fmt: skip
    return (
        f"correct on {len(settings)} models, {n_steps} steps each (gradients cleared, norm clipped before the step, "
        "loss returned)"
    )


def _compare_step(ex, learner_state, states, case):
    parameters, grads = learner_state
    tol = 1e-8

    def same(a, b):
        return a is not None and b is not None and _close(a, b, tol)

    if same(parameters, states["correct"][0]):
        return
    exact = [mode for mode in _MODES if same(parameters, states[mode][0])
             and ((grads is None and states[mode][1] is None) or same(grads, states[mode][1]))]  # fmt: skip
    if not exact and grads is None:  # gradients cleared after the step: they cannot tell the mistakes apart
        exact = [mode for mode in _MODES if same(parameters, states[mode][0])]
    distinct = []  # a mistake that changes nothing on this case (clipping values none of which is large) is left out
    for mode in exact:
        if not any(same(states[mode][0], states[earlier][0]) for earlier in distinct):
            distinct.append(mode)
    exact = distinct
    problem = "the parameters after the step are not right"
    if len(exact) == 1:
        ex.fail(problem, _MODES[exact[0]], case)
    if exact:
        ex.fail(problem, "; or ".join(_MODES[mode] for mode in exact), case)
    ex.fail(problem, "one step is: optimizer.zero_grad(); loss = loss_fn(model, batch); loss.backward(); "
            "clip_grad_norm_(model.parameters(), max_norm); optimizer.step(); return loss.item()", case)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 10.3 the learning-rate schedule: linear warm-up, then cosine decay
# ---------------------------------------------------------------------------------------------


def _schedule(step, peak_lr, warmup_steps, total_steps, min_lr_ratio, *, warmup="course", decay="cosine",
              progress_from="warmup", floor=True, clamp=True):  # fmt: skip
    """The reference schedule and the usual ways to get it wrong."""
    if step < warmup_steps:
        if warmup == "from_zero":
            return peak_lr * step / warmup_steps
        if warmup == "plus_one":
            return peak_lr * (step + 1) / warmup_steps
        return peak_lr * (step + 1) / (warmup_steps + 1)
    if progress_from == "zero":
        progress = step / total_steps
    else:
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    if clamp:
        progress = min(progress, 1.0)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else max(1.0 - progress, 0.0)
    if decay == "rising":
        shape = 0.5 * (1.0 - math.cos(math.pi * progress))
    min_lr = min_lr_ratio * peak_lr if floor else 0.0
    return min_lr + (peak_lr - min_lr) * shape


_SCHEDULE_MISTAKES = [
    ("the warm-up starts at 0: at step s < warmup_steps the rate is peak_lr * (s + 1) / (warmup_steps + 1), so "
     "step 0 already moves and step warmup_steps reaches peak_lr", dict(warmup="from_zero")),
    ("the warm-up reaches peak_lr one step early: use peak_lr * (s + 1) / (warmup_steps + 1)",
     dict(warmup="plus_one")),
    ("the decay starts at step 0: the cosine runs from warmup_steps to total_steps, progress = (step - "
     "warmup_steps) / (total_steps - warmup_steps)", dict(progress_from="zero")),
    ("ignores min_lr_ratio: the rate decays to min_lr = min_lr_ratio * peak_lr, not to 0",
     dict(floor=False)),
    ("after total_steps the rate must stay at the floor: clamp the progress at 1 (min(progress, 1.0))",
     dict(clamp=False)),
    ("a linear decay: decay along half a cosine, 0.5 * (1 + cos(pi * progress))", dict(decay="linear")),
    ("the cosine goes the wrong way (the rate rises): use 0.5 * (1 + cos(pi * progress)), 1 at the peak",
     dict(decay="rising")),
]  # fmt: skip


@_checker("10.3", "lr_at")
def check_lr_at(ex, lr_at_fn):
    """10.3: ``lr_at(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1) -> float``: a linear warm-up
    ``peak_lr * (step + 1) / (warmup_steps + 1)`` for ``step < warmup_steps``, then half a cosine from ``peak_lr``
    at ``warmup_steps`` down to ``min_lr_ratio * peak_lr`` at ``total_steps``, flat after it (like
    ``course_lib.training.lr_at``)."""
    settings = [
        (1e-3, 10, 100, None, [0, 1, 5, 9, 10, 11, 40, 55, 99, 100, 150]),
        (1.0, 4, 12, 0.25, list(range(15))),
        (2e-3, 100, 3000, 0.1, [0, 50, 99, 100, 101, 1000, 2000, 2999, 3000, 5000]),
        (0.5, 0, 20, 0.0, [0, 1, 5, 10, 19, 20, 30]),
    ]
    for peak_lr, warmup_steps, total_steps, ratio, steps in settings:
        kwargs = {} if ratio is None else {"min_lr_ratio": ratio}
        min_lr_ratio = 0.1 if ratio is None else ratio
        case = f"peak_lr={peak_lr}, warmup_steps={warmup_steps}, total_steps={total_steps}"
        case += f", min_lr_ratio={ratio}" if ratio is not None else " (default min_lr_ratio)"
        got = []
        for step in steps:
            value = _call(ex, lr_at_fn, step, peak_lr, warmup_steps, total_steps, case=f"{case}, step={step}",
                          error_hint="lr_at(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1) returns "
                          "one float; use math.cos and math.pi", **kwargs)  # fmt: skip
            got.append(_as_number(ex, value, "learning rate", f"{case}, step={step}"))
        schedule = (peak_lr, warmup_steps, total_steps, min_lr_ratio)
        expected = torch.tensor([lr_at(s, peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps,
                                       min_lr_ratio=min_lr_ratio) for s in steps], dtype=torch.float64)  # fmt: skip
        variants = [(hint, torch.tensor([_schedule(s, *schedule, **mistake) for s in steps], dtype=torch.float64))
                    for hint, mistake in _SCHEDULE_MISTAKES]  # fmt: skip
        _compare(
            ex, torch.tensor(got, dtype=torch.float64), expected, case=f"{case}, steps {steps}",
            what="learning-rate schedule", variants=variants, tol=1e-9 * peak_lr,
            generic_hint="print lr_at for each step and compare with the two formulas: warm-up below warmup_steps, "
            "cosine from warmup_steps to total_steps, flat after",
        )  # fmt: skip
    return f"correct on {len(settings)} schedules (warm-up, cosine decay to the floor, flat after total_steps)"
