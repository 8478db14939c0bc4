"""Tests of the checkers of the PyTorch primer (exercises 00) and of lessons 10-12: each checker accepts
several genuinely different correct implementations, and rejects realistic wrong ones with a hint that names
the mistake.

Run ``pytest tests/test_checks_primer_10_12.py -v``: the ids read ``<exercise>-<checker>-<implementation>``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from course_lib import checks
from course_lib.checks import CheckFailed
from course_lib.training import lr_at

CHECKERS = {
    "00.1": checks.check_pairwise_squared_distances,
    "00.2": checks.check_linear,
    "00.3": checks.check_gradient_descent_step,
    "10.1": checks.check_cross_entropy_loss,
    "10.2": checks.check_train_step,
    "10.3": checks.check_lr_at,
    "11.1": checks.check_sample_sequence,
    "11.2": checks.check_perplexity,
    "11.3": checks.check_language_model_loss,
    "12.1": checks.check_masked_mean_pool,
    "12.2": checks.check_top_k_similar,
    "12.3": checks.check_split_fused_qkv,
}
CLASS_EXERCISES = {"00.2"}

CORRECT: list[tuple[str, object]] = []  # (exercise id, implementation)
WRONG: list[tuple[str, object, str]] = []  # (exercise id, implementation, text the hint must contain)


def correct(exercise_id):
    def register(implementation):
        CORRECT.append((exercise_id, implementation))
        return implementation

    return register


def wrong(exercise_id, hint_text):
    def register(implementation):
        WRONG.append((exercise_id, implementation, hint_text))
        return implementation

    return register


# ---------------------------------------------------------------------------------------------
# 00.1 pairwise_squared_distances
# ---------------------------------------------------------------------------------------------


@correct("00.1")
def distances_broadcast(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(dim=-1)


@correct("00.1")
def distances_expanded(a, b):
    return (a**2).sum(-1)[:, None] + (b**2).sum(-1)[None, :] - 2 * a @ b.T


@correct("00.1")
def distances_through_numpy(a, b):
    a_np, b_np = a.numpy(), b.numpy()
    return torch.from_numpy(((a_np[:, np.newaxis] - b_np[np.newaxis]) ** 2).sum(axis=-1))


@correct("00.1")
def distances_cdist(a, b):
    return torch.cdist(a, b) ** 2


@wrong("00.1", "a - b needs shapes that broadcast")
def distances_without_none(a, b):
    return ((a - b) ** 2).sum(dim=-1)


@wrong("00.1", "leave out the square root")
def distances_not_squared(a, b):
    return torch.cdist(a, b)


@wrong("00.1", "summed over the wrong dimension")
def distances_summed_over_rows(a, b):
    return ((a[:, None] - b[None]) ** 2).sum(dim=0)


@wrong("00.1", "returned a numpy ndarray")
def distances_left_in_numpy(a, b):
    return ((a.numpy()[:, None] - b.numpy()[None]) ** 2).sum(axis=-1)


@wrong("00.1", "averaged over the features")
def distances_mean(a, b):
    return ((a[:, None] - b[None]) ** 2).mean(dim=-1)


# ---------------------------------------------------------------------------------------------
# 00.2 Linear
# ---------------------------------------------------------------------------------------------


class LinearWithMatmul(nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


correct("00.2")(LinearWithMatmul)


@correct("00.2")
class LinearWithFunctional(nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


@correct("00.2")
class LinearWithEinsum(nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * 0.1)
        self.bias = nn.Parameter(torch.randn(out_features) * 0.1) if bias else None

    def forward(self, x):
        y = torch.einsum("...i,oi->...o", x, self.weight)
        return y + self.bias if self.bias is not None else y


@wrong("00.2", "PyTorch stores the weight (out_features, in_features)")
class LinearWeightInOut(nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


@wrong("00.2", "plain tensor, not a parameter")
class LinearPlainTensors(LinearWithMatmul):
    def __init__(self, in_features, out_features, bias=True):
        nn.Module.__init__(self)
        self.weight = torch.randn(out_features, in_features)
        self.bias = torch.zeros(out_features) if bias else None


@wrong("00.2", "forgot to add the bias")
class LinearWithoutBiasInForward(LinearWithMatmul):
    def forward(self, x):
        return x @ self.weight.T


@wrong("00.2", "no .data or .detach()")
class LinearDetached(LinearWithMatmul):
    def forward(self, x):
        y = x @ self.weight.detach().T
        return y if self.bias is None else y + self.bias


@wrong("00.2", "bias=False, but the module has a bias parameter")
class LinearAlwaysBias(LinearWithMatmul):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias=True)


@wrong("00.2", "with bias=False, self.bias is None")
class LinearAlwaysAddsBias(LinearWithMatmul):
    def forward(self, x):
        return x @ self.weight.T + self.bias


@wrong("00.2", "start the weight with small random numbers")
class LinearZeroWeight(LinearWithMatmul):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias)
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))


@wrong("00.2", "forgot the transpose")
class LinearNoTransposeSquare(LinearWithMatmul):
    """Stores (out, in) but multiplies by the weight itself (only square layers get that far)."""

    def forward(self, x):
        if self.weight.shape[0] != self.weight.shape[1]:
            return super().forward(x)
        y = x @ self.weight
        return y if self.bias is None else y + self.bias


# ---------------------------------------------------------------------------------------------
# 00.3 gradient_descent_step
# ---------------------------------------------------------------------------------------------


@correct("00.3")
def step_by_hand(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad
    return loss.item()


@correct("00.3")
def step_with_sgd(model, x, y, lr):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


@correct("00.3")
def step_with_data(model, x, y, lr):
    for parameter in model.parameters():
        parameter.grad = None
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    for parameter in model.parameters():
        parameter.data -= lr * parameter.grad.data
    return float(loss.detach())


@wrong("00.3", "call model.zero_grad() before loss.backward()")
def step_without_zero_grad(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad
    return loss.item()


@wrong("00.3", "zero_grad() after backward() wipes the gradients")
def step_zero_grad_after_backward(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    model.zero_grad()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= lr * parameter.grad
    return loss.item()


@wrong("00.3", "inside `with torch.no_grad():`")
def step_without_no_grad(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    model.zero_grad()
    loss.backward()
    for parameter in model.parameters():
        parameter -= lr * parameter.grad
    return loss.item()


@wrong("00.3", "only rebinds the name p")
def step_rebinding(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p = p - lr * p.grad  # the mistake under test: only the name p changes
    return loss.item()


@wrong("00.3", "moved up the gradient")
def step_ascent(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter += lr * parameter.grad
    return loss.item()


@wrong("00.3", "convert it with .item()")
def step_returning_tensor(model, x, y, lr):
    loss = ((model(x) - y) ** 2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad
    return loss


@wrong("00.3", "not their sum")
def step_summed_loss(model, x, y, lr):
    loss = ((model(x) - y) ** 2).sum()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad
    return loss.item()


# ---------------------------------------------------------------------------------------------
# 10.1 cross_entropy_loss
# ---------------------------------------------------------------------------------------------


@correct("10.1")
def cross_entropy_flattened(logits, targets, pad_id):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=pad_id)


@correct("10.1")
def cross_entropy_by_hand(logits, targets, pad_id):
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(-1, targets[..., None]).squeeze(-1)
    return nll[targets != pad_id].mean()


@correct("10.1")
def cross_entropy_logsumexp(logits, targets, pad_id):
    real = (targets != pad_id).to(logits.dtype)
    picked = logits.gather(-1, targets[..., None]).squeeze(-1)
    nll = torch.logsumexp(logits, dim=-1) - picked
    return (nll * real).sum() / real.sum()


@wrong("10.1", "padding was counted")
def cross_entropy_with_padding(logits, targets, pad_id):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@wrong("10.1", "rounds a tiny probability to 0")
def cross_entropy_log_of_softmax(logits, targets, pad_id):
    probs = torch.softmax(logits, dim=-1)
    nll = -torch.log(probs.gather(-1, targets[..., None]).squeeze(-1))
    real = targets != pad_id
    return (nll * real).sum() / real.sum()


@wrong("10.1", "not by B * T")
def cross_entropy_divided_by_all(logits, targets, pad_id):
    nll = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    return (nll * (targets != pad_id)).sum() / targets.numel()


@wrong("10.1", "averaged each sequence first")
def cross_entropy_per_sequence(logits, targets, pad_id):
    nll = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    real = targets != pad_id
    return ((nll * real).sum(-1) / real.sum(-1)).mean()


@wrong("10.1", "returned a Python number")
def cross_entropy_item(logits, targets, pad_id):
    return cross_entropy_flattened(logits, targets, pad_id).item()


@wrong("10.1", "F.cross_entropy wants the classes in dimension 1")
def cross_entropy_unflattened(logits, targets, pad_id):
    return F.cross_entropy(logits, targets, ignore_index=pad_id)


# ---------------------------------------------------------------------------------------------
# 10.2 train_step
# ---------------------------------------------------------------------------------------------


@correct("10.2")
def train_step_zero_first(model, batch, loss_fn, optimizer, max_norm):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


@correct("10.2")
def train_step_zero_last(model, batch, loss_fn, optimizer, max_norm):
    loss = loss_fn(model, batch)
    loss.backward()
    clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    model.zero_grad(set_to_none=False)
    return float(loss.detach())


@correct("10.2")
def train_step_clip_by_hand(model, batch, loss_fn, optimizer, max_norm):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = min(1.0, max_norm / (norm.item() + 1e-6))
    for g in grads:
        g.mul_(scale)
    optimizer.step()
    return loss.item()


@wrong("10.2", "gradients add up in .grad from step to step")
def train_step_without_zero_grad(model, batch, loss_fn, optimizer, max_norm):
    loss = loss_fn(model, batch)
    loss.backward()
    clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


@wrong("10.2", "zero_grad() between loss.backward() and optimizer.step()")
def train_step_zero_grad_before_step(model, batch, loss_fn, optimizer, max_norm):
    loss = loss_fn(model, batch)
    loss.backward()
    clip_grad_norm_(model.parameters(), max_norm)
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


@wrong("10.2", "clipped after optimizer.step()")
def train_step_clip_after_step(model, batch, loss_fn, optimizer, max_norm):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    clip_grad_norm_(model.parameters(), max_norm)
    return loss.item()


@wrong("10.2", "the step used the unclipped gradient")
def train_step_without_clipping(model, batch, loss_fn, optimizer, max_norm):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss.item()


@wrong("10.2", "clipped each gradient value")
def train_step_clip_values(model, batch, loss_fn, optimizer, max_norm):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    clip_grad_value_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


@wrong("10.2", "convert it with .item()")
def train_step_returning_tensor(model, batch, loss_fn, optimizer, max_norm):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss


# ---------------------------------------------------------------------------------------------
# 10.3 lr_at
# ---------------------------------------------------------------------------------------------


@correct("10.3")
def lr_by_formula(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    min_lr = min_lr_ratio * peak_lr
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@correct("10.3")
def lr_from_course_lib(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    return lr_at(step, peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio)


@correct("10.3")
def lr_as_tensor(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    step = torch.tensor(float(step), dtype=torch.float64)
    warm = peak_lr * (step + 1) / (warmup_steps + 1)
    progress = ((step - warmup_steps) / max(total_steps - warmup_steps, 1)).clamp(0.0, 1.0)
    decayed = peak_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + torch.cos(math.pi * progress)))
    return torch.where(step < warmup_steps, warm, decayed)


@wrong("10.3", "the warm-up starts at 0")
def lr_warmup_from_zero(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    return lr_by_formula(step, peak_lr, warmup_steps, total_steps, min_lr_ratio)


@wrong("10.3", "clamp the progress at 1")
def lr_not_clamped(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    min_lr = min_lr_ratio * peak_lr
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@wrong("10.3", "ignores min_lr_ratio")
def lr_to_zero(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    return lr_by_formula(step, peak_lr, warmup_steps, total_steps, 0.0)


@wrong("10.3", "the decay starts at step 0")
def lr_decay_from_step_zero(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    progress = min(1.0, step / total_steps)
    min_lr = min_lr_ratio * peak_lr
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@wrong("10.3", "a linear decay")
def lr_linear_decay(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    min_lr = min_lr_ratio * peak_lr
    return min_lr + (peak_lr - min_lr) * (1 - progress)


# ---------------------------------------------------------------------------------------------
# 11.1 sample_sequence
# ---------------------------------------------------------------------------------------------


@correct("11.1")
def sample_loop(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        logits = model(ids)[:, -1, :]
        probs = torch.softmax(logits / temperature, dim=-1)
        next_ids = torch.multinomial(probs, num_samples=1, generator=generator)
        ids = torch.cat([ids, next_ids], dim=1)
    return ids


@correct("11.1")
def sample_with_cache(model, prompt_ids, max_new_tokens, temperature, generator):
    cache = model.new_cache()
    ids, step_input = prompt_ids, prompt_ids
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache)[:, -1]
        next_ids = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, next_ids], dim=1)
        step_input = next_ids
    return ids


@correct("11.1")
def sample_gumbel_max(model, prompt_ids, max_new_tokens, temperature, generator):
    """Another way to draw from softmax(logits / T): the argmax of logits / T plus Gumbel noise."""
    ids = prompt_ids
    for _ in range(max_new_tokens):
        scaled = model(ids)[:, -1, :] / temperature
        uniform = torch.rand(scaled.shape, generator=generator, dtype=scaled.dtype)
        next_ids = (scaled - torch.log(-torch.log(uniform))).argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_ids], dim=1)
    return ids


@wrong("11.1", "temperature applied the wrong way")
def sample_temperature_multiplied(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        probs = torch.softmax(model(ids)[:, -1, :] * temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return ids


@wrong("11.1", "the draw used PyTorch's global random numbers")
def sample_ignoring_generator(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        probs = torch.softmax(model(ids)[:, -1, :] / temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1)], dim=1)
    return ids


@wrong("11.1", "took the most likely token (argmax)")
def sample_greedy(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ids


@wrong("11.1", "predicted from the prompt alone")
def sample_without_feedback(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        probs = torch.softmax(model(prompt_ids)[:, -1, :] / temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return ids


@wrong("11.1", "returned only the")
def sample_new_tokens_only(model, prompt_ids, max_new_tokens, temperature, generator):
    return sample_loop(model, prompt_ids, max_new_tokens, temperature, generator)[:, prompt_ids.shape[1] :]


@wrong("11.1", "torch.multinomial needs probabilities")
def sample_from_logits(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        ids = torch.cat([ids, torch.multinomial(model(ids)[:, -1] / temperature, 1, generator=generator)], dim=1)
    return ids


@wrong("11.1", "used the logits of the first position")
def sample_first_position(model, prompt_ids, max_new_tokens, temperature, generator):
    ids = prompt_ids
    for _ in range(max_new_tokens):
        probs = torch.softmax(model(ids)[:, 0, :] / temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return ids


# ---------------------------------------------------------------------------------------------
# 11.2 perplexity
# ---------------------------------------------------------------------------------------------


@correct("11.2")
def perplexity_math(token_nll):
    return math.exp(token_nll.mean().item())


@correct("11.2")
def perplexity_tensor(token_nll):
    return token_nll.double().mean().exp()


@correct("11.2")
def perplexity_from_sum(token_nll):
    return math.exp(token_nll.sum().item() / token_nll.numel())


@wrong("11.2", "exp of the sum")
def perplexity_exp_of_sum(token_nll):
    return math.exp(token_nll.sum().item())


@wrong("11.2", "base 2")
def perplexity_base_two(token_nll):
    return 2 ** token_nll.mean().item()


@wrong("11.2", "mean of the exps")
def perplexity_mean_of_exps(token_nll):
    return token_nll.exp().mean().item()


@wrong("11.2", "perplexity is one number for all the tokens")
def perplexity_per_row(token_nll):
    return token_nll.mean(dim=-1).exp()


@wrong("11.2", "returned the mean loss")
def perplexity_without_exp(token_nll):
    return token_nll.mean().item()


# ---------------------------------------------------------------------------------------------
# 11.3 language_model_loss
# ---------------------------------------------------------------------------------------------


@correct("11.3")
def lm_loss_flattened(model, ids, pad_id):
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=pad_id)


@correct("11.3")
def lm_loss_whole_sequence(model, ids, pad_id):
    """Run the model on every token and drop the last prediction: the same numbers, as the model is causal."""
    logits = model(ids)[:, :-1]
    targets = ids[:, 1:]
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return nll[targets != pad_id].mean()


@wrong("11.3", "not shifted")
def lm_loss_not_shifted(model, ids, pad_id):
    logits = model(ids)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1), ignore_index=pad_id)


@wrong("11.3", "padding was counted")
def lm_loss_with_padding(model, ids, pad_id):
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


@wrong("11.3", "shifted the wrong way")
def lm_loss_shifted_backwards(model, ids, pad_id):
    logits = model(ids[:, 1:])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, :-1].reshape(-1), ignore_index=pad_id)


@wrong("11.3", "returned a Python number")
def lm_loss_item(model, ids, pad_id):
    return lm_loss_flattened(model, ids, pad_id).item()


# ---------------------------------------------------------------------------------------------
# 12.1 masked_mean_pool
# ---------------------------------------------------------------------------------------------


@correct("12.1")
def pool_weighted_sum(hidden, attention_mask):
    weights = attention_mask[:, :, None].to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)


@correct("12.1")
def pool_row_by_row(hidden, attention_mask):
    return torch.stack([row[mask].mean(dim=0) for row, mask in zip(hidden, attention_mask, strict=True)])


@correct("12.1")
def pool_masked_fill(hidden, attention_mask):
    total = hidden.masked_fill(~attention_mask[..., None], 0.0).sum(dim=1)
    return total / attention_mask.sum(dim=1, keepdim=True)


@wrong("12.1", "averaged over the padding too")
def pool_plain_mean(hidden, attention_mask):
    return hidden.mean(dim=1)


@wrong("12.1", "divided by T")
def pool_divided_by_t(hidden, attention_mask):
    return (hidden * attention_mask[:, :, None]).sum(dim=1) / hidden.shape[1]


@wrong("12.1", "give the mask a last axis")
def pool_mask_on_features(hidden, attention_mask):
    return (hidden * attention_mask[:, None, :]).sum(dim=1) / attention_mask.sum(dim=1, keepdim=True)


@wrong("12.1", "must be (B, 1)")
def pool_count_without_keepdim(hidden, attention_mask):
    return (hidden * attention_mask[:, :, None]).sum(dim=1) / attention_mask.sum(dim=1)


@wrong("12.1", "flattens the batch")
def pool_flattened(hidden, attention_mask):
    return hidden[attention_mask].mean(dim=0)


# ---------------------------------------------------------------------------------------------
# 12.2 top_k_similar
# ---------------------------------------------------------------------------------------------


@correct("12.2")
def top_k_normalised(query, documents, k):
    similarity = F.normalize(documents, dim=-1) @ F.normalize(query, dim=0)
    return similarity.topk(k).indices


@correct("12.2")
def top_k_cosine_similarity(query, documents, k):
    return F.cosine_similarity(documents, query[None, :], dim=-1).argsort(descending=True)[:k]


@correct("12.2")
def top_k_python_list(query, documents, k):
    scores = [float(doc @ query / (doc.norm() * query.norm())) for doc in documents]
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]


@wrong("12.2", "ranked by the dot product")
def top_k_dot_product(query, documents, k):
    return (documents @ query).topk(k).indices


@wrong("12.2", "ranked by the dot product")
def top_k_query_normalised_only(query, documents, k):
    return (documents @ (query / query.norm())).topk(k).indices


@wrong("12.2", "least similar first")
def top_k_ascending(query, documents, k):
    return F.cosine_similarity(documents, query[None, :], dim=-1).argsort()[:k]


@wrong("12.2", "returned the similarities")
def top_k_values(query, documents, k):
    return F.cosine_similarity(documents, query[None, :], dim=-1).topk(k).values


# ---------------------------------------------------------------------------------------------
# 12.3 split_fused_qkv
# ---------------------------------------------------------------------------------------------


@correct("12.3")
def split_by_slicing(c_attn_weight):
    d = c_attn_weight.shape[0]
    return c_attn_weight[:, :d].T, c_attn_weight[:, d : 2 * d].T, c_attn_weight[:, 2 * d :].T


@correct("12.3")
def split_transpose_then_chunk(c_attn_weight):
    w_q, w_k, w_v = c_attn_weight.T.chunk(3, dim=0)
    return w_q, w_k, w_v


@correct("12.3")
def split_with_torch_split(c_attn_weight):
    d = c_attn_weight.shape[0]
    return [block.T.contiguous() for block in c_attn_weight.split(d, dim=1)]


@wrong("12.3", "Conv1D stores its weight (in, out)")
def split_without_transpose(c_attn_weight):
    return tuple(c_attn_weight.chunk(3, dim=1))


@wrong("12.3", "wrong order")
def split_in_kqv_order(c_attn_weight):
    w_q, w_k, w_v = split_by_slicing(c_attn_weight)
    return w_k, w_q, w_v


@wrong("12.3", "regroups the rows")
def split_by_reshape(c_attn_weight):
    d = c_attn_weight.shape[0]
    return tuple(c_attn_weight.reshape(3, d, d))


@wrong("12.3", "expected three tensors")
def split_returning_the_transpose(c_attn_weight):
    return c_attn_weight.T


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def _id(exercise_id, implementation):
    return f"{exercise_id}-{CHECKERS[exercise_id].__name__}-{implementation.__name__}"


@pytest.mark.parametrize(
    ("exercise_id", "implementation", "hint_text"),
    [pytest.param(e, impl, text, id=_id(e, impl)) for e, impl, text in WRONG],
)
def test_wrong_implementation_is_rejected_with_a_named_mistake(exercise_id, implementation, hint_text, capsys):
    with pytest.raises(CheckFailed, match=re.escape(hint_text)) as failure:
        CHECKERS[exercise_id](implementation)
    message = str(failure.value)
    assert message.startswith(f"{exercise_id} "), message
    assert "Hint:" in message
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("exercise_id", "implementation"),
    [pytest.param(e, impl, id=_id(e, impl)) for e, impl in CORRECT],
)
def test_correct_implementation_is_accepted(exercise_id, implementation, capsys):
    CHECKERS[exercise_id](implementation)
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, printed
    assert printed.startswith(f"✓ {exercise_id} "), printed
    assert ": correct " in printed


def _stub_function(*args, **kwargs):
    raise NotImplementedError("Exercise: not implemented yet (write your code here)")


class _StubClass(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError("Exercise: not implemented yet (write your code here)")


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_stub_raising_not_implemented_fails_clearly(exercise_id, capsys):
    stub = _StubClass if exercise_id in CLASS_EXERCISES else _stub_function
    with pytest.raises(CheckFailed, match="not implemented yet") as failure:
        CHECKERS[exercise_id](stub)
    assert "raise NotImplementedError" in str(failure.value)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_every_checker_has_three_wrong_and_two_correct_implementations(exercise_id):
    n_wrong = sum(1 for e, _, _ in WRONG if e == exercise_id)
    n_correct = sum(1 for e, _ in CORRECT if e == exercise_id)
    assert n_wrong >= 3, f"{exercise_id}: only {n_wrong} wrong implementations"
    assert n_correct >= 2, f"{exercise_id}: only {n_correct} correct implementations"


def test_every_public_checker_of_these_lessons_is_covered():
    lessons = {f"course_lib.checks.lesson{number:02d}" for number in (0, 10, 11, 12)}
    public = {name for name in checks.__all__ if name.startswith("check_")}
    assert {name for name in public if getattr(checks, name).__module__ in lessons} == {
        checker.__name__ for checker in CHECKERS.values()
    }


def test_a_class_instance_is_refused_with_a_hint():
    with pytest.raises(CheckFailed, match="pass the class itself"):
        checks.check_linear(LinearWithMatmul(3, 2))


@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
def test_checkers_leave_the_global_state_alone(default_dtype, capsys):
    torch.set_default_dtype(default_dtype)
    try:
        torch.manual_seed(123)
        expected_next_draw = torch.rand(3)
        torch.manual_seed(123)
        checks.check_gradient_descent_step(step_by_hand)
        checks.check_sample_sequence(sample_loop)
        assert torch.equal(torch.rand(3), expected_next_draw)
        assert torch.get_default_dtype() == default_dtype
        assert torch.is_grad_enabled()
    finally:
        torch.set_default_dtype(torch.float32)
    assert capsys.readouterr().out.count("✓") == 2


def test_success_lines_are_deterministic(capsys):
    checks.check_sample_sequence(sample_loop)
    first = capsys.readouterr().out
    checks.check_sample_sequence(sample_gumbel_max)  # passes through the distribution test instead
    assert capsys.readouterr().out == first
