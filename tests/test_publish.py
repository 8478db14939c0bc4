"""The offline HTML site and the slides: built from the stored notebooks, opened in Chromium with
the network switched off. No request may fail, and the pages must show their figures."""

import os

import nbformat
import pytest
from browser_support import chromium_page, save_screenshot
from publish_support import Published, published_course

from course_lib.tooling import publish

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def published(tmp_path_factory) -> Published:
    return published_course(tmp_path_factory)


@pytest.fixture
def built(published):
    """(site folder, site pages, slide decks), built once per session (``publish_support``)."""
    return published.site, published.pages, published.decks


@pytest.fixture
def chromium(published):
    return published.chromium


def open_offline(page, path):
    """Load a local page with the network off and let it settle; return the requests it made that failed.

    MathJax fetches its fonts after "load": waiting for the network to go quiet lets them finish (or
    fail) here, so that the next page's navigation does not abort them and count them against it.
    """
    failed = []

    def record(request):
        failed.append(f"{request.url} ({request.failure})")

    page.on("requestfailed", record)
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_load_state("networkidle")
    finally:
        page.remove_listener("requestfailed", record)
    return failed


def test_site_has_an_index_and_every_lesson(built):
    out, pages, _ = built
    lessons = publish.lesson_paths()
    assert (out / "index.html") in pages
    assert {page.name for page in pages} == {"index.html"} | {f"{p.stem}.html" for p in lessons}
    index = (out / "index.html").read_text()
    for lesson in lessons:
        assert f'href="{lesson.stem}.html"' in index


def test_site_and_slides_share_one_copy_of_the_assets(published):
    site = published.site / "assets" / "node_modules" / "mathjax" / "MathJax.js"
    slides = published.slides / "assets" / "node_modules" / "mathjax" / "MathJax.js"
    assert os.path.samefile(site, slides), "the site and the slides each hold a copy of the npm assets"
    assert os.path.samefile(site, publish.assets_cache() / "node_modules" / "mathjax" / "MathJax.js")


def test_static_copy_keeps_the_widget_snapshot_and_drops_the_live_view():
    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output(
        "display_data",
        data={publish.WIDGET_VIEW: {"model_id": "x"}, "image/png": "iVBORw0KGgo=", "text/plain": "widget"},
    )
    notebook.cells.append(nbformat.v4.new_code_cell("w", outputs=[output]))
    data = publish.static_copy(notebook).cells[0].outputs[0]["data"]
    assert publish.WIDGET_VIEW not in data and "image/png" in data
    assert publish.WIDGET_VIEW in notebook.cells[0].outputs[0]["data"], "the original must stay untouched"


def test_site_pages_load_offline_with_their_figures(built, chromium, tmp_path):
    out, pages, _ = built
    with chromium_page(chromium, tmp_path / "profile", offline=True) as page:
        for html_page in pages:
            failed = open_offline(page, html_page)
            assert not failed, f"{html_page.name}: requests failed offline: {failed}"
            if html_page.name == "index.html":
                continue
            page.wait_for_function("() => window.MathJax !== undefined", timeout=20_000)
            figures = page.evaluate(
                "() => Array.from(document.querySelectorAll('.jp-OutputArea-output img'))"
                ".filter(img => img.complete && img.naturalWidth > 0).length"
            )
            assert figures > 0, f"{html_page.name} shows no figure"
        save_screenshot(page, "site_last_lesson")


def test_slides_open_offline_and_advance(built, chromium, tmp_path):
    _, _, decks = built
    deck = next(d for d in decks if d.name.startswith("03_"))
    with chromium_page(chromium, tmp_path / "profile", offline=True) as page:
        failed = open_offline(page, deck)
        assert not failed, f"requests failed offline: {failed}"
        page.wait_for_selector(".reveal.ready", state="attached", timeout=20_000)  # reveal.js has started
        present_index = (
            "() => Array.from(document.querySelectorAll('.reveal .slides > section'))"
            ".findIndex(section => section.classList.contains('present'))"
        )
        total = page.evaluate("() => document.querySelectorAll('.reveal .slides > section').length")
        assert total > 3, f"only {total} slides"
        first = page.evaluate(present_index)
        assert first == 0
        page.locator(".reveal").click()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => ({present_index})() > {first}", timeout=5_000)
        page.wait_for_timeout(1000)  # let the transition finish before the screenshot
        save_screenshot(page, "slides_03_second")
