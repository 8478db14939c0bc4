"""Hugging Face Llama weights copied into ``course_lib.llama.Llama``.

A ``LlamaForCausalLM`` state dict and course_lib's ``Llama`` hold the same tensors under
other names, and nothing needs transposing or splitting: Hugging Face keeps q, k and v
as separate ``nn.Linear`` layers, as course_lib does. The name table is below.

Built in lesson 13 (from GPT-2 to a modern LLM).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from course_lib._validation import shape_text
from course_lib.llama import Llama, LlamaConfig
from course_lib.pretrained._loading import check_state_dict as _check_state_dict
from course_lib.pretrained._loading import load_renamed as _load_renamed

# The weight-name table for Llama: Hugging Face names on the left, course_lib's on the right.
LLAMA_TOP_LEVEL_NAMES = {
    "model.embed_tokens.weight": "token_embedding.weight",
    "model.norm.weight": "final_norm.weight",
    "lm_head.weight": "lm_head.weight",  # absent when the output layer is tied to the embedding
}
LLAMA_BLOCK_NAMES = {  # model.layers.{i}.<left> -> blocks.{i}.<right>
    "input_layernorm.weight": "attn_norm.weight",  # RMSNorm before attention
    "self_attn.q_proj.weight": "self_attn.w_q.weight",  # d_model -> n_heads * d_head
    "self_attn.k_proj.weight": "self_attn.w_k.weight",  # d_model -> n_kv_heads * d_head
    "self_attn.v_proj.weight": "self_attn.w_v.weight",  # d_model -> n_kv_heads * d_head
    "self_attn.o_proj.weight": "self_attn.w_o.weight",  # n_heads * d_head -> d_model
    "post_attention_layernorm.weight": "mlp_norm.weight",  # RMSNorm before the MLP
    "mlp.gate_proj.weight": "mlp.gate.weight",  # d_model -> d_ff
    "mlp.up_proj.weight": "mlp.up.weight",  # d_model -> d_ff
    "mlp.down_proj.weight": "mlp.down.weight",  # d_ff -> d_model
}
# Older checkpoints also store RoPE's frequencies as a buffer: recomputed by course_lib, so skipped.
_LLAMA_ROPE_BUFFER = re.compile(r"(model\.)?(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq")


def llama_hf_names(config: LlamaConfig) -> dict[str, str]:
    """Every Hugging Face tensor name a ``LlamaForCausalLM`` of this configuration has, mapped
    to course_lib's name. ``lm_head.weight`` is left out when ``config.tie_weights``.

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    names = {hf: ours for hf, ours in LLAMA_TOP_LEVEL_NAMES.items() if hf != "lm_head.weight" or not config.tie_weights}
    for index in range(config.n_layers):
        for hf, ours in LLAMA_BLOCK_NAMES.items():
            names[f"model.layers.{index}.{hf}"] = f"blocks.{index}.{ours}"
    return names


def llama_config_from_hf(hf_config) -> LlamaConfig:
    """Turn a ``transformers.LlamaConfig`` into course_lib's ``LlamaConfig``.

    Refuses (ValueError) what course_lib's ``Llama`` does not compute, rather than giving
    other logits: biases, an activation other than SiLU, a head width other than
    hidden_size // num_attention_heads, and RoPE scaling (Llama 3.1's "llama3", "linear", ...).

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    where = "llama_config_from_hf"
    required = (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "max_position_embeddings", "rms_norm_eps",
    )  # fmt: skip
    missing = [name for name in required if not hasattr(hf_config, name)]
    if missing:
        raise ValueError(
            f"{where}: hf_config must be a transformers.LlamaConfig, got {type(hf_config).__name__} without {missing}"
        )
    n_heads = hf_config.num_attention_heads
    n_kv_heads = getattr(hf_config, "num_key_value_heads", None) or n_heads
    d_head = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_heads
    if d_head * n_heads != hf_config.hidden_size:
        raise ValueError(
            f"{where}: head_dim={d_head} with {n_heads} heads does not give hidden_size={hf_config.hidden_size}; "
            "course_lib's Llama uses d_head = d_model // n_heads"
        )
    activation = getattr(hf_config, "hidden_act", "silu")
    if activation != "silu":
        raise ValueError(f"{where}: hidden_act must be 'silu' (SwiGLU), got {activation!r}")
    for name in ("attention_bias", "mlp_bias"):
        if getattr(hf_config, name, False):
            raise ValueError(f"{where}: {name}=True is not supported: course_lib's Llama has no biases")
    rope = getattr(hf_config, "rope_parameters", None) or {}  # transformers 5
    rope_type = rope.get("rope_type", "default")
    if rope_type != "default":
        raise ValueError(f"{where}: RoPE scaling {rope_type!r} is not supported, only plain RoPE ('default')")
    if rope.get("rope_theta") is not None:
        rope_base = rope["rope_theta"]
    else:  # transformers 4 keeps it on the config itself
        rope_base = getattr(hf_config, "rope_theta", 10000.0)
    return LlamaConfig(
        vocab_size=hf_config.vocab_size,
        d_model=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_ff=hf_config.intermediate_size,
        context_length=hf_config.max_position_embeddings,
        rope_base=float(rope_base),
        norm_eps=float(hf_config.rms_norm_eps),
        tie_weights=bool(getattr(hf_config, "tie_word_embeddings", False)),
    )


def llama_hf_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of a ``LlamaForCausalLM`` of this configuration, by
    Hugging Face name (nn.Linear weights are (out, in)).

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    c = config
    d_q, d_kv = c.n_heads * c.d_head, c.n_kv_heads * c.d_head
    block_shapes = {
        "input_layernorm.weight": (c.d_model,),
        "self_attn.q_proj.weight": (d_q, c.d_model),
        "self_attn.k_proj.weight": (d_kv, c.d_model),
        "self_attn.v_proj.weight": (d_kv, c.d_model),
        "self_attn.o_proj.weight": (c.d_model, d_q),
        "post_attention_layernorm.weight": (c.d_model,),
        "mlp.gate_proj.weight": (c.d_ff, c.d_model),
        "mlp.up_proj.weight": (c.d_ff, c.d_model),
        "mlp.down_proj.weight": (c.d_model, c.d_ff),
    }
    shapes = {"model.embed_tokens.weight": (c.vocab_size, c.d_model), "model.norm.weight": (c.d_model,)}
    if not c.tie_weights:
        shapes["lm_head.weight"] = (c.vocab_size, c.d_model)
    for index in range(c.n_layers):
        for name, shape in block_shapes.items():
            shapes[f"model.layers.{index}.{name}"] = shape
    return shapes


def _check_names_and_shapes(where: str, weights: Mapping[str, torch.Tensor], config: LlamaConfig) -> None:
    expected = llama_hf_shapes(config)
    missing = [name for name in expected if name not in weights]
    if missing:
        hint = ""
        if missing == ["lm_head.weight"]:
            hint = "; a tied model stores no lm_head.weight: pass a config with tie_weights=True"
        raise ValueError(f"{where}: state_dict has no {missing[0]!r} ({len(missing)} missing: {missing[:5]}){hint}")
    unexpected = sorted(name for name in weights if name not in expected)
    if unexpected:
        raise ValueError(
            f"{where}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} unexpected: {unexpected[:5]}); "
            f"is this a LlamaForCausalLM state dict, with config.n_layers={config.n_layers}?"
        )
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            wanted = "(" + ", ".join(map(str, shape)) + ")"
            raise ValueError(
                f"{where}: {name} must be {wanted} for this configuration, got {shape_text(weights[name])}; "
                "check d_model, n_heads, n_kv_heads, d_ff and vocab_size"
            )


def _check_dtypes(where: str, weights: Mapping[str, torch.Tensor]) -> torch.dtype:
    dtypes = {tensor.dtype for tensor in weights.values()}
    if len(dtypes) != 1:
        raise ValueError(
            f"{where}: the tensors must share one dtype, got {sorted(map(str, dtypes))}; "
            "convert them first, e.g. {name: t.float() for name, t in state_dict.items()}"
        )
    dtype = dtypes.pop()
    if not dtype.is_floating_point:
        raise ValueError(f"{where}: the tensors must be floating point, got {dtype}; dequantize them first")
    return dtype


def load_llama(state_dict: Mapping[str, torch.Tensor], config: LlamaConfig) -> Llama:
    """Build a ``course_lib.llama.Llama`` holding a Hugging Face ``LlamaForCausalLM``'s weights.

    ``state_dict`` uses Hugging Face's names (``model.embed_tokens.weight``,
    ``model.layers.{i}.self_attn.q_proj.weight``, ..., ``model.norm.weight`` and
    ``lm_head.weight`` unless tied; see ``LLAMA_BLOCK_NAMES``). ``config`` gives the sizes the
    shapes cannot show (the number of heads): build it with ``llama_config_from_hf``. A
    missing, extra or mis-shaped tensor is a ValueError naming it. With
    ``config.tie_weights`` an ``lm_head.weight`` equal to the embedding is accepted and the
    two stay one matrix. The model takes the weights' dtype and device and is returned in
    eval mode.

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    where = "load_llama"
    _check_state_dict(where, state_dict)
    if not isinstance(config, LlamaConfig):
        raise ValueError(
            f"{where}: config must be a course_lib LlamaConfig, got {type(config).__name__}; "
            "convert a transformers config with llama_config_from_hf(hf_config)"
        )
    weights = {name: tensor for name, tensor in state_dict.items() if not _LLAMA_ROPE_BUFFER.fullmatch(name)}
    embedding = weights.get("model.embed_tokens.weight")
    if config.tie_weights and "lm_head.weight" in weights and embedding is not None:
        if not torch.equal(weights["lm_head.weight"], embedding):
            raise ValueError(
                f"{where}: lm_head.weight differs from model.embed_tokens.weight; pass a config with tie_weights=False"
            )
        weights.pop("lm_head.weight")  # the same matrix: the tie keeps it once
    _check_names_and_shapes(where, weights, config)
    dtype = _check_dtypes(where, weights)

    renamed = {ours: weights[hf] for hf, ours in llama_hf_names(config).items()}
    if config.tie_weights:
        renamed["lm_head.weight"] = renamed["token_embedding.weight"]  # one matrix for both
    model = Llama(config).to(device=embedding.device, dtype=dtype)
    _load_renamed(where, model, renamed)
    return model.eval()
