"""What every loader of pretrained weights shares: check a state dict, then copy renamed tensors in.

Built in lesson 12 (a real pretrained model).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from course_lib._validation import shape_text


def check_state_dict(where: str, state_dict) -> None:
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"{where}: state_dict must be a mapping from names to tensors, got {type(state_dict).__name__}"
        )
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{where}: state_dict[{name!r}] must be a torch.Tensor, got {type(tensor).__name__}")


@torch.no_grad()
def load_renamed(where: str, model: nn.Module, renamed: Mapping[str, torch.Tensor]) -> None:
    """Copy renamed tensors into ``model``, first checking every name and shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{where}: the weights do not fit the model; missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in renamed.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{where}: {name} must be {shape_text(expected[name])} for this configuration, got {shape_text(tensor)}"
            )
    model.load_state_dict(renamed, strict=True)
