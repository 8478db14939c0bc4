"""The published course (HTML site and slides), built once per test session for the browser tests.

``published_course`` builds into two folders, as ``python tasks.py site`` and ``slides`` do, so the tests
also see that both share one copy of the npm assets. It skips without Chromium (or under CI
fails, see ``browser_support.require_browser``) and without npm.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_support import require_browser

from course_lib.tooling import publish

_BUILT: dict[str, Published] = {}


@dataclass
class Published:
    chromium: str
    site: Path
    slides: Path
    pages: list[Path]
    decks: list[Path]


def published_course(tmp_path_factory) -> Published:
    """Build once per session (call it from a session-scoped fixture; every module gets the same build)."""
    chromium = require_browser()
    if shutil.which("npm") is None and shutil.which("npm.cmd") is None:
        pytest.skip("publishing needs npm (Node.js)")
    if "course" not in _BUILT:
        out = tmp_path_factory.mktemp("published")
        pages = publish.build_site(out / "site")
        decks = publish.build_slides(out / "slides")
        _BUILT["course"] = Published(chromium, out / "site", out / "slides", pages, decks)
    return _BUILT["course"]
