"""Checkers of exercises 02: positional encoding."""

from __future__ import annotations

import math

import torch

from course_lib.checks._machinery import (
    _as_number,
    _call,
    _call_args_text,
    _checker,
    _compare,
    _compare_number,
    _default_dtype,
    _dtype_name,
    _shape,
)
from course_lib.positional import sinusoidal_positional_encoding

# ---------------------------------------------------------------------------------------------
# Lesson 02: positional encoding
# ---------------------------------------------------------------------------------------------


def _pe_variant(seq_len: int, d_model: int, base: float, *, swap=False, blocks=False, exponent="pair", start=0):
    """What a common wrong positional encoding gives (float64)."""
    positions = torch.arange(start, start + seq_len, dtype=torch.float64)[:, None]  # (seq_len, 1)
    if exponent == "per_dimension":
        dims = torch.arange(d_model, dtype=torch.float64)  # (d_model,)
        angles = positions / base ** (dims / d_model)  # (seq_len, d_model)
        encoding = torch.cos(angles) if swap else torch.sin(angles)  # (seq_len, d_model)
        encoding[:, 1::2] = (torch.sin if swap else torch.cos)(angles[:, 1::2])
        return encoding
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)
    if exponent == "doubled":
        two_i = 2 * two_i
    elif exponent == "half":
        two_i = two_i / 2
    angles = positions / base ** (two_i / d_model)  # (seq_len, d_model/2)
    first, second = (torch.cos(angles), torch.sin(angles)) if swap else (torch.sin(angles), torch.cos(angles))
    if blocks:
        return torch.cat([first, second], dim=-1)  # (seq_len, d_model)
    encoding = torch.empty(seq_len, d_model, dtype=torch.float64)  # (seq_len, d_model)
    encoding[:, 0::2] = first
    encoding[:, 1::2] = second
    return encoding


def _pe_variants(seq_len: int, d_model: int, base: float):
    return [
        ("sin and cos swapped: even dimensions (0, 2, 4, ...) get sin, odd dimensions get cos",
         _pe_variant(seq_len, d_model, base, swap=True)),
        ("not interleaved: you put all the sines first, then all the cosines; sin goes to the even dimensions "
         "(pe[:, 0::2]) and cos to the odd ones (pe[:, 1::2])", _pe_variant(seq_len, d_model, base, blocks=True)),
        ("sin and cos swapped and not interleaved: sin goes to pe[:, 0::2], cos to pe[:, 1::2]",
         _pe_variant(seq_len, d_model, base, swap=True, blocks=True)),
        ("the exponent is doubled: for pair i it is 2i/d_model; if your variable already runs over the even "
         "dimensions 0, 2, 4, ... use it as is, not 2 * it", _pe_variant(seq_len, d_model, base, exponent="doubled")),
        ("the exponent is halved: for pair i (dimensions 2i and 2i+1) it is 2i/d_model, not i/d_model",
         _pe_variant(seq_len, d_model, base, exponent="half")),
        ("each dimension got its own frequency: dimensions 2i and 2i+1 must share the frequency 1/base**(2i/d_model)",
         _pe_variant(seq_len, d_model, base, exponent="per_dimension")),
        ("positions start at 1: the first position is 0 (torch.arange(seq_len))",
         _pe_variant(seq_len, d_model, base, start=1)),
        ("ignores base: use the base argument instead of the number 10000", _pe_variant(seq_len, d_model, 10000.0)),
        ("transposed: rows are positions and columns are dimensions, (seq_len, d_model)",
         _pe_variant(seq_len, d_model, base).T),
    ]  # fmt: skip


@_checker("02.1", "sinusoidal_positional_encoding")
def check_sinusoidal_positional_encoding(ex, sinusoidal_positional_encoding_fn):
    """02.1: ``sinusoidal_positional_encoding(seq_len, d_model, base=10000.0) -> (seq_len, d_model)``.

    ``PE[pos, 2i] = sin(pos / base**(2i/d_model))``, ``PE[pos, 2i+1] = cos(pos / base**(2i/d_model))``.
    Any float dtype is accepted (values are compared to 1e-5).
    """
    settings = [(10, 16, None), (12, 8, 50.0), (5, 6, None), (1, 4, None), (9, 12, 10.0)]
    for seq_len, d_model, base in settings:
        kwargs = {} if base is None else {"base": base}
        case = f"sinusoidal_positional_encoding({_call_args_text((seq_len, d_model), kwargs)})"
        got = _call(ex, sinusoidal_positional_encoding_fn, seq_len, d_model, case=case, **kwargs)
        with _default_dtype(torch.float64):
            expected = sinusoidal_positional_encoding(seq_len, d_model, **kwargs)  # (seq_len, d_model)
        _compare(
            ex, got, expected, case=case, variants=_pe_variants(seq_len, d_model, base or 10000.0), any_float=True,
            tol=1e-5, shape_hint="one row per position and one column per dimension: (seq_len, d_model)",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (several seq_len and d_model, base 10000, 50 and 10)"


@_checker("02.2", "pe_wavelength")
def check_pe_wavelength(ex, pe_wavelength_fn):
    """02.2: ``pe_wavelength(i, d_model, base=10000.0) -> float``: ``2 * pi * base ** (2 * i / d_model)`` positions."""
    settings = [(3, 16, None), (7, 16, None), (2, 10, 100.0), (1, 4, None), (0, 16, None)]
    for i, d_model, base in settings:
        kwargs = {} if base is None else {"base": base}
        b = 10000.0 if base is None else base
        case = f"pe_wavelength({_call_args_text((i, d_model), kwargs)})"
        got = _as_number(ex, _call(ex, pe_wavelength_fn, i, d_model, case=case, **kwargs), "wavelength", case)
        expected = 2 * math.pi * b ** (2 * i / d_model)
        variants = [
            ("forgot the 2*pi: sin(pos * f) repeats every 2*pi / f positions", b ** (2 * i / d_model)),
            ("used pi instead of 2*pi: a full turn of sin is 2*pi", math.pi * b ** (2 * i / d_model)),
            ("the exponent is i/d_model; for pair i it is 2i/d_model", 2 * math.pi * b ** (i / d_model)),
            ("returned the frequency (radians per position); the wavelength is 2*pi / frequency",
             b ** (-2 * i / d_model)),
            ("returned the frequency in turns per position; the wavelength is its inverse",
             1 / (2 * math.pi * b ** (2 * i / d_model))),
            ("ignores base: use the base argument instead of 10000", 2 * math.pi * 10000.0 ** (2 * i / d_model)),
        ]  # fmt: skip
        _compare_number(
            ex, got, expected, variants, problem=f"got {got:.6g}, expected {expected:.6g}", case=case,
            generic_hint="the wavelength of pair i is 2*pi * base**(2i/d_model)",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (pairs 0 to 7, base 10000 and 100)"


@_checker("02.3", "add_positional_encoding")
def check_add_positional_encoding(ex, add_positional_encoding_fn):
    """02.3: ``add_positional_encoding(x (B, T, d_model)) -> (B, T, d_model)``: ``x + PE`` for positions 0..T-1."""
    settings = [
        (2, 6, 8, torch.float32),
        (3, 4, 16, torch.float64),
        (1, 10, 6, torch.float32),
        (4, 1, 4, torch.float64),
    ]
    for B, T, d_model, dtype in settings:
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        case = f"x {_shape(x)} {_dtype_name(dtype)}"
        got = _call(ex, add_positional_encoding_fn, x, case=case, default_dtype=dtype)
        with _default_dtype(torch.float64):
            encoding = sinusoidal_positional_encoding(max(B, T), d_model).to(dtype)  # (max(B, T), d_model)
        expected = x + encoding[:T]  # (B, T, d_model)
        variants = [
            ("forgot x: return x + PE, not PE alone", encoding[:T].expand(B, T, d_model)),
            ("multiplied x by PE: the encoding is added", x * encoding[:T]),
            ("took the length from x.shape[0], which is the batch size: x is (B, T, d_model), so T = x.shape[1]",
             x + encoding[:B, None, :]),
            ("scaled x by sqrt(d_model): this exercise only adds the encoding", x * d_model**0.5 + encoding[:T]),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants, tol=1e-5, shape_hint="same shape as x: (B, T, d_model)"
        )
    return f"correct on {len(settings)} cases (several B, T, d_model; float32 and float64)"
