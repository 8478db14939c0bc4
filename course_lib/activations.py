"""One record of what a model computed: every intermediate tensor of one forward pass, by name.

A forward pass computes far more than its output: queries and keys, four stages of attention
scores, the hidden units of each MLP, the residual stream between the sublayers. The explainer
of lesson 11 shows all of it, and it must show what the model *really* computed, not a copy
worked out again beside the model (a copy can drift from the model it claims to show). So the
model's own modules write their tensors into one record while they run:

    record = run_with_record(model, token_ids)  # one forward pass, nothing trained
    record["blocks.0.self_attn.weights"]        # (B, n_heads, T, T): layer 0's softmax weights
    record["logits"]                            # (B, T, V)

A name is the module's path in the model (as ``model.named_modules()`` spells it: ``model.blocks[0]
.self_attn`` is ``"blocks.0.self_attn"``), a dot, and what the module recorded:

* the model (``GPT``, ``Llama``, ``Transformer``; the path is empty):
  ``token_embeddings`` (B, T, d_model); GPT also ``position_embeddings`` (T, d_model), the rows
  of the position table that were added, and ``embeddings`` (B, T, d_model), their sum (the
  residual stream entering block 0); Llama has no position table (RoPE rotates q and k inside
  attention); the Transformer records ``source_embeddings``, ``memory`` (the encoder output)
  and ``target_embeddings``; every model records ``logits`` (B, T, V).
* each block (``blocks.i`` of GPT and Llama, ``encoder.layers.i`` and ``decoder.layers.i``):
  the residual stream before and after each sublayer: ``residual_in``,
  ``residual_after_self_attn``, ``residual_after_cross_attn`` (decoder only) and
  ``residual_out``, each (B, T, d_model).
* each norm (``blocks.i.norm1``, ``blocks.i.attn_norm``, ``final_norm``, ...): ``output``.
* each attention module (``MultiHeadAttention``, ``GroupedQueryAttention``):
  ``q`` (B, n_heads, T_q, d_head), ``k`` and ``v`` (B, n_kv_heads, T_k, d_head) (n_kv_heads =
  n_heads without grouped-query attention), ``kv_head`` (n_heads,): the key/value head each
  query head reads; the scores at each stage ``scores`` (Q K^T), ``scaled`` (/ sqrt(d_head)),
  ``masked`` (-inf where the mask blocks) and ``weights`` (softmax), each (B, n_heads, T_q, T_k);
  ``heads`` (weights x V, (B, n_heads, T_q, d_head)), ``merged`` (the heads side by side,
  (B, T_q, n_heads * d_head)) and ``output`` (merged x W_O, (B, T_q, d_model)). With RoPE
  (``GroupedQueryAttention``) q and k are recorded after the rotation, and ``q_before_rope``,
  ``k_before_rope`` before it.
* each MLP: ``FeedForward`` records ``pre_activation`` and ``hidden`` (after ReLU/GELU), both
  (B, T, d_ff), and ``output`` (B, T, d_model); ``SwiGLU`` records ``gate`` (after SiLU),
  ``up``, ``hidden`` (their product), all (B, T, d_ff), and ``output``.

A module called twice while recording (for example once per generated token) keeps the tensors
of its last call. Recording costs nothing when it is off: each module checks
``self.recorder is not None`` and does nothing else. The fused attention path keeps no weights,
so ``recording`` switches every attention module to the readable path and back afterwards.

Built for lesson 11 (train a tiny GPT), whose explainer reads everything it shows from a record;
lesson 14 opens that explainer on SmolLM2.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from course_lib.attention import scaled_dot_product_attention


class ActivationRecord(Mapping):
    """The tensors one forward pass recorded, by name (``"blocks.0.self_attn.weights"``).

    It reads like a dict: ``record[name]``, ``name in record``, ``list(record)``. Beyond that:

    * ``record.part("blocks.3.self_attn")``: the tensors of one module, with short names
      (``part["weights"]``);
    * ``record.stack("blocks.{}.self_attn.weights")``: one tensor per layer, stacked on a new
      first dimension (n_layers, ...);
    * ``record.shapes()``: every name with its shape, to see what is there.

    The module docstring of ``course_lib.activations`` lists what each module records.

    Built for lesson 11 (train a tiny GPT).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor] | None = None):
        self.tensors: dict[str, torch.Tensor] = dict(tensors or {})

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            close = difflib.get_close_matches(str(name), self.tensors, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see record.shapes() for every name"
            raise KeyError(f"ActivationRecord: no tensor named {name!r} among {len(self.tensors)}{hint}")
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def saver(self, module_name: str) -> Callable[..., None]:
        """A function ``save(**tensors)`` that stores each tensor as ``"<module_name>.<its name>"``.

        ``recording`` hands one to every module that can record (its ``.recorder``).
        """
        prefix = f"{module_name}." if module_name else ""

        def save(**tensors: torch.Tensor) -> None:
            for name, tensor in tensors.items():
                self.tensors[prefix + name] = tensor.detach()

        return save

    def part(self, module_name: str) -> ActivationRecord:
        """The tensors of one module (and the modules inside it), named relative to it.

        ``record.part("blocks.3.self_attn")["weights"]`` is ``record["blocks.3.self_attn.weights"]``.
        """
        prefix = f"{module_name}."
        inside = {name[len(prefix) :]: tensor for name, tensor in self.tensors.items() if name.startswith(prefix)}
        if not inside:
            modules = sorted({name.rsplit(".", 1)[0] for name in self.tensors if "." in name})
            close = difflib.get_close_matches(module_name, modules, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"ActivationRecord.part: no module named {module_name!r} recorded anything{hint}")
        return ActivationRecord(inside)

    def stack(self, pattern: str) -> torch.Tensor:
        """Stack the tensor of every layer: ``pattern`` has ``{}`` where the layer number goes.

        Shapes:
            ``record.stack("blocks.{}.self_attn.weights")``: n_layers x (B, n_heads, T, T)
            -> (n_layers, B, n_heads, T, T)
        """
        if "{}" not in pattern:
            raise ValueError(f"ActivationRecord.stack: pattern must contain {{}} for the layer, got {pattern!r}")
        tensors = []
        while pattern.format(len(tensors)) in self.tensors:
            tensors.append(self.tensors[pattern.format(len(tensors))])
        if not tensors:
            raise KeyError(f"ActivationRecord.stack: no tensor named {pattern.format(0)!r}; see record.shapes()")
        return torch.stack(tensors)  # (n_layers, ...)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every recorded name with the shape of its tensor, in the order they were recorded."""
        return {name: tuple(tensor.shape) for name, tensor in self.tensors.items()}

    def __repr__(self) -> str:
        names = list(self.tensors)
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return f"ActivationRecord({len(names)} tensors: {shown})"


def recording_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The parts of ``model`` (``model`` itself included) that can record: those with a ``recorder``.

    Built for lesson 11 (train a tiny GPT).
    """
    return [(name, module) for name, module in model.named_modules() if hasattr(module, "recorder")]


@contextmanager
def recording(model: nn.Module) -> Iterator[ActivationRecord]:
    """Record every forward pass of ``model`` run inside the ``with`` block into one record::

        with recording(model) as record:
            logits = model(token_ids)
        record["blocks.0.self_attn.q"]  # (B, n_heads, T, d_head)

    Attention modules on the fused path are switched to the readable path for the block (the
    fused kernel never forms the weights) and switched back afterwards, as is every recorder.

    Built for lesson 11 (train a tiny GPT).
    """
    where = "recording"
    if not isinstance(model, nn.Module):
        raise ValueError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    recorders = recording_modules(model)
    if not recorders:
        raise ValueError(
            f"{where}: {type(model).__name__} has no part that can record (no module with a .recorder); "
            "pass a course_lib model or module"
        )
    busy = [name or type(model).__name__ for name, module in recorders if module.recorder is not None]
    if busy:
        raise ValueError(f"{where}: {busy[0]} is already recording; finish the first `with recording(...)` block")
    fused = [module for module in model.modules() if getattr(module, "need_weights", True) is False]
    record = ActivationRecord()
    for module in fused:
        module.need_weights = True  # the readable path: it forms the weights, so they can be recorded
    for name, module in recorders:
        module.recorder = record.saver(name)
    try:
        yield record
    finally:
        for _, module in recorders:
            module.recorder = None
        for module in fused:
            module.need_weights = False


def run_with_record(model: nn.Module, *inputs, **kwargs) -> ActivationRecord:
    """Run ``model(*inputs, **kwargs)`` once, without gradients, and return what it computed.

    For a language model: ``run_with_record(model, token_ids)`` with token_ids (B, T); for the
    encoder-decoder: ``run_with_record(model, src_ids, tgt_ids)``. The model is run as it is
    (call ``model.eval()`` first, or dropout changes what is recorded).

    Built for lesson 11 (train a tiny GPT).
    """
    with torch.no_grad(), recording(model) as record:
        model(*inputs, **kwargs)
    return record


ATTENTION_STAGES = ("scores", "scaled", "masked", "weights", "heads")
"""What ``attention_stages`` returns, in the order attention computes them."""


def attention_stages(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Every stage of one call of ``scaled_dot_product_attention``, as it computed them.

    For attention that lives outside a module (the q, k and v of lesson 03, or of a model
    that is not course_lib's): the stages are recorded by the function itself.

    Returns:
        ``{"scores", "scaled", "masked", "weights"}`` each (..., T_q, T_k) and ``"heads"``
        (..., T_q, d_v), the output: weights x V.

    Built for lesson 11 (train a tiny GPT); used by lesson 03's step-through widget.
    """
    stages: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        heads, _ = scaled_dot_product_attention(q, k, v, mask, stages=stages)  # (..., T_q, d_v)
    stages["heads"] = heads
    return stages
