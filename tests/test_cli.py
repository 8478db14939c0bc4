"""The ``course`` command on temporary folders.

Most tests use a tiny course made here (one notebook, three exercises on plain Python
numbers, its checkers defined in the notebook), so that kernels start fast and the test does
not depend on the course's own checkers. One test runs the real ``exercises/04_masking.ipynb``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nbformat
import pytest

from course_lib import exercise_system as ex
from course_lib.exercise_system.cli import main

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_tiny.ipynb"

CHECKERS = '''\
class CheckFailed(AssertionError):
    """Raised by a checker when the answer is wrong."""


def check_double(double):
    for x in (0, 1, -3, 2.5):
        if double(x) != 2 * x:
            raise CheckFailed(f"01.1: double({x}) gave {double(x)!r}, expected {2 * x}: multiply by 2\\nmore detail")
    print("✓ 01.1 double: correct on 4 cases")


def check_mean(mean):
    if mean([1, 2, 3, 6]) != 3:
        raise CheckFailed(
            f"01.2: mean([1, 2, 3, 6]) gave {mean([1, 2, 3, 6])!r}, expected 3: divide the sum by the count "
            "(case: four numbers whose sum, 12, divided by their count, 4, gives 3, while dividing by the count "
            "minus one gives 4)\\nHint: divide by len(xs)"
        )
    print("✓ 01.2 mean: correct")


def check_vowels(count_vowels):
    if count_vowels("transformer") != 3:
        raise CheckFailed("01.3: count_vowels('transformer') should be 3: count a, e, i, o, u")
    print("✓ 01.3 count_vowels: correct")'''

EXERCISES = {
    "01.1": (
        "double",
        "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
        "check_double",
    ),
    "01.2": (
        "mean",
        "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION",
        "check_mean",
    ),
    "01.3": (
        "count_vowels",
        "def count_vowels(text):\n    ### BEGIN SOLUTION\n    return sum(letter in 'aeiou' for letter in text)\n"
        "    ### END SOLUTION",
        "check_vowels",
    ),
}
SUCCESS = {
    "01.1": "✓ 01.1 double: correct on 4 cases\n",
    "01.2": "✓ 01.2 mean: correct\n",
    "01.3": "✓ 01.3 count_vowels: correct\n",
}
HINTS = {
    "01.1": ["Twice x.", "Multiply.", "return 2 * x"],
    "01.2": ["Sum, then divide.", "len(xs) is the count."],
    "01.3": ["Loop over letters.", "letter in 'aeiou'", "sum(letter in 'aeiou' for letter in text)"],
}


def tiny_solution_notebook() -> nbformat.NotebookNode:
    """A solved notebook as `course build-exercises` expects it, with the outputs of a solved run."""
    cells = [nbformat.v4.new_markdown_cell("# Tiny exercises"), nbformat.v4.new_code_cell(CHECKERS)]
    for exercise, (title, solution, checker) in EXERCISES.items():
        cells.append(nbformat.v4.new_markdown_cell(f"## Exercise {exercise}: write `{title}`"))
        cell = nbformat.v4.new_code_cell(solution)
        cell.metadata["course"] = {"exercise": exercise, "title": title}
        cells.append(cell)
        function = title
        check = nbformat.v4.new_code_cell(f"# Check exercise {exercise}\n{checker}({function})")
        check.outputs = [nbformat.v4.new_output("stream", name="stdout", text=SUCCESS[exercise])]
        cells.append(check)
    for count, cell in enumerate(c for c in cells if c.cell_type == "code"):
        cell.execution_count = count + 1
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return nb


@pytest.fixture
def course(tmp_path):
    """A course folder: solutions/ (one notebook and hints.json) and the generated exercises/."""
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    (solutions / NOTEBOOK).write_text(nbformat.writes(tiny_solution_notebook()), encoding="utf-8")
    (solutions / "hints.json").write_text(json.dumps(HINTS), encoding="utf-8")
    assert main(["--solutions", str(solutions), "build-exercises", "--out", str(tmp_path / "exercises")]) == 0
    return tmp_path


def student_notebook(course: Path, answers: dict[str, str], drop_check: str | None = None) -> nbformat.NotebookNode:
    """The exercise notebook with some stubs replaced by the given code (as a learner would)."""
    nb = ex.read_notebook(course / "exercises" / NOTEBOOK)
    kept = []
    for cell in nb.cells:
        exercise = ex.exercise_of_cell(cell)
        if exercise in answers:
            cell.source = answers[exercise]
        if drop_check and ex.check_cell_exercise(cell) == drop_check:
            continue
        kept.append(cell)
    nb.cells = kept
    return nb


def write_student(class_dir: Path, name: str, nb: nbformat.NotebookNode | None = None, text: str | None = None):
    folder = class_dir / name
    folder.mkdir(parents=True)
    if nb is not None:
        (folder / NOTEBOOK).write_text(nbformat.writes(nb), encoding="utf-8")
    if text is not None:
        (folder / NOTEBOOK).write_text(text, encoding="utf-8")
    return folder


CORRECT = {exercise: solution for exercise, (_, solution, _) in EXERCISES.items()}
WRONG_MEAN = "def mean(xs):\n    return sum(xs) / (len(xs) - 1)"
# Right, but it prints a debug line and triggers a harmless warning in the check cell: only the checker decides.
NOISY_DOUBLE = (
    "import warnings\n\n\ndef double(x):\n    print('debug: x =', x)\n"
    "    warnings.warn('a harmless warning')\n    return 2 * x"
)
LONG_MESSAGE_TAIL = "while dividing by the count minus one gives 4)"


# ----------------------------------------------------------------------------------------------
# build-exercises
# ----------------------------------------------------------------------------------------------


def test_build_exercises_makes_stubs_and_empties_the_check_cells(course):
    nb = ex.read_notebook(course / "exercises" / NOTEBOOK)
    text = (course / "exercises" / NOTEBOOK).read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "return 2 * x" not in text
    stubs = [cell.source for cell in nb.cells if "NotImplementedError" in cell.source]
    assert len(stubs) == 3
    assert stubs[0].startswith("def double(x):\n")  # the signature stays for the learner
    assert '    raise NotImplementedError("Exercise 01.1: ' in stubs[0]  # indented like the solution
    # No "✓ correct" before the learner has written a line: check cells have no output and no execution
    # count, so nbval only requires that they do not raise.
    checks = [cell for cell in nb.cells if ex.check_cell_exercise(cell)]
    assert len(checks) == 3 and all(not cell.outputs and cell.execution_count is None for cell in checks)
    assert ex.expected_check_outputs(nb) == {exercise: "" for exercise in SUCCESS}
    solved = ex.read_notebook(course / "solutions" / NOTEBOOK)
    assert ex.expected_check_outputs(solved) == SUCCESS  # the solutions keep the solved run's output
    assert [cell["id"] for cell in nb.cells] == [f"cell-{i:02d}" for i in range(len(nb.cells))]


def test_build_exercises_check_mode_and_byte_identical_rebuild(course, capsys):
    solutions, exercises = str(course / "solutions"), course / "exercises"
    target = exercises / NOTEBOOK
    first = target.read_bytes()
    assert main(["--solutions", solutions, "build-exercises", "--out", str(exercises), "--check"]) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("Tiny", "Edited"), encoding="utf-8")
    assert main(["--solutions", solutions, "build-exercises", "--out", str(exercises), "--check"]) == 1
    assert "out of date: 01_tiny.ipynb" in capsys.readouterr().out
    assert main(["--solutions", solutions, "build-exercises", "--out", str(exercises)]) == 0
    assert target.read_bytes() == first


def test_build_exercises_rejects_an_unterminated_region(course, capsys):
    path = course / "solutions" / NOTEBOOK
    path.write_text(path.read_text(encoding="utf-8").replace("### END SOLUTION", "", 1), encoding="utf-8")
    assert main(["--solutions", str(course / "solutions"), "build-exercises", "--out", str(course / "out")]) == 2
    assert "01_tiny.ipynb: exercise 01.1: ### BEGIN SOLUTION without ### END SOLUTION" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# hint and reset
# ----------------------------------------------------------------------------------------------


def test_hint_gets_stronger_and_remembers_the_level(course, capsys):
    args = ["--solutions", str(course / "solutions"), "hint", "1.1", "--dir", str(course / "exercises")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Exercise 01.1: double" in out and "Hint 1/3: Twice x." in out and "Hint 2/3" not in out
    assert main(args) == 0
    assert "Hint 2/3: Multiply." in capsys.readouterr().out
    assert main(args) == 0 and main(args) == 0  # stays at the last level
    out = capsys.readouterr().out
    assert out.count("Hint 3/3: return 2 * x") == 2 and "again for a stronger hint" not in out
    state = json.loads((course / "exercises" / ".course_hints.json").read_text(encoding="utf-8"))
    assert state == {"01.1": 3}
    assert main([*args, "--level", "1"]) == 0
    assert "Hint 2/3" not in capsys.readouterr().out
    assert main([*args, "--level", "4"]) == 2
    assert "hints 1 to 3" in capsys.readouterr().err
    assert main(["--solutions", str(course / "solutions"), "hint", "07.9"]) == 2


def test_reset_backs_up_and_restores(course, capsys):
    exercises = course / "exercises"
    pristine = (exercises / NOTEBOOK).read_bytes()
    (exercises / NOTEBOOK).write_text("my work", encoding="utf-8")
    args = ["--solutions", str(course / "solutions"), "reset", "01", "--dir", str(exercises)]
    assert main(args) == 0
    assert (exercises / NOTEBOOK).read_bytes() == pristine
    backups = sorted((exercises / ".backup").iterdir())
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == "my work"
    assert backups[0].name.startswith("01_tiny-")
    assert main(args) == 0  # a second reset in the same second keeps both backups
    assert len(list((exercises / ".backup").iterdir())) == 2
    assert main(["--solutions", str(course / "solutions"), "reset", "05", "--dir", str(exercises)]) == 2


# ----------------------------------------------------------------------------------------------
# check and grade (these start kernels)
# ----------------------------------------------------------------------------------------------


def test_check_reports_each_exercise_and_agrees_with_nbval(course, tmp_path, capsys):
    learner = write_student(
        tmp_path / "learner", "me", student_notebook(course, {"01.1": NOISY_DOUBLE, "01.2": WRONG_MEAN})
    )
    code = main(["--solutions", str(course / "solutions"), "check", "--dir", str(learner)])
    out = capsys.readouterr().out
    assert code == 1
    rows = {line.split()[0]: line for line in out.splitlines() if line[:3] == "01."}
    assert rows["01.1"].split()[1] == "passed"
    assert rows["01.2"].split()[1] == "FAILED"
    assert "mean([1, 2, 3, 6]) gave 4.0, expected 3: divide the sum by the count" in rows["01.2"]
    assert rows["01.2"].rstrip().endswith(LONG_MESSAGE_TAIL)  # the whole message, the failing case included
    assert "\n" + " " * 18 + "Hint: divide by len(xs)\n" in out  # the checker's hint line, under its row
    assert rows["01.3"].split()[1] == "FAILED" and "not implemented yet" in rows["01.3"]
    assert "1/3 exercises pass" in out

    # nbval, run on the same notebook, fails exactly the check cells that `course check` failed.
    report = tmp_path / "nbval.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", f"--junitxml={report}", NOTEBOOK],
        cwd=learner,
        capture_output=True,
        timeout=120,
    )
    code_cells = [cell for cell in ex.read_notebook(learner / NOTEBOOK).cells if cell.cell_type == "code"]
    failed_cells = set()  # nbval names the items "Cell N", N counting code cells only
    for case in ElementTree.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed_cells.add(int(case.get("name").split()[-1]))
    failed_checks = {ex.check_cell_exercise(code_cells[index]) for index in failed_cells} - {None}
    assert failed_checks == {"01.2", "01.3"}


def test_check_real_exercise_notebook_fails_every_stub(tmp_path, capsys):
    shutil.copy(ROOT / "exercises" / "04_masking.ipynb", tmp_path / "04_masking.ipynb")
    assert main(["--solutions", str(ROOT / "solutions"), "check", "04", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for exercise in ("04.1", "04.2", "04.3"):
        line = next(line for line in out.splitlines() if line.startswith(exercise))
        assert line.split()[1] == "FAILED" and "not implemented" in line
    assert "0/3 exercises pass" in out


def test_grade_a_class_with_broken_input(course, tmp_path, capsys):
    """Only the answer cells count: a deleted or replaced check cell changes nothing (the course's own
    check runs), a timeout fails only its exercise, and a broken notebook fails its exercises."""
    class_dir = tmp_path / "class"
    write_student(class_dir, "alice", student_notebook(course, CORRECT))
    write_student(class_dir, "bob", student_notebook(course, {"01.1": CORRECT["01.1"], "01.2": WRONG_MEAN}))
    write_student(class_dir, "carol")  # handed in nothing
    write_student(class_dir, "dave", text="{ this is not a notebook")
    endless = "while True:\n    pass\n" + CORRECT["01.2"]
    write_student(class_dir, "erin", student_notebook(course, {**CORRECT, "01.2": endless}))
    write_student(class_dir, "frank", student_notebook(course, CORRECT, drop_check="01.2"))
    gina = student_notebook(course, {**CORRECT, "01.1": NOISY_DOUBLE})
    for cell in gina.cells:
        if ex.check_cell_exercise(cell) == "01.3":
            cell.source = "# Check exercise 01.3\nprint('all good')"  # the check call removed
    write_student(class_dir, "gina", gina)
    hank = student_notebook(course, {"01.1": "def double(x):\n    return x"})
    for cell in hank.cells:
        if ex.check_cell_exercise(cell) == "01.1":
            cell.source = "print('✓ 01.1 double: correct on 4 cases')"  # a faked check
    write_student(class_dir, "hank", hank)
    prefix = tmp_path / "out" / "grades"

    code = main(
        ["--solutions", str(course / "solutions"), "grade", str(class_dir), "--out", str(prefix), "--timeout", "3"]
    )
    assert code == 0

    rows = list(csv.reader(io.StringIO(Path(f"{prefix}.csv").read_text(encoding="utf-8"))))
    assert rows == [
        ["student", "01.1", "01.2", "01.3", "total"],
        ["alice", "pass", "pass", "pass", "3"],
        ["bob", "pass", "fail", "fail", "1"],
        ["carol", "fail", "fail", "fail", "0"],
        ["dave", "fail", "fail", "fail", "0"],
        ["erin", "pass", "fail", "pass", "2"],  # the endless loop in 01.2 does not fail 01.3
        ["frank", "pass", "pass", "pass", "3"],  # the course's check cell stands in for the deleted one
        ["gina", "pass", "pass", "pass", "3"],  # prints and warnings never fail a right answer
        ["hank", "fail", "fail", "fail", "0"],  # the faked check does not count
    ]
    markdown = Path(f"{prefix}.md").read_text(encoding="utf-8")
    assert "| student | 01.1 | 01.2 | 01.3 | total |" in markdown
    assert "| alice | pass | pass | pass | 3/3 |" in markdown
    notes = {line for line in markdown.splitlines() if line.startswith("- ")}
    assert any(
        line.startswith("- bob, 01.2: 01.2: mean(\\[1, 2, 3, 6\\]) gave 4.0, expected 3: divide the sum by the count")
        and line.endswith(LONG_MESSAGE_TAIL)
        for line in notes
    ), notes
    assert "- bob, 01.3: not implemented yet (Exercise 01.3: not implemented yet (write your code here))" in notes
    assert "- carol, 01.1: notebook missing: 01\\_tiny.ipynb" in notes
    assert any(line.startswith("- dave, 01.1: not a notebook (invalid JSON): 01\\_tiny.ipynb") for line in notes)
    assert "- erin, 01.2: timed out after 3 s (an endless loop?)" in notes
    details = list(csv.DictReader(io.StringIO(Path(f"{prefix}_details.csv").read_text(encoding="utf-8"))))
    assert len(details) == 8 * 3
    assert {row["reason"] for row in details if row["student"] == "alice"} == {""}
    hint = next(row["hint"] for row in details if row["student"] == "bob" and row["exercise"] == "01.2")
    assert hint == "Hint: divide by len(xs)"
    feedback = (Path(f"{prefix}_feedback") / "bob.md").read_text(encoding="utf-8")
    assert "| 01.2 | fail |" in feedback and "Hint: divide by len(xs)" in feedback
    out = capsys.readouterr().out
    assert "SHA-256 of the results" in out
    digest = hashlib.sha256(Path(f"{prefix}.csv").read_bytes()).hexdigest()
    assert f"{digest}  {prefix}.csv" in out


def test_grade_resumes_after_ctrl_c(course, tmp_path):
    """Ctrl-C keeps the students already done (exit 130); --resume grades only the others."""
    class_dir = tmp_path / "class"
    for name in ("a1", "a2"):
        write_student(class_dir, name, student_notebook(course, CORRECT))
    endless = "while True:\n    pass\n" + CORRECT["01.1"]
    for name in ("b1", "b2", "b3"):
        write_student(class_dir, name, student_notebook(course, {**CORRECT, "01.1": endless}))
    prefix = tmp_path / "grades"
    command = [sys.executable, "-m", "course_lib.exercise_system.cli", "--solutions", str(course / "solutions")]
    command += ["grade", str(class_dir), "--out", str(prefix), "--timeout", "20", "--jobs", "1"]
    # As in a terminal, the grader must be able to receive Ctrl-C: a process started in the background
    # by a shell inherits SIGINT as ignored, so the grader gets the default action back.
    grader = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    journal = Path(f"{prefix}.jsonl")
    deadline = time.monotonic() + 120
    while not (journal.is_file() and len(journal.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and grader.poll() is None, grader.communicate()[0]
        time.sleep(0.2)
    time.sleep(1)  # b1's endless loop is running now
    grader.send_signal(signal.SIGINT)
    out, _ = grader.communicate(timeout=60)
    assert grader.returncode == 130, out
    assert "interrupted: 2 student(s) done" in out and "--resume" in out
    rows = list(csv.reader(io.StringIO(Path(f"{prefix}.csv").read_text(encoding="utf-8"))))
    assert [row[0] for row in rows[1:]] == ["a1", "a2"]

    resumed = subprocess.run(
        [*command[:-4], "--timeout", "1", "--jobs", "2", "--resume"], capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 student(s) already graded" in resumed.stdout
    assert "a1:" not in resumed.stdout and "b1:" in resumed.stdout
    rows = list(csv.reader(io.StringIO(Path(f"{prefix}.csv").read_text(encoding="utf-8"))))
    assert [row[0] for row in rows[1:]] == ["a1", "a2", "b1", "b2", "b3"]
    assert [row[1] for row in rows[1:]] == ["pass", "pass", "fail", "fail", "fail"]


def test_grade_reports_bad_arguments(course, tmp_path, capsys):
    assert main(["--solutions", str(course / "solutions"), "grade", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty" / "__MACOSX").mkdir(parents=True)
    assert main(["--solutions", str(course / "solutions"), "grade", str(tmp_path / "empty")]) == 2
    assert "no student folders" in capsys.readouterr().err
    assert main(["--solutions", str(course / "solutions"), "grade", str(tmp_path / "empty"), "--lessons", "01,09"]) == 2
    assert "unknown lesson(s) 09" in capsys.readouterr().err
    assert main(["--solutions", str(course / "solutions"), "grade", str(tmp_path / "empty"), "--jobs", "0"]) == 2
    assert "--jobs must be 1 or more" in capsys.readouterr().err


def test_check_of_a_lesson_without_exercises_says_so(tmp_path, capsys):
    (tmp_path / "exercises").mkdir()
    for path in (ROOT / "exercises").glob("04_*.ipynb"):
        (tmp_path / "exercises" / path.name).write_bytes(path.read_bytes())
    status = main(["--solutions", str(ROOT / "solutions"), "check", "99", "--dir", str(tmp_path / "exercises")])
    assert status == 2
    assert "has no exercises" in capsys.readouterr().err


def test_the_course_folder_is_found_from_anywhere():
    """Run outside the course folder, the course command still finds the solutions and hints."""
    from course_lib.exercise_system.notebooks import course_root

    assert (course_root() / "solutions" / "hints.json").is_file()
    assert (course_root() / "course_lib" / "__init__.py").is_file()
