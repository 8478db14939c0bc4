"""Tests of course_lib.viz: fonts (Chinese glyphs render), heatmap helpers and the Transformer map."""

import io
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from course_lib import viz  # noqa: E402
from course_lib.viz import transformer_map  # noqa: E402

CHINESE_TOKENS = ["我", "喜欢", "机器", "学习"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _render(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- fonts


def test_cjk_font_is_registered_first_with_dejavu_fallback():
    path = viz.find_cjk_font()
    assert path is not None and path.name == "NotoSansCJKsc-Regular.otf"
    family = font_manager.FontProperties(fname=str(path)).get_name()
    assert viz.CJK_FONT_FAMILY == family
    assert matplotlib.rcParams["font.sans-serif"][0] == family
    assert "DejaVu Sans" in matplotlib.rcParams["font.sans-serif"]
    assert matplotlib.rcParams["font.family"] == ["sans-serif", "DejaVu Sans"]  # glyph-by-glyph fallback
    assert matplotlib.rcParams["axes.unicode_minus"] is False
    assert any(entry.fname == str(path) for entry in font_manager.fontManager.ttflist)


def test_chinese_tick_labels_render_without_missing_glyphs(tmp_path):
    weights = torch.softmax(torch.randn(4, 4), dim=-1)  # (T_q, T_k)
    fig, ax = plt.subplots(figsize=(4, 4))
    viz.plot_attention(weights, CHINESE_TOKENS, CHINESE_TOKENS, ax=ax, title="注意力: softmax(Q·Kᵀ / √d_k) -1")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing from font.*")
        fig.savefig(tmp_path / "chinese.png")
    assert (tmp_path / "chinese.png").stat().st_size > 5_000


def test_the_glyph_check_catches_a_font_without_chinese():
    """The check above can fail: with DejaVu Sans only, matplotlib warns about the missing glyphs."""
    with matplotlib.rc_context({"font.sans-serif": ["DejaVu Sans"]}):
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.set_xticks(range(4), CHINESE_TOKENS)
        with pytest.warns(UserWarning, match="missing from font"):
            _render(fig)


# ---------------------------------------------------------------------------------------- heatmaps


def test_plot_matrix_has_colorbar_labels_and_accepts_tensors():
    matrix = torch.arange(6.0).reshape(2, 3)  # (2, 3)
    image = viz.plot_matrix(matrix, row_labels=["a", "b"], col_labels=["x", "y", "z"], xlabel="cols", ylabel="rows")
    assert isinstance(image, AxesImage)
    np.testing.assert_allclose(image.get_array(), matrix.numpy())
    ax = image.axes
    assert ax.get_xlabel() == "cols" and ax.get_ylabel() == "rows"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert image.colorbar is not None
    assert len(image.figure.axes) == 2  # the heatmap and its colorbar


def test_plot_matrix_centered_uses_vlag_symmetric_limits():
    image = viz.plot_matrix(np.array([[-1.0, 3.0], [0.5, 2.0]]), center=0.0)
    low, high = image.get_clim()
    assert low == pytest.approx(-3.0) and high == pytest.approx(3.0)
    vlag = viz.get_cmap("vlag")
    assert mcolors.to_hex(image.cmap(0.0)) == mcolors.to_hex(vlag(0.0))
    assert mcolors.to_hex(image.cmap(1.0)) == mcolors.to_hex(vlag(1.0))


def test_plot_matrix_writes_minus_inf_and_hatches_it():
    matrix = np.array([[0.5, -np.inf], [0.1, 0.2]])
    image = viz.plot_matrix(matrix, annotate=True)
    texts = [t.get_text() for t in image.axes.texts]
    assert texts.count("-inf") == 1
    assert image.get_array().mask[0, 1]  # drawn as "bad": transparent over the hatched background
    assert image._hatch_background.get_hatch() == "///"


def test_plot_attention_labels_and_colorbar():
    weights = torch.softmax(torch.randn(3, 5), dim=-1)  # (T_q, T_k)
    image = viz.plot_attention(weights, ["q0", "q1", "q2"], list("abcde"))
    assert image.axes.get_xlabel() == "key (attended to)"
    assert image.axes.get_ylabel() == "query (attending)"
    assert image.colorbar.ax.get_ylabel() == "attention weight"
    assert image.get_cmap().name.startswith("rocket")


def test_plot_attention_rejects_token_count_mismatch():
    weights = torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"T_q=3.*2 query_tokens"):
        viz.plot_attention(weights, ["a", "b"], list("abcd"))
    with pytest.raises(ValueError, match=r"T_k=4.*3 key_tokens"):
        viz.plot_attention(weights, list("abc"), list("abc"))
    with pytest.raises(ValueError, match=r"\(T_q, T_k\).*\(2, 3, 4\)"):
        viz.plot_attention(torch.rand(2, 3, 4), list("abc"), list("abcd"))


def test_plot_head_grid_one_heatmap_per_head():
    weights = torch.softmax(torch.randn(6, 4, 4), dim=-1)  # (n_heads, T_q, T_k)
    fig = viz.plot_head_grid(weights, list("abcd"), list("abcd"), ncols=4)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 6
    for head, image in enumerate(images):
        np.testing.assert_allclose(image.get_array(), weights[head].numpy())
    assert images[0].axes.get_title() == "head 0"
    with pytest.raises(ValueError, match="n_heads, T_q, T_k"):
        viz.plot_head_grid(weights[0], list("abcd"), list("abcd"))


def test_plot_sampling_bars_greys_cut_tokens():
    probs = np.array([0.6, 0.4, 0.0])
    kept, ghost = viz.plot_sampling_bars(probs, ["a", "b", "c"], before_cut=np.array([0.5, 0.3, 0.2]))
    assert [bar.get_height() for bar in kept] == [0.6, 0.4, 0.0]
    assert mcolors.to_hex(kept[2].get_facecolor()) == viz.GREY
    assert mcolors.to_hex(kept[0].get_facecolor()) != viz.GREY
    assert ghost[2].get_height() == 0.2


def test_plot_pe_is_centered_on_zero():
    image = viz.plot_pe(torch.tensor([[0.0, 1.0], [0.84, 0.54]]))
    assert image.get_clim() == (-1.0, 1.0)
    assert image.axes.get_xlabel() == "dimension i"


# ---------------------------------------------------------------------------------------- the map


def _part_patches(fig) -> dict[str, object]:
    ax = fig.axes[0]
    return {patch.get_gid(): patch for patch in ax.patches if patch.get_gid() in viz.MAP_PARTS}


def test_map_draws_every_part_once():
    fig = viz.draw_transformer_map()
    patches = _part_patches(fig)
    assert set(patches) == set(viz.MAP_PARTS)
    assert len([p for p in fig.axes[0].patches if p.get_gid() in viz.MAP_PARTS]) == len(viz.MAP_PARTS)


def test_map_highlights_only_the_chosen_parts():
    fig = viz.draw_transformer_map(highlight=("decoder_cross_attention", "linear"))
    patches = _part_patches(fig)
    muted = mcolors.to_rgba(transformer_map._MUTED_FILL)
    strong = {name for name, patch in patches.items() if patch.get_facecolor() != muted}
    assert strong == {"decoder_cross_attention", "linear"}


def test_map_groups_expand():
    fig = viz.draw_transformer_map(highlight=("attention",))
    patches = _part_patches(fig)
    muted = mcolors.to_rgba(transformer_map._MUTED_FILL)
    strong = {name for name, patch in patches.items() if patch.get_facecolor() != muted}
    assert strong == set(viz.PART_GROUPS["attention"])


def test_map_shapes_can_be_hidden():
    shown = [t.get_text() for t in viz.draw_transformer_map().axes[0].texts if t.get_gid() == "shape"]
    assert "(B, S)" in shown and "(B, T)" in shown and "logits (B, T, V)" in shown
    assert any("(B, S, d_model)" in text for text in shown)
    hidden = [t for t in viz.draw_transformer_map(show_shapes=False).axes[0].texts if t.get_gid() == "shape"]
    assert hidden == []


def test_map_rejects_unknown_parts():
    with pytest.raises(ValueError, match="unknown part 'attn'"):
        viz.draw_transformer_map(highlight=("attn",))


def test_lesson_highlights_cover_lessons_0_to_14():
    assert sorted(viz.LESSON_HIGHLIGHTS) == list(range(15))
    assert sorted(viz.LESSON_TITLES) == list(range(15))
    for lesson, parts in viz.LESSON_HIGHLIGHTS.items():
        assert parts, f"lesson {lesson} highlights nothing"
        assert set(parts) <= set(viz.MAP_PARTS)
    assert set(viz.LESSON_HIGHLIGHTS[0]) == set(viz.MAP_PARTS)
    assert viz.LESSON_HIGHLIGHTS[4] == ("decoder_masked_self_attention",)
    assert "decoder_cross_attention" not in viz.LESSON_HIGHLIGHTS[11]  # decoder-only: no cross-attention
    assert not any(part.startswith("decoder") for part in viz.LESSON_HIGHLIGHTS[12])
    for lesson in (13, 14):  # the modern decoder-only LLM: no encoder, no cross-attention
        assert not any(part.startswith(("encoder", "input")) for part in viz.LESSON_HIGHLIGHTS[lesson])
        assert "decoder_cross_attention" not in viz.LESSON_HIGHLIGHTS[lesson]


@pytest.mark.parametrize("lesson", [0, 4, 11, 13])
def test_show_map_titles_and_highlights(lesson, tmp_path):
    fig = viz.show_map(lesson)
    assert fig.axes[0].get_title().startswith(f"Lesson {lesson:02d}")
    patches = _part_patches(fig)
    muted = mcolors.to_rgba(transformer_map._MUTED_FILL)
    strong = {name for name, patch in patches.items() if patch.get_facecolor() != muted}
    assert strong == set(viz.LESSON_HIGHLIGHTS[lesson])
    width, height = fig.get_size_inches()
    assert (width, height) == (10, 7)
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 20_000


def test_show_map_rejects_bad_lesson():
    with pytest.raises(ValueError, match="0..14"):
        viz.show_map(15)
