"""GGUF's quantized weights read back as floats: the course's own dequantizers.

A GGUF file (llama.cpp's format) stores big matrices in blocks of 32 weights, each block
with its own scale, so that a weight costs a few bits instead of 32. SmolLM2's file uses two
block kinds (float16 numbers are little-endian, 2 bytes):

* **Q4_1**, 20 bytes per 32 weights (5 bits a weight): a scale ``d`` (float16), a minimum
  ``m`` (float16), then 16 bytes holding 32 unsigned 4-bit numbers ``q`` in 0..15. Byte j
  holds weight j in its low 4 bits and weight j + 16 in its high 4 bits. Weight = ``d * q + m``.
* **Q8_0**, 34 bytes per 32 weights (8.5 bits a weight): a scale ``d`` (float16), then 32
  signed bytes ``q`` in -128..127. Weight = ``d * q``.

The norms are stored as plain float32 (``F32``). Dequantizing gives float32 numbers that are
exactly the ones llama.cpp computes: the tests check them bit for bit against ``gguf``'s own
``gguf.quants.dequantize``.

Shapes: GGUF lists a matrix's sizes in ggml's order, fastest-varying first, so a PyTorch
``nn.Linear`` weight of shape ``(out, in)`` appears as ``[in, out]``. ``dequantize_tensor``
reverses them.

Built in lesson 14 (a real chat LLM).
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib._validation import shape_text

BLOCK_SIZE = 32
"""Weights per block, for both Q4_1 and Q8_0."""
Q4_1_BLOCK_BYTES = 2 + 2 + BLOCK_SIZE // 2
"""Bytes per Q4_1 block: d (float16), m (float16), 32 four-bit numbers packed two per byte = 20."""
Q8_0_BLOCK_BYTES = 2 + BLOCK_SIZE
"""Bytes per Q8_0 block: d (float16), then 32 int8 = 34."""


def _as_byte_tensor(where: str, data) -> torch.Tensor:
    """Accept a numpy array or a tensor of uint8; return a uint8 tensor (a copy for numpy)."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.array(data, dtype=np.uint8, copy=True))  # GGUF's arrays are read-only maps
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        raise ValueError(f"{where}: data must be raw bytes (a uint8 array or tensor), got {type(data).__name__}")
    if data.dim() == 0:
        raise ValueError(f"{where}: data must be (..., n_bytes), got a 0-d tensor")
    return data


def _blocks(where: str, data, block_bytes: int) -> torch.Tensor:
    """Cut the last dimension of raw bytes into blocks: (..., n_bytes) -> (..., n_blocks, block_bytes)."""
    data = _as_byte_tensor(where, data)
    if data.shape[-1] % block_bytes != 0:
        raise ValueError(
            f"{where}: the last dimension must be a whole number of {block_bytes}-byte blocks, "
            f"got {shape_text(data)}; is this the right quantization type?"
        )
    return data.reshape(*data.shape[:-1], data.shape[-1] // block_bytes, block_bytes)  # (..., n_blocks, bytes)


def _float16_field(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """Read the float16 stored at bytes [start, start + 2) of every block, as float32."""
    two_bytes = blocks[..., start : start + 2].contiguous()  # (..., n_blocks, 2)
    return two_bytes.view(torch.float16).to(torch.float32)  # (..., n_blocks, 1)


def dequantize_q4_1(data) -> torch.Tensor:
    """Q4_1 bytes -> float32 weights: (..., n_blocks * 20) -> (..., n_blocks * 32).

    Each 20-byte block is d (float16), m (float16) and 16 bytes of 4-bit numbers q; byte j
    holds q of weight j (low 4 bits) and of weight j + 16 (high 4 bits). Weight = d * q + m.

    Built in lesson 14 (a real chat LLM).
    """
    blocks = _blocks("dequantize_q4_1", data, Q4_1_BLOCK_BYTES)  # (..., n_blocks, 20)
    d = _float16_field(blocks, 0)  # (..., n_blocks, 1)
    m = _float16_field(blocks, 2)  # (..., n_blocks, 1)
    packed = blocks[..., 4:]  # (..., n_blocks, 16)
    low = packed & 0x0F  # (..., n_blocks, 16): weights 0..15 of the block
    high = packed >> 4  # (..., n_blocks, 16): weights 16..31
    q = torch.cat([low, high], dim=-1).to(torch.float32)  # (..., n_blocks, 32)
    weights = q.mul_(d).add_(m)  # (..., n_blocks, 32): d * q + m, in place to spare memory
    return weights.flatten(-2)  # (..., n_blocks * 32)


def dequantize_q8_0(data) -> torch.Tensor:
    """Q8_0 bytes -> float32 weights: (..., n_blocks * 34) -> (..., n_blocks * 32).

    Each 34-byte block is d (float16) then 32 signed bytes q. Weight = d * q.

    Built in lesson 14 (a real chat LLM).
    """
    blocks = _blocks("dequantize_q8_0", data, Q8_0_BLOCK_BYTES)  # (..., n_blocks, 34)
    d = _float16_field(blocks, 0)  # (..., n_blocks, 1)
    q = blocks[..., 2:].contiguous().view(torch.int8).to(torch.float32)  # (..., n_blocks, 32)
    weights = q.mul_(d)  # (..., n_blocks, 32): d * q, in place to spare memory
    return weights.flatten(-2)  # (..., n_blocks * 32)


def _plain_float32(data) -> torch.Tensor:
    return torch.from_numpy(np.array(data, dtype=np.float32, copy=True))


def _plain_float16(data) -> torch.Tensor:
    return torch.from_numpy(np.array(data, dtype=np.float16, copy=True)).to(torch.float32)


DEQUANTIZERS = {"F32": _plain_float32, "F16": _plain_float16, "Q4_1": dequantize_q4_1, "Q8_0": dequantize_q8_0}
"""GGUF tensor type name -> the function that turns its stored data into float32."""


def dequantize_tensor(tensor) -> torch.Tensor:
    """One tensor of a ``gguf.GGUFReader`` -> float32, in PyTorch's shape (ggml's reversed).

    A weight GGUF lists as ``[in, out]`` comes back as ``(out, in)``, ready for ``nn.Linear``.

    Built in lesson 14 (a real chat LLM).
    """
    where = "dequantize_tensor"
    for attribute in ("tensor_type", "data", "shape", "name"):
        if not hasattr(tensor, attribute):
            raise ValueError(f"{where}: tensor must be a tensor of gguf.GGUFReader, got {type(tensor).__name__}")
    kind = tensor.tensor_type.name
    if kind not in DEQUANTIZERS:
        raise ValueError(f"{where}: {tensor.name} is {kind}; the course reads only {sorted(DEQUANTIZERS)}")
    shape = tuple(int(size) for size in reversed(tensor.shape))  # ggml [in, out] -> PyTorch (out, in)
    return DEQUANTIZERS[kind](tensor.data).reshape(shape)
