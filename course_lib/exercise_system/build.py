"""Building exercise notebooks from the solution notebooks (each answer becomes a stub)."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from pathlib import Path

import nbformat

from course_lib.exercise_system.notebooks import (
    BEGIN_SOLUTION,
    END_SOLUTION,
    NBFORMAT_MINOR,
    NOTEBOOK_METADATA_KEPT,
    check_cell_exercise,
    expected_check_outputs,
    lesson_notebooks,
    read_notebook,
    solution_cell_exercise,
)

# Building exercise notebooks from solutions
# ----------------------------------------------------------------------------------------------


def stub_source(source: str, exercise: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region by a stub that raises.

    The stub keeps the indentation of the ``BEGIN`` line, so a region inside a function or
    method body becomes that body. Lines outside the regions (signatures, class skeletons)
    stay for the learner to see.
    """
    lines = source.split("\n")
    result = []
    inside = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"exercise {exercise}: nested {BEGIN_SOLUTION} on line {number}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            result.append(f"{indent}# Your code here: replace the line below.")
            result.append(
                f'{indent}raise NotImplementedError("Exercise {exercise}: not implemented yet (write your code here)")'
            )
        elif stripped == END_SOLUTION:
            if not inside:
                raise ValueError(f"exercise {exercise}: {END_SOLUTION} without {BEGIN_SOLUTION} on line {number}")
            inside = False
        elif not inside:
            result.append(line)
    if inside:
        raise ValueError(f"exercise {exercise}: {BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(result)


def build_exercise_notebook(solution_nb) -> nbformat.NotebookNode:
    """The exercise notebook for one solution notebook (a new object; the input is unchanged).

    Solution cells get stubs and lose their outputs. Check cells are copied without their
    outputs and execution counts: a fresh exercise notebook shows no "✓ ... correct" before the
    learner has written a line, and nbval, finding no stored output to compare, judges a check
    cell only by whether it raises (so a correct answer that also prints or warns passes). Every
    other cell is copied with its outputs. Cell ids are numbered, timing metadata is dropped, so
    the result depends only on the solution notebook.
    """
    exercises_seen = set()
    cells = []
    for index, cell in enumerate(solution_nb.cells):
        metadata = {key: copy.deepcopy(value) for key, value in cell.get("metadata", {}).items() if key != "execution"}
        source = cell.get("source", "")
        exercise = solution_cell_exercise(cell)
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source, metadata=metadata)
        elif cell.cell_type == "raw":
            new = nbformat.v4.new_raw_cell(source, metadata=metadata)
        elif exercise:
            exercises_seen.add(exercise)
            new = nbformat.v4.new_code_cell(stub_source(source, exercise), metadata=metadata)
        elif check_cell_exercise(cell):
            new = nbformat.v4.new_code_cell(source, metadata=metadata)  # no output, no execution count
        else:
            new = nbformat.v4.new_code_cell(source, metadata=metadata)
            new.execution_count = cell.get("execution_count")
            new.outputs = copy.deepcopy(cell.get("outputs", []))
        new["id"] = f"cell-{index:02d}"
        cells.append(new)
    checked = set(expected_check_outputs(solution_nb))
    if exercises_seen != checked:
        raise ValueError(
            f"solution cells {sorted(exercises_seen)} and check cells {sorted(checked)} do not match: "
            "every exercise needs one solution cell and one check cell"
        )
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.nbformat_minor = NBFORMAT_MINOR
    nb.metadata = {key: solution_nb.metadata[key] for key in NOTEBOOK_METADATA_KEPT if key in solution_nb.metadata}
    return nb


def notebook_text(nb) -> str:
    """Stable JSON for a notebook (sorted keys, one-space indent, newline at the end)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


BUILT_MANIFEST = ".built.json"
"""In the exercises folder: file name -> SHA-256 of the notebook the last build wrote there."""
BACKUP_FOLDER = ".backup"


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_built_manifest(exercises_dir: Path) -> dict[str, str]:
    path = Path(exercises_dir) / BUILT_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def back_up_notebook(target: Path, backup_dir: Path) -> Path:
    """Copy ``target`` into ``backup_dir`` under a new name (a second backup never replaces the first)."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = backup_dir / f"{target.stem}-{stamp}.ipynb"
    counter = 1
    while backup.exists():
        backup = backup_dir / f"{target.stem}-{stamp}-{counter}.ipynb"
        counter += 1
    shutil.copy2(target, backup)
    return backup


def build_exercises(solutions_dir: Path, exercises_dir: Path, check_only: bool = False) -> list[Path]:
    """Write ``exercises_dir/NN_*.ipynb`` for every solution notebook.

    A notebook that differs from the one the last build wrote (a learner's work) is never lost:
    it is copied to ``.backup/`` first, and the copy is named on the console.

    Returns the exercise notebooks that were (with ``check_only``: would be) created or changed.
    """
    solutions = lesson_notebooks(solutions_dir)
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks NN_*.ipynb in {solutions_dir}")
    exercises_dir = Path(exercises_dir)
    last_built = read_built_manifest(exercises_dir)
    built = {}
    changed = []
    for path in solutions.values():
        try:
            text = notebook_text(build_exercise_notebook(read_notebook(path)))
        except ValueError as error:
            raise ValueError(f"{path.name}: {error}") from None
        built[path.name] = text_digest(text)
        target = exercises_dir / path.name
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current == text:
            continue
        changed.append(target)
        if check_only:
            continue
        if current is not None and text_digest(current) != last_built.get(path.name):
            backup = back_up_notebook(target, exercises_dir / BACKUP_FOLDER)
            print(f"{target.name} was edited since it was built: your version is kept as {backup}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
    if not check_only:
        manifest = json.dumps(dict(sorted(built.items())), indent=1) + "\n"
        (exercises_dir / BUILT_MANIFEST).write_text(manifest, encoding="utf-8", newline="\n")
    return changed


# ----------------------------------------------------------------------------------------------
