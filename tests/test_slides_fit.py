"""Every slide of every deck fits a 1280x720 projector: nothing is cut off at the bottom or the side.

Each deck is opened offline in Chromium at 1280x720. Every slide is shown in turn (MathJax done)
and its content's height and width are compared with the slide's: reveal.js does not scroll, so
content taller than the slide is simply cut. A code cell or printed output longer than its box
scrolls inside the box (``slide_layout.SLIDES_CSS``), which keeps it within the slide.
"""

from __future__ import annotations

import nbformat
import pytest
from browser_support import chromium_page
from publish_support import Published, published_course

from course_lib.tooling import slide_layout

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def published(tmp_path_factory) -> Published:
    return published_course(tmp_path_factory)


WIDTH, HEIGHT = slide_layout.SLIDE_WIDTH, slide_layout.SLIDE_HEIGHT

MEASURE_EVERY_SLIDE = """async () => {
  const Reveal = await new Promise(done => require(['assets/node_modules/reveal.js/dist/reveal.js'], done));
  const typeset = () => new Promise(done => (window.MathJax && MathJax.Hub) ? MathJax.Hub.Queue(done) : done());
  const frame = () => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  Reveal.configure({transition: 'none', backgroundTransition: 'none'});
  await typeset();
  const config = Reveal.getConfig();
  const slides = [];
  for (const slide of Reveal.getSlides()) {
    const at = Reveal.getIndices(slide);
    Reveal.slide(at.h, at.v);
    await frame();
    await typeset();
    slides.push({at: `${at.h}/${at.v || 0}`, height: slide.scrollHeight, width: slide.scrollWidth,
                 text: (slide.innerText || '').trim().split('\\n')[0].slice(0, 60)});
  }
  return {width: config.width, height: config.height, slides};
}"""


def test_every_slide_fits_1280_by_720(published, tmp_path):
    too_big = []
    counted = 0
    with chromium_page(published.chromium, tmp_path / "profile", offline=True) as page:
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        for deck in published.decks:
            page.goto(deck.as_uri())
            page.wait_for_selector(".reveal.ready", state="attached", timeout=30_000)
            measured = page.evaluate(MEASURE_EVERY_SLIDE)
            assert (measured["width"], measured["height"]) == (WIDTH, HEIGHT), f"{deck.name}: wrong slide size"
            counted += len(measured["slides"])
            too_big += [
                f"{deck.name} #/{slide['at']}: {slide['width']}x{slide['height']} ({slide['text']!r})"
                for slide in measured["slides"]
                if slide["height"] > HEIGHT or slide["width"] > WIDTH
            ]
    assert counted > 10 * len(published.decks)
    assert not too_big, f"{len(too_big)} of {counted} slides are larger than {WIDTH}x{HEIGHT}:\n" + "\n".join(too_big)


def test_layout_splits_long_cells_and_starts_slides_at_headings():
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 120 for n in range(6))
    table = "| a | b |\n|---|---|\n" + "\n".join(f"| {n} | {n * n} |" for n in range(30))
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title\n\nIntro.\n\n## Part one\n\n" + text),
            nbformat.v4.new_code_cell("import torch\n\nimport course_lib"),
            nbformat.v4.new_markdown_cell(table),
            nbformat.v4.new_code_cell("\n".join(f"x{n} = {n}" for n in range(80))),
        ]
    )
    laid_out = slide_layout.lay_out(nb)
    types = [cell.metadata["slideshow"]["slide_type"] for cell in laid_out.cells]
    sources = [cell.source for cell in laid_out.cells]
    assert sources[0] == "# Title\n\nIntro." and types[0] == "slide"
    assert sources[1].startswith("## Part one") and types[1] == "slide"  # a heading inside a cell starts a slide
    assert "subslide" in types  # the long text goes on
    assert "skip" in types  # the set-up cell is not shown
    tables = "\n\n".join(source for source in sources if source.startswith("| a | b |")).split("\n\n")
    assert len(tables) == 4  # 30 rows: pieces of at most TABLE_ROWS_PER_PIECE, each with the header
    assert all(
        t.startswith("| a | b |\n|---|---|") and t.count("\n") <= slide_layout.TABLE_ROWS_PER_PIECE + 1 for t in tables
    )
    for cell in laid_out.cells:
        assert slide_layout.cell_height(cell) <= slide_layout.SLIDE_BUDGET or cell.cell_type == "code"


def test_a_code_cell_with_too_many_figures_goes_on_over_several_slides():
    png = nbformat.v4.new_output("display_data", data={"image/png": _png_header(1800, 700), "text/plain": "<Figure>"})
    cell = nbformat.v4.new_code_cell("\n".join(f"line_{n} = {n}" for n in range(12)), outputs=[png, png, png])
    cell["id"] = "figures"
    laid_out = slide_layout.lay_out(nbformat.v4.new_notebook(cells=[cell]))
    assert len(laid_out.cells) > 1
    assert all(c.metadata.get("transient", {}).get("remove_source") for c in laid_out.cells[1:])
    assert sum(len(c.outputs) for c in laid_out.cells) == 3
    assert all(slide_layout.cell_height(c) <= slide_layout.SLIDE_BUDGET for c in laid_out.cells)


def _png_header(width: int, height: int) -> str:
    import base64
    import struct

    head = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x06\x00\x00\x00"
    )
    return base64.b64encode(head + b"\x00" * 16).decode()
