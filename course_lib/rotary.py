"""Rotary position embedding (RoPE): encode a token's position by rotating its query and key.

GPT adds a learned position vector to each token. Llama instead cuts every query and key
vector into pairs of numbers and rotates each pair by an angle proportional to the token's
position: pair i turns by ``position * base ** (-2i / d_head)`` radians, fast for the first
pairs and slower and slower for the last ones (like the hands of a clock). A rotated query
dotted with a rotated key then depends only on the two vectors and on the *distance*
between their positions, which is what attention should care about.

Two layouts pair the dimensions differently; they are the same rotation with the
dimensions permuted:

* "rotate half" (Hugging Face's Llama, the default): dimension i pairs with i + d_head/2;
* interleaved (the RoPE paper, GPT-J, llama.cpp): dimension 2i pairs with 2i + 1.

Precision: the angles are computed in float64 (float32 on Apple's "mps" device, which has
no float64), then their cosines and sines are cast to the dtype of x, so even a float32
model gets angles that are exact to float32's last digit at any position. Hugging Face
computes the angles in float32, whose rounding grows with the position (up to about
6e-8 * position radians): at positions 0..63 its rotated vectors differ from exact ones by
about 5e-6, in a float64 model too. Fed the same float64 angles, the two rotations agree
exactly (``tests/test_llama.py``).

Built in lesson 13 (from GPT-2 to a modern LLM).
"""

from __future__ import annotations

import functools

import torch

from course_lib._validation import require_min_rank, require_positive_int, require_rank, shape_text


def _require_even_d_head(where: str, d_head: int) -> None:
    require_positive_int(where, "d_head", d_head)
    if d_head % 2 != 0:
        raise ValueError(f"{where}: d_head must be even (RoPE rotates pairs of dimensions), got d_head={d_head}")


def _angle_dtype(device: torch.device) -> torch.dtype:
    """float64 for accurate angles at large positions; float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def rope_frequencies(
    d_head: int, base: float = 10000.0, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """The rotation speed (radians per position) of each of the d_head/2 pairs.

    Pair i turns at ``base ** (-2i / d_head)``: pair 0 at one radian per position, the
    last pair almost ``base`` times slower.

    Shapes:
        returns (d_head/2,)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    where = "rope_frequencies"
    _require_even_d_head(where, d_head)
    if isinstance(base, bool) or not isinstance(base, int | float) or not base > 0:
        raise ValueError(f"{where}: base must be a number > 0, got {base!r}")
    exponents = torch.arange(0, d_head, 2, dtype=dtype, device=device) / d_head  # (d_head/2,): 2i / d_head
    return base**-exponents  # (d_head/2,)


def _check_positions(where: str, positions) -> None:
    require_rank(where, "positions", positions, "(T,) integer positions", 1)
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(
            f"{where}: positions must be an integer tensor (T,), got dtype {positions.dtype}; "
            "build them with torch.arange(T)"
        )
    if positions.numel() and int(positions.min()) < 0:
        raise ValueError(f"{where}: positions must be >= 0, got a minimum of {int(positions.min())}")


def rope_angles(positions: torch.Tensor, d_head: int, base: float = 10000.0) -> torch.Tensor:
    """The angle by which each position turns each pair: ``positions[t] * frequency[i]``.

    Computed in float64 (float32 on "mps"), on the device of ``positions``.

    Shapes:
        positions (T,) integer -> angles (T, d_head/2)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    where = "rope_angles"
    _check_positions(where, positions)
    dtype = _angle_dtype(positions.device)
    frequencies = rope_frequencies(d_head, base, dtype=dtype, device=positions.device)  # (d_head/2,)
    return positions.to(dtype)[:, None] * frequencies[None, :]  # (T, d_head/2)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Turn every pair (x_i, x_{i + d/2}) by 90 degrees: (a, b) -> (-b, a).

    The "rotate half" layout: the first half of the dimensions pairs with the second half.

    Shapes:
        x: (..., d) -> (..., d)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    require_min_rank("rotate_half", "x", x, "(..., d) with d even", 1)
    if x.shape[-1] % 2 != 0:
        raise ValueError(f"rotate_half: the last dimension of x must be even, got {shape_text(x)}")
    first, second = x.chunk(2, dim=-1)  # (..., d/2) each
    return torch.cat([-second, first], dim=-1)  # (..., d)


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    """Turn every pair (x_{2i}, x_{2i+1}) by 90 degrees: (a, b) -> (-b, a).

    The interleaved layout: neighbouring dimensions form a pair.

    Shapes:
        x: (..., d) -> (..., d)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    require_min_rank("rotate_interleaved", "x", x, "(..., d) with d even", 1)
    if x.shape[-1] % 2 != 0:
        raise ValueError(f"rotate_interleaved: the last dimension of x must be even, got {shape_text(x)}")
    pairs = x.unflatten(-1, (-1, 2))  # (..., d/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., d/2) each
    return torch.stack([-odd, even], dim=-1).flatten(-2)  # (..., d)


def apply_rope(
    x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0, interleaved: bool = False
) -> torch.Tensor:
    """Rotate each pair of dimensions of ``x`` by its position's angle.

    For a pair (a, b) and angle θ: (a, b) -> (a cos θ - b sin θ, a sin θ + b cos θ), written
    for all pairs at once as ``x * cos + rotate(x) * sin``. ``interleaved=False`` pairs
    dimension i with i + d_head/2 (Hugging Face's Llama); ``interleaved=True`` pairs 2i with
    2i + 1 (GPT-J, llama.cpp). Apply it to queries and keys, never to values.

    ``positions`` are absolute: with a key/value cache holding T_past tokens, the new tokens
    are at positions T_past, T_past + 1, ...

    Shapes:
        x (..., T, d_head), positions (T,) integer >= 0 -> (..., T, d_head), dtype of x

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    where = "apply_rope"
    require_min_rank(where, "x", x, "(..., T, d_head)", 2)
    T, d_head = x.shape[-2], x.shape[-1]
    if d_head % 2 != 0:
        raise ValueError(
            f"{where}: d_head must be even (RoPE rotates pairs of dimensions), got x {shape_text(x)} with d_head={d_head}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{where}: x must be a floating-point tensor, got dtype {x.dtype}")
    _check_positions(where, positions)
    if positions.shape[0] != T:
        raise ValueError(
            f"{where}: positions must be (T,) with T={T} like x {shape_text(x)}, got {shape_text(positions)}"
        )
    angles = rope_angles(positions.to(x.device), d_head, base)  # (T, d_head/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # (T, d_head/2) each
    if interleaved:
        cos = cos.repeat_interleave(2, dim=-1)  # (T, d_head): c0 c0 c1 c1 ...
        sin = sin.repeat_interleave(2, dim=-1)  # (T, d_head)
        return x * cos + rotate_interleaved(x) * sin  # (..., T, d_head)
    cos = torch.cat([cos, cos], dim=-1)  # (T, d_head): c0 c1 ... c0 c1 ...
    sin = torch.cat([sin, sin], dim=-1)  # (T, d_head)
    return x * cos + rotate_half(x) * sin  # (..., T, d_head)


@functools.lru_cache(maxsize=16)
def _rope_tables(
    T_past: int, T: int, d_head: int, base: float, interleaved: bool, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (cos, sin) tables ``apply_rope`` builds for positions T_past .. T_past + T - 1, kept for reuse.

    Shapes:
        -> cos, sin: (T, d_head) each, in the layout of ``interleaved``
    """
    positions = torch.arange(T_past, T_past + T, device=device)  # (T,)
    angles = rope_angles(positions, d_head, base)  # (T, d_head/2)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)  # (T, d_head/2) each
    if interleaved:
        return cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1)  # (T, d_head) each
    return torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)  # (T, d_head) each


def apply_rope_cached(x: torch.Tensor, T_past: int, base: float = 10000.0, interleaved: bool = False) -> torch.Tensor:
    """``apply_rope`` at positions T_past, T_past + 1, ..., with the cos/sin tables computed once.

    Every layer of a model rotates its queries and keys by the same angles, and training asks
    for the same positions at every step, so the fast path (``use_fast_path``) keeps the last
    tables instead of recomputing them per call. Same numbers as ``apply_rope`` (same operations).

    Shapes:
        x (..., T, d_head) -> (..., T, d_head), dtype of x

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    cos, sin = _rope_tables(T_past, x.shape[-2], x.shape[-1], float(base), bool(interleaved), x.device, x.dtype)
    rotated = rotate_interleaved(x) if interleaved else rotate_half(x)  # (..., T, d_head)
    return x * cos + rotated * sin  # (..., T, d_head)
