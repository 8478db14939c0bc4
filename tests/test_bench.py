"""The benchmark harness: interleaving and the median of per-pair ratios."""

from course_lib.tooling.bench import Comparison, format_table, interleaved


def test_ratio_is_the_median_of_per_pair_ratios():
    comparison = Comparison("x", ours_seconds=[2.0, 10.0, 3.0], theirs_seconds=[1.0, 2.0, 3.0])
    # per-pair ratios 2, 5, 1 -> median 2 (not 15/6, the ratio of the sums)
    assert comparison.ratio == 2.0
    assert comparison.ours_median == 3.0


def test_interleaved_alternates_the_two_sides():
    calls = []
    result = interleaved("order", lambda: calls.append("A"), lambda: calls.append("B"), pairs=4, warmup=1)
    assert calls == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A"]
    assert len(result.ours_seconds) == len(result.theirs_seconds) == 4


def test_table_lists_every_comparison():
    table = format_table([Comparison("first", [1.0], [1.0], "<= 1.1"), Comparison("second", [2.0], [1.0])])
    assert "| 1 | first |" in table and "| 2 | second |" in table and "2.00" in table
