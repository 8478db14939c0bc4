"""Tests of the language-model explainer (lesson 11, and lesson 14 with SmolLM2): drive it like a
learner and check what it shows, for a GPT with the word tokenizer and a Llama with a byte-level BPE.

The expected values are computed independently, from the model's own forward pass (its stored
attention weights and logits) or by hand from its weights, never read back from the widget.
"""

import math
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.data import grammar
from course_lib.generation import next_token_probs
from course_lib.llama import Llama, LlamaConfig
from course_lib.models import GPT, GPTConfig
from course_lib.rotary import apply_rope
from course_lib.tokenization import ByteLevelBPETokenizer
from course_lib.viz.widgets.explainer import (
    EXPLAINER_PANELS,
    EXPLAINER_STAGES,
    GPTExplainer,
    LanguageModelExplainer,
    readable_tokens,
)


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
    with pytest.raises(ValueError, match="LanguageModelExplainer: pass both"):
        GPTExplainer(model, None)
    with pytest.raises(ValueError, match="GPT or Llama"):
        GPTExplainer(torch.nn.Linear(2, 2), tokenizer)
    other = GPT(GPTConfig(vocab_size=10, context_length=8, d_model=8, n_heads=2, n_layers=1))
    with pytest.raises(ValueError, match="vocab_size"):
        GPTExplainer(other, tokenizer)


def test_default_is_the_tiny_gpt_checkpoint():
    explainer = GPTExplainer()
    assert explainer.model.config.d_model == 128
    assert explainer.current_tokens()[0] == "<bos>"


# ------------------------------------------------------------------------------------------ any model, fast


def test_the_model_runs_once_per_prompt_and_controls_redraw_only_their_picture(small_model):
    model, tokenizer = small_model
    explainer = GPTExplainer(model, tokenizer, prompt="the dog that the cats chase")
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        redraws = dict(explainer.redraws)

        def redrawn(name, value):
            explainer.controls[name].value = value
            now = dict(explainer.redraws)
            changed = {picture for picture in now if now[picture] != redraws[picture]}
            redraws.update(now)
            return changed

        assert redrawn("stage", "QK^T") == {"attention"}
        assert redrawn("temperature", 0.7) == {"next token"}
        assert redrawn("top_p", 0.8) == {"next token"}
        assert redrawn("panel", "MLP") == {"panel"}
        assert redrawn("layer", 1) == {"attention", "panel"}
        assert redrawn("head", 2) == {"attention", "panel"}
        assert redrawn("panel", "embeddings") == {"panel"}
        assert redrawn("layer", 0) == {"attention"}  # GPT's embeddings do not depend on the layer
        assert calls == []  # no control but the prompt runs the model
        assert redrawn("prompt", "the dog") == {"attention", "panel", "next token"}
        assert len(calls) == 1
        explainer.controls["head"].value = 0
        assert len(calls) == 1
    finally:
        hook.remove()
    assert explainer.last_error is None


@pytest.mark.parametrize("panel", EXPLAINER_PANELS)
def test_every_panel_shows_the_record(explainer, panel):
    explainer.controls["prompt"].value = "the cats that the dog sees sleep"
    explainer.controls["layer"].value = 1
    explainer.controls["head"].value = 1
    explainer.controls["panel"].value = panel
    assert explainer.last_error is None
    heatmaps = explainer.current_panel()
    images = explainer._panel_images[panel]
    assert len(images) == len(heatmaps) >= 3
    T = len(explainer.current_tokens())
    for image, heatmap in zip(images, heatmaps, strict=True):
        assert heatmap.matrix.shape[0] == T
        np.testing.assert_array_equal(np.asarray(image.get_array()), heatmap.matrix)  # what is drawn
        assert heatmap.title.split("\n")[0] in image.axes.get_title()
    record = explainer.current_record()
    if panel == "weights × V":
        np.testing.assert_array_equal(heatmaps[0].matrix, record["blocks.1.self_attn.heads"][0, 1].numpy())
        np.testing.assert_array_equal(heatmaps[2].matrix, record["blocks.1.self_attn.output"][0].numpy())
        assert heatmaps[1].columns == (8, 16)  # head 1 of 4, d_head = 8
    if panel == "residual stream":
        np.testing.assert_array_equal(heatmaps[-1].matrix, record["blocks.1.residual_out"][0].numpy())


def test_redraws_are_fast_on_the_tiny_gpt():
    """Median time from a layer, head or stage change to the new pictures, on lesson 11's checkpoint.

    The target is 100 ms on the course machine; the bound is three times that, as the test
    machine is shared. ``pytest -s`` prints the measured medians.
    """
    explainer = GPTExplainer()
    medians = {}
    for name, values in (("stage", EXPLAINER_STAGES), ("layer", (0, 1, 2, 3)), ("head", (0, 1, 2, 3))):
        control = explainer.controls[name]
        seconds = []
        for value in list(values[1:]) + list(values) * 2:
            before = len(explainer.update_seconds)
            control.value = value
            if len(explainer.update_seconds) > before:
                seconds.append(explainer.update_seconds[-1])
        medians[name] = statistics.median(seconds)
    print("explainer median redraw (s):", {name: round(value, 3) for name, value in medians.items()})
    assert explainer.last_error is None
    assert max(medians.values()) < 0.3, medians


# ------------------------------------------------------------------------------------------ Llama + byte-level BPE

LLAMA_TEXT = "the cat sat on the mat. the dog ate the bone!\n" * 20 + "你好 world, 你好"


@pytest.fixture(scope="module")
def small_llama():
    tokenizer = ByteLevelBPETokenizer.train(LLAMA_TEXT, vocab_size=290)
    torch.manual_seed(4)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48)
    return Llama(config).double().eval(), tokenizer


@pytest.fixture
def llama_explainer(small_llama):
    model, tokenizer = small_llama
    return LanguageModelExplainer(model, tokenizer, prompt="the cat sat\non the mat", seed=1)


def test_byte_level_tokens_are_readable_pieces(llama_explainer, small_llama):
    _, tokenizer = small_llama
    tokens = llama_explainer.current_tokens()
    assert "".join(tokens).replace("␣", " ").replace("↵", "\n") == "the cat sat\non the mat"  # no <bos>
    assert "␣cat" in tokens and "↵" in "".join(tokens)
    assert "<code>␣cat</code>" in llama_explainer.tokens_label.value
    pieces = readable_tokens(tokenizer, tokenizer.encode("你好"))
    assert "".join(pieces) == "你好" or any(piece.startswith("<") for piece in pieces)


def test_llama_attention_is_the_models_own(llama_explainer, small_llama):
    model, tokenizer = small_llama
    llama_explainer.controls["layer"].value = 1
    llama_explainer.controls["head"].value = 3
    ids = torch.tensor([tokenizer.encode("the cat sat\non the mat")])  # (1, T)
    with torch.no_grad():
        logits = model(ids)  # (1, T, V)
    attention = model.blocks[1].self_attn
    np.testing.assert_allclose(llama_explainer.current_matrix(), attention.attention_weights[0, 3].numpy(), atol=1e-12)
    np.testing.assert_allclose(llama_explainer.current_logits(), logits[0, -1].numpy(), atol=1e-12)
    # query head 3 reads key/value head 3 // (4 // 2) = 1, and its keys are rotated (RoPE)
    assert llama_explainer._kv_head() == 1
    assert "kv head 1" in llama_explainer.ax_attention.get_title()
    q, k, v = llama_explainer.current_qkv()
    x = llama_explainer.current_record()["blocks.1.attn_norm.output"]  # (1, T, d_model), the recorded input
    T = ids.shape[1]
    with torch.no_grad():
        k_by_hand = attention.w_k(x)[0].view(T, 2, 8)[:, 1]  # (T, d_head), kv head 1 before RoPE
        v_by_hand = attention.w_v(x)[0].view(T, 2, 8)[:, 1]  # (T, d_head)
    np.testing.assert_allclose(k, apply_rope(k_by_hand, torch.arange(T)).numpy(), atol=1e-12)
    np.testing.assert_allclose(v, v_by_hand.numpy(), atol=1e-12)
    scores = q @ k.T / math.sqrt(8)  # (T, T)
    llama_explainer.controls["stage"].value = "÷ sqrt(d_k)"
    np.testing.assert_allclose(llama_explainer.current_matrix(), scores, atol=1e-12)


def test_llama_panels_show_rope_and_swiglu(llama_explainer, small_llama):
    model, _ = small_llama
    llama_explainer.controls["layer"].value = 0
    llama_explainer.controls["head"].value = 2
    llama_explainer.controls["panel"].value = "embeddings"
    heatmaps = llama_explainer.current_panel()
    assert "no position table" in heatmaps[0].title
    T = heatmaps[0].matrix.shape[0]
    rotated = apply_rope(torch.from_numpy(heatmaps[1].matrix), torch.arange(T))  # q before RoPE, rotated
    np.testing.assert_allclose(heatmaps[2].matrix, rotated.numpy(), atol=1e-12)
    llama_explainer.controls["panel"].value = "MLP"
    gate, up, hidden, down = (h.matrix for h in llama_explainer.current_panel())
    normed = llama_explainer.current_record()["blocks.0.mlp_norm.output"][0]  # (T, d_model)
    with torch.no_grad():
        mlp = model.blocks[0].mlp
        np.testing.assert_allclose(gate, F.silu(mlp.gate(normed)).numpy(), atol=1e-12)
        np.testing.assert_allclose(up, mlp.up(normed).numpy(), atol=1e-12)
        np.testing.assert_allclose(down, mlp.down(torch.from_numpy(hidden)).numpy(), atol=1e-12)
    np.testing.assert_allclose(hidden, gate * up, atol=1e-12)
    np.testing.assert_array_equal(llama_explainer.current_mlp(), hidden)
    assert llama_explainer.last_error is None


def test_generate_with_a_byte_level_bpe_keeps_the_sampled_ids(llama_explainer):
    llama_explainer.controls["temperature"].value = 1.5
    before = llama_explainer.prompt_ids()
    for _ in range(4):
        llama_explainer.generate_button.click()
    after = llama_explainer.prompt_ids()
    assert llama_explainer.last_error is None
    assert after[: len(before)] == before and len(after) == len(before) + 4
    assert len(llama_explainer.current_tokens()) == len(after)
    probs = llama_explainer.current_probs()
    assert probs.shape == (llama_explainer.tokenizer.vocab_size,) and abs(probs.sum() - 1) < 1e-9


def test_the_exported_png_holds_all_three_pictures(llama_explainer, tmp_path):
    import PIL.Image

    path = llama_explainer.export_png(tmp_path / "explainer.png")
    width, height = PIL.Image.open(path).size
    attention = llama_explainer.pictures["attention"].figure
    panel = llama_explainer.pictures["panel"].figure
    assert height >= (attention.get_figheight() + panel.get_figheight()) * 110 - 2
    assert width >= panel.get_figwidth() * 110 - 2
    llama_explainer.controls["layer"].value = 1  # after the export the pictures still redraw
    assert llama_explainer.last_error is None


# ------------------------------------------------------------------------------------------ SmolLM2 (lesson 14)


def _smollm2_or_skip():
    pytest.importorskip("gguf", reason='needs gguf: pip install "gguf>=0.19"')
    from course_lib.pretrained.smollm2 import load_smollm2, smollm2_path

    try:
        smollm2_path()
    except ImportError as error:
        pytest.skip(str(error))
    return load_smollm2()


@pytest.fixture
def float32_and_one_thread():
    """SmolLM2 runs in float32 (conftest makes float64 the default), on one CPU thread as the
    lessons do: on a busy machine two threads wait for each other and a forward pass takes seconds."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_the_explainer_on_smollm2(float32_and_one_thread):
    """Lesson 14 opens the explainer on SmolLM2 (30 layers, 9 query heads sharing 3 key/value heads).

    Targets on the course machine: 150 ms for a layer, head or stage change, 1.5 s for a new token;
    the bounds are three times those (a shared test machine). ``pytest -s`` prints the medians.
    """
    model, tokenizer = _smollm2_or_skip()
    assert next(model.parameters()).dtype == torch.float32
    explainer = LanguageModelExplainer(model, tokenizer, prompt="The capital of France is Paris. The capital of")
    tokens = explainer.current_tokens()
    assert tokens[:3] == ["The", "␣capital", "␣of"]
    explainer.controls["layer"].value = 29
    explainer.controls["head"].value = 8
    assert explainer._kv_head() == 2  # 9 query heads, 3 kv heads: heads 6, 7, 8 read kv head 2
    np.testing.assert_array_equal(
        explainer.current_matrix(), explainer.current_record()["blocks.29.self_attn.weights"][0, 8].double().numpy()
    )
    seconds = {}
    for name, values in (("layer", (0, 15, 29)), ("head", (0, 4, 8)), ("stage", EXPLAINER_STAGES)):
        times = []
        for value in list(values) * 2:
            before = len(explainer.update_seconds)
            explainer.controls[name].value = value
            if len(explainer.update_seconds) > before:
                times.append(explainer.update_seconds[-1])
        seconds[name] = statistics.median(times)
    new_token = []
    for _ in range(3):
        before = len(explainer.update_seconds)
        explainer.generate()
        new_token.append(explainer.update_seconds[-1] if len(explainer.update_seconds) > before else 0.0)
    seconds["new token"] = statistics.median(new_token)
    print("SmolLM2 explainer medians (s):", {name: round(value, 3) for name, value in seconds.items()})
    assert explainer.last_error is None
    assert max(seconds[name] for name in ("layer", "head", "stage")) < 0.45, seconds
    assert seconds["new token"] < 4.5, seconds
