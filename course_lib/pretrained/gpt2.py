"""Hugging Face GPT-2 weights copied into ``course_lib.models.GPT``.

Built in lesson 12 (a real pretrained model).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from course_lib._validation import require_positive_int, shape_text
from course_lib.models import GPT, GPTConfig
from course_lib.pretrained._loading import check_state_dict as _check_state_dict
from course_lib.pretrained._loading import load_renamed as _load_renamed

# The weight-name table for GPT-2: Hugging Face names (after "transformer.") on the left.
GPT2_TOP_LEVEL_NAMES = {
    "wte.weight": "token_embedding.weight",
    "wpe.weight": "position_embedding.weight",
    "ln_f.weight": "final_norm.weight",
    "ln_f.bias": "final_norm.bias",
}
GPT2_BLOCK_NAMES = {  # h.{i}.<left> -> blocks.{i}.<right>; "attn.c_attn" is split into w_q, w_k, w_v
    "ln_1": "norm1",  # pre-norm before attention
    "attn.c_proj": "self_attn.w_o",
    "ln_2": "norm2",  # pre-norm before the MLP
    "mlp.c_fc": "ff.linear1",  # d_model -> d_ff
    "mlp.c_proj": "ff.linear2",  # d_ff -> d_model
}
# GPT-2's "Conv1D" layers store weights as (in, out); nn.Linear stores (out, in): transpose these.
GPT2_CONV1D_PARTS = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
# Older checkpoints also store the causal mask as buffers named "attn.bias" / "attn.masked_bias".
GPT2_MASK_BUFFERS = {"attn.bias", "attn.masked_bias"}

_GPT2_BLOCK_PATTERN = re.compile(r"h\.(\d+)\.(.+)")


def _strip_gpt2_prefix(where: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``transformer.`` prefix; a name present both with and without it is ambiguous."""
    stripped = {}
    for name, tensor in state_dict.items():
        short = name.removeprefix("transformer.")
        if short in stripped:
            raise ValueError(
                f"{where}: state_dict holds both 'transformer.{short}' and '{short}'; it mixes two checkpoints "
                "(one with the 'transformer.' prefix, one without): keep only one of them"
            )
        stripped[short] = tensor
    return stripped


def _require_matrix(where: str, name: str, tensor: torch.Tensor, expected: str) -> None:
    """Raise unless a GPT-2 tensor is 2-D (the error names the tensor and its shape)."""
    if tensor.dim() != 2:
        raise ValueError(f"{where}: {name} must be {expected}, got {shape_text(tensor)}")


def _gpt2_tensor(where: str, weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in weights:
        sample = sorted(weights)[:4]
        raise ValueError(
            f"{where}: state_dict has no {name!r} (GPT-2 names such as 'transformer.{name}' or '{name}' "
            f"are expected); got names like {sample}"
        )
    return weights[name]


def gpt2_config_from_weights(state_dict: Mapping[str, torch.Tensor], n_heads: int = 12) -> GPTConfig:
    """Read a GPT-2 model's sizes off its tensors' shapes.

    The number of heads is not visible in any shape (the heads are slices of one matrix),
    so it is an argument: 12 for GPT-2 small, 16 for medium, 20 for large, 25 for xl.

    Built in lesson 12 (a real pretrained model).
    """
    return _config_from_weights("gpt2_config_from_weights", state_dict, n_heads)


def _config_from_weights(where: str, state_dict: Mapping[str, torch.Tensor], n_heads: int) -> GPTConfig:
    """``gpt2_config_from_weights``, with errors that name ``where`` (the function the learner called)."""
    _check_state_dict(where, state_dict)
    n_heads = require_positive_int(where, "n_heads", n_heads)
    weights = _strip_gpt2_prefix(where, state_dict)
    wte = _gpt2_tensor(where, weights, "wte.weight")
    _require_matrix(where, "wte.weight", wte, "(V, d_model)")
    V, d_model = wte.shape
    wpe = _gpt2_tensor(where, weights, "wpe.weight")
    _require_matrix(where, "wpe.weight", wpe, "(context_length, d_model)")
    context_length = wpe.shape[0]
    layer_indices = {int(m.group(1)) for m in map(_GPT2_BLOCK_PATTERN.fullmatch, weights) if m}
    n_layers = len(layer_indices)
    if n_layers == 0 or layer_indices != set(range(n_layers)):
        raise ValueError(
            f"{where}: expected blocks h.0 ... h.N-1 in the state_dict, got indices {sorted(layer_indices)}"
        )
    c_fc = _gpt2_tensor(where, weights, "h.0.mlp.c_fc.weight")
    _require_matrix(where, "h.0.mlp.c_fc.weight", c_fc, "(d_model, d_ff) (GPT-2's Conv1D layout)")
    d_ff = c_fc.shape[1]  # Conv1D: (d_model, d_ff)
    if d_model % n_heads != 0:
        raise ValueError(f"{where}: d_model={d_model} (from wte.weight) is not divisible by n_heads={n_heads}")
    return GPTConfig(
        vocab_size=V,
        context_length=context_length,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=n_layers,
        d_ff=d_ff,
        dropout=0.0,
        activation="gelu_tanh",  # GPT-2's "gelu_new": the tanh approximation of GELU
        layer_norm_eps=1e-5,
        tie_weights=True,
    )


def gpt2_weights_to_course_lib(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename, transpose and split GPT-2's tensors into ``course_lib.models.GPT``'s names.

    * names lose the ``transformer.`` prefix if they have it;
    * Conv1D weights (in, out) are transposed to nn.Linear's (out, in);
    * the fused ``c_attn`` (d_model -> 3 * d_model) is cut into ``w_q``, ``w_k``, ``w_v``;
    * ``lm_head.weight`` becomes the output layer (it is the token embedding when tied).

    Built in lesson 12 (a real pretrained model).
    """
    return _weights_to_course_lib("gpt2_weights_to_course_lib", state_dict)


def _weights_to_course_lib(where: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``gpt2_weights_to_course_lib``, with errors that name ``where``."""
    _check_state_dict(where, state_dict)
    weights = _strip_gpt2_prefix(where, state_dict)
    renamed = {}
    for name, tensor in weights.items():
        if name in GPT2_TOP_LEVEL_NAMES:
            renamed[GPT2_TOP_LEVEL_NAMES[name]] = tensor
            continue
        if name == "lm_head.weight":
            renamed["lm_head.weight"] = tensor
            continue
        match = _GPT2_BLOCK_PATTERN.fullmatch(name)
        if match is None:
            raise ValueError(f"{where}: unexpected tensor name {name!r}; expected the names of a GPT-2 checkpoint")
        index, rest = match.groups()
        if rest in GPT2_MASK_BUFFERS:
            continue  # a stored causal mask, not a weight: course_lib builds its mask with causal_mask(T)
        part, _, suffix = rest.rpartition(".")
        if suffix not in ("weight", "bias") or (part not in GPT2_BLOCK_NAMES and part != "attn.c_attn"):
            raise ValueError(f"{where}: unexpected tensor name {name!r}; expected the names of a GPT-2 checkpoint")
        if suffix == "weight" and part in GPT2_CONV1D_PARTS:
            _require_matrix(where, name, tensor, "(in, out) (GPT-2's Conv1D layout)")
            tensor = tensor.t()  # (in, out) -> (out, in)
        if part == "attn.c_attn":
            fused = tensor.shape[0] if tensor.dim() >= 1 else 0
            if (suffix == "bias" and tensor.dim() != 1) or fused % 3 != 0 or fused == 0:
                layout = "(d_model, 3 * d_model)" if suffix == "weight" else "(3 * d_model,)"
                original = shape_text(tensor.t() if suffix == "weight" else tensor)
                raise ValueError(
                    f"{where}: {name} must be {layout}: the query, key and value projections side by side, "
                    f"got {original}"
                )
            d_model = fused // 3
            q, k, v = tensor.split(d_model, dim=0)  # 3 x (d_model, d_model) or 3 x (d_model,)
            for course_name, piece in (("w_q", q), ("w_k", k), ("w_v", v)):
                renamed[f"blocks.{index}.self_attn.{course_name}.{suffix}"] = piece.contiguous()
        else:
            renamed[f"blocks.{index}.{GPT2_BLOCK_NAMES[part]}.{suffix}"] = tensor.contiguous()
    return renamed


def load_gpt2(state_dict: Mapping[str, torch.Tensor], config: GPTConfig | None = None, n_heads: int = 12) -> GPT:
    """Build a ``course_lib.models.GPT`` holding Hugging Face GPT-2 weights.

    ``state_dict`` is GPT-2's (from ``GPT2LMHeadModel.state_dict()`` or a ``model.safetensors``
    file), with or without the ``transformer.`` prefix. Without ``config`` the sizes are read
    off the tensors (``n_heads`` must be given: shapes do not show it) and GPT-2's choices
    are used: tanh-approximated GELU, layer_norm_eps 1e-5, output layer tied to the token
    embedding. The model takes the weights' dtype and is returned in eval mode.

    Built in lesson 12 (a real pretrained model).
    """
    where = "load_gpt2"
    _check_state_dict(where, state_dict)
    if config is not None and not isinstance(config, GPTConfig):
        raise ValueError(f"{where}: config must be a GPTConfig or None, got {type(config).__name__}")
    inferred = _config_from_weights(where, state_dict, n_heads if config is None else config.n_heads)
    if config is None:
        config = inferred
    else:
        for field in ("vocab_size", "context_length", "d_model", "n_layers", "d_ff"):
            given, from_weights = getattr(config, field), getattr(inferred, field)
            if field == "d_ff" and given is None:
                given = 4 * config.d_model
            if given != from_weights:
                raise ValueError(f"{where}: config.{field}={given}, but the weights have {field}={from_weights}")

    renamed = _weights_to_course_lib(where, state_dict)
    embedding = renamed["token_embedding.weight"]
    if config.tie_weights:
        head = renamed.get("lm_head.weight")
        if head is not None and not torch.equal(head, embedding):
            raise ValueError(f"{where}: lm_head.weight differs from wte.weight; pass a config with tie_weights=False")
        renamed["lm_head.weight"] = embedding  # one matrix for both, as in GPT-2
    elif "lm_head.weight" not in renamed:
        raise ValueError(f"{where}: config.tie_weights=False needs lm_head.weight (V, d_model) in the state_dict")

    if not embedding.is_floating_point():
        raise ValueError(f"{where}: wte.weight must hold floating-point weights, got dtype {embedding.dtype}")
    model = GPT(config).to(embedding.dtype)
    _load_renamed(where, model, renamed)
    return model.eval()
