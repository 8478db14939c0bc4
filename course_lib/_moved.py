"""Old module names, still importable after the package was arranged by lesson (version 0.2).

Version 0.1 kept every module in one flat folder. Code written against it, such as
``from course_lib.widgets import HeadGrid``, keeps working: each old name below is served by
the module(s) that now hold its contents. New code should use the new names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

MOVED_MODULES = {
    "course_lib.widgets": ("course_lib.viz.widgets",),
    "course_lib.explainer": ("course_lib.viz.widgets.explainer",),
    "course_lib.language_data": ("course_lib.data.grammar", "course_lib.tiny_gpt"),
    "course_lib.translation_data": ("course_lib.data.translation",),
    "course_lib.exercises": ("course_lib.exercise_system",),
    "course_lib.cli": ("course_lib.exercise_system.cli",),
    "course_lib.publish": ("course_lib.tooling.publish",),
    "course_lib.bench": ("course_lib.tooling.bench",),
}
"""Old name -> the new module(s) holding what it held."""


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of an old name with its new module (or a merge of several)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new_modules = [importlib.import_module(name) for name in MOVED_MODULES[spec.name]]
        if len(new_modules) == 1:
            return new_modules[0]
        merged = types.ModuleType(spec.name, f"Moved: now {' and '.join(MOVED_MODULES[spec.name])}.")
        for module in new_modules:
            merged.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        return merged

    def exec_module(self, module) -> None:
        """Nothing to run: the new modules were imported in ``create_module``."""


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
