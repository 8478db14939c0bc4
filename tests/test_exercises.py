"""The exercise notebooks: generated from the solutions, complete, and no check is vacuous.

The solution notebooks themselves are run by nbval (`pytest --nbval ... solutions`): every
check passes on the worked answers. Here we prove the other half: each exercise's check fails
on the stub the learner starts from, with everything else solved.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

import course_lib.checks
from course_lib import exercise_system as ex

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
LESSONS = {
    "00": "00_pytorch_primer.ipynb",
    "01": "01_tokens_and_embeddings.ipynb",
    "02": "02_positional_encoding.ipynb",
    "03": "03_self_attention.ipynb",
    "04": "04_masking.ipynb",
    "05": "05_multi_head_attention.ipynb",
    "06": "06_mlp_residual_layernorm.ipynb",
    "07": "07_encoder.ipynb",
    "08": "08_decoder.ipynb",
    "09": "09_generation.ipynb",
    "10": "10_train_a_translator.ipynb",
    "11": "11_train_a_tiny_gpt.ipynb",
    "12": "12_pretrained_model.ipynb",
    "13": "13_modern_llm.ipynb",
    "14": "14_real_chat_llm.ipynb",
}
CHECK_CALL = re.compile(r"^from course_lib\.checks import (check_\w+)\n\n(check_\w+)\(\w+\)$", re.MULTILINE)


def solution(lesson: str) -> nbformat.NotebookNode:
    return ex.read_notebook(SOLUTIONS / LESSONS[lesson])


def exercise_notebook(lesson: str) -> nbformat.NotebookNode:
    return ex.read_notebook(EXERCISES / LESSONS[lesson])


def cells_by_exercise(nb, find) -> dict[str, nbformat.NotebookNode]:
    found = {}
    for cell in nb.cells:
        exercise = find(cell)
        if exercise:
            assert exercise not in found, f"two cells for exercise {exercise}"
            found[exercise] = cell
    return found


def test_one_solution_and_one_exercise_notebook_per_lesson():
    assert set(ex.lesson_notebooks(SOLUTIONS)) == set(LESSONS)
    assert {path.name for path in ex.lesson_notebooks(SOLUTIONS).values()} == set(LESSONS.values())
    assert {path.name for path in ex.lesson_notebooks(EXERCISES).values()} == set(LESSONS.values())


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_exercises_are_numbered_checked_and_hinted(lesson):
    nb = solution(lesson)
    solutions = cells_by_exercise(nb, ex.solution_cell_exercise)
    checks = cells_by_exercise(nb, ex.check_cell_exercise)
    numbered = [f"{lesson}.{number}" for number in range(1, len(solutions) + 1)]
    assert len(solutions) >= 3
    assert list(solutions) == numbered and list(checks) == numbered  # in order, one solution and one check each
    hints = json.loads((SOLUTIONS / "hints.json").read_text(encoding="utf-8"))
    for exercise, cell in checks.items():
        call = CHECK_CALL.search(cell.source)
        assert call and call.group(1) == call.group(2), f"{exercise}: the check cell must import and call one checker"
        assert callable(getattr(course_lib.checks, call.group(1), None)), (
            f"{exercise}: no course_lib.checks.{call.group(1)}"
        )
        assert ex.text_of_outputs(cell.outputs).startswith(f"✓ {exercise} "), f"{exercise}: solved output missing"
        assert 2 <= len(hints[exercise]) <= 3 and all(hint.strip() for hint in hints[exercise])
    # The first code cell checks the course_lib version; the intro links to the lesson.
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert "course_lib.__version__" in first_code.source
    assert f"(../notebooks/{LESSONS[lesson]})" in nb.cells[0].source


def test_hints_cover_exactly_the_exercises():
    hints = json.loads((SOLUTIONS / "hints.json").read_text(encoding="utf-8"))
    ids = {e for lesson in LESSONS for e in ex.expected_check_outputs(solution(lesson))}
    assert set(hints) == ids


def test_exercises_are_the_build_of_the_solutions(tmp_path):
    assert ex.build_exercises(SOLUTIONS, EXERCISES, check_only=True) == [], "run `course build-exercises`"
    # Building again from scratch gives byte-identical files.
    ex.build_exercises(SOLUTIONS, tmp_path)
    for name in LESSONS.values():
        assert (tmp_path / name).read_bytes() == (EXERCISES / name).read_bytes()


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_exercise_notebook_has_stubs_instead_of_answers(lesson):
    nb = exercise_notebook(lesson)
    text = (EXERCISES / LESSONS[lesson]).read_text(encoding="utf-8")
    assert ex.BEGIN_SOLUTION not in text and ex.END_SOLUTION not in text
    stubs = cells_by_exercise(nb, ex.exercise_of_cell)
    assert list(stubs) == list(ex.expected_check_outputs(solution(lesson)))
    for exercise, cell in stubs.items():
        assert f'raise NotImplementedError("Exercise {exercise}: ' in cell.source
        assert not cell.outputs and cell.execution_count is None
    # The check cells come without the solved run's output (no "✓ correct" before the learner has written a
    # line) and without an execution count, so nbval judges them only by whether they raise.
    checks = cells_by_exercise(nb, ex.check_cell_exercise)
    assert list(checks) == list(ex.expected_check_outputs(solution(lesson)))
    for exercise, cell in checks.items():
        assert not cell.outputs and cell.execution_count is None, f"{exercise}: the check cell has an output"


@pytest.fixture(scope="module")
def kernel():
    """One kernel for all the notebooks of this module (starting one and importing torch is slow here)."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell()]),  # execute_cell stores each cell at index 0
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(SOLUTIONS)}},
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(client.setup_kernel(stderr=subprocess.DEVNULL))

        def run(cell):
            cell = copy.deepcopy(cell)
            client.execute_cell(cell, 0)
            return cell.outputs

        yield run


def errors_in(outputs) -> list:
    return [output for output in outputs if output.output_type == "error"]


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_each_stub_fails_its_check_with_the_rest_solved(kernel, lesson):
    """Run the solved notebook (its check cells aside: nbval runs those), then for each exercise in
    turn put the learner's stub in place of the answer, run the check (it must fail, saying the
    exercise is not implemented) and put the answer back."""
    assert not errors_in(kernel(nbformat.v4.new_code_cell("%reset -f")))
    solved = solution(lesson)
    for index, cell in enumerate(solved.cells):
        if cell.cell_type == "code" and not ex.check_cell_exercise(cell):
            errors = errors_in(kernel(cell))
            assert not errors, f"{LESSONS[lesson]} cell {index}: {errors[0].ename}: {errors[0].evalue}"
    answers = cells_by_exercise(solved, ex.solution_cell_exercise)
    checks = cells_by_exercise(solved, ex.check_cell_exercise)
    stubs = cells_by_exercise(exercise_notebook(lesson), ex.exercise_of_cell)
    for exercise in answers:
        kernel(stubs[exercise])
        errors = errors_in(kernel(checks[exercise]))
        assert errors, f"the check of {exercise} passed on the stub: it checks nothing"
        assert errors[0].ename == "CheckFailed"
        assert errors[0].evalue.startswith(f"{exercise} ") and "not implemented yet" in errors[0].evalue
        assert not errors_in(kernel(answers[exercise]))


def test_build_exercises_never_loses_a_learners_edits(tmp_path, capsys):
    """Rebuilding over an edited exercise notebook backs it up first, loudly; a pristine one is just replaced."""
    from course_lib.exercise_system.build import BACKUP_FOLDER, build_exercises

    solutions = ROOT / "solutions"
    build_exercises(solutions, tmp_path)
    edited = sorted(tmp_path.glob("04_*.ipynb"))[0]
    learner_text = edited.read_text(encoding="utf-8").replace("NotImplementedError", "NotImplementedError  # mine", 1)
    edited.write_text(learner_text, encoding="utf-8")
    capsys.readouterr()

    changed = build_exercises(solutions, tmp_path)

    assert changed == [edited]
    backups = list((tmp_path / BACKUP_FOLDER).glob("04_*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == learner_text
    assert "edited since it was built" in capsys.readouterr().out
    assert build_exercises(solutions, tmp_path) == []  # a rebuilt notebook is pristine again: no second backup
    assert len(list((tmp_path / BACKUP_FOLDER).glob("*.ipynb"))) == 1
