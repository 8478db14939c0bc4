"""What the notebook builders in tools/ share: cell helpers, the version check of every lesson's
first cell, the key-terms table, and writing a lesson notebook without outputs.

The builders are run from the repository root (``python tools/build_notebooks_00_04.py``), so
this module is importable as ``notebook_kit``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MIN_VERSION = "0.1.0"

# The part of every lesson's set-up cell that checks course_lib is recent enough.
VERSION_CHECK = (
    r'''import course_lib

NEEDED = "'''
    + MIN_VERSION
    + r""""


def version_tuple(text):
    return tuple(int(re.match(r"\d+", part).group()) for part in text.split(".")[:3])


if version_tuple(course_lib.__version__) < version_tuple(NEEDED):
    print(
        f"course_lib {course_lib.__version__} is older than this lesson needs ({NEEDED}).\n"
        "Update it: open a terminal in the course folder and run  pip install -e .  then restart the kernel."
    )
else:
    print("course_lib is recent enough for this lesson.")"""
)


def md(text: str) -> tuple[str, str]:
    return ("md", text)


def code(text: str) -> tuple[str, str]:
    return ("code", text)


def terms_table(rows: list[tuple[str, str, str]]) -> str:
    """The key-terms table that ends every lesson: English, Chinese, meaning."""
    lines = ["| English | 中文 | meaning |", "|---|---|---|"]
    lines += [f"| {en} | {zh} | {meaning} |" for en, zh, meaning in rows]
    return "\n".join(lines)


def write_lesson(name: str, cells: list[tuple[str, str]]) -> Path:
    """Write ``notebooks/<name>.ipynb`` from (kind, source) pairs, with stable cell ids."""
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
    return path
