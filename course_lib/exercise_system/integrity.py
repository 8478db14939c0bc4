"""A static look at a learner's cells, before anything runs: do they tamper with the grading?

``suspicious(source)`` returns one plain reason per thing found, for instance
``changes course_lib.checks.check_causal_mask`` or ``reads the course's solutions``. The grader
gives no marks to an exercise whose cells (or the learner's preamble) have a reason, and shows
the reason in the report. It looks for

* rebinding anything in a ``course_lib`` module (the checkers, and the reference code the
  checkers compare with), in ``builtins`` or in ``sys.modules``: assignments and ``del`` through
  any alias (``import course_lib.checks as c; c.check_x = ...``), ``setattr``/``delattr``,
  ``mock.patch("course_lib...")``;
* reading the course's solutions or hints: a path naming ``solutions/`` or ``hints.json``,
  ``course_lib.exercise_system`` (which knows where they are);
* ``exec``/``eval`` of a literal string: the string is scanned the same way.

This only sees what is written plainly. Code built at run time (``exec(bytes.fromhex(...))``)
is caught, if at all, by the run-time guard in ``sandbox``; see INSTRUCTORS.md for the limits.
"""

from __future__ import annotations

import ast
import re

from course_lib.exercise_system.submissions import parse_cell

COURSE_PACKAGE = "course_lib"
SOLUTIONS_PATH = re.compile(r"(^|[\\/])solutions([\\/]|$)|hints\.json")
GRADER_HELPERS = {"default_solutions_dir", "course_root", "lesson_plans", "lesson_plan"}
PATCHERS = {"patch", "setattr", "delattr", "setitem", "delitem"}


def _dotted(node) -> str | None:
    """``a.b.c`` for an attribute chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _root(node):
    """The innermost object of ``x.a[b].c``: a Name, a Call, or something else."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node


def _imported_module(call) -> str | None:
    """``course_lib.checks`` for ``__import__("course_lib.checks")`` or ``importlib.import_module(...)``."""
    if not isinstance(call, ast.Call) or not call.args:
        return None
    name = _dotted(call.func)
    first = call.args[0]
    if name in ("__import__", "importlib.import_module", "import_module") and isinstance(first, ast.Constant):
        return str(first.value)
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self):
        self.reasons: list[str] = []
        # Local name -> what it stands for ("course_lib.checks", "builtins", "sys").
        self.aliases: dict[str, str] = {"__builtins__": "builtins"}

    def note(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    # What a name or expression stands for ------------------------------------------------

    def protected(self, node) -> str | None:
        """The protected thing an expression reaches (``course_lib.checks.check_x``), else None."""
        root = _root(node)
        if isinstance(root, ast.Call):
            module = _imported_module(root)
            base = module if module and module.split(".")[0] in (COURSE_PACKAGE, "builtins") else None
        elif isinstance(root, ast.Name):
            base = self.aliases.get(root.id)
        else:
            base = None
        if base is None or base.split(".")[0] == "sys":  # sys: only sys.modules is watched
            return None
        path = []
        while node is not root:
            if isinstance(node, ast.Attribute):
                path.append(node.attr)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                path.append(str(node.slice.value))
            node = node.value
        return ".".join([base, *reversed(path)])

    def is_sys_modules(self, node) -> bool:
        root = _root(node)
        return (
            isinstance(root, ast.Name) and self.aliases.get(root.id) == "sys" and "modules" in ast.unparse(node)
        ) or ast.unparse(node).startswith("sys.modules")

    # Imports bind aliases ------------------------------------------------------------------

    def visit_Import(self, node):
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in (COURSE_PACKAGE, "builtins", "sys"):
                self.aliases[alias.asname or top] = alias.name if alias.asname else top
            if alias.name.startswith(f"{COURSE_PACKAGE}.exercise_system"):
                self.note("imports course_lib.exercise_system (it knows where the solutions are)")

    def visit_ImportFrom(self, node):
        module = node.module or ""
        for alias in node.names:
            if module.split(".")[0] in (COURSE_PACKAGE, "builtins", "sys"):
                self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            if module.startswith(f"{COURSE_PACKAGE}.exercise_system") or (
                module == COURSE_PACKAGE and alias.name == "exercise_system"
            ):
                self.note("imports course_lib.exercise_system (it knows where the solutions are)")

    # Rebinding ------------------------------------------------------------------------------

    def check_target(self, target) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.check_target(element)
            return
        if isinstance(target, ast.Starred):
            self.check_target(target.value)
            return
        if not isinstance(target, ast.Attribute | ast.Subscript):
            return
        if self.is_sys_modules(target):
            self.note("replaces a module in sys.modules")
            return
        reached = self.protected(target)
        if reached:
            self.note(f"changes {reached}")

    def visit_Assign(self, node):
        for target in node.targets:
            self.check_target(target)
            if isinstance(target, ast.Name):  # c = course_lib.checks -> c is an alias
                reached = self.protected(node.value) if isinstance(node.value, ast.Attribute | ast.Name) else None
                module = _imported_module(node.value)
                if reached or (module and module.split(".")[0] in (COURSE_PACKAGE, "builtins", "sys")):
                    self.aliases[target.id] = reached or module
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self.check_target(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self.check_target(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self.check_target(target)
        self.generic_visit(node)

    # Calls -------------------------------------------------------------------------------

    def visit_Call(self, node):
        name = _dotted(node.func) or ""
        last = name.split(".")[-1]
        if last in PATCHERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and str(first.value).startswith(COURSE_PACKAGE):
                self.note(f"patches {first.value}")
            else:
                reached = self.protected(first)
                if reached:
                    self.note(f"changes {reached}" + (f".{node.args[1].value}" if _constant_arg(node, 1) else ""))
                elif self.is_sys_modules(first):
                    self.note("replaces a module in sys.modules")
        if isinstance(node.func, ast.Attribute) and self.is_sys_modules(node.func.value):
            if node.func.attr in ("update", "pop", "setdefault", "__setitem__", "__delitem__", "clear", "popitem"):
                self.note("replaces a module in sys.modules")
        module = _imported_module(node)
        if module and module.startswith(f"{COURSE_PACKAGE}.exercise_system"):
            self.note("imports course_lib.exercise_system (it knows where the solutions are)")
        if last in ("exec", "eval") and node.args and isinstance(node.args[0], ast.Constant):
            for reason in suspicious(str(node.args[0].value)):
                self.note(reason)
        self.generic_visit(node)

    # Reading the solutions -------------------------------------------------------------------

    def visit_Constant(self, node):
        if isinstance(node.value, str | bytes):
            text = node.value.decode("utf-8", "replace") if isinstance(node.value, bytes) else node.value
            if SOLUTIONS_PATH.search(text):
                self.note("reads the course's solutions or hints")

    def visit_Name(self, node):
        if node.id in GRADER_HELPERS and isinstance(node.ctx, ast.Load):
            self.note("reads the course's solutions or hints")

    def visit_Attribute(self, node):
        if node.attr in GRADER_HELPERS or node.attr == "exercise_system":
            self.note("reads the course's solutions or hints")
        self.generic_visit(node)


def _constant_arg(call: ast.Call, index: int) -> bool:
    return len(call.args) > index and isinstance(call.args[index], ast.Constant)


def suspicious(source: str) -> list[str]:
    """Why this cell's code tampers with the grading, one reason each; [] for ordinary code."""
    tree = parse_cell(source)
    if tree is None:
        return []
    scanner = _Scanner()
    scanner.visit(tree)
    return scanner.reasons


def uses_reference(source: str, name: str) -> bool:
    """Does the cell take the exercise's answer ``name`` from course_lib instead of writing it?

    ``from course_lib.masks import causal_mask`` in the answer to the exercise ``causal_mask``.
    """
    tree = parse_cell(source)
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == COURSE_PACKAGE:
            if any(alias.name == name for alias in node.names):
                return True
        if isinstance(node, ast.Attribute) and node.attr == name:
            dotted = _dotted(node) or ""
            if dotted.startswith(f"{COURSE_PACKAGE}."):
                return True
    return False
