"""Tests of the checkers of exercises 13 (from GPT-2 to a modern LLM): each accepts several genuinely
different correct implementations, and rejects realistic wrong ones with a hint that names the mistake.

Run ``pytest tests/test_checks_13.py -v``: the ids read ``<exercise>-<checker>-<implementation>``.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import checks
from course_lib.checks import CheckFailed

CHECKERS = {
    "13.1": checks.check_rms_norm,
    "13.2": checks.check_apply_rope,
    "13.3": checks.check_swiglu,
    "13.4": checks.check_repeat_kv_heads,
    "13.5": checks.check_merge_pair,
}
CLASS_EXERCISES = {"13.3"}

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
# 13.1 rms_norm
# ---------------------------------------------------------------------------------------------


@correct("13.1")
def rms_norm_by_hand(x, weight, eps=1e-6):
    return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + eps) * weight


@correct("13.1")
def rms_norm_rsqrt_pow(x, weight, eps=1e-6):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


@correct("13.1")
def rms_norm_functional(x, weight, eps=1e-6):
    return F.rms_norm(x, x.shape[-1:], weight, eps)


@wrong("13.1", "subtracted the mean")
def rms_norm_centred(x, weight, eps=1e-6):
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt((centred**2).mean(dim=-1, keepdim=True) + eps) * weight


@wrong("13.1", "subtracted the mean")
def rms_norm_centred_then_rms_of_x(x, weight, eps=1e-6):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * weight


@wrong("13.1", "eps outside the square root")
def rms_norm_eps_outside(x, weight, eps=1e-6):
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight


@wrong("13.1", "wrong default eps")
def rms_norm_layer_norm_default_eps(x, weight, eps=1e-5):
    return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + eps) * weight


@wrong("13.1", "ignores eps")
def rms_norm_fixed_eps(x, weight, eps=1e-6):
    return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + 1e-6) * weight


@wrong("13.1", "sum instead of mean")
def rms_norm_norm(x, weight, eps=1e-6):
    return x / torch.sqrt((x**2).sum(dim=-1, keepdim=True) + eps) * weight


@wrong("13.1", "forgot to scale by weight")
def rms_norm_no_weight(x, weight, eps=1e-6):
    return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + eps)


# ---------------------------------------------------------------------------------------------
# 13.2 apply_rope
# ---------------------------------------------------------------------------------------------


@correct("13.2")
def rope_rotate_half(x, positions, base=10000.0):
    d_head = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, d_head, 2, dtype=x.dtype) / d_head)  # (d_head/2,)
    angles = positions.to(x.dtype)[:, None] * inv_freq[None, :]  # (T, d_head/2)
    emb = torch.cat([angles, angles], dim=-1)  # (T, d_head)
    first, second = x[..., : d_head // 2], x[..., d_head // 2 :]
    rotated = torch.cat([-second, first], dim=-1)
    return x * emb.cos() + rotated * emb.sin()


@correct("13.2")
def rope_pairs_explicitly(x, positions, base=10000.0):
    """Rotate each pair (a, b) = (x_i, x_{i + d/2}) with its own 2x2 rotation, written out."""
    half = x.shape[-1] // 2
    i = torch.arange(half, dtype=torch.float64)
    theta = positions.double()[:, None] * base ** (-2 * i / (2 * half))  # (T, d_head/2)
    cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


@correct("13.2")
def rope_complex_numbers(x, positions, base=10000.0):
    """RoPE as a multiplication by e^{i θ}, with pairs (i, i + d/2) as complex numbers."""
    half = x.shape[-1] // 2
    frequencies = base ** (-torch.arange(half, dtype=torch.float64) / half)
    theta = positions.double()[:, None] * frequencies  # (T, d_head/2)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(torch.ones_like(theta), theta)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


@wrong("13.2", "paired neighbouring dimensions (2i, 2i+1)")
def rope_interleaved(x, positions, base=10000.0):
    d_head = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype) / d_head)
    angles = positions.to(x.dtype)[:, None] * inv_freq  # (T, d_head/2)
    cos, sin = angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([-odd, even], dim=-1).flatten(-2)
    return x * cos + rotated * sin


@wrong("13.2", "ignored positions")
def rope_positions_from_zero(x, positions, base=10000.0):
    return rope_rotate_half(x, torch.arange(x.shape[-2]), base)


@wrong("13.2", "wrong frequency exponent")
def rope_exponent_i_over_d(x, positions, base=10000.0):
    d_head = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(d_head // 2, dtype=x.dtype) / d_head)  # i / d_head: too slow
    angles = positions.to(x.dtype)[:, None] * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    first, second = x.chunk(2, dim=-1)
    return x * emb.cos() + torch.cat([-second, first], dim=-1) * emb.sin()


@wrong("13.2", "turned the wrong way")
def rope_rotate_half_sign_swapped(x, positions, base=10000.0):
    d_head = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, d_head, 2, dtype=x.dtype) / d_head)
    angles = positions.to(x.dtype)[:, None] * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    first, second = x.chunk(2, dim=-1)
    return x * emb.cos() + torch.cat([second, -first], dim=-1) * emb.sin()


@wrong("13.2", "right only to float32 precision")
def rope_float32_angles(x, positions, base=10000.0):
    d_head = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2).float() / d_head))  # float32, as many tutorials write
    angles = positions.float()[:, None] * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    first, second = x.chunk(2, dim=-1)
    return x * emb.cos() + torch.cat([-second, first], dim=-1) * emb.sin()


@wrong("13.2", "ignores base")
def rope_fixed_base(x, positions, base=10000.0):
    return rope_rotate_half(x, positions)


# ---------------------------------------------------------------------------------------------
# 13.3 SwiGLU
# ---------------------------------------------------------------------------------------------


class SwiGLUModules(nn.Module):
    """Correct: three nn.Linear layers, F.silu on the gate."""

    def __init__(self, d_model, d_ff, bias=False):
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class SwiGLUSigmoidByHand(nn.Module):
    """Correct: SiLU written as g * sigmoid(g), the layers declared in another order, explicit matmuls."""

    def __init__(self, d_model, d_ff, bias=False):
        super().__init__()
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias)

    def forward(self, x):
        g = x @ self.gate.weight.T + (self.gate.bias if self.gate.bias is not None else 0.0)
        hidden = g * torch.sigmoid(g) * self.up(x)  # (B, T, d_ff)
        return self.down(hidden)


CORRECT += [("13.3", SwiGLUModules), ("13.3", SwiGLUSigmoidByHand)]


@wrong("13.3", "SiLU on the wrong branch")
class SwiGLUSiluOnUp(SwiGLUModules):
    def forward(self, x):
        return self.down(self.gate(x) * F.silu(self.up(x)))


@wrong("13.3", "SiLU applied after the product")
class SwiGLUSiluAfterProduct(SwiGLUModules):
    def forward(self, x):
        return self.down(F.silu(self.gate(x) * self.up(x)))


@wrong("13.3", "used sigmoid (the original GLU)")
class SwiGLUSigmoidGate(SwiGLUModules):
    def forward(self, x):
        return self.down(torch.sigmoid(self.gate(x)) * self.up(x))


@wrong("13.3", "used GELU")
class SwiGLUGelu(SwiGLUModules):
    def forward(self, x):
        return self.down(F.gelu(self.gate(x)) * self.up(x))


@wrong("13.3", "missing attributes: gate, up, down")
class SwiGLUFused(nn.Module):
    """One fused d_model -> 2 * d_ff layer: a real design, but not the contract's names."""

    def __init__(self, d_model, d_ff, bias=False):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.proj(F.silu(g) * u)


@wrong("13.3", "pass bias=bias to every nn.Linear")
class SwiGLUAlwaysNoBias(SwiGLUModules):
    def __init__(self, d_model, d_ff, bias=False):
        super().__init__(d_model, d_ff, bias=False)


# ---------------------------------------------------------------------------------------------
# 13.4 repeat_kv_heads
# ---------------------------------------------------------------------------------------------


@correct("13.4")
def repeat_kv_interleave(x, n_repeats):
    return x.repeat_interleave(n_repeats, dim=1)


@correct("13.4")
def repeat_kv_expand_reshape(x, n_repeats):
    """Hugging Face's repeat_kv: a new axis after the heads, expanded, then folded into the heads."""
    B, n_kv_heads, T, d_head = x.shape
    expanded = x[:, :, None, :, :].expand(B, n_kv_heads, n_repeats, T, d_head)
    return expanded.reshape(B, n_kv_heads * n_repeats, T, d_head)


@correct("13.4")
def repeat_kv_by_index(x, n_repeats):
    heads = torch.arange(x.shape[1] * n_repeats) // n_repeats  # query head h reads kv head h // n_repeats
    return x[:, heads]


@wrong("13.4", "tiled the heads")
def repeat_kv_tiled(x, n_repeats):
    return x.repeat(1, n_repeats, 1, 1)


@wrong("13.4", "tiled the heads")
def repeat_kv_expand_wrong_axis(x, n_repeats):
    B, n_kv_heads, T, d_head = x.shape
    return x[:, None].expand(B, n_repeats, n_kv_heads, T, d_head).reshape(B, n_repeats * n_kv_heads, T, d_head)


@wrong("13.4", "repeated along the wrong dimension")
def repeat_kv_time_axis(x, n_repeats):
    return x.repeat_interleave(n_repeats, dim=2)


@wrong("13.4", "returned x unchanged")
def repeat_kv_nothing(x, n_repeats):
    return x


# ---------------------------------------------------------------------------------------------
# 13.5 merge_pair
# ---------------------------------------------------------------------------------------------


@correct("13.5")
def merge_pair_while(ids, pair, new_id):
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


@correct("13.5")
def merge_pair_skip_flag(ids, pair, new_id):
    merged, skip = [], False
    for index, current in enumerate(ids):
        following = ids[index + 1] if index + 1 < len(ids) else None
        if skip:
            skip = False
            continue
        if (current, following) == tuple(pair):
            merged.append(new_id)
            skip = True
        else:
            merged.append(current)
    return merged


@correct("13.5")
def merge_pair_tuple(ids, pair, new_id):
    return tuple(merge_pair_while(ids, pair, new_id))


@wrong("13.5", "merged overlapping occurrences")
def merge_pair_overlapping(ids, pair, new_id):
    merged = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            merged.append(new_id)
        elif i > 0 and (ids[i - 1], ids[i]) == tuple(pair):
            continue  # the second id of a merged pair
        else:
            merged.append(ids[i])
    return merged


@wrong("13.5", "scanned right to left")
def merge_pair_from_the_end(ids, pair, new_id):
    merged, i = [], len(ids) - 1
    while i >= 0:
        if i >= 1 and (ids[i - 1], ids[i]) == tuple(pair):
            merged.insert(0, new_id)
            i -= 2
        else:
            merged.insert(0, ids[i])
            i -= 1
    return merged


@wrong("13.5", "merged only the first occurrence")
def merge_pair_first(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2 :]
    return list(ids)


@wrong("13.5", "the last id was lost")
def merge_pair_off_by_one(ids, pair, new_id):
    merged, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


@wrong("13.5", "matched the pair in either order")
def merge_pair_unordered(ids, pair, new_id):
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and {ids[i], ids[i + 1]} == set(pair):
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


@wrong("13.5", "argument 1 was changed in place")
def merge_pair_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            ids[i : i + 2] = [new_id]
        i += 1
    return ids


@wrong("13.5", "the result must hold ints")
def merge_pair_of_pairs(ids, pair, new_id):
    return [pair if i == new_id else i for i in merge_pair_while(ids, pair, new_id)]


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def _name(implementation) -> str:
    return getattr(implementation, "__name__", type(implementation).__name__)


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


class _StubClass(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError("exercise: replace this line with your code")


class _StubForward(SwiGLUModules):
    def forward(self, x):
        raise NotImplementedError("13.3: write forward")


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_stub_raising_not_implemented_fails_clearly(exercise_id, capsys):
    stub = _StubClass if exercise_id in CLASS_EXERCISES else _stub_function
    with pytest.raises(CheckFailed, match="not implemented yet") as failure:
        CHECKERS[exercise_id](stub)
    assert "raise NotImplementedError" in str(failure.value)
    assert capsys.readouterr().out == ""


def test_class_stub_with_only_forward_missing_fails_clearly():
    with pytest.raises(CheckFailed, match="not implemented yet"):
        checks.check_swiglu(_StubForward)


def test_an_instance_instead_of_the_class_is_refused():
    with pytest.raises(CheckFailed, match="pass the class itself"):
        checks.check_swiglu(SwiGLUModules(8, 24))


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_every_checker_has_three_wrong_and_two_correct_implementations(exercise_id):
    n_wrong = sum(1 for e, _, _ in WRONG if e == exercise_id)
    n_correct = sum(1 for e, _ in CORRECT if e == exercise_id)
    assert n_wrong >= 3, f"{exercise_id}: only {n_wrong} wrong implementations"
    assert n_correct >= 2, f"{exercise_id}: only {n_correct} correct implementations"


def test_every_lesson_13_checker_is_covered():
    lesson_13 = {name for name in checks.__all__ if getattr(checks, name).__module__.endswith("lesson13")}
    assert lesson_13 == {checker.__name__ for checker in CHECKERS.values()}


def test_rope_checker_tests_a_cached_offset():
    """The mistake 'positions restart at 0' must be caught, so some case's positions do not start at 0."""
    with pytest.raises(CheckFailed, match=r"positions \[7, 8, 9, 10, 11\]"):
        checks.check_apply_rope(rope_positions_from_zero)


@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
def test_checkers_do_not_depend_on_or_change_the_global_state(default_dtype, capsys):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        threads = torch.get_num_threads()
        torch.manual_seed(123)
        expected_next_draw = torch.rand(3)
        torch.manual_seed(123)
        checks.check_apply_rope(rope_rotate_half)
        checks.check_swiglu(SwiGLUModules)
        assert torch.get_default_dtype() == default_dtype
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.rand(3), expected_next_draw)
    finally:
        torch.set_default_dtype(previous)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["✓ 13.2 apply_rope", "✓ 13.3 SwiGLU"]


def test_success_line_is_deterministic(capsys):
    checks.check_merge_pair(merge_pair_while)
    first = capsys.readouterr().out
    checks.check_merge_pair(merge_pair_skip_flag)
    assert capsys.readouterr().out == first
