"""Checkers of exercises 04: masking."""

from __future__ import annotations

import torch

from course_lib.checks._machinery import _call, _checker, _compare, _shape
from course_lib.masks import causal_mask, combine_masks, padding_mask

# ---------------------------------------------------------------------------------------------
# Lesson 04: masking
# ---------------------------------------------------------------------------------------------


@_checker("04.1", "causal_mask")
def check_causal_mask(ex, causal_mask_fn):
    """04.1: ``causal_mask(T) -> bool (T, T)``, True on and below the diagonal (True = may attend)."""
    sizes = [5, 2, 8, 1]
    for T in sizes:
        case = f"causal_mask({T})"
        got = _call(ex, causal_mask_fn, T, case=case)
        expected = causal_mask(T)  # (T, T)
        variants = [
            ("inverted mask: True means may attend, so the lower triangle and the diagonal are True", ~expected),
            ("transposed: row i (a query) may attend to columns 0..i, so keep the lower triangle (tril)", expected.T),
            ("the diagonal is missing: a token may attend to itself", expected & ~torch.eye(T, dtype=torch.bool)),
            ("inverted mask that also blocks the diagonal: True = may attend, use the lower triangle with the diagonal",
             expected.T & ~torch.eye(T, dtype=torch.bool)),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants, shape_hint="one row per query, one column per key: (T, T)"
        )
    return f"correct on {len(sizes)} cases (T = 1, 2, 5, 8; bool, True = may attend)"


@_checker("04.2", "padding_mask")
def check_padding_mask(ex, padding_mask_fn):
    """04.2: ``padding_mask(token_ids (B, T), pad_id) -> bool (B, 1, 1, T)``, True at real tokens."""
    settings = [
        (torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]), 0, "right padding with pad_id 0"),
        (torch.tensor([[3, 3, 1, 2], [4, 0, 1, 3], [3, 3, 3, 3]]), 3, "pad_id 3, id 0 is a real token, a row of pads"),
        (torch.tensor([[0, 0, 11, 12, 13, 14]]), 0, "left padding"),
    ]
    for token_ids, pad_id, description in settings:
        case = f"{description}: token_ids {_shape(token_ids)}, pad_id={pad_id}"
        got = _call(ex, padding_mask_fn, token_ids, pad_id, case=case)
        expected = padding_mask(token_ids, pad_id)  # (B, 1, 1, T)
        real = token_ids != pad_id  # (B, T)
        variants = [
            ("inverted mask: True = may attend, so True at real tokens and False at padding", ~expected),
            ("ignores pad_id: compare the ids with the pad_id argument, not with 0", (token_ids != 0)[:, None, None, :]),
            ("the mask must block keys, so T goes last: (B, 1, 1, T); yours puts T where the queries are",
             real[:, None, :, None]),
        ]  # fmt: skip
        shape_hint = "(B, 1, 1, T), so it broadcasts over heads and queries: (token_ids != pad_id)[:, None, None, :]"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (right and left padding, pad_id 0 and 3, a row of only padding)"


@_checker("04.3", "decoder_self_mask")
def check_decoder_self_mask(ex, decoder_self_mask_fn):
    """04.3: ``decoder_self_mask(tgt_ids (B, T), pad_id) -> bool (B, 1, T, T)``: causal AND padding (keys)."""
    settings = [
        (torch.tensor([[1, 5, 0, 6, 0], [1, 7, 0, 0, 0]]), 0),
        (torch.tensor([[1, 4, 4, 2], [1, 2, 2, 2], [1, 5, 6, 7]]), 2),
        (torch.tensor([[1, 3, 3]]), 0),
    ]
    for tgt_ids, pad_id in settings:
        B, T = tgt_ids.shape
        case = f"tgt_ids {_shape(tgt_ids)}, pad_id={pad_id}"
        got = _call(ex, decoder_self_mask_fn, tgt_ids, pad_id, case=case)
        causal = causal_mask(T)  # (T, T)
        keys = padding_mask(tgt_ids, pad_id)  # (B, 1, 1, T)
        queries = keys.transpose(-2, -1)  # (B, 1, T, 1)
        expected = combine_masks(causal, keys)  # (B, 1, T, T)
        variants = [
            ("forgot the padding part: combine the causal mask with the padding mask (logical and)",
             causal.expand(B, 1, T, T)),
            ("forgot the causal part: a target token must not see later tokens; combine with causal_mask(T)",
             keys.expand(B, 1, T, T)),
            ("combined with OR: a key must be allowed by both masks, so use & (logical and)", causal | keys),
            ("the padding was applied to the query rows instead of the key columns: padding_mask is (B, 1, 1, T)",
             causal & queries),
            ("you also blocked the padded query rows: the course's mask blocks padded keys (columns) only, "
             "padded query rows are ignored by the loss", causal & keys & queries),
            ("inverted mask: True = may attend", ~expected),
        ]  # fmt: skip
        shape_hint = "(B, 1, T, T): causal_mask(T) (T, T) & padding_mask(tgt_ids, pad_id) (B, 1, 1, T) broadcasts to it"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (causal AND padding of the keys; pad_id 0 and 2)"
