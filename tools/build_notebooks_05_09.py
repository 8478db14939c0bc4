"""Build the lesson notebooks 05-09 (multi-head attention ... generation) with nbformat.

Run from the repository root:  python tools/build_notebooks_05_09.py [05 06 ...]
The notebooks are written without outputs; execute them afterwards with
``jupyter nbconvert --to notebook --execute --inplace notebooks/NN_*.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

MIN_VERSION = "0.1.0"


def setup_code(imports: str, float64: bool = True) -> str:
    """The first cell of every lesson: imports, version check, seeds, print options."""
    dtype_lines = (
        "# float64 everywhere in this lesson, so comparisons with PyTorch show rounding only.\n"
        "torch.set_default_dtype(torch.float64)\n"
        if float64
        else ""
    )
    return f'''import inspect
import re

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import course_lib

NEEDED = "{MIN_VERSION}"


def version_tuple(text):
    return tuple(int(re.match(r"\\d+", part).group()) for part in text.split(".")[:3])


if version_tuple(course_lib.__version__) < version_tuple(NEEDED):
    print(
        f"course_lib {{course_lib.__version__}} is older than this lesson needs ({{NEEDED}}).\\n"
        "Update it: open a terminal in the course folder and run  pip install -e .  then restart the kernel."
    )
else:
    print("course_lib is recent enough for this lesson.")

{imports.strip()}

torch.manual_seed(0)
{dtype_lines}torch.set_printoptions(precision=4, sci_mode=False)'''


def terms_table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| English | 中文 | meaning |", "|---|---|---|"]
    lines += [f"| {en} | {zh} | {meaning} |" for en, zh, meaning in rows]
    return "\n".join(lines)


def build(name: str, cells: list[tuple[str, str]]) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    prefix = name[:2]
    for index, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell["id"] = f"l{prefix}-{index:02d}"
        nb.cells.append(cell)
    path = NOTEBOOKS / f"{name}.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print("wrote", path.relative_to(ROOT))


def md(text: str) -> tuple[str, str]:
    return ("md", text)


def code(text: str) -> tuple[str, str]:
    return ("code", text)


RUNNING_TOKENS = '''tokens = RUNNING_SENTENCE.split()  # the running example, one token per word
vocab = sorted(set(tokens))
token_to_id = {word: index for index, word in enumerate(vocab)}
token_ids = torch.tensor([[token_to_id[word] for word in tokens]])  # (1, T)
T = len(tokens)
print(RUNNING_SENTENCE)
print("token ids:", token_ids.tolist(), " shape:", tuple(token_ids.shape))'''

DIFF_HELPER = '''def max_abs_difference(a, b):
    """The largest absolute difference between two tensors, as a float."""
    return (a - b).abs().max().item()'''
