"""Checkers of exercises 01: tokens and embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.checks._machinery import _call, _checker, _compare, _dtype_name, _Exercise, _shape, _tolerance
from course_lib.embeddings import embedding_lookup

# ---------------------------------------------------------------------------------------------
# Lesson 01: tokens and embeddings
# ---------------------------------------------------------------------------------------------


def _embedding_cases(ex: _Exercise, dtypes):
    """(token_ids, table, description) with V != d and B != T, so swapped axes show."""
    sizes = [(2, 5, 11, 4), (3, 4, 7, 6), (1, 1, 3, 5), (4, 3, 20, 8)]
    cases = []
    for (B, T, V, d), dtype in zip(sizes, dtypes, strict=True):
        table = ex.randn(V, d, dtype=dtype)  # (V, d)
        last = len(cases) == len(sizes) - 1
        token_ids = ex.randint(0, V - 1 if last else V, (B, T))  # (B, T); the last case never uses id V - 1
        if not last:
            token_ids[0, 0] = V - 1  # the largest id appears
        cases.append((token_ids, table, f"token_ids {_shape(token_ids)}, table {_shape(table)} {_dtype_name(dtype)}"))
    return cases


def _embedding_variants(token_ids: torch.Tensor, table: torch.Tensor):
    V, d = table.shape
    one_hot = F.one_hot(token_ids, V).to(table.dtype)  # (B, T, V)
    return [
        (
            "off by one: row token_ids[b, t] of the table is the vector of that token (no -1 or +1)",
            table[token_ids - 1],
        ),
        (
            "the rows were flattened to (B*T, d): index with the (B, T) ids directly, or reshape back to (B, T, d)",
            table[token_ids.flatten()],
        ),
        ("you returned the one-hot matrix: multiply it by the table (or index the table's rows)", one_hot),
        (
            "scaled by sqrt(d): this exercise is the plain lookup, without the sqrt(d_model) factor",
            table[token_ids] * d**0.5,
        ),
    ]


@_checker("01.1", "embedding_lookup")
def check_embedding_lookup(ex, embedding_lookup_fn):
    """01.1: ``embedding_lookup(token_ids (B, T), table (V, d)) -> (B, T, d)``, row ``token_ids[b, t]`` of table."""
    cases = _embedding_cases(ex, [torch.float64, torch.float32, torch.float64, torch.float32])
    for token_ids, table, case in cases:
        got = _call(ex, embedding_lookup_fn, token_ids, table, case=case, default_dtype=table.dtype)
        expected = embedding_lookup(token_ids, table)  # (B, T, d)
        _compare(
            ex, got, expected, case=case, variants=_embedding_variants(token_ids, table),
            shape_hint="one d-dimensional row of the table per token: (B, T, d); index the rows with table[token_ids]",
        )  # fmt: skip
    return f"correct on {len(cases)} cases (several B, T, V, d; float32 and float64 tables)"


def _one_hot_error_hint(error: Exception) -> str:
    """The hint for an error of one_hot_embedding: a dtype mismatch, or a one-hot matrix of the wrong width."""
    text = str(error)
    if "dtype" in text or "scalar type" in text:
        return (
            "the one-hot matrix and the table must have the same dtype: F.one_hot gives int64 (long) vectors, "
            "and .float() gives float32 whatever the table is; convert with .to(table.dtype)"
        )
    if "shape" in text or "size" in text:
        return (
            "one_hot(token_ids) without num_classes makes only max(id) + 1 columns: pass num_classes=V "
            "(V = table.shape[0]), and multiply one_hot (B, T, V) @ table (V, d)"
        )
    return "one_hot(token_ids, num_classes=V).to(table.dtype) is (B, T, V); multiply it by the table (V, d)"


@_checker("01.2", "one_hot_embedding")
def check_one_hot_embedding(ex, one_hot_embedding_fn):
    """01.2: ``one_hot_embedding(token_ids (B, T), table (V, d)) -> (B, T, d)``:
    ``one_hot(ids, V).to(table.dtype) @ table``, for float32 and float64 tables."""
    cases = _embedding_cases(ex, [torch.float32, torch.float64, torch.float32, torch.float64])
    for token_ids, table, case in cases:
        got = _call(
            ex, one_hot_embedding_fn, token_ids, table, case=case, default_dtype=table.dtype,
            error_hint=_one_hot_error_hint,
        )  # fmt: skip
        expected = embedding_lookup(token_ids, table)  # (B, T, d)
        if isinstance(got, torch.Tensor) and got.is_floating_point() and got.dtype != table.dtype:
            ex.fail(
                f"wrong dtype: the output is {_dtype_name(got.dtype)} but the table is {_dtype_name(table.dtype)}",
                "make the one-hot vectors of the table's dtype: .to(table.dtype) (.float() is float32 only), "
                "and do not convert the table",
                case,
            )
        _compare(
            ex, got, expected, case=case, variants=_embedding_variants(token_ids, table),
            shape_hint="one_hot(token_ids, V) is (B, T, V); (B, T, V) @ table (V, d) gives (B, T, d)",
        )  # fmt: skip
    return f"correct on {len(cases)} cases (several B, T, V, d; float32 and float64 tables; equal to the lookup)"


_ZERO_ROW_HINT = (
    "a zero row has length 0, so dividing by its norm gives 0/0 = NaN: clamp the lengths, "
    "x.norm(dim=-1, keepdim=True).clamp_min(1e-8), so a zero vector gets similarity 0 with every row"
)


_ZERO_ROW_VALUE_HINT = (
    "a zero row must have similarity 0 with every row, itself included (not 1): clamp the lengths, "
    "x.norm(dim=-1, keepdim=True).clamp_min(1e-8), or replace the NaN by 0"
)


@_checker("01.3", "cosine_similarity_matrix")
def check_cosine_similarity_matrix(ex, cosine_similarity_matrix_fn):
    """01.3: ``cosine_similarity_matrix(x (N, d)) -> (N, N)``, entry (i, j) the cosine of rows i and j; a zero
    row has similarity 0 with every row (itself included), like ``F.cosine_similarity``: finite, never NaN."""
    sizes = [(5, 8, torch.float64, None), (4, 3, torch.float32, None), (6, 16, torch.float64, 2),
             (3, 7, torch.float32, None), (4, 5, torch.float32, 0)]  # fmt: skip
    for N, d, dtype, zero_row in sizes:
        x = ex.randn(N, d, dtype=dtype) + 0.5  # (N, d), a shared offset so the norms differ from the dot products
        x[0] *= 3.0  # one long vector: cosine must not depend on length
        if zero_row is not None:
            x[zero_row] = 0.0  # a zero vector: its similarity is 0, not NaN
        case = f"x {_shape(x)} {_dtype_name(dtype)}" + (f", row {zero_row} all zeros" if zero_row is not None else "")
        got = _call(ex, cosine_similarity_matrix_fn, x, case=case, default_dtype=dtype)
        expected = F.cosine_similarity(x[:, None, :], x[None, :, :], dim=-1)  # (N, N)
        norms = x.norm(dim=-1, keepdim=True)  # (N, 1)
        unit = x / norms.clamp_min(1e-8)  # (N, d)
        variants = [
            ("plain dot products: divide by the lengths of both vectors (normalise each row first)", x @ x.T),
            ("normalised over the wrong dimension: each row is a vector, so use x.norm(dim=-1, keepdim=True)",
             (x / x.norm(dim=0, keepdim=True)) @ (x / x.norm(dim=0, keepdim=True)).T),
            ("only one side is normalised: divide by the length of both vectors", unit @ x.T),
            ("only one side is normalised: divide by the length of both vectors", x @ unit.T),
            ("divided by the squared lengths: the cosine divides by |a| |b|, not |a|^2 |b|^2",
             (x / norms.clamp_min(1e-8) ** 2) @ (x / norms.clamp_min(1e-8) ** 2).T),
            ("returned the cosine distance 1 - cos: return the similarity itself", 1.0 - unit @ unit.T),
            (_ZERO_ROW_HINT, (x / norms) @ (x / norms).T),
            (_ZERO_ROW_VALUE_HINT,
             expected.diagonal().clone().fill_(1.0).diag_embed() + expected * (1 - torch.eye(N, dtype=dtype))),
            (_ZERO_ROW_VALUE_HINT, torch.where((norms == 0) | (norms == 0).T, 1.0, expected).to(dtype)),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants, nan_hint=_ZERO_ROW_HINT,
            tol=max(_tolerance(x), 1e-7),  # dividing by (norm + 1e-8) instead of the clamped norm is fine too
            shape_hint="one similarity per pair of rows: (N, N), which is x @ x.T, not x.T @ x (d, d)",
        )  # fmt: skip
    return f"correct on {len(sizes)} cases (rows of different lengths, a zero row gives 0; float32 and float64)"
