"""Exercise notebooks: build them from the solutions, run them, grade a class.

The solution notebooks in ``solutions/`` are the source of truth. In a solution notebook

* a *solution cell* carries ``metadata["course"] = {"exercise": "03.2", "title": ...}`` and marks
  each answer with ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines;
* a *check cell* starts with the comment ``# Check exercise 03.2`` and calls
  ``course_lib.checks.check_<name>(...)``, which prints one line when the answer is right and
  raises ``CheckFailed`` when it is not.

``build_exercise_notebook`` turns a solution notebook into an exercise notebook: each marked
region becomes ``raise NotImplementedError("Exercise 03.2: ...")``, the check cells lose their
outputs and execution counts (a fresh notebook shows no "✓ ... correct" before the learner has
written a line), and every other cell stays as the solved run made it. With no stored output to
compare, nbval only requires that a check cell does not raise, so
``pytest --nbval exercises/03_*.ipynb`` passes exactly when the learner's work is right, even
if the learner's code also prints a debug line or triggers a harmless warning.

``run_notebook`` executes a learner's notebook cell by cell in a fresh kernel (with a time
limit for the whole notebook) and gives one verdict per exercise, decided by the checker: the
check cell fails when it raises (``CheckFailed``, ``NotImplementedError`` or any other error,
reported with the checker's whole message and hint) and passes otherwise, whatever else it
printed, provided the checker's ``✓ 03.2`` line is there (its absence means the check call was
removed or changed).

``course grade`` does not trust the learner's notebook: it takes only the answer cells, puts the
course's own check cells back, and runs each exercise in a throw-away process (see ``grading``).

Modules: ``notebooks`` (reading), ``build`` (exercises from solutions), ``grading`` (running and
grading), ``submissions`` (what the grader takes from the course and from a learner), ``integrity``
(a static look for tampering), ``sandbox`` (the throw-away processes), ``reports`` (journal, CSV,
markdown and feedback files), ``nbgrader_export`` (the exercises as an nbgrader course), ``cli``
(the ``course`` command).
"""

from course_lib.exercise_system.build import (
    back_up_notebook,
    build_exercise_notebook,
    build_exercises,
    notebook_text,
    stub_source,
)
from course_lib.exercise_system.grading import (
    DEFAULT_GRADE_TIMEOUT,
    failure_message,
    grade_class,
    has_marker,
    judge_check_cell,
    run_notebook,
)
from course_lib.exercise_system.notebooks import (
    BEGIN_SOLUTION,
    CHECK_COMMENT,
    END_SOLUTION,
    EXERCISE_ID,
    NBFORMAT_MINOR,
    NOTEBOOK_METADATA_KEPT,
    NOTEBOOK_NAME,
    NotebookUnreadable,
    cell_course_metadata,
    check_cell_exercise,
    course_root,
    default_solutions_dir,
    exercise_of_cell,
    exercise_sort_key,
    exercise_titles,
    expected_check_outputs,
    first_line,
    lesson_notebooks,
    lesson_of,
    read_notebook,
    solution_cell_exercise,
    text_of_outputs,
)
from course_lib.exercise_system.reports import ExerciseResult, GradeTable, Journal, NotebookReport

__all__ = [
    "back_up_notebook",
    "BEGIN_SOLUTION",
    "CHECK_COMMENT",
    "DEFAULT_GRADE_TIMEOUT",
    "END_SOLUTION",
    "EXERCISE_ID",
    "ExerciseResult",
    "GradeTable",
    "NBFORMAT_MINOR",
    "NOTEBOOK_METADATA_KEPT",
    "NOTEBOOK_NAME",
    "NotebookReport",
    "NotebookUnreadable",
    "build_exercise_notebook",
    "build_exercises",
    "cell_course_metadata",
    "check_cell_exercise",
    "course_root",
    "default_solutions_dir",
    "exercise_of_cell",
    "exercise_sort_key",
    "exercise_titles",
    "expected_check_outputs",
    "failure_message",
    "first_line",
    "grade_class",
    "has_marker",
    "Journal",
    "judge_check_cell",
    "lesson_notebooks",
    "lesson_of",
    "notebook_text",
    "read_notebook",
    "run_notebook",
    "solution_cell_exercise",
    "stub_source",
    "text_of_outputs",
]
