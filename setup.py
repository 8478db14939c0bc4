"""Build hook: put the course's shipped checkpoints inside the wheel.

All the metadata lives in pyproject.toml; this file only adds one step to the build. The
lessons and ``python -m course_lib.train`` keep the checkpoints in the course folder's
``checkpoints/``, outside the package, so a wheel built from ``course_lib/`` alone would lack
them. The build copies them to ``course_lib/checkpoints/`` in the wheel, where
``course_lib.training.default_checkpoint_dir`` finds them after ``pip install .``. An editable
install (``pip install -e .``) reads ``checkpoints/`` in place and copies nothing.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CHECKPOINT_PATTERNS = ("*.json", "*.safetensors")


class BuildPyWithCheckpoints(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "checkpoints"
        target = Path(self.build_lib) / "course_lib" / "checkpoints"
        self.mkpath(str(target))
        for pattern in CHECKPOINT_PATTERNS:
            for path in sorted(source.glob(pattern)):
                self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": BuildPyWithCheckpoints})
