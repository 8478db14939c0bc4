"""The benchmark harness: interleaving and the median of per-pair ratios."""

import pytest

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


@pytest.mark.parametrize("three_projections", [False, True], ids=["one qkv projection", "three projections"])
def test_nano_style_gpt_with_copied_weights_computes_the_same_logits(three_projections):
    import torch

    from course_lib.models import GPT, GPTConfig
    from course_lib.tooling.bench_reference import NanoStyleGPT, copy_gpt_weights

    config = GPTConfig(vocab_size=30, context_length=12, d_model=32, n_heads=4, n_layers=2)
    ours, theirs = GPT(config).eval(), NanoStyleGPT(config, three_projections=three_projections).eval()
    copy_gpt_weights(ours, theirs)
    token_ids = torch.randint(0, 30, (3, 12))
    with torch.no_grad():
        assert (ours(token_ids) - theirs(token_ids)).abs().max().item() < 1e-12
    attention = theirs.blocks[0].attention
    assert hasattr(attention, "q") == three_projections and hasattr(attention, "qkv") == (not three_projections)


def test_llama_pair_holds_the_same_weights():
    import torch

    pytest.importorskip("transformers")
    from course_lib.llama import LlamaConfig
    from course_lib.tooling.bench_reference import llama_pair

    config = LlamaConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, context_length=32)
    ours, theirs = llama_pair(config)
    token_ids = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        assert (ours(token_ids) - theirs(token_ids).logits).abs().max().item() < 1e-4  # float32, rope angles differ


def test_replace_section_replaces_only_its_section():
    from course_lib.tooling.bench_reference import replace_section

    text = "# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## B\n\nb stays\n"
    replaced = replace_section(text, "## A", "## A\n\nnew a")
    assert "new a" in replaced and "old a" not in replaced and "b stays" in replaced and "intro" in replaced
    assert replaced.index("## A") < replaced.index("## B")
    appended = replace_section(text, "## C", "## C\n\nc")
    assert appended.endswith("## C\n\nc\n") and "old a" in appended


def test_widget_latencies_time_every_widget_and_the_explainer_twice(tmp_path):
    """``make bench``'s widget table: one row per widget, the explainer on two controls, each with its target;
    and the notebook timer refuses a folder without lessons instead of writing an empty table."""
    from course_lib.tooling.bench import time_notebooks, widget_latencies

    rows = widget_latencies(changes=3, smollm2=False)
    names = [name for name, _, _, _ in rows]
    assert names.count("GPTExplainer, tiny GPT") == 2 and "HeadGrid" in names
    assert all(seconds > 0 and target.startswith("<=") for _, _, seconds, target in rows)
    with pytest.raises(FileNotFoundError, match="no lesson notebooks"):
        time_notebooks(tmp_path)
