"""Shared helpers for the tests: float64 everywhere, and weight copying from PyTorch's modules."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Every test runs in float64 with a fixed seed, so differences are rounding only."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def report(name: str, difference: float) -> None:
    """Print a measured max abs difference (shown with ``pytest -s`` or in the log on failure)."""
    print(f"[max abs diff] {name}: {difference:.3e}")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()
