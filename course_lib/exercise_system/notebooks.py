"""Where the course's notebooks are, and how to read them: exercise ids, solution and check cells."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
CHECK_COMMENT = re.compile(r"^\s*#\s*check\s+exercise\s+(\d\d\.\d+)\b", re.IGNORECASE | re.MULTILINE)
EXERCISE_ID = re.compile(r"^\d\d\.\d+$")
NOTEBOOK_METADATA_KEPT = ("kernelspec", "language_info")
NBFORMAT_MINOR = 5


# ----------------------------------------------------------------------------------------------
# Where things are
# ----------------------------------------------------------------------------------------------


def course_root() -> Path:
    """The course folder: the parent of the ``course_lib`` package (an editable install)."""
    return Path(__file__).resolve().parents[2]


def default_solutions_dir() -> Path:
    """``solutions/`` of the current folder if there is one, else the course folder's."""
    here = Path("solutions")
    return here if here.is_dir() else course_root() / "solutions"


def lesson_notebooks(folder: Path) -> dict[str, Path]:
    """Map lesson number ("03") to the notebook ``NN_*.ipynb`` in ``folder``."""
    found = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        match = NOTEBOOK_NAME.match(path.name)
        if match:
            found[match.group(1)] = path
    return found


def lesson_of(exercise_id: str) -> str:
    """ "03.2" -> "03"."""
    return exercise_id.split(".")[0]


def exercise_sort_key(exercise_id: str) -> tuple[int, int]:
    lesson, number = exercise_id.split(".")
    return int(lesson), int(number)


# ----------------------------------------------------------------------------------------------
# Reading notebooks
# ----------------------------------------------------------------------------------------------


class NotebookUnreadable(ValueError):
    """The file is missing, is not JSON, or is not a Jupyter notebook."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook, raising ``NotebookUnreadable`` with a plain message when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise NotebookUnreadable(f"notebook missing: {path.name}")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotebookUnreadable(f"not a notebook (invalid JSON): {path.name}: {error}") from None
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several kinds of errors on malformed files
        raise NotebookUnreadable(f"not a notebook: {path.name}: {first_line(error)}") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookUnreadable(f"not a notebook (no cells): {path.name}")
    return nb


def cell_course_metadata(cell) -> dict:
    """The ``course`` entry of a cell's metadata ({} when absent)."""
    value = cell.get("metadata", {}).get("course", {})
    return value if isinstance(value, dict) else {}


def check_cell_exercise(cell) -> str | None:
    """The exercise id a check cell checks ("03.2"), read from its ``# Check exercise 03.2`` line."""
    if cell.get("cell_type") != "code":
        return None
    match = CHECK_COMMENT.search(cell.get("source", ""))
    return match.group(1) if match else None


def solution_cell_exercise(cell) -> str | None:
    """The exercise id of a solution cell (a code cell with ``### BEGIN SOLUTION``)."""
    if cell.get("cell_type") != "code" or BEGIN_SOLUTION not in cell.get("source", ""):
        return None
    exercise = cell_course_metadata(cell).get("exercise")
    if not isinstance(exercise, str) or not EXERCISE_ID.match(exercise):
        raise ValueError(
            f'a solution cell needs metadata {{"course": {{"exercise": "NN.M"}}}}, got {cell.get("metadata")!r}'
        )
    return exercise


def exercise_of_cell(cell) -> str | None:
    """The exercise id in a code cell's metadata (solution cells and their stubs), else None."""
    if cell.get("cell_type") != "code":
        return None
    exercise = cell_course_metadata(cell).get("exercise")
    return exercise if isinstance(exercise, str) else None


def text_of_outputs(outputs) -> str:
    """The text nbval compares: streams and ``text/plain`` results, in order; errors as their name."""
    parts = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            parts.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    return "".join(parts)


def expected_check_outputs(solution_nb) -> dict[str, str]:
    """Exercise id -> the text its check cell printed in the solved run, in notebook order.

    Its keys are the notebook's exercises. The texts are for reading (the success lines of the
    solved run): a learner's check cell is judged by whether it raises, not by its text.
    """
    expected = {}
    for cell in solution_nb.cells:
        exercise = check_cell_exercise(cell)
        if exercise:
            expected[exercise] = text_of_outputs(cell.get("outputs", []))
    return expected


def exercise_titles(solution_nb) -> dict[str, str]:
    """Exercise id -> title (from the solution cells' metadata)."""
    titles = {}
    for cell in solution_nb.cells:
        exercise = solution_cell_exercise(cell)
        if exercise:
            titles.setdefault(exercise, cell_course_metadata(cell).get("title", exercise))
    return titles


# ----------------------------------------------------------------------------------------------


def first_line(text: str, limit: int | None = None) -> str:
    """The first non-empty line of ``text``, whole (or cut to ``limit`` characters when one is given)."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."
