"""What the grader runs: the course's own cells, and the answer cells taken from a learner's notebook.

The grader never runs a learner's notebook as it is. From the course it takes, per lesson
(``LessonPlan``): the set-up cells, the pristine check cell of each exercise and its reference
answer. From the learner it takes only the *answer cells* (``LearnerWork``):

* a code cell whose metadata names an exercise (``{"course": {"exercise": "04.1"}}``, as every
  answer cell of an exercise notebook has) belongs to that exercise;
* any other code cell the learner wrote belongs to the exercise before it (the last answer or
  check cell above it); cells above the first exercise are the learner's *preamble*;
* check cells (``# Check exercise NN.M``) and cells the course wrote (set-up, demos) are never
  taken from the learner: the grader uses the course's own.

``find_submissions`` finds a student's notebooks by their content (the exercise ids in cell
metadata or check comments), so a notebook saved as ``04_masking-Copy1.ipynb`` or renamed is
graded, and says which file it took.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.exercise_system.build import stub_source
from course_lib.exercise_system.notebooks import (
    CHECK_COMMENT,
    NOTEBOOK_NAME,
    NotebookUnreadable,
    cell_course_metadata,
    check_cell_exercise,
    exercise_of_cell,
    exercise_sort_key,
    lesson_notebooks,
    lesson_of,
    read_notebook,
    solution_cell_exercise,
)

# Folders that are never a student, or never hold a student's work.
IGNORED_FOLDERS = ("__MACOSX", "__pycache__", ".ipynb_checkpoints")
SEARCH_DEPTH = 3  # a student's notebooks may sit in a sub-folder (an unpacked archive), not deeper


# ----------------------------------------------------------------------------------------------
# Names a piece of code defines and uses (to find which earlier exercise an answer needs)
# ----------------------------------------------------------------------------------------------


def python_source(source: str) -> str:
    """A cell's source as plain Python: IPython's ``%magics`` and ``!commands`` become calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # a cell IPython cannot read either: parse it as it is
        return source


def parse_cell(source: str) -> ast.Module | None:
    """The cell's syntax tree, or None when it does not parse."""
    try:
        return ast.parse(python_source(source))
    except (SyntaxError, ValueError):
        return None


def defined_names(source: str) -> set[str]:
    """Names a cell binds at the top level: functions, classes, imports and assigned variables."""
    tree = parse_cell(source)
    if tree is None:
        return set()
    names = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names if alias.name != "*")
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    names.add(child.id)
            for body in ("body", "orelse", "finalbody", "handlers"):
                nested = getattr(node, body, None)
                if isinstance(nested, list):
                    visit(n for n in nested if isinstance(n, ast.stmt))

    visit(tree.body)
    return names


def used_names(source: str) -> set[str]:
    """Every name a cell reads, inside its functions and classes too."""
    tree = parse_cell(source)
    if tree is None:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def imported_modules(source: str) -> set[str]:
    """The modules a cell imports (absolute imports only): ``import torch.nn`` -> ``torch.nn``."""
    tree = parse_cell(source)
    if tree is None:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


# ----------------------------------------------------------------------------------------------
# The course's side: one plan per lesson
# ----------------------------------------------------------------------------------------------


def normalized(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


@dataclass
class LessonPlan:
    """Everything the grader takes from the course for one lesson's exercise notebook."""

    lesson: str
    notebook_name: str
    exercises: list[str]
    titles: dict[str, str]
    setup: list[str]  # course code cells above the first exercise, run first in every run
    checks: dict[str, str]  # exercise -> its pristine check cell
    references: dict[str, str]  # exercise -> the course's answer (the solution cell)
    stubs: dict[str, str]  # exercise -> the stub the learner starts from
    context: list[tuple[int, str]]  # course cells between exercises, with their position
    positions: dict[str, int]  # exercise -> position of its answer cell
    course_cells: set[str] = field(default_factory=set)  # normalized sources of the course's own code cells

    def setup_names(self) -> set[str]:
        names = set(dir(builtins))
        for source in self.setup:
            names |= defined_names(source)
        return names


def lesson_plan(solution_path: Path) -> LessonPlan:
    """Read one solution notebook into a ``LessonPlan``."""
    nb = read_notebook(solution_path)
    lesson = NOTEBOOK_NAME.match(solution_path.name).group(1)
    plan = LessonPlan(lesson, solution_path.name, [], {}, [], {}, {}, {}, [], {})
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        exercise = solution_cell_exercise(cell)
        check = check_cell_exercise(cell)
        if exercise:
            plan.exercises.append(exercise)
            plan.titles[exercise] = cell_course_metadata(cell).get("title", exercise)
            plan.references[exercise] = cell.source
            plan.stubs[exercise] = stub_source(cell.source, exercise)
            plan.positions[exercise] = index
        elif check:
            plan.checks[check] = cell.source
        elif cell.source.strip():
            plan.course_cells.add(normalized(cell.source))
            if plan.exercises:
                plan.context.append((index, cell.source))
            else:
                plan.setup.append(cell.source)
    missing = sorted(set(plan.exercises) ^ set(plan.checks))
    if missing:
        raise ValueError(f"{solution_path.name}: exercises {missing} lack a solution cell or a check cell")
    return plan


def lesson_plans(solutions_dir: Path, lessons: list[str] | None = None) -> dict[str, LessonPlan]:
    """The plans of the lessons that have exercises (all, or those in ``lessons``)."""
    solutions = lesson_notebooks(solutions_dir)
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks NN_*.ipynb in {solutions_dir}")
    if lessons:
        unknown = sorted(set(lessons) - set(solutions))
        if unknown:
            raise ValueError(
                f"unknown lesson(s) {', '.join(unknown)}; the solutions have {', '.join(sorted(solutions))}"
            )
        solutions = {lesson: solutions[lesson] for lesson in sorted(set(lessons))}
    plans = {lesson: lesson_plan(path) for lesson, path in solutions.items()}
    return {lesson: plan for lesson, plan in plans.items() if plan.exercises}


# ----------------------------------------------------------------------------------------------
# The learner's side: which cells are answers
# ----------------------------------------------------------------------------------------------


@dataclass
class LearnerCell:
    index: int  # position in the learner's notebook (for messages)
    source: str


@dataclass
class LearnerWork:
    """The answer cells of one learner's notebook, read once before any code runs."""

    path: Path | None  # the file graded (None: none found)
    sha256: str = ""
    data: bytes = b""  # the file as read (the private copy each run gets)
    preamble: list[LearnerCell] = field(default_factory=list)
    answers: dict[str, list[LearnerCell]] = field(default_factory=dict)
    problem: str = ""  # why nothing can be graded (missing or unreadable notebook)
    note: str = ""  # how the file was found, when not by its usual name


def split_answers(nb, plan: LessonPlan) -> tuple[list[LearnerCell], dict[str, list[LearnerCell]]]:
    """The learner's preamble and answer cells per exercise (see the module's docstring)."""
    preamble: list[LearnerCell] = []
    answers: dict[str, list[LearnerCell]] = {exercise: [] for exercise in plan.exercises}
    current = None
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        tagged = exercise_of_cell(cell)
        if tagged in answers:
            current = tagged
            answers[tagged].append(LearnerCell(index, source))
            continue
        check = check_cell_exercise(cell)
        if check:
            current = check if check in answers else current
            continue  # a learner's check cell never runs: the course's own does
        if not source.strip() or normalized(source) in plan.course_cells:
            continue
        (answers[current] if current else preamble).append(LearnerCell(index, source))
    return preamble, answers


def exercise_ids_in(nb) -> list[str]:
    """The exercise ids a notebook names in its cell metadata or check comments."""
    ids = []
    for cell in nb.cells:
        metadata = cell_course_metadata(cell)
        for key in ("exercise", "check"):
            if isinstance(metadata.get(key), str):
                ids.append(metadata[key])
        if cell.get("cell_type") == "code":
            ids += CHECK_COMMENT.findall(str(cell.get("source", "")))
    return ids


def answered_count(nb, plan: LessonPlan) -> int:
    """How many exercises of ``plan`` have an answer cell the learner changed from the stub."""
    _, answers = split_answers(nb, plan)
    stubs = {normalized(stub) for stub in plan.stubs.values()}
    return sum(any(normalized(cell.source) not in stubs for cell in cells) for cells in answers.values())


def notebook_files(student_dir: Path) -> list[Path]:
    """The ``.ipynb`` files in a student's folder, sub-folders included, hidden and junk folders left out."""
    found = []
    for root, folders, files in os.walk(student_dir):
        depth = len(Path(root).relative_to(student_dir).parts)
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".") and name not in IGNORED_FOLDERS and depth < SEARCH_DEPTH
        )
        found += [Path(root) / name for name in sorted(files) if name.endswith(".ipynb") and not name.startswith(".")]
    return found


def student_folders(class_dir: Path) -> list[Path]:
    """One folder per student: hidden folders and ``__MACOSX`` are not students."""
    return sorted(
        path
        for path in Path(class_dir).iterdir()
        if path.is_dir() and not path.name.startswith(".") and path.name not in IGNORED_FOLDERS
    )


@dataclass
class Candidate:
    path: Path
    data: bytes
    nb: object | None  # None: the file is not a readable notebook
    error: str = ""


def read_candidate(path: Path) -> Candidate:
    data = path.read_bytes()
    try:
        nb = read_notebook(path)
    except NotebookUnreadable as error:
        return Candidate(path, data, None, str(error))
    return Candidate(path, data, nb)


def find_submissions(student_dir: Path, plans: dict[str, LessonPlan]) -> dict[str, LearnerWork]:
    """For each lesson, the learner's work from the best notebook in ``student_dir``.

    A notebook belongs to the lesson whose exercise ids it names most. When several notebooks
    belong to one lesson (``04_masking.ipynb`` and ``04_masking-Copy1.ipynb``), the one with the
    most answered exercises is graded, then the one with the course's name, then the newest.
    A file that is not a notebook is used only when its name is the lesson's and nothing better
    exists: its exercises then fail with the reason.
    """
    by_lesson: dict[str, list[Candidate]] = {lesson: [] for lesson in plans}
    for path in notebook_files(student_dir):
        candidate = read_candidate(path)
        if candidate.nb is not None:
            lessons = [lesson_of(e) for e in exercise_ids_in(candidate.nb) if lesson_of(e) in plans]
            lesson = max(set(lessons), key=lessons.count) if lessons else None
        else:
            match = NOTEBOOK_NAME.match(path.name)
            lesson = match.group(1) if match and match.group(1) in plans else None
        if lesson is None and candidate.nb is not None:
            match = NOTEBOOK_NAME.match(path.name)  # no ids left (metadata stripped): go by the name
            lesson = match.group(1) if match and match.group(1) in plans else None
        if lesson is not None:
            by_lesson[lesson].append(candidate)
    return {lesson: choose(by_lesson[lesson], plans[lesson], student_dir) for lesson in plans}


def choose(candidates: list[Candidate], plan: LessonPlan, student_dir: Path) -> LearnerWork:
    if not candidates:
        return LearnerWork(None, problem=f"notebook missing: {plan.notebook_name}")

    def rank(candidate: Candidate):
        answered = answered_count(candidate.nb, plan) if candidate.nb is not None else -1
        return (answered, candidate.path.name == plan.notebook_name, candidate.path.stat().st_mtime)

    best = max(candidates, key=rank)
    relative = best.path.relative_to(student_dir).as_posix()
    work = LearnerWork(best.path, hashlib.sha256(best.data).hexdigest(), best.data)
    if best.nb is None:
        work.problem = best.error
        return work
    work.preamble, work.answers = split_answers(best.nb, plan)
    notes = []
    if relative != plan.notebook_name:
        notes.append(f"graded {relative} (found by its content; the course names it {plan.notebook_name})")
    others = [c.path.relative_to(student_dir).as_posix() for c in candidates if c is not best]
    if others:
        notes.append(f"not graded: {', '.join(others)} (fewer answers, or older)")
    work.note = "; ".join(notes)
    return work


# ----------------------------------------------------------------------------------------------
# Which earlier exercises an answer needs
# ----------------------------------------------------------------------------------------------


def exercise_dependencies(plan: LessonPlan, work: LearnerWork) -> dict[str, list[str]]:
    """Exercise -> the earlier exercises of the lesson whose names its answer or check cell uses.

    A name counts when an earlier exercise defines it (in the learner's cells or the course's
    answer) and the later exercise uses it without defining it itself; set-up names (torch, math)
    and builtins do not count. The result is closed under "needs": if 04.3 needs 04.2 and 04.2
    needs 04.1, 04.3 needs both.
    """
    common = plan.setup_names()
    for cell in work.preamble:
        common |= defined_names(cell.source)
    defines = {
        exercise: set().union(
            defined_names(plan.references[exercise]), *(defined_names(c.source) for c in work.answers.get(exercise, []))
        )
        - common
        for exercise in plan.exercises
    }
    needs: dict[str, list[str]] = {}
    for position, exercise in enumerate(plan.exercises):
        cells = [c.source for c in work.answers.get(exercise, [])]
        used = set().union(used_names(plan.checks[exercise]), *(used_names(source) for source in cells))
        own = set().union(*(defined_names(source) for source in cells)) if cells else set()
        direct = {earlier for earlier in plan.exercises[:position] if (used - own) & defines[earlier]}
        closed = set(direct)
        for earlier in direct:
            closed |= set(needs.get(earlier, []))
        needs[exercise] = sorted(closed, key=exercise_sort_key)
    return needs


def context_cells(plan: LessonPlan, exercise: str, cells: list[str]) -> list[tuple[int, str]]:
    """The course's cells between exercises that define a name the run uses (before its check)."""
    used = set().union(used_names(plan.checks[exercise]), *(used_names(source) for source in cells))
    limit = plan.positions[exercise]
    return [(index, source) for index, source in plan.context if index < limit and used & defined_names(source)]
