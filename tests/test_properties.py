"""Property-based tests of course_lib's public API (Hypothesis).

The contract, for any input Hypothesis can think of (shapes that fit or do not, every dtype,
numpy integers and 0-d tensors for numbers, NaN, infinities, negative or huge numbers): the call
either returns the documented shape with finite values, or raises a ValueError. Never another
exception type, never NaN or inf from finite input.

Tensor values are finite and moderate (|x| up to 1e3, or full-range for logits); the tests are
about validation and robustness, the equality proofs are in test_equivalence.py.
"""

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib.attention import scaled_dot_product_attention
from course_lib.embeddings import TokenEmbedding, embedding_lookup
from course_lib.generation import next_token_probs, sample_next_token
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.models import GPT, GPTConfig
from course_lib.multihead import KVCache, MultiHeadAttention, merge_heads, split_heads
from course_lib.normalization import layer_norm
from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INTEGERS = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]
EVERY_DTYPE = FLOATS + INTEGERS + [torch.bool]


def make_tensor(shape, dtype, seed: int, scale: float = 1.0, low: int = -2, high: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) > 0.3
    if dtype in INTEGERS:
        low = max(low, 0) if dtype == torch.uint8 else low
        return torch.randint(low, high, tuple(shape), generator=generator).to(dtype)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


@st.composite
def mostly(draw, good, bad, chance: float = 0.8):
    """Usually a value from ``good`` (valid input), sometimes one from ``bad``."""
    return draw(good) if draw(st.integers(0, 99)) < 100 * chance else draw(bad)


@st.composite
def tensors(draw, shape=None, dtypes=EVERY_DTYPE, max_rank=4, max_side=4, low=-2, high=12):
    """A tensor of ``shape`` (or a random shape) and one of ``dtypes``; finite values of a random scale."""
    if shape is None:
        shape = draw(st.lists(st.integers(0, max_side), min_size=0, max_size=max_rank))
    dtype = draw(st.sampled_from(dtypes))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
    return make_tensor(shape, dtype, draw(st.integers(0, 2**31 - 1)), scale, low, high)


def integer_like(values):
    """Mostly an integer (a Python int, a numpy integer or a 0-d tensor); sometimes a float, a bool or None."""
    good = st.one_of(values, values, values.map(np.int64), values.map(lambda n: torch.tensor(n)))
    return mostly(good, st.one_of(values.map(float), st.sampled_from([True, None, 2.5, "3"])))


def number_like(values):
    """Mostly a number (float, numpy float or 0-d tensor); sometimes NaN, an infinity, a bool or None."""
    good = st.one_of(values, values, values.map(np.float32), values.map(lambda x: torch.tensor(x)))
    return mostly(good, st.sampled_from([math.nan, math.inf, -math.inf, True, None, "1.0"]))


def finite(tensor: torch.Tensor) -> bool:
    return bool(torch.isfinite(tensor).all()) if tensor.is_floating_point() else True


def returns_or_value_error(call):
    """The result of ``call()``, or None when it raised a ValueError; any other exception fails the test."""
    try:
        return call()
    except ValueError as error:
        assert str(error).split(":")[0], "a ValueError must name the function"
        return None


@st.composite
def shape_variant(draw, shape, chance: float = 0.85):
    """Usually ``shape``; sometimes with a size changed, a dimension dropped or one added."""
    shape = list(shape)
    if draw(st.integers(0, 99)) < 100 * chance:
        return shape
    kind = draw(st.sampled_from(["resize", "drop", "add"]))
    if kind == "resize" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(0, 5))
    elif kind == "drop" and shape:
        shape.pop(draw(st.integers(0, len(shape) - 1)))
    elif kind == "add":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    return shape


def dtype_like(dtype, others=EVERY_DTYPE):
    """Mostly ``dtype``, sometimes any other."""
    return mostly(st.just(dtype), st.sampled_from(others))


def broadcast_or_none(*shapes):
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        return None


# ---------------------------------------------------------------- attention and masks


@PROPERTY_SETTINGS
@given(st.data())
def test_scaled_dot_product_attention(data):
    draw = data.draw
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    T_q, T_k, d_v = draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.integers(1, 4))
    d = draw(mostly(st.integers(1, 4), st.just(0), 0.9))
    dtype = draw(dtype_like(draw(st.sampled_from(FLOATS)), FLOATS + [torch.int64]))
    q = draw(tensors(draw(shape_variant([*batch, T_q, d])), dtypes=[dtype]))
    k = draw(tensors(draw(shape_variant([*batch, T_k, d])), dtypes=[draw(dtype_like(dtype))]))
    v = draw(tensors(draw(shape_variant([*batch, T_k, d_v])), dtypes=[draw(dtype_like(dtype))]))
    mask_shape = draw(st.sampled_from([[T_q, T_k], [*batch, T_q, T_k], [*batch[:1], 1, T_k], [1, T_k]]))
    mask = draw(st.one_of(st.none(), tensors(draw(shape_variant(mask_shape)), dtypes=[draw(dtype_like(torch.bool))])))
    result = returns_or_value_error(lambda: scaled_dot_product_attention(q, k, v, mask))
    if result is None:
        return
    output, weights = result
    lead = broadcast_or_none(q.shape[:-2], k.shape[:-2])
    assert weights.shape == (*lead, q.shape[-2], k.shape[-2])
    assert output.shape == (*broadcast_or_none(lead, v.shape[:-2]), q.shape[-2], v.shape[-1])
    assert output.dtype == q.dtype and weights.dtype == q.dtype
    assert finite(output) and finite(weights)
    assert bool(((weights >= 0) & (weights <= 1.001)).all())


@PROPERTY_SETTINGS
@given(st.data())
def test_masks(data):
    draw = data.draw
    T = draw(integer_like(st.integers(-1, 6)))
    mask = returns_or_value_error(lambda: causal_mask(T))
    if mask is not None:
        assert mask.dtype == torch.bool and mask.shape == (int(T), int(T))
    ids_shape = draw(shape_variant([draw(st.integers(0, 3)), draw(st.integers(0, 5))]))
    ids = draw(tensors(ids_shape, dtypes=[draw(dtype_like(draw(st.sampled_from(INTEGERS))))]))
    pad_id = draw(integer_like(st.integers(-300, 300)))
    mask = returns_or_value_error(lambda: padding_mask(ids, pad_id))
    if mask is not None:
        assert mask.dtype == torch.bool and mask.shape == (ids.shape[0], 1, 1, ids.shape[1])
    first = draw(tensors(dtypes=[draw(dtype_like(torch.bool))], max_rank=4))
    second_shape = draw(st.sampled_from([list(first.shape), list(first.shape[-2:]), [1] * first.dim(), [2, 3]]))
    second = draw(st.one_of(st.none(), tensors(second_shape, dtypes=[draw(dtype_like(torch.bool))])))
    combined = returns_or_value_error(lambda: combine_masks(first, second))
    if combined is not None:
        expected = first.shape if second is None else broadcast_or_none(first.shape, second.shape)
        assert combined.dtype == torch.bool and combined.shape == expected


@PROPERTY_SETTINGS
@given(st.data())
def test_split_and_merge_heads(data):
    draw = data.draw
    n = draw(st.integers(1, 4))
    x_shape = draw(shape_variant([draw(st.integers(0, 3)), draw(st.integers(0, 4)), n * draw(st.integers(0, 3))]))
    x = draw(tensors(x_shape, dtypes=FLOATS))
    n_heads = draw(integer_like(st.just(n)))
    heads = returns_or_value_error(lambda: split_heads(x, n_heads))
    if heads is not None:
        B, T, d_model = x.shape
        assert heads.shape == (B, n, T, d_model // n)
        assert torch.equal(merge_heads(heads), x)
    merged = returns_or_value_error(lambda: merge_heads(x))
    if merged is not None:
        assert merged.shape == (x.shape[0], x.shape[2], x.shape[1] * x.shape[3])


MHA_MODULES = {dtype: MultiHeadAttention(8, 2).to(dtype).eval() for dtype in (torch.float64, torch.float32)}


@PROPERTY_SETTINGS
@given(st.data())
def test_multi_head_attention(data):
    draw = data.draw
    module_dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    module = MHA_MODULES[module_dtype]
    module.need_weights = draw(st.booleans())  # the readable or the fused path: the same contract
    B, T_q, T_k = draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
    dtype = draw(dtype_like(module_dtype, FLOATS))
    query = draw(tensors(draw(shape_variant([B, T_q, 8])), dtypes=[dtype]))
    key = draw(tensors(draw(shape_variant([B, T_k, 8])), dtypes=[dtype]))
    value = key if draw(st.booleans()) else draw(tensors(draw(shape_variant([B, T_k, 8])), dtypes=[dtype]))
    mask_shape = draw(st.sampled_from([[T_q, T_k], [B, 1, 1, T_k], [B, 2, T_q, T_k], [1, T_k]]))
    mask_dtype = draw(dtype_like(torch.bool, FLOATS + INTEGERS))
    mask = draw(st.one_of(st.none(), tensors(draw(shape_variant(mask_shape)), dtypes=[mask_dtype])))
    cache = draw(st.sampled_from([None, None, "self", "cross"]))
    kv_cache = None if cache is None else KVCache(static=cache == "cross")
    with torch.no_grad():
        output = returns_or_value_error(lambda: module(query, key, value, mask=mask, kv_cache=kv_cache))
        if output is None:
            return
        assert output.shape == (query.shape[0], query.shape[1], 8)
        assert output.dtype == query.dtype and finite(output)
        if kv_cache is not None:  # a second step reuses the cache
            again = returns_or_value_error(lambda: module(query, key, value, kv_cache=kv_cache))
            assert again is None or (again.shape == output.shape and finite(again))


# ---------------------------------------------------------------- layer norm, positions, embeddings


@PROPERTY_SETTINGS
@given(st.data())
def test_layer_norm(data):
    draw = data.draw
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    x = draw(tensors(shape, dtypes=[draw(dtype_like(draw(st.sampled_from(FLOATS)), FLOATS + [torch.int64]))]))
    d = shape[-1]
    weight = draw(tensors(draw(shape_variant([d])), dtypes=[draw(dtype_like(x.dtype, FLOATS))]))
    bias = draw(tensors(draw(shape_variant([d])), dtypes=[draw(dtype_like(x.dtype, FLOATS))]))
    result = returns_or_value_error(lambda: layer_norm(x, weight, bias))
    if result is not None:
        assert result.shape == x.shape and result.dtype == x.dtype and finite(result)


@PROPERTY_SETTINGS
@given(st.data())
def test_positional_encodings(data):
    draw = data.draw
    seq_len = draw(integer_like(st.integers(-1, 6)))
    d_model = draw(integer_like(mostly(st.integers(1, 4).map(lambda n: 2 * n), st.integers(-1, 7))))
    base = draw(number_like(mostly(st.floats(1.5, 1e5), st.floats(-10.0, 1.0))))
    table = returns_or_value_error(lambda: sinusoidal_positional_encoding(seq_len, d_model, base))
    if table is not None:
        assert table.shape == (int(seq_len), int(d_model)) and finite(table)
    max_len = 6
    module = draw(
        st.sampled_from([SinusoidalPositionalEncoding(8, max_len=max_len), LearnedPositionalEmbedding(max_len, 8)])
    )
    x_shape = draw(shape_variant([draw(st.integers(0, 2)), draw(st.integers(0, 7)), 8]))
    x = draw(tensors(x_shape, dtypes=[draw(dtype_like(torch.float64, FLOATS + INTEGERS))]))
    start = draw(integer_like(mostly(st.integers(0, 3), st.integers(-4, 7))))
    result = returns_or_value_error(lambda: module(x, start=start))
    if result is not None:
        assert result.shape == x.shape and finite(result)
        assert 0 <= int(start) and int(start) + x.shape[1] <= max_len


@PROPERTY_SETTINGS
@given(st.data())
def test_embeddings(data):
    draw = data.draw
    V = draw(st.integers(0, 6))
    table = draw(tensors(draw(shape_variant([V, 4])), dtypes=FLOATS))
    ids_shape = draw(shape_variant([draw(st.integers(0, 3)), draw(st.integers(0, 4))]))
    ids = draw(tensors(ids_shape, dtypes=[draw(dtype_like(draw(st.sampled_from(INTEGERS))))], low=0, high=max(V, 1)))
    if draw(st.integers(0, 9)) == 0 and ids.numel() and ids.dtype in INTEGERS:
        ids = ids.flatten().index_fill(0, torch.tensor([0]), draw(st.sampled_from([-1, V, 100]))).reshape(ids.shape)
    result = returns_or_value_error(lambda: embedding_lookup(ids, table))
    if result is not None:
        assert result.shape == (*ids.shape, table.shape[1]) and finite(result)
        assert bool(((ids >= 0) & (ids < table.shape[0])).all())
    module = TokenEmbedding(6, 4)
    result = returns_or_value_error(lambda: module(ids))
    if result is not None:
        assert result.shape == (*ids.shape, 4) and finite(result)


# ---------------------------------------------------------------- generation


@PROPERTY_SETTINGS
@given(st.data())
def test_next_token_probs(data):
    draw = data.draw
    shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
    dtype = draw(dtype_like(draw(st.sampled_from(FLOATS)), FLOATS + [torch.int64]))
    kind = draw(st.sampled_from(["ordinary", "ordinary", "with -inf", "huge"]))
    if not dtype.is_floating_point or kind == "ordinary":
        logits = draw(tensors(shape, dtypes=[dtype]))
    elif kind == "with -inf":  # -inf marks forbidden tokens; a row of only -inf is a ValueError
        logits = draw(tensors(shape, dtypes=[dtype])).masked_fill(draw(tensors(shape, dtypes=[torch.bool])), -math.inf)
    else:  # anywhere in the dtype's finite range: dividing by a small temperature must not overflow into NaN
        finfo = torch.finfo(dtype)
        values = st.floats(-float(finfo.max), float(finfo.max), allow_nan=False, allow_infinity=False)
        n = math.prod(shape)
        flat = torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=torch.float64)
        logits = flat.clamp(-float(finfo.max), float(finfo.max)).to(dtype).reshape(shape)
    tiny = st.sampled_from([0.0, 1e-45, 1e-300, 5e-324, 1e-4])
    temperature = draw(number_like(mostly(st.floats(0.05, 5.0), st.one_of(tiny, st.floats(-1.0, 1e6)), 0.6)))
    top_k = draw(st.one_of(st.none(), integer_like(st.integers(-1, 7))))
    top_p = draw(st.one_of(st.none(), number_like(mostly(st.floats(0.05, 1.0), st.floats(-0.5, 1.5)))))
    probs = returns_or_value_error(lambda: next_token_probs(logits, temperature, top_k, top_p))
    if probs is None:
        return
    assert probs.shape == logits.shape and probs.dtype == logits.dtype
    assert finite(probs) and bool(((probs >= 0) & (probs <= 1)).all())
    if probs.numel():
        sums = probs.double().sum(dim=-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=2e-2)
        assert bool(((probs > 0).sum(dim=-1) >= 1).all()), "at least the most likely token is kept"


@PROPERTY_SETTINGS
@given(st.data())
def test_sample_next_token(data):
    draw = data.draw
    shape = draw(shape_variant([draw(st.integers(0, 3)), draw(st.integers(0, 5))]))
    probs = draw(tensors(shape, dtypes=[draw(dtype_like(draw(st.sampled_from(FLOATS)), FLOATS + [torch.int64]))]))
    kind = draw(st.sampled_from(["softmax", "softmax", "abs", "as drawn", "nan", "zero row"]))
    if probs.is_floating_point() and probs.numel() and probs.dim():
        if kind == "abs":
            probs = probs.abs()
        elif kind == "softmax":
            probs = torch.softmax(probs.double(), dim=-1).to(probs.dtype)
        elif kind == "nan":
            probs = probs.abs().flatten().index_fill(0, torch.tensor([0]), math.nan).reshape(probs.shape)
        elif kind == "zero row":
            probs = probs.abs().index_fill(0, torch.tensor([0]), 0.0)
    ids = returns_or_value_error(lambda: sample_next_token(probs, torch.Generator().manual_seed(0)))
    if ids is None:
        return
    assert ids.shape == (probs.shape[0],) and ids.dtype == torch.int64
    if ids.numel():
        chosen = probs.gather(1, ids[:, None]).squeeze(1)
        assert bool((chosen > 0).all()), "a token with probability 0 was drawn"


GPT_MODELS = {
    dtype: GPT(GPTConfig(vocab_size=11, context_length=6, d_model=8, n_heads=2, n_layers=2)).to(dtype).eval()
    for dtype in (torch.float64, torch.float32, torch.bfloat16)
}


@settings(PROPERTY_SETTINGS, max_examples=50)  # whole models: fewer examples
@given(st.data())
def test_gpt_forward(data):
    draw = data.draw
    model = GPT_MODELS[draw(st.sampled_from(list(GPT_MODELS)))]
    B = draw(st.integers(0, 3))
    ids_shape = draw(shape_variant([B, draw(mostly(st.integers(1, 4), st.integers(0, 7)))]))
    ids_dtype = draw(dtype_like(draw(st.sampled_from(INTEGERS)), FLOATS + [torch.bool]))
    ids = draw(tensors(ids_shape, dtypes=[ids_dtype], low=0, high=draw(mostly(st.just(11), st.just(13)))))
    cache_kind = draw(st.sampled_from([None, "fresh", "prefilled", "prefilled", "wrong length"]))
    cache = None if cache_kind is None else model.new_cache()
    if cache_kind == "prefilled":
        with torch.no_grad():
            model(torch.zeros(B, 2, dtype=torch.long), cache=cache)
    elif cache_kind == "wrong length":
        cache = cache[:1]
    start = 2 if cache_kind == "prefilled" else 0
    with torch.no_grad():
        logits = returns_or_value_error(lambda: model(ids, cache=cache))
    if logits is not None:
        assert logits.shape == (ids.shape[0], ids.shape[1], 11) and logits.dtype == model.lm_head.weight.dtype
        assert finite(logits)
        assert start + ids.shape[1] <= 6


def test_configs_turn_numpy_and_tensor_sizes_into_ints():
    config = GPTConfig(vocab_size=np.int64(11), n_layers=torch.tensor(2))
    assert type(config.vocab_size) is int and type(config.n_layers) is int
