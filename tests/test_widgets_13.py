"""Tests of lesson 13's widget, the RoPE explorer, driven without a browser: set the controls, then check
the numbers it shows against values computed independently from RoPE's definition."""

import base64
import csv
import math
import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.viz import widgets as W  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rope():
    return W.RopeExplorer(d_head=16, max_position=24)


def _set(widget, **values):
    with widget.hold():
        for name, value in values.items():
            widget.controls[name].value = value


def _rotate_pair(a: float, b: float, angle: float) -> np.ndarray:
    """(a, b) turned by ``angle`` radians, written from the 2x2 rotation matrix."""
    return np.array([a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)])


def test_common_interface_and_static_png(rope):
    assert isinstance(rope.widget, ipywidgets.VBox)
    assert rope.image in rope.widget.children and rope.output in rope.widget.children
    assert set(rope.controls) == {"position", "pair", "base", "same_vector"}
    assert bytes(rope.image.value).startswith(PNG_SIGNATURE)
    bundle = rope._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == rope.widget.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(PNG_SIGNATURE)
    assert "RopeExplorer" in bundle["text/plain"]


def test_export_png_and_csv(rope, tmp_path):
    assert rope.export_png(tmp_path / "rope.png").read_bytes().startswith(PNG_SIGNATURE)
    with rope.export_csv(tmp_path / "rope.csv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1] == "key 0" and rows[1][0] == "query 0"
    values = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(values, rope.current_matrix(), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize(
    ("position", "pair", "base"), [(0, 0, 10000.0), (5, 0, 10000.0), (17, 3, 100.0), (23, 7, 10.0)]
)
def test_the_arrow_is_the_pair_turned_by_position_times_its_frequency(rope, position, pair, base):
    _set(rope, position=position, pair=pair, base=base)
    theta = base ** (-2 * pair / 16)
    expected = _rotate_pair(rope.q[pair].item(), rope.q[pair + 8].item(), position * theta)
    np.testing.assert_allclose(rope.current_pair(), expected, atol=1e-12)
    np.testing.assert_allclose(rope.arrow.xy, expected, atol=1e-12)
    assert np.hypot(*rope.current_pair()) == pytest.approx(math.hypot(rope.q[pair], rope.q[pair + 8]))
    angles = rope.current_angles()
    assert angles.shape == (8,)
    np.testing.assert_allclose(angles, np.mod(position * base ** (-np.arange(0, 16, 2) / 16), 2 * math.pi), atol=1e-12)
    assert [bar.get_height() for bar in rope.angle_bars] == pytest.approx(list(angles))
    assert f"pair {pair} at position {position}" in rope.ax_pair.get_title()
    assert rope.last_error is None


@pytest.mark.parametrize("same_vector", [True, False])
def test_scores_depend_only_on_the_distance(rope, same_vector):
    _set(rope, position=4, pair=2, base=10000.0, same_vector=same_vector)
    scores = rope.current_matrix()  # (L, L)
    assert scores.shape == (24, 24)
    for distance in range(-23, 24):
        diagonal = np.diagonal(scores, offset=-distance)  # entries with m - n = distance
        assert np.ptp(diagonal) < 1e-9, distance
    k = rope.q if same_vector else rope.k
    assert scores[0, 0] == pytest.approx(float(rope.q @ k))  # position 0: nothing turns
    if same_vector:
        assert np.allclose(scores, scores.T), "with k = q the score is even in the distance"
        assert scores[0, 0] == pytest.approx(scores.max())
    else:
        assert not np.allclose(scores, scores.T), "with k != q the score tells before from after"


def test_score_against_distance_sums_the_pairs(rope):
    _set(rope, position=9, pair=1, base=500.0, same_vector=False)
    distances, totals, pair_part = rope.scores_by_distance()
    scores = rope.current_matrix()
    assert distances[0] == -23 and distances[-1] == 23
    for distance, total in zip(distances, totals, strict=True):
        assert total == pytest.approx(np.diagonal(scores, offset=-distance)[0])
    # The pair's part at distance d is q_pair turned by d * theta, dotted with k_pair.
    theta = 500.0 ** (-2 * 1 / 16)
    q_pair, k_pair = rope.q[[1, 9]].numpy(), rope.k[[1, 9]].numpy()
    for index in (0, 10, 23, 30, 46):
        expected = _rotate_pair(*q_pair, distances[index] * theta) @ k_pair
        assert pair_part[index] == pytest.approx(expected, abs=1e-10)
    np.testing.assert_allclose(rope.total_line.get_ydata(), totals)
    assert list(rope.distance_marker.get_xdata()) == [9, 9]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="d_head must be an even int"):
        W.RopeExplorer(d_head=7)
    with pytest.raises(ValueError, match="max_position must be an int >= 2"):
        W.RopeExplorer(max_position=1)


def test_update_latency(rope):
    for position in (1, 3, 6, 9, 12, 15, 18, 21):
        rope.controls["position"].value = position
    durations = list(rope.update_seconds)[1:]
    median = statistics.median(durations)
    print(f"[latency] RopeExplorer: median {median * 1000:.0f} ms over {len(durations)} updates")
    assert rope.last_error is None
    assert median < 1.0


def test_no_global_state_changed():
    dtype = torch.get_default_dtype()
    W.RopeExplorer(d_head=8, max_position=4)
    assert torch.get_default_dtype() == dtype
