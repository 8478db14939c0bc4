"""Checkers of exercises 12: a real pretrained model (pooling, search, GPT-2's fused weights)."""

from __future__ import annotations

import torch

from course_lib.checks._machinery import (
    _call,
    _checker,
    _compare,
    _dtype_name,
    _require_tensor,
    _shape,
)

# ---------------------------------------------------------------------------------------------
# 12.1 masked mean pooling
# ---------------------------------------------------------------------------------------------

_MASK_AXIS_HINT = (
    "attention_mask is (B, T) and hidden (B, T, d_model): give the mask a last axis so that it broadcasts over "
    "the features, attention_mask[:, :, None] (B, T, 1)"
)
_COUNT_AXIS_HINT = (
    "the count of real tokens must be (B, 1) to divide the (B, d_model) sum row by row: "
    "attention_mask.sum(dim=1, keepdim=True)"
)


def _pool_error_hint(error: Exception) -> str:
    text = str(error)
    if "must match the size" in text or "broadcast" in text:
        return _MASK_AXIS_HINT + "; and divide by a (B, 1) count"
    if "bool" in text.lower() or "Boolean" in text:
        return "turn the bool mask into numbers before multiplying or summing: attention_mask.to(hidden.dtype)"
    return "read the error message; sum the real tokens' vectors and divide by how many there are"


@_checker("12.1", "masked_mean_pool")
def check_masked_mean_pool(ex, pool_fn):
    """12.1: ``masked_mean_pool(hidden (B, T, d_model), attention_mask (B, T) bool) -> (B, d_model)``: each row's
    mean over its real tokens (``attention_mask`` True), padding left out (like ``course_lib.pretrained.mean_pool``,
    which sentence-transformers' all-MiniLM-L6-v2 uses)."""
    settings = [
        (3, 3, 3, [3, 1, 2], torch.float64),
        (2, 5, 3, [5, 2], torch.float64),
        (2, 6, 6, [4, 6], torch.float32),
        (4, 3, 4, [3, 1, 2, 3], torch.float64),
        (1, 4, 8, [4], torch.float64),
        (3, 7, 5, [7, 3, 5], torch.float32),
    ]
    for B, T, d_model, lengths, dtype in settings:
        attention_mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) bool
        hidden = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        hidden = hidden + 5.0 * (~attention_mask)[:, :, None].to(dtype)  # padding far from the real tokens
        case = f"hidden {_shape(hidden)}, attention_mask {_shape(attention_mask)} with {lengths} real tokens"
        case += f" {_dtype_name(dtype)}"
        got = _call(ex, pool_fn, hidden, attention_mask, case=case, default_dtype=dtype, error_hint=_pool_error_hint)
        weights = attention_mask.to(dtype)  # (B, T)
        total = (hidden * weights[:, :, None]).sum(dim=1)  # (B, d_model)
        count = weights.sum(dim=1, keepdim=True)  # (B, 1)
        expected = total / count  # (B, d_model)
        variants = [
            ("averaged over the padding too: leave out the positions where attention_mask is False",
             hidden.mean(dim=1)),
            ("divided by T: after leaving out the padding, divide by each row's number of real tokens, "
             "attention_mask.sum(dim=1, keepdim=True)", total / T),
            ("averaged the padding instead of the real tokens: True in attention_mask marks the real tokens",
             (hidden * (1 - weights)[:, :, None]).sum(dim=1) / (T - count).clamp(min=1)),
            ("summed the real tokens: divide the sum by how many there are", total),
        ]  # fmt: skip
        if T == d_model:  # the mask broadcast over the features instead of the positions
            wrong = (hidden * weights[:, None, :]).sum(dim=1)  # (B, d_model)
            variants += [(_MASK_AXIS_HINT, wrong / count), (_MASK_AXIS_HINT, wrong / T), (_MASK_AXIS_HINT, wrong)]
        if B == d_model:  # a (B,) count divides the features instead of the rows
            variants.append((_COUNT_AXIS_HINT, total / weights.sum(dim=1)))
        _require_tensor(ex, got, "output", case, f"of shape {_shape(expected)}")
        if tuple(got.shape) == (B, 1, d_model):
            ex.fail(f"wrong output shape: expected (B, d_model) = {_shape(expected)}, got {_shape(got)}",
                    "sum over the positions without keepdim, so the result is (B, d_model)", case)  # fmt: skip
        if tuple(got.shape) == (d_model,):
            ex.fail(f"wrong output shape: expected (B, d_model) = {_shape(expected)}, got {_shape(got)}",
                    "one vector per text: hidden[attention_mask] flattens the batch, so keep B and average each "
                    "row over its own real tokens", case)  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="one vector per text: (B, d_model)",
                 nan_hint="a row divided by 0: every row here has real tokens, so count them per row")  # fmt: skip
    return f"correct on {len(settings)} cases (padding left out, several B, T and d_model, float32 and float64)"


# ---------------------------------------------------------------------------------------------
# 12.2 semantic search: the k most similar documents
# ---------------------------------------------------------------------------------------------


@_checker("12.2", "top_k_similar")
def check_top_k_similar(ex, top_k_fn):
    """12.2: ``top_k_similar(query (d,), documents (N, d), k) -> int64 (k,)``: the indices of the ``k`` documents
    with the largest cosine similarity to the query, most similar first (the vectors need not have length 1)."""
    settings = [(8, 5, 3, torch.float64), (6, 3, 1, torch.float32), (10, 4, 10, torch.float64),
                (7, 6, 4, torch.float32)]  # fmt: skip
    for N, d, k, dtype in settings:
        query = ex.randn(d, dtype=dtype) * 3.0  # (d,)
        lengths = 0.2 + 4.8 * torch.rand(N, 1, generator=ex.generator, dtype=dtype)  # (N, 1): very unequal lengths
        documents = ex.randn(N, d, dtype=dtype) * lengths  # (N, d)
        case = f"query {_shape(query)}, documents {_shape(documents)}, k={k} {_dtype_name(dtype)}"
        got = _call(ex, top_k_fn, query, documents, k, case=case, default_dtype=dtype,
                    error_hint="compare the query with every document at once: documents @ query is (N,)")  # fmt: skip
        if isinstance(got, list | tuple) and all(isinstance(i, int) for i in got):
            got = torch.tensor(got, dtype=torch.int64)  # a list of indices is fine too
        cosine = (documents @ query) / (documents.norm(dim=-1) * query.norm())  # (N,)
        expected = cosine.argsort(descending=True)[:k]  # (k,)
        dot = documents @ query  # (N,)
        distance = (documents - query).norm(dim=-1)  # (N,)
        variants = [
            ("ranked by the dot product: the documents have different lengths, so divide by them (cosine "
             "similarity): normalise each document (and the query) to length 1 first", dot.argsort(descending=True)[:k]),
            ("least similar first: sort with descending=True (or take topk), so the most similar comes first",
             cosine.argsort()[:k]),
            ("the k most similar, but in the wrong order: most similar first", cosine.argsort(descending=True)[:k].flip(0)),
            ("ranked by Euclidean distance: rank by cosine similarity, which ignores the vectors' lengths",
             distance.argsort()[:k]),
        ]  # fmt: skip
        _require_tensor(ex, got, "output", case, f"of shape ({k},)")
        if got.is_floating_point() and got.shape == (k,):
            top = cosine.sort(descending=True).values[:k]  # (k,)
            if torch.allclose(got.double(), top.double(), atol=1e-5):
                ex.fail("returned the similarities, not the indices",
                        "return the positions of the documents: torch.topk(similarity, k).indices", case)  # fmt: skip
        _compare(ex, got, expected, case=case, what="ranking", variants=variants,
                 shape_hint=f"k indices: ({k},)", generic_hint="cosine similarity of the query with each document "
                 "(dot product divided by both lengths), then the indices of the k largest, largest first")  # fmt: skip
    return f"correct on {len(settings)} cases (documents of unequal lengths, k from 1 to N, float32 and float64)"


# ---------------------------------------------------------------------------------------------
# 12.3 GPT-2's fused c_attn weight, cut into w_q, w_k, w_v
# ---------------------------------------------------------------------------------------------

_TRANSPOSE_HINT = (
    "GPT-2's Conv1D stores its weight (in, out) while nn.Linear stores (out, in): transpose each block, "
    "weight[:, :d_model].T"
)
_ORDER_HINT = "q, k and v in the wrong order: GPT-2's columns hold the queries, then the keys, then the values"
_RESHAPE_HINT = (
    "weight.reshape(3, d_model, d_model) does not cut the columns, it regroups the rows: slice the columns, "
    "weight[:, i * d_model:(i + 1) * d_model], or reshape the transpose, weight.T.reshape(3, d_model, d_model)"
)


@_checker("12.3", "split_fused_qkv")
def check_split_fused_qkv(ex, split_fn):
    """12.3: ``split_fused_qkv(c_attn_weight (d_model, 3 * d_model)) -> (w_q, w_k, w_v)``, each (d_model, d_model)
    in nn.Linear's (out, in) layout: GPT-2's Conv1D computes ``x @ c_attn_weight``, whose first d_model outputs
    are the queries, the next the keys, the last the values."""
    settings = [(4, torch.float64), (6, torch.float32), (8, torch.float64)]
    for d_model, dtype in settings:
        weight = ex.randn(d_model, 3 * d_model, dtype=dtype)  # (d_model, 3 * d_model)
        case = f"c_attn_weight {_shape(weight)} {_dtype_name(dtype)}"
        got = _call(ex, split_fn, weight, case=case, default_dtype=dtype,
                    error_hint="cut the 3 * d_model columns into three blocks of d_model, then transpose each")  # fmt: skip
        if not isinstance(got, tuple | list) or len(got) != 3:
            described = f"a {type(got).__name__}" + (f" of {len(got)}" if isinstance(got, tuple | list) else "")
            ex.fail(f"expected three tensors (w_q, w_k, w_v), got {described}", "return w_q, w_k, w_v", case)
        blocks = [weight[:, i * d_model : (i + 1) * d_model] for i in range(3)]  # 3 x (d_model, d_model), (in, out)
        expected = [block.T for block in blocks]  # 3 x (d_model, d_model), (out, in)
        scrambled = weight.reshape(3, d_model, d_model)  # (3, d_model, d_model): rows mixed, not columns cut
        for index, name in enumerate(("w_q", "w_k", "w_v")):
            if isinstance(got[index], torch.Tensor) and tuple(got[index].shape) != (d_model, d_model):
                ex.fail(f"{name} is {_shape(got[index])}, expected (d_model, d_model) = ({d_model}, {d_model})",
                        "cut the *columns* (the 3 * d_model outputs): weight[:, :d_model] is the query block, "
                        "then transpose it", case)  # fmt: skip
            variants = [
                (_TRANSPOSE_HINT, blocks[index]),
                (_ORDER_HINT, expected[(index + 1) % 3]),
                (_ORDER_HINT, expected[(index + 2) % 3]),
                (_RESHAPE_HINT, scrambled[index]),
                (_RESHAPE_HINT, scrambled[index].T),
            ]
            _compare(ex, got[index], expected[index], case=case, what=f"{name} block", variants=variants,
                     shape_hint="(d_model, d_model)", generic_hint=f"{name} is block {index} of the columns, "
                     f"transposed: weight[:, {index} * d_model:{index + 1} * d_model].T")  # fmt: skip
    return f"correct on {len(settings)} cases (d_model 4, 6 and 8, float32 and float64)"
