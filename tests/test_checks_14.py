"""Tests of the checkers of exercises 14 (a real chat LLM): each accepts several genuinely different correct
implementations, and rejects realistic wrong ones with a hint that names the mistake.

Run ``pytest tests/test_checks_14.py -v``: the ids read ``<exercise>-<checker>-<implementation>``. None of these
needs SmolLM2's weights: the checkers make up their own blocks, attention weights and residual streams.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import checks
from course_lib.checks import CheckFailed

CHECKERS = {
    "14.1": checks.check_dequantize_q4_1_block,
    "14.2": checks.check_induction_score,
    "14.3": checks.check_logit_lens,
}

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
# 14.1 dequantize_q4_1_block
# ---------------------------------------------------------------------------------------------


@correct("14.1")
def q4_1_with_views(block):
    d = block[0:2].view(torch.float16).float()
    m = block[2:4].view(torch.float16).float()
    packed = block[4:]
    q = torch.cat([packed & 0x0F, packed >> 4]).float()
    return d * q + m


@correct("14.1")
def q4_1_with_struct_and_a_loop(block):
    """Python's struct reads little-endian float16 with '<e'; a loop over the 16 bytes."""
    raw = bytes(block.tolist())
    d, m = struct.unpack("<ee", raw[:4])
    low = [byte & 0x0F for byte in raw[4:]]
    high = [byte >> 4 for byte in raw[4:]]
    return torch.tensor([d * q + m for q in low + high], dtype=torch.float32)


@correct("14.1")
def q4_1_with_numpy(block):
    raw = block.numpy()
    d, m = raw[:4].view(np.float16).astype(np.float32)
    q = np.concatenate([raw[4:] % 16, raw[4:] // 16]).astype(np.float32)
    return torch.from_numpy(d * q + m)


@correct("14.1")
def q4_1_in_float64(block):
    d = block[0:2].view(torch.float16).double()
    m = block[2:4].view(torch.float16).double()
    q = torch.cat([block[4:] % 16, block[4:] // 16]).double()
    return (q * d + m)[:32]


@wrong("14.1", "you put the high halves first")
def q4_1_high_first(block):
    d, m = block[0:2].view(torch.float16).float(), block[2:4].view(torch.float16).float()
    return d * torch.cat([block[4:] >> 4, block[4:] & 0x0F]).float() + m


@wrong("14.1", "nibble order")
def q4_1_side_by_side(block):
    d, m = block[0:2].view(torch.float16).float(), block[2:4].view(torch.float16).float()
    q = torch.stack([block[4:] & 0x0F, block[4:] >> 4], dim=-1).flatten()  # weight 2j, 2j + 1 from byte j
    return d * q.float() + m


@wrong("14.1", "forgot the minimum")
def q4_1_no_minimum(block):
    d = block[0:2].view(torch.float16).float()
    return d * torch.cat([block[4:] & 0x0F, block[4:] >> 4]).float()


@wrong("14.1", "do not subtract 8")
def q4_1_signed_codes(block):
    d, m = block[0:2].view(torch.float16).float(), block[2:4].view(torch.float16).float()
    q = torch.cat([block[4:] & 0x0F, block[4:] >> 4]).float() - 8  # as in Q4_0
    return d * q + m


@wrong("14.1", "big-endian")
def q4_1_big_endian(block):
    raw = bytes(block.tolist())
    d, m = struct.unpack(">ee", raw[:4])
    q = torch.cat([block[4:] & 0x0F, block[4:] >> 4]).float()
    return d * q + m


@wrong("14.1", "bfloat16")
def q4_1_bfloat16(block):
    d, m = block[0:2].view(torch.bfloat16).float(), block[2:4].view(torch.bfloat16).float()
    return d * torch.cat([block[4:] & 0x0F, block[4:] >> 4]).float() + m


@wrong("14.1", "d and m swapped")
def q4_1_swapped_fields(block):
    m, d = block[0:2].view(torch.float16).float(), block[2:4].view(torch.float16).float()
    return d * torch.cat([block[4:] & 0x0F, block[4:] >> 4]).float() + m


@wrong("14.1", "computed in float16")
def q4_1_half_precision(block):
    d, m = block[0:2].view(torch.float16), block[2:4].view(torch.float16)
    return d * torch.cat([block[4:] & 0x0F, block[4:] >> 4]) + m


@wrong("14.1", "wrong shape: expected (32,), got (1, 32)")
def q4_1_kept_a_batch_dimension(block):
    d, m = block[0:2].view(torch.float16).float(), block[2:4].view(torch.float16).float()
    return (d * torch.cat([block[4:] & 0x0F, block[4:] >> 4]).float() + m)[None, :]


# ---------------------------------------------------------------------------------------------
# 14.2 induction_score
# ---------------------------------------------------------------------------------------------


@correct("14.2")
def induction_with_indices(weights, period):
    queries = torch.arange(period, 2 * period)
    return weights[..., queries, queries - period + 1].mean(dim=-1)


@correct("14.2")
def induction_with_diagonal(weights, period):
    stripe = torch.diagonal(weights, offset=-(period - 1), dim1=-2, dim2=-1)  # (..., period + 1): i = period-1 .. T-1
    return stripe[..., 1:].mean(dim=-1)


@correct("14.2")
def induction_with_loops(weights, period):
    n_layers, n_heads = weights.shape[:2]
    scores = torch.zeros(n_layers, n_heads, dtype=weights.dtype)
    for layer in range(n_layers):
        for head in range(n_heads):
            total = 0.0
            for i in range(period, 2 * period):
                total += weights[layer, head, i, i - period + 1]
            scores[layer, head] = total / period
    return scores


@wrong("14.2", "you measured attention to i - period")
def induction_duplicate_token(weights, period):
    queries = torch.arange(period, 2 * period)
    return weights[..., queries, queries - period].mean(dim=-1)


@wrong("14.2", "not i - period + 2")
def induction_two_after(weights, period):
    queries = torch.arange(period, 2 * period)
    return weights[..., queries, queries - period + 2].mean(dim=-1)


@wrong("14.2", "averaged over the first copy too")
def induction_whole_diagonal(weights, period):
    return torch.diagonal(weights, offset=-(period - 1), dim1=-2, dim2=-1).mean(dim=-1)


@wrong("14.2", "averaged over the first copy too")
def induction_every_query(weights, period):
    queries = torch.arange(2 * period)
    return weights[..., queries, queries - period + 1].mean(dim=-1)  # negative keys wrap around


@wrong("14.2", "summed instead of averaged")
def induction_sum(weights, period):
    queries = torch.arange(period, 2 * period)
    return weights[..., queries, queries - period + 1].sum(dim=-1)


@wrong("14.2", "swapped the axes")
def induction_keys_on_rows(weights, period):
    queries = torch.arange(period, 2 * period)
    return weights[..., queries - period + 1, queries].mean(dim=-1)


@wrong("14.2", "one score per layer and head")
def induction_diagonal_of_the_wrong_dims(weights, period):
    return torch.diagonal(weights, offset=-(period - 1))[..., 1:].mean(dim=-1)


# ---------------------------------------------------------------------------------------------
# 14.3 logit_lens
# ---------------------------------------------------------------------------------------------


@correct("14.3")
def lens_in_one_line(residuals, final_norm, lm_head):
    return torch.softmax(lm_head(final_norm(residuals)), dim=-1)


@correct("14.3")
def lens_by_hand(residuals, final_norm, lm_head):
    """The RMSNorm and the output layer written out with the modules' own parameters."""
    normed = residuals * torch.rsqrt(residuals.pow(2).mean(-1, keepdim=True) + final_norm.eps) * final_norm.weight
    logits = normed @ lm_head.weight.T
    return (logits - logits.logsumexp(-1, keepdim=True)).exp()


@correct("14.3")
def lens_flattened(residuals, final_norm, lm_head):
    flat = residuals.reshape(-1, residuals.shape[-1])
    probs = F.softmax(lm_head(final_norm(flat)), dim=1)
    return probs.reshape(*residuals.shape[:-1], -1)


@wrong("14.3", "skipped the final norm")
def lens_without_norm(residuals, final_norm, lm_head):
    return torch.softmax(lm_head(residuals), dim=-1)


@wrong("14.3", "used layer norm")
def lens_layer_norm(residuals, final_norm, lm_head):
    return torch.softmax(lm_head(F.layer_norm(residuals, residuals.shape[-1:])), dim=-1)


@wrong("14.3", "returned logits")
def lens_logits(residuals, final_norm, lm_head):
    return lm_head(final_norm(residuals))


@wrong("14.3", "use softmax, not log_softmax")
def lens_log_probs(residuals, final_norm, lm_head):
    return torch.log_softmax(lm_head(final_norm(residuals)), dim=-1)


@wrong("14.3", "softmax over the wrong dimension")
def lens_softmax_over_layers(residuals, final_norm, lm_head):
    return torch.softmax(lm_head(final_norm(residuals)), dim=0)


@wrong("14.3", "then lm_head (d_model -> V)")
def lens_norm_after_head(residuals, final_norm, lm_head):
    return torch.softmax(final_norm(lm_head(residuals)), dim=-1)


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def _name(implementation) -> str:
    return implementation.__name__


def _id(exercise_id: str, implementation) -> str:
    return f"{exercise_id}-{CHECKERS[exercise_id].__name__}-{_name(implementation)}"


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
    assert "✓" not in capsys.readouterr().out


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
    raise NotImplementedError("exercise: replace this line with your code")


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_stub_raising_not_implemented_fails_clearly(exercise_id, capsys):
    with pytest.raises(CheckFailed, match="not implemented yet") as failure:
        CHECKERS[exercise_id](_stub_function)
    assert "raise NotImplementedError" in str(failure.value)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_every_checker_has_three_wrong_and_two_correct_implementations(exercise_id):
    n_wrong = sum(1 for e, _, _ in WRONG if e == exercise_id)
    n_correct = sum(1 for e, _ in CORRECT if e == exercise_id)
    assert n_wrong >= 3, f"{exercise_id}: only {n_wrong} wrong implementations"
    assert n_correct >= 2, f"{exercise_id}: only {n_correct} correct implementations"


def test_every_lesson_14_checker_is_covered():
    lesson_14 = {name for name in checks.__all__ if getattr(checks, name).__module__.endswith("lesson14")}
    assert lesson_14 == {checker.__name__ for checker in CHECKERS.values()}


def test_the_q4_1_checker_names_the_block_it_failed_on():
    with pytest.raises(CheckFailed, match=r"case: d=1, m=0, every byte 0x21") as failure:
        checks.check_dequantize_q4_1_block(q4_1_high_first)
    assert "21 21 21" in str(failure.value)  # the bytes are in the message, to reproduce the case


def test_a_changed_input_is_reported():
    def changes_its_input(block):
        result = q4_1_with_views(block)
        block[4:] = 0
        return result

    with pytest.raises(CheckFailed, match="changed in place"):
        checks.check_dequantize_q4_1_block(changes_its_input)


@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
def test_checkers_do_not_depend_on_or_change_the_global_state(default_dtype, capsys):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        threads = torch.get_num_threads()
        torch.manual_seed(123)
        expected_next_draw = torch.rand(3)
        torch.manual_seed(123)
        checks.check_dequantize_q4_1_block(q4_1_with_views)
        checks.check_induction_score(induction_with_indices)
        checks.check_logit_lens(lens_in_one_line)
        assert torch.get_default_dtype() == default_dtype
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.rand(3), expected_next_draw)
    finally:
        torch.set_default_dtype(previous)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ 14.1 dequantize_q4_1_block",
        "✓ 14.2 induction_score",
        "✓ 14.3 logit_lens",
    ]


def test_success_line_is_deterministic(capsys):
    checks.check_induction_score(induction_with_indices)
    first = capsys.readouterr().out
    checks.check_induction_score(induction_with_diagonal)
    assert capsys.readouterr().out == first
