"""Tests of course_lib.widgets, driven without a browser: set control values, then check the
numbers and the picture the widget shows against values computed independently."""

import base64
import csv
import math
import pickle
import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from course_lib import viz  # noqa: E402
from course_lib.activations import run_with_record  # noqa: E402
from course_lib.example import RUNNING_SENTENCE  # noqa: E402
from course_lib.masks import causal_mask  # noqa: E402
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig  # noqa: E402
from course_lib.multihead import GroupedQueryAttention, MultiHeadAttention  # noqa: E402
from course_lib.positional import sinusoidal_positional_encoding  # noqa: E402
from course_lib.viz import widgets as W  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------- fixtures
# Widgets are built once per module (each build renders a figure); every test sets the controls it needs.


@pytest.fixture(scope="module")
def pe():
    return W.PositionalEncodingExplorer(max_len=32, d_model=32)


@pytest.fixture(scope="module")
def step():
    return W.AttentionStepThrough()


@pytest.fixture(scope="module")
def masks():
    return W.MaskExplorer()


@pytest.fixture(scope="module")
def grid_weights():
    generator = torch.Generator().manual_seed(1)
    return torch.softmax(torch.randn(3, 4, 5, 5, generator=generator, dtype=torch.float64), dim=-1)


@pytest.fixture(scope="module")
def grid(grid_weights):
    return W.HeadGrid(grid_weights, list("abcde"), list("abcde"))


@pytest.fixture(scope="module")
def sampling_logits():
    generator = torch.Generator().manual_seed(2)
    return torch.randn(40, generator=generator, dtype=torch.float64) * 2


@pytest.fixture(scope="module")
def sampling(sampling_logits):
    return W.SamplingExplorer(sampling_logits, [f"tok{i}" for i in range(40)], max_bars=15)


@pytest.fixture(scope="module")
def ablation():
    return W.AblationToggles()


ALL_WIDGETS = ["pe", "step", "masks", "grid", "sampling", "ablation"]


def _png(widget) -> bytes:
    """The PNG currently shown in the widget's Image."""
    return bytes(widget.image.value)


def _reset(widget, **values):
    with widget.hold():  # one redraw for all the changes
        for name, value in values.items():
            widget.controls[name].value = value


# ---------------------------------------------------------------------------------------- common behaviour


@pytest.mark.parametrize("name", ALL_WIDGETS)
def test_every_widget_has_the_common_interface(name, request):
    widget = request.getfixturevalue(name)
    assert isinstance(widget.widget, ipywidgets.VBox)
    assert widget.image in widget.widget.children and widget.output in widget.widget.children
    assert widget.controls and all(isinstance(c, ipywidgets.ValueWidget) for c in widget.controls.values())
    assert _png(widget).startswith(PNG_SIGNATURE)
    assert isinstance(widget.current_matrix(), np.ndarray) and widget.current_matrix().ndim == 2


@pytest.mark.parametrize("name", ALL_WIDGETS)
def test_mime_bundle_has_widget_view_and_static_png(name, request):
    widget = request.getfixturevalue(name)
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.widget.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(PNG_SIGNATURE)
    assert type(widget).__name__ in bundle["text/plain"]


@pytest.mark.parametrize("name", ALL_WIDGETS)
def test_export_png_and_csv(name, request, tmp_path):
    widget = request.getfixturevalue(name)
    png = widget.export_png(tmp_path / "figure.png")
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    path = widget.export_csv(tmp_path / "matrix.csv")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    row_labels, col_labels = widget._csv_labels()
    body = rows[1:] if col_labels is not None else rows
    values = np.array([[float(v) for v in row[1 if row_labels is not None else 0 :]] for row in body])
    np.testing.assert_allclose(values, widget.current_matrix(), rtol=1e-5, atol=1e-12)


def test_save_buttons_write_into_the_working_folder(masks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    masks.buttons["save_png"].click()
    masks.buttons["save_csv"].click()
    assert (tmp_path / "mask_explorer.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "mask_explorer.csv").exists()
    assert str(tmp_path / "mask_explorer.csv") in masks.status.value


def test_callback_errors_land_in_the_output_widget(pe, monkeypatch):
    def broken_update():
        raise RuntimeError("deliberate failure in _update")

    monkeypatch.setattr(pe, "_update", broken_update)
    before = len(pe.output.outputs)
    pe.controls["position"].value = (pe.controls["position"].value + 1) % 32
    assert isinstance(pe.last_error, RuntimeError)
    new_outputs = pe.output.outputs[before:]
    assert new_outputs and new_outputs[-1]["name"] == "stderr"
    assert "deliberate failure in _update" in new_outputs[-1]["text"]
    pe.last_error = None


# ---------------------------------------------------------------------------------------- 1. positional encoding


def test_pe_explorer_shows_the_course_encoding(pe):
    _reset(pe, d_model=16, base=100.0, position=5)
    old_png = _png(pe)
    _reset(pe, d_model=12)
    expected = sinusoidal_positional_encoding(32, 12, 100.0).numpy()  # (max_len, d_model)
    np.testing.assert_allclose(pe.current_matrix(), expected, atol=1e-12)
    np.testing.assert_allclose(np.asarray(pe.table_image.get_array()), expected, atol=1e-12)
    assert _png(pe) != old_png


def test_pe_explorer_dot_products(pe):
    _reset(pe, d_model=32, base=10000.0, position=7)
    table = sinusoidal_positional_encoding(32, 32)  # (max_len, d_model)
    expected = (table @ table[7]).numpy()  # (max_len,)
    np.testing.assert_allclose(pe.current_dot_products(), expected, atol=1e-10)
    assert int(np.argmax(pe.current_dot_products())) == 7  # a position is most similar to itself


# ---------------------------------------------------------------------------------------- 2. attention step-through


def _independent_head(step, sentence, head):
    """q, k, v of one head computed straight from the projection weights (no split_heads)."""
    tokens, x = step.embed(sentence)  # (1, T, d_model)
    attention = step.attention
    d_head = attention.d_head
    columns = slice(head * d_head, (head + 1) * d_head)
    with torch.no_grad():
        q = (x @ attention.w_q.weight.T + attention.w_q.bias)[0, :, columns]  # (T, d_head)
        k = (x @ attention.w_k.weight.T + attention.w_k.bias)[0, :, columns]  # (T, d_head)
        v = (x @ attention.w_v.weight.T + attention.w_v.bias)[0, :, columns]  # (T, d_head)
    return tokens, x, q, k, v


def test_step_through_softmax_equals_multi_head_attention_weights(step):
    _reset(step, sentence=RUNNING_SENTENCE, head=2, stage="softmax", causal=False)
    tokens, x, _, _, _ = _independent_head(step, RUNNING_SENTENCE, 2)
    with torch.no_grad():
        step.attention(x, x, x)
    expected = step.attention.attention_weights[0, 2].double().numpy()  # (T, T)
    np.testing.assert_allclose(step.current_matrix(), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(step.heatmap.get_array()), expected, atol=1e-6)
    assert [t.get_text() for t in step.ax.get_yticklabels()] == tokens


def test_step_through_causal_softmax_equals_masked_attention(step):
    _reset(step, sentence=RUNNING_SENTENCE, head=1, stage="softmax", causal=True)
    _, x, _, _, _ = _independent_head(step, RUNNING_SENTENCE, 1)
    with torch.no_grad():
        step.attention(x, x, x, mask=causal_mask(x.shape[1]))
    expected = step.attention.attention_weights[0, 1].double().numpy()
    np.testing.assert_allclose(step.current_matrix(), expected, atol=1e-6)
    assert np.allclose(np.triu(step.current_matrix(), k=1), 0.0)


def test_step_through_each_stage(step):
    sentence = W.DEFAULT_SENTENCES[1]
    _, _, q, k, v = _independent_head(step, sentence, 3)
    d_head = q.shape[-1]
    scores = (q @ k.T).double().numpy()  # (T, T)
    scaled = scores / math.sqrt(d_head)
    T = scores.shape[0]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    _reset(step, sentence=sentence, head=3, causal=True)
    pngs = set()
    for stage, expected in [("QK^T", scores), ("÷ sqrt(d_k)", scaled)]:
        step.controls["stage"].value = stage
        np.testing.assert_allclose(step.current_matrix(), expected, rtol=1e-5, atol=1e-6)
        pngs.add(_png(step))
    step.controls["stage"].value = "masked"
    masked = step.current_matrix()
    assert np.isneginf(masked[future]).all()
    np.testing.assert_allclose(masked[~future], scaled[~future], rtol=1e-5, atol=1e-6)
    marked = {(int(row), int(col)) for col, row in step.inf_markers.get_offsets()}
    assert marked == set(zip(*np.nonzero(future), strict=True))  # "-inf" written on exactly the future cells
    pngs.add(_png(step))
    step.controls["stage"].value = "× V"
    weights = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (T, d_head), PyTorch's own
    np.testing.assert_allclose(step.current_matrix(), weights.double().numpy(), rtol=1e-5, atol=1e-6)
    assert step.ax.get_xlabel() == "value dimension (d_head)"
    pngs.add(_png(step))
    assert len(pngs) == 4  # every stage drew a different picture


def test_step_through_chinese_sentence(step):
    sentence = W.DEFAULT_SENTENCES[2]
    _reset(step, sentence=sentence, stage="softmax", head=0, causal=False)
    assert step.current_tokens() == sentence.split()
    assert step.current_matrix().shape == (len(sentence.split()),) * 2


def test_step_through_accepts_a_qkv_hook():
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 4, 5, generator=generator) for _ in range(3))  # (n_heads, T, d_head)

    def qkv_fn(sentence):
        return sentence.split(), q, k, v

    widget = W.AttentionStepThrough(sentences=["w x y z"], qkv_fn=qkv_fn, stage="softmax")
    assert widget.controls["head"].max == 2
    widget.controls["head"].value = 1
    expected = torch.softmax(q[1] @ k[1].T / math.sqrt(5), dim=-1)  # (T, T)
    np.testing.assert_allclose(widget.current_matrix(), expected.numpy(), atol=1e-12)


def test_step_through_rejects_a_bad_hook():
    def qkv_fn(sentence):
        return ["only", "three", "tokens"], torch.zeros(2, 4, 5), torch.zeros(2, 4, 5), torch.zeros(2, 4, 5)

    with pytest.raises(ValueError, match="3 tokens but q has T=4"):
        W.AttentionStepThrough(sentences=["a b c d"], qkv_fn=qkv_fn)


def test_step_through_reads_a_models_record():
    torch.manual_seed(7)
    model = GPT(GPTConfig(vocab_size=12, context_length=8, d_model=16, n_heads=2, n_layers=2)).double().eval()
    sentences = {"a b c d": [3, 4, 5, 6], "b c a": [4, 5, 3]}

    def record_fn(sentence):
        record = run_with_record(model, torch.tensor([sentences[sentence]]))  # (1, T) -> record
        return sentence.split(), record.part("blocks.1.self_attn")

    widget = W.AttentionStepThrough(sentences=list(sentences), record_fn=record_fn, stage="softmax")
    assert widget.controls["causal"].disabled  # the model's own (causal) mask applies
    widget.controls["head"].value = 1
    with torch.no_grad():
        model(torch.tensor([sentences["a b c d"]]))
    np.testing.assert_array_equal(widget.current_matrix(), model.blocks[1].self_attn.attention_weights[0, 1].numpy())
    widget.controls["stage"].value = "masked"
    assert np.isneginf(widget.current_matrix()[0, 1:]).all()
    widget.controls["sentence"].value = "b c a"
    assert widget.current_matrix().shape == (3, 3) and widget.last_error is None
    with pytest.raises(ValueError, match="lacks"):
        W.AttentionStepThrough(sentences=["a b"], record_fn=lambda s: (s.split(), {"weights": torch.zeros(1, 1, 2, 2)}))


def test_qkv_from_attention_reads_the_modules_record():
    torch.manual_seed(8)
    attention = MultiHeadAttention(8, 2).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    q, k, v = W.qkv_from_attention(attention, x)  # (n_heads, T, d_head) each
    with torch.no_grad():
        np.testing.assert_allclose(q.numpy(), attention.w_q(x)[0].view(5, 2, 4).transpose(0, 1).numpy(), atol=1e-12)
        np.testing.assert_allclose(v.numpy(), attention.w_v(x)[0].view(5, 2, 4).transpose(0, 1).numpy(), atol=1e-12)
    gqa = GroupedQueryAttention(16, 4, 2).double()
    q, k, v = W.qkv_from_attention(gqa, torch.randn(6, 16, dtype=torch.float64))
    assert q.shape == k.shape == v.shape == (4, 6, 4)
    assert torch.equal(k[0], k[1]) and torch.equal(k[2], k[3])  # query heads 0, 1 share kv head 0
    with pytest.raises(ValueError, match="qkv_from_attention"):
        W.qkv_from_attention(torch.nn.Linear(2, 2), x)


# ---------------------------------------------------------------------------------------- 3. masks


def test_mask_explorer_causal_plus_padding(masks):
    _reset(masks, mask="causal + padding", pad_count=3)
    sequence = masks.sequence()
    T = len(sequence)
    assert sequence[-3:] == ["<pad>"] * 3 and T == len(RUNNING_SENTENCE.split()) + 3
    scores = (masks.q[:T] @ masks.k[:T].T).double().numpy() / math.sqrt(masks.q.shape[1])  # (T, T)
    blocked = np.triu(np.ones((T, T), dtype=bool), k=1)
    blocked[:, -3:] = True  # padding keys
    masked = masks.current_masked_scores()
    assert (np.isneginf(masked) == blocked).all()
    expected = np.exp(np.where(blocked, -np.inf, scores))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(masks.current_matrix(), expected, rtol=1e-6, atol=1e-12)
    marked = {(int(row), int(col)) for col, row in masks.inf_markers.get_offsets()}
    assert marked == set(zip(*np.nonzero(blocked), strict=True))
    masks.controls["numbers"].value = True  # the numbers view writes every cell, -inf included
    assert sum(t.get_text() == "-inf" for t in masks.texts) == blocked.sum()
    assert len(masks.inf_markers.get_offsets()) == 0
    masks.controls["numbers"].value = False


def test_mask_explorer_each_kind(masks):
    _reset(masks, pad_count=2)
    T = len(masks.sequence())
    counts = {}
    for kind in W.MASK_KINDS:
        masks.controls["mask"].value = kind
        weights = masks.current_matrix()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
        counts[kind] = int(np.isneginf(masks.current_masked_scores()).sum())
        if kind == "padding":
            assert np.allclose(weights[:, -2:], 0.0)
    assert counts["none"] == 0
    assert counts["causal"] == T * (T - 1) // 2
    assert counts["padding"] == 2 * T
    pad_keys_on_or_below_diagonal = sum(T - j for j in range(T - 2, T))
    assert counts["causal + padding"] == T * (T - 1) // 2 + pad_keys_on_or_below_diagonal


# ---------------------------------------------------------------------------------------- 4. head grid


def test_head_grid_layer_and_head(grid, grid_weights):
    _reset(grid, layer=0, head=0)
    old_png = _png(grid)
    _reset(grid, layer=2, head=1)
    np.testing.assert_array_equal(grid.current_matrix(), grid_weights[2, 1].numpy())
    np.testing.assert_array_equal(np.asarray(grid.big_image.get_array()), grid_weights[2, 1].numpy())
    for head, image in enumerate(grid.small_images):
        np.testing.assert_array_equal(np.asarray(image.get_array()), grid_weights[2, head].numpy())
    assert grid.small_axes[1].spines["top"].get_linewidth() > grid.small_axes[0].spines["top"].get_linewidth()
    assert _png(grid) != old_png


def test_head_grid_accepts_three_dims_and_module_weights():
    weights = torch.softmax(torch.randn(1, 2, 3, 3), dim=-1)  # (B=1, n_heads, T, T) as on .attention_weights
    widget = W.HeadGrid(weights, ["a", "b", "c"])  # read as one layer
    assert widget.weights.shape == (1, 2, 3, 3) and widget.controls["layer"].disabled
    widget3 = W.HeadGrid(weights[0], ["a", "b", "c"], ["a", "b", "c"])
    assert widget3.controls["layer"].disabled
    widget3.controls["head"].value = 1
    np.testing.assert_array_equal(widget3.current_matrix(), weights[0, 1].numpy())
    with pytest.raises(ValueError, match="T_q=3.*2 query_tokens"):
        W.HeadGrid(weights[0], ["a", "b"], ["a", "b", "c"])


def test_head_grid_from_a_record():
    torch.manual_seed(9)
    config = TransformerConfig(
        src_vocab_size=15, tgt_vocab_size=15, d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=3, d_ff=32
    )
    model = Transformer(config).eval()
    src, tgt = torch.tensor([[3, 4, 5, 6, 7]]), torch.tensor([[2, 8, 9]])  # (1, S), (1, T)
    record = run_with_record(model, src, tgt)
    grid = W.HeadGrid.from_record(record, list("xyz"), list("abcde"), attention="decoder.layers.{}.cross_attn")
    assert grid.weights.shape == (3, 4, 3, 5)  # (n_layers, n_heads, T, S)
    _reset(grid, layer=2, head=3)
    np.testing.assert_array_equal(grid.current_matrix(), record["decoder.layers.2.cross_attn.weights"][0, 3].numpy())
    one = W.HeadGrid.from_record(record, list("abcde"), attention="encoder.layers.1.self_attn")
    assert one.controls["layer"].disabled and one.weights.shape == (1, 4, 5, 5)


# ---------------------------------------------------------------------------------------- 5. sampling


def test_sampling_top_k_zeroes_the_cut_bars(sampling, sampling_logits):
    _reset(sampling, temperature=1.0, top_p=1.0, top_k=0)
    old_png = _png(sampling)
    sampling.controls["top_k"].value = 4
    heights = np.array([bar.get_height() for bar in sampling.kept_bars])
    top4 = torch.topk(sampling_logits, 4).indices
    expected = torch.zeros(40, dtype=torch.float64)
    expected[top4] = torch.softmax(sampling_logits[top4], dim=-1)
    np.testing.assert_allclose(sampling.current_probs(), expected.numpy(), atol=1e-12)
    np.testing.assert_allclose(heights, expected[sampling.order].numpy(), atol=1e-12)
    assert (heights[4:] == 0).all() and (heights[:4] > 0).all()
    assert sampling.cutoff_line.get_visible() and sampling.cutoff_line.get_xdata()[0] == 3.5
    assert matplotlib.colors.to_hex(sampling.kept_bars[5].get_facecolor()) == viz.GREY
    assert _png(sampling) != old_png


def test_sampling_top_p_keeps_the_smallest_set_reaching_p(sampling, sampling_logits):
    _reset(sampling, temperature=0.7, top_k=0, top_p=0.6)
    probs = torch.softmax(sampling_logits / 0.7, dim=-1)
    ranked = torch.sort(probs, descending=True).values
    needed = int((torch.cumsum(ranked, 0) < 0.6).sum()) + 1  # tokens until the mass reaches 0.6
    final = sampling.current_probs()
    assert (final > 0).sum() == needed
    np.testing.assert_allclose(final.sum(), 1.0)
    before = sampling.current_matrix()[:, 0]
    np.testing.assert_allclose(before, probs[sampling.order].numpy(), atol=1e-12)


def test_sampling_temperature_zero_is_greedy(sampling, sampling_logits):
    _reset(sampling, top_k=0, top_p=1.0, temperature=0.0)
    heights = [bar.get_height() for bar in sampling.kept_bars]
    assert heights[0] == 1.0 and sum(heights) == 1.0
    assert sampling.order[0] == int(torch.argmax(sampling_logits))


def test_sampling_rejects_mismatched_tokens():
    with pytest.raises(ValueError, match="V=3 entries but there are 2 tokens"):
        W.SamplingExplorer(torch.zeros(3), ["a", "b"])


# ---------------------------------------------------------------------------------------- 6. ablations


def test_ablation_model_without_ablations_equals_the_layers_own_forward(ablation):
    output, weights = ablation.model.forward()
    reference_output, reference_weights = ablation.model.reference_forward()
    torch.testing.assert_close(output, reference_output)
    torch.testing.assert_close(weights, reference_weights)


def test_ablation_no_scaling_sharpens_like_a_power(ablation):
    _, base = ablation.model.forward()
    _, unscaled = ablation.model.forward(no_scaling=True)
    d_head = ablation.model.layers[0].self_attn.d_head
    # exp(s) = exp(s / sqrt(d))**sqrt(d): layer 0's unscaled weights are the scaled ones to the power sqrt(d).
    powered = base[0] ** math.sqrt(d_head)  # (n_heads, T, T)
    torch.testing.assert_close(unscaled[0], powered / powered.sum(-1, keepdim=True))


def test_ablation_without_positions_repeated_words_look_alike(ablation):
    tokens = ablation.model.tokens
    first, second = [i for i, token in enumerate(tokens) if token == "the"][:2]
    _, weights = ablation.model.forward(no_positional_encoding=True, no_causal_mask=True)
    torch.testing.assert_close(weights[0, :, first], weights[0, :, second])
    _, with_positions = ablation.model.forward(no_causal_mask=True)
    assert not torch.allclose(with_positions[0, :, first], with_positions[0, :, second])


def test_ablation_toggles_change_the_display(ablation):
    _reset(ablation, no_scaling=False, no_causal_mask=False, no_residual=False, no_positional_encoding=False)
    _reset(ablation, layer=1, head=2)
    base = ablation.current_matrix()
    np.testing.assert_allclose(base, ablation.baseline_weights[1, 2].numpy())
    old_png = _png(ablation)
    ablation.controls["no_causal_mask"].value = True
    assert np.triu(ablation.current_matrix(), k=1).sum() > 0.1  # the future is visible now
    assert _png(ablation) != old_png
    ablation.controls["no_causal_mask"].value = False
    ablation.controls["no_residual"].value = True
    norms = ablation.current_norms()  # (T, 2)
    assert not np.allclose(norms[:, 0], norms[:, 1])
    heights = [bar.get_height() for bar in ablation.ablated_bars]
    np.testing.assert_allclose(heights, norms[:, 1])
    ablation.controls["no_residual"].value = False


def _pixels(png: bytes) -> np.ndarray:
    import io

    import PIL.Image

    return np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGBA"))


PARTIAL_REDRAW_WIDGETS = {  # widgets that redraw only some artists, built so that every part changes
    "AblationToggles": dict(),
    "MaskExplorer": dict(seed=1),  # with seed 1 the mask changes the colour range of the scores
    "PositionalEncodingExplorer": dict(max_len=32, d_model=32),
}
PARTIAL_REDRAW_CHANGES = {  # control changes, each a kind of update
    "AblationToggles": [("no_scaling", True), ("layer", 1), ("no_residual", True), ("head", 3)],
    "MaskExplorer": [("mask", "causal"), ("numbers", True), ("mask", "padding"), ("pad_count", 4), ("mask", "none")],
    "PositionalEncodingExplorer": [("position", 3), ("d_model", 8), ("base", 100.0), ("position", 30), ("d_model", 64)],
}
PARTIAL_REDRAW_AFTER = {  # more changes, after a savefig and after a full draw
    "AblationToggles": [("no_causal_mask", True), ("no_positional_encoding", True), ("no_scaling", False)],
    "MaskExplorer": [("numbers", False), ("mask", "causal + padding"), ("pad_count", 1), ("numbers", True)],
    "PositionalEncodingExplorer": [("position", 0), ("base", 10000.0), ("d_model", 20), ("position", 17)],
}


@pytest.mark.parametrize("name", sorted(PARTIAL_REDRAW_WIDGETS))
def test_partial_redraw_equals_a_full_redraw(name, tmp_path):
    """These widgets draw the parts a control cannot change once and then redraw only the rest over those
    kept pixels (``_changing_artists``). After every kind of change, and after a savefig or a full draw
    in between, the picture must be exactly that of a full redraw, and that of a fresh widget."""
    widget = getattr(W, name)(**PARTIAL_REDRAW_WIDGETS[name])
    assert widget._changing_artists() is not None, f"{name} no longer redraws in part: drop it from this test"

    def set_and_compare(control, value):
        widget.controls[control].value = value
        shown = _pixels(_png(widget))
        # The full redraw is of a copy: a draw of the widget's own figure would make it draw its kept pixels
        # again, and the next update would no longer test them. The copy keeps the layout the widget drew
        # with: a second constrained-layout pass moves the axes by about 1e-7 of the figure, which alone
        # changes a few anti-aliased pixels.
        copy = pickle.loads(pickle.dumps(widget.figure))
        copy.set_layout_engine("none")
        redrawn = _pixels(viz.widgets.base.figure_to_png(copy, widget.dpi))
        assert shown.shape == redrawn.shape
        differing = int((shown != redrawn).any(axis=-1).sum())
        assert differing == 0, f"{name}, after {control}={value!r}: {differing} pixels differ from a full redraw"

    for control, value in PARTIAL_REDRAW_CHANGES[name]:
        set_and_compare(control, value)
    fresh = getattr(W, name)(**PARTIAL_REDRAW_WIDGETS[name])
    with fresh.hold():
        for control, value in PARTIAL_REDRAW_CHANGES[name]:
            fresh.controls[control].value = value
    np.testing.assert_array_equal(_pixels(_png(widget)), _pixels(_png(fresh)))

    widget.export_png(tmp_path / "figure.png")  # savefig at another dpi; the next update lays out again
    changes = PARTIAL_REDRAW_AFTER[name]
    set_and_compare(*changes[0])
    widget._repr_mimebundle_()  # a full draw for the static PNG
    for control, value in changes[1:]:
        set_and_compare(control, value)


# ---------------------------------------------------------------------------------------- latency


LATENCY_CHANGES = {
    "pe": ("position", [3, 9, 15, 21, 27, 4, 10, 16]),
    "step": ("stage", list(W.STAGES) + ["QK^T", "softmax", "masked"]),
    "masks": ("mask", list(W.MASK_KINDS) * 2),
    "grid": ("head", [0, 1, 2, 3] * 3),
    "sampling": ("top_k", list(range(1, 13))),
    "ablation": ("head", [0, 1, 2, 3] * 2),
}


def test_hold_redraws_once(pe):
    before = len(pe.update_seconds)
    old_png = _png(pe)
    with pe.hold():
        pe.controls["d_model"].value = 20
        pe.controls["position"].value = 11
        assert _png(pe) == old_png  # nothing redrawn yet
    assert len(pe.update_seconds) == before + 1
    np.testing.assert_allclose(pe.current_matrix(), sinusoidal_positional_encoding(32, 20).numpy(), atol=1e-12)


@pytest.mark.parametrize("name", ALL_WIDGETS)
def test_update_latency(name, request):
    """Median time from a control change to the new PNG in the Image widget.

    Measured over this test's 8 to 12 changes plus every update the earlier tests of this module made
    (about 20 in all when the whole file runs), leaving out the first draw (built with the widget).
    """
    widget = request.getfixturevalue(name)
    control, values = LATENCY_CHANGES[name]
    for value in values:
        widget.controls[control].value = value
    durations = list(widget.update_seconds)[1:]
    median = statistics.median(durations)
    print(f"[latency] {type(widget).__name__}: median {median * 1000:.0f} ms over {len(durations)} updates")
    assert widget.last_error is None
    assert median < 1.0
