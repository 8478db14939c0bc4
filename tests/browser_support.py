"""Helpers for the end-to-end tests: a JupyterLab server on 127.0.0.1 and headless Chromium.

The browser is Debian's (or any) Chromium found on the PATH, driven by Playwright; Playwright's
own browser download is never used. Without a browser the tests skip with a one-line reason,
except under CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser() -> str:
    """The Chromium executable, or skip (fail under CI) with a one-line reason."""
    chromium = find_chromium()
    reason = None
    if chromium is None:
        reason = "no Chromium on PATH (python tasks.py setup installs Debian's chromium where it can)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = 'Playwright is not installed (pip install -e ".[dev]")'
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests need a browser under CI: {reason}")
        pytest.skip(reason)
    return chromium


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def jupyterlab_server(root_dir: Path, scratch: Path):
    """Start JupyterLab on 127.0.0.1 serving ``root_dir``; yield its base URL; stop it afterwards."""
    port = free_port()
    settings = scratch / "settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Render every cell (no virtual scrolling), so the n-th cell on screen is the n-th in the file.
    notebook_settings = settings / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (scratch / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {scratch / 'jupyterlab.log'}") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@contextlib.contextmanager
def chromium_page(chromium: str, profile_dir: Path, offline: bool = False):
    """A fresh headless Chromium profile and one page; with ``offline`` every non-file request is blocked."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000}, offline=offline,
        )  # fmt: skip
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


def save_screenshot(target, name: str) -> Path:
    """Save a screenshot of a page or element under artifacts/browser/ (kept as a test artifact)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    target.screenshot(path=str(path))
    return path


KERNEL_READY_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const context = widget && widget.sessionContext;
  const kernel = context && context.session && context.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

BUSY_CELLS_JS = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt'))
  .filter(prompt => prompt.textContent.includes('*')).length"""


# The notebook on screen: other tabs a restored workspace may hold stay hidden and are ignored.
CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"


def open_notebook(page, base_url: str, relative_path: str, timeout_ms: int = 90_000) -> None:
    """Open a notebook alone in a fresh JupyterLab workspace; wait until its kernel is connected and idle."""
    workspace = re.sub(r"\W+", "-", relative_path)
    page.goto(f"{base_url}/lab/workspaces/{workspace}/tree/{relative_path}?reset")
    page.wait_for_selector(f"{CURRENT_NOTEBOOK} .jp-Cell", state="attached", timeout=timeout_ms)
    page.wait_for_function(KERNEL_READY_JS, timeout=timeout_ms)


def wait_until_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until no cell shows [*] and the kernel is idle (checked twice, a moment apart)."""
    deadline = time.monotonic() + timeout_ms / 1000
    quiet_checks = 0
    while quiet_checks < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the notebook did not finish running")
        page.wait_for_timeout(400)
        busy = page.evaluate(BUSY_CELLS_JS)
        ready = page.evaluate(KERNEL_READY_JS)
        quiet_checks = quiet_checks + 1 if (busy == 0 and ready) else 0


def menu(page, top: str, item: str) -> None:
    page.click(f".lm-MenuBar-itemLabel:text-is('{top}')")
    page.click(f".lm-Menu-itemLabel:text-is('{item}')")


def cell(page, index: int):
    return page.locator(f"{CURRENT_NOTEBOOK} .jp-Cell").nth(index)


def replace_cell_source(page, index: int, source: str) -> None:
    """Click into a cell's editor, select everything and type the new source (as a paste would)."""
    editor = cell(page, index).locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(source)
    page.keyboard.press("Escape")  # back to command mode


def run_cell(page, index: int) -> None:
    """Select a cell by its prompt and run it with Ctrl+Enter, then wait for the kernel."""
    cell(page, index).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+Enter")
    wait_until_idle(page)
