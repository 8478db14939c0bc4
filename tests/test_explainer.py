"""Tests of the GPT explainer (lesson 11): drive it like a learner and check what it shows.

The expected values are computed independently, from the model's own forward pass (its stored
attention weights and logits) or by hand from its weights, never read back from the widget.
"""

import math

import numpy as np
import pytest
import torch

from course_lib.data import grammar
from course_lib.generation import next_token_probs
from course_lib.models import GPT, GPTConfig
from course_lib.viz.widgets.explainer import EXPLAINER_STAGES, GPTExplainer


@pytest.fixture(scope="module")
def small_model():
    tokenizer = grammar.make_tokenizer()
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=64, d_model=32, n_heads=4, n_layers=2))
    return model.double().eval(), tokenizer


@pytest.fixture
def explainer(small_model):
    model, tokenizer = small_model
    return GPTExplainer(model, tokenizer, prompt="the dog", seed=0)


def model_run(model, tokenizer, prompt):
    ids = torch.tensor([[tokenizer.bos_id] + tokenizer.encode(prompt)])  # (1, T)
    with torch.no_grad():
        logits = model(ids)  # (1, T, V)
    return ids, logits


def test_typing_a_prompt_shows_its_tokens(explainer):
    explainer.controls["prompt"].value = "If the dogs that the cat sees run ,"
    assert explainer.current_tokens() == ["<bos>", "if", "the", "dogs", "that", "the", "cat", "sees", "run", ","]
    assert "<code>dogs</code>" in explainer.tokens_label.value
    assert explainer.last_error is None


def test_embeddings_are_token_plus_position(explainer, small_model):
    model, tokenizer = small_model
    explainer.controls["prompt"].value = "the cats sleep"
    ids = [tokenizer.bos_id] + tokenizer.encode("the cats sleep")
    expected = model.token_embedding.weight[ids] + model.position_embedding.weight[: len(ids)]  # (T, d_model)
    np.testing.assert_allclose(explainer.current_embeddings(), expected.detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("layer, head", [(0, 0), (1, 3)])
def test_softmax_stage_equals_the_models_own_attention_weights(explainer, small_model, layer, head):
    model, tokenizer = small_model
    prompt = "either the girl that the foxes like waits ( the bird"
    explainer.controls["prompt"].value = prompt
    explainer.controls["layer"].value = layer
    explainer.controls["head"].value = head
    explainer.controls["stage"].value = "softmax"
    model_run(model, tokenizer, prompt)
    expected = model.blocks[layer].self_attn.attention_weights[0, head]  # (T, T), from the model's forward pass
    shown = explainer.current_matrix()
    assert shown.shape == expected.shape
    np.testing.assert_allclose(shown, expected.numpy(), atol=1e-10)
    np.testing.assert_allclose(shown.sum(axis=1), 1.0, atol=1e-10)
    assert np.all(np.triu(shown, k=1) == 0.0)  # causal: nothing above the diagonal


def test_score_stages_by_hand(explainer, small_model):
    model, tokenizer = small_model
    prompt = "when the old teacher runs"
    layer, head = 1, 2
    explainer.controls["prompt"].value = prompt
    explainer.controls["layer"].value = layer
    explainer.controls["head"].value = head
    # The block's attention input is layer_norm(x) of the residual stream entering the block.
    ids = torch.tensor([[tokenizer.bos_id] + tokenizer.encode(prompt)])
    with torch.no_grad():
        x = model.token_embedding(ids) + model.position_embedding.weight[: ids.shape[1]]  # (1, T, d_model)
        x = model.blocks[0](x, torch.ones(ids.shape[1], ids.shape[1]).tril().bool())  # (1, T, d_model)
        block = model.blocks[layer]
        normed = block.norm1(x)[0]  # (T, d_model)
        attention = block.self_attn
        d_head = 32 // 4
        columns = slice(head * d_head, (head + 1) * d_head)
        q = (normed @ attention.w_q.weight.T + attention.w_q.bias)[:, columns]  # (T, d_head)
        k = (normed @ attention.w_k.weight.T + attention.w_k.bias)[:, columns]  # (T, d_head)
    scores = (q @ k.T).numpy()
    T = scores.shape[0]
    stages = {}
    for stage in EXPLAINER_STAGES:
        explainer.controls["stage"].value = stage
        stages[stage] = explainer.current_matrix()
    np.testing.assert_allclose(stages["QK^T"], scores, atol=1e-10)
    np.testing.assert_allclose(stages["÷ sqrt(d_k)"], scores / math.sqrt(d_head), atol=1e-10)
    masked = stages["masked"]
    assert np.all(np.isneginf(masked[np.triu_indices(T, k=1)]))
    np.testing.assert_allclose(masked[np.tril_indices(T)], (scores / math.sqrt(d_head))[np.tril_indices(T)], atol=1e-10)
    by_hand = np.exp(masked - masked.max(axis=1, keepdims=True))
    by_hand /= by_hand.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(stages["softmax"], by_hand, atol=1e-10)


def test_mlp_activations_are_gelu_of_the_first_linear_layer(explainer, small_model):
    model, tokenizer = small_model
    prompt = "the fox"
    explainer.controls["prompt"].value = prompt
    explainer.controls["layer"].value = 0
    ids = torch.tensor([[tokenizer.bos_id] + tokenizer.encode(prompt)])
    with torch.no_grad():
        x = model.token_embedding(ids) + model.position_embedding.weight[: ids.shape[1]]
        block = model.blocks[0]
        x = x + block.self_attn(block.norm1(x), block.norm1(x), block.norm1(x), torch.ones(3, 3).tril().bool())
        expected = torch.nn.functional.gelu(block.ff.linear1(block.norm2(x)))[0]  # (T, d_ff)
    np.testing.assert_allclose(explainer.current_mlp(), expected.numpy(), atol=1e-10)


def test_probabilities_follow_the_sliders(explainer, small_model):
    model, tokenizer = small_model
    prompt = "the dog that the cats chase"
    explainer.controls["prompt"].value = prompt
    _, logits = model_run(model, tokenizer, prompt)
    last = logits[0, -1]  # (V,)
    np.testing.assert_allclose(explainer.current_logits(), last.numpy(), atol=1e-12)
    np.testing.assert_allclose(explainer.current_probs(), torch.softmax(last, -1).numpy(), atol=1e-12)
    explainer.controls["temperature"].value = 0.5
    explainer.controls["top_k"].value = 5
    explainer.controls["top_p"].value = 0.9
    expected = next_token_probs(last, temperature=0.5, top_k=5, top_p=0.9)
    np.testing.assert_allclose(explainer.current_probs(), expected.numpy(), atol=1e-12)
    assert 1 <= (explainer.current_probs() > 0).sum() <= 5
    # The cut-off line is drawn where the kept bars end.
    kept_drawn = sum(bar.get_height() > 0 for bar in explainer.kept_bars)
    assert explainer.cutoff_line.get_visible()
    assert explainer.cutoff_line.get_xdata()[0] == pytest.approx(kept_drawn - 0.5)


def test_generate_appends_one_sampled_token(explainer, small_model):
    model, tokenizer = small_model
    explainer.controls["prompt"].value = "if the girls"
    explainer.controls["top_k"].value = 3  # only 3 candidates: the appended token must be one of them
    _, logits = model_run(model, tokenizer, "if the girls")
    allowed = set(torch.topk(logits[0, -1], 3).indices.tolist()) - {tokenizer.eos_id}
    before = explainer.current_tokens()
    token = explainer.generate()
    if token == "<eos>":
        assert explainer.current_tokens() == before
    else:
        after = explainer.current_tokens()
        assert after[:-1] == before and len(after) == len(before) + 1
        assert tokenizer.token_to_id[after[-1]] in allowed


def test_button_click_generates_and_is_reproducible(small_model):
    model, tokenizer = small_model
    prompts = []
    for _ in range(2):
        explainer = GPTExplainer(model, tokenizer, prompt="the birds that", seed=5)
        explainer.controls["temperature"].value = 0.0  # greedy: never <eos> unless it is the top token
        _, logits = model_run(model, tokenizer, "the birds that")
        greedy = tokenizer.id_to_token[int(logits[0, -1].argmax())]
        explainer.generate_button.click()
        assert explainer.last_error is None
        if greedy != "<eos>":
            assert explainer.current_tokens()[-1] == greedy
            assert len(explainer.current_tokens()) == 5
        explainer.controls["temperature"].value = 1.0
        for _ in range(3):
            explainer.generate_button.click()
        prompts.append(explainer.controls["prompt"].value)
    assert prompts[0] == prompts[1]


def test_exports_and_static_figure(explainer, tmp_path):
    explainer.controls["prompt"].value = "the cat sings"
    explainer.controls["stage"].value = "softmax"
    png = explainer.export_png(tmp_path / "explainer.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_path = explainer.export_csv(tmp_path / "explainer.csv")
    rows = csv_path.read_text(encoding="utf-8").splitlines()
    assert rows[0].split(",")[1:] == ["<bos>", "the", "cat", "sings"]
    assert len(rows) == 1 + 4
    bundle = explainer._repr_mimebundle_()
    assert "image/png" in bundle


def test_unknown_words_and_bad_arguments(small_model):
    model, tokenizer = small_model
    explainer = GPTExplainer(model, tokenizer, prompt="the zebra runs")
    assert explainer.current_tokens() == ["<bos>", "the", "<unk>", "runs"]
    with pytest.raises(ValueError, match="GPTExplainer"):
        GPTExplainer(model, None)
    other = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=8, n_heads=2, n_layers=1))
    with pytest.raises(ValueError, match="vocab_size"):
        GPTExplainer(other, tokenizer)


def test_default_is_the_tiny_gpt_checkpoint():
    explainer = GPTExplainer()
    assert explainer.model.config.d_model == 128
    assert explainer.current_tokens()[0] == "<bos>"
