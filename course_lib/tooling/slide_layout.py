"""Lay a lesson out as slides that fit a 1280x720 projector.

A lesson notebook is a long page; a slide is 1280x720. ``lay_out`` gives every cell a slide
type so that no slide holds more than fits:

1. Long markdown cells are split at paragraph boundaries, and long tables by rows (the header
   repeated), so that each piece fits on a slide (``split_cell``).
2. Each cell's rendered height is estimated (``cell_height``): wrapped lines of text and code,
   figure sizes read from the PNG header, all as the CSS below sizes them.
3. A heading starts a new slide; the cells after it fill it, and when the next cell would not
   fit, it starts a new sub-slide (a vertical slide under the heading's).

``SLIDES_CSS`` makes the estimates hold and nothing get cut: figures are scaled to at most
``FIGURE_MAX_HEIGHT``, long code lines wrap, and a code cell or text output longer than its box
scrolls inside it (the slide itself never scrolls). The browser test
``tests/test_slides_fit.py`` checks every slide of every deck.
"""

from __future__ import annotations

import base64
import copy
import math
import re
import struct

import nbformat

SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720
SLIDE_BUDGET = 600  # estimated content height per slide (px): the rest is margins and slack for the estimates
FIGURE_MAX_HEIGHT = 440  # px; a figure (or a widget's snapshot) is scaled down to this height at most
CODE_MAX_HEIGHT = 300  # px; a longer code cell scrolls inside its box
TEXT_OUTPUT_MAX_HEIGHT = 220  # px; a longer printed output scrolls inside its box
CONTENT_WIDTH = SLIDE_WIDTH - 150  # px left for a cell's content next to the prompt column

# Font metrics of nbconvert's reveal template (20 px text, 19 px code) and the CSS below.
TEXT_LINE, TEXT_CHAR = 30, 9.8  # line height and average character width of markdown text (px)
CODE_LINE, CODE_CHAR = 24, 11.5  # line height and character width of code (px)
HEADING_HEIGHT = {1: 64, 2: 54, 3: 46, 4: 40, 5: 36, 6: 36}
PARAGRAPH_GAP = 16
CELL_GAP = 14
TABLE_LINE = 28  # px per line of text in a table cell
TABLE_ROWS_PER_PIECE = 9  # a longer table is split into pieces of this many rows, header repeated
MATH_BLOCK = 64
IMAGE_MARGIN = 34  # the reveal theme's margin above and below an image, and the output's padding
MIN_FIGURE_HEIGHT = 160  # a figure is never scaled below this to make its cell fit
READABLE_FIGURE_HEIGHT = 280  # below this, a figure goes on a slide of its own rather than shrink
FIGURE_CAP_KEY = "slide_figure_max_height"  # cell metadata: a tighter figure cap for that cell

SLIDES_CSS = f"""<style>
/* Slides that fit a {SLIDE_WIDTH}x{SLIDE_HEIGHT} projector (course_lib.tooling.slide_layout) */
.reveal .jp-RenderedMarkdown h1 {{ font-size: 40px; margin: 0 0 12px 0; }}
.reveal .jp-RenderedMarkdown h2 {{ font-size: 32px; margin: 0 0 10px 0; }}
.reveal .jp-RenderedMarkdown h3, .reveal .jp-RenderedMarkdown h4,
.reveal .jp-RenderedMarkdown h5, .reveal .jp-RenderedMarkdown h6 {{ font-size: 26px; margin: 0 0 8px 0; }}
.reveal .jp-RenderedMarkdown p, .reveal .jp-RenderedMarkdown ul, .reveal .jp-RenderedMarkdown ol {{ margin: 0 0 10px 0; }}
.reveal .jp-InputArea-editor .highlight {{ max-height: {CODE_MAX_HEIGHT}px; overflow-y: auto; }}
.reveal .jp-InputArea-editor pre, .reveal .jp-OutputArea-output pre {{
  white-space: pre-wrap; overflow-wrap: anywhere;
}}
.reveal .jp-OutputArea-output pre {{ max-height: {TEXT_OUTPUT_MAX_HEIGHT}px; overflow-y: auto; }}
.reveal .jp-OutputArea-output img, .reveal .jp-RenderedMarkdown img {{
  width: auto; height: auto; max-width: 100%; max-height: {FIGURE_MAX_HEIGHT}px; object-fit: contain;
}}
.reveal .jp-OutputArea-output.jp-RenderedHTML {{ max-height: {TEXT_OUTPUT_MAX_HEIGHT}px; overflow: auto; }}
.reveal .jp-RenderedMarkdown table {{ margin: 0 0 10px 0; }}
</style>"""

HEADING = re.compile(r"^(#{1,6})\s")
TABLE_ROW_LINE = re.compile(r"^\s*\|")
FENCE = re.compile(r"^\s*(```|~~~)")
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|<img\b", re.IGNORECASE)
SETUP_LINE = re.compile(
    r"^(import |from \S+ import |course_lib\.require\(|torch\.manual_seed\(|torch\.set_printoptions\(|"
    r"torch\.set_num_threads\(|warnings\.filterwarnings\(|%matplotlib|%load_ext|%autoreload)"
)


# ----------------------------------------------------------------------------------------------
# Estimating heights
# ----------------------------------------------------------------------------------------------


def wrapped_lines(text: str, char_width: float, width: float = CONTENT_WIDTH) -> int:
    """How many lines ``text`` takes when wrapped to ``width`` px (each line at least one)."""
    per_line = max(1, int(width / char_width))
    return sum(max(1, math.ceil(len(line.expandtabs(4)) / per_line)) for line in text.split("\n"))


def png_size(data: str) -> tuple[int, int] | None:
    """(width, height) of a base64 PNG, read from its header; None if it is not one."""
    try:
        head = base64.b64decode(data.replace("\n", "")[:48])
    except (ValueError, TypeError):
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 24:
        return None
    return struct.unpack(">II", head[16:24])


def figure_height(width: float, height: float, cap: float = FIGURE_MAX_HEIGHT) -> float:
    """The displayed height of a figure: its own size, scaled to fit the width and the height cap,
    plus the margin the reveal theme gives images."""
    scale = min(1.0, CONTENT_WIDTH / max(width, 1), cap / max(height, 1))
    return height * scale + IMAGE_MARGIN


def table_height(lines: list[str]) -> float:
    """A markdown table's height: each row as tall as its longest cell, wrapped to its column's width."""
    rows = [line.strip().strip("|").split("|") for line in lines if not re.match(r"^\s*\|[\s:|-]+\|?\s*$", line)]
    columns = max(len(row) for row in rows)
    column_width = CONTENT_WIDTH / columns
    return sum(
        max(wrapped_lines(cell.strip(), TEXT_CHAR, column_width) for cell in row) * TABLE_LINE + 12 for row in rows
    )


def markdown_height(source: str) -> float:
    """Estimated height of a rendered markdown cell."""
    height = 0.0
    in_fence = False
    for block in re.split(r"\n\s*\n", source.strip()):
        lines = block.split("\n")
        if FENCE.match(lines[0]) or in_fence:
            in_fence = in_fence != (sum(bool(FENCE.match(line)) for line in lines) % 2 == 1)
            height += len(lines) * CODE_LINE + PARAGRAPH_GAP
            continue
        heading = HEADING.match(lines[0])
        if heading:
            height += HEADING_HEIGHT[len(heading.group(1))]
            lines = lines[1:]
        if not lines:
            continue
        if all(TABLE_ROW_LINE.match(line) for line in lines):
            height += table_height(lines) + PARAGRAPH_GAP
        elif block.strip().startswith("$$"):
            height += MATH_BLOCK + PARAGRAPH_GAP
        else:
            text = "\n".join(lines)
            height += wrapped_lines(text, TEXT_CHAR) * TEXT_LINE + PARAGRAPH_GAP
            height += sum(FIGURE_MAX_HEIGHT for _ in MARKDOWN_IMAGE.finditer(text))
    return height


def output_height(output, figure_cap: float = FIGURE_MAX_HEIGHT) -> float:
    """Estimated height of one output, as the CSS caps it."""
    kind = output.get("output_type")
    if kind == "stream":
        return min(wrapped_lines(output.get("text", "").rstrip("\n"), CODE_CHAR) * CODE_LINE, TEXT_OUTPUT_MAX_HEIGHT)
    if kind == "error":
        return TEXT_OUTPUT_MAX_HEIGHT
    data = output.get("data", {})
    if "image/png" in data:
        size = png_size(data["image/png"])
        meta = output.get("metadata", {}).get("image/png", {})
        width, height = meta.get("width"), meta.get("height")
        if not (width and height) and size:
            width, height = size
        return figure_height(width or CONTENT_WIDTH, height or figure_cap, figure_cap)
    if "text/html" in data:
        return TEXT_OUTPUT_MAX_HEIGHT
    if "text/markdown" in data:
        return markdown_height(data["text/markdown"])
    if "text/latex" in data:
        return MATH_BLOCK
    if "text/plain" in data:
        return min(wrapped_lines(data["text/plain"].rstrip("\n"), CODE_CHAR) * CODE_LINE, TEXT_OUTPUT_MAX_HEIGHT)
    return 0.0


def cell_height(cell) -> float:
    """Estimated height of a cell on a slide (px), outputs included."""
    if cell.cell_type == "markdown":
        return markdown_height(cell.source) + CELL_GAP
    if cell.cell_type != "code":
        return 0.0
    code = min(wrapped_lines(cell.source.rstrip("\n"), CODE_CHAR) * CODE_LINE + 16, CODE_MAX_HEIGHT + 16)
    if source_removed(cell):
        code = 0
    cap = cell.metadata.get(FIGURE_CAP_KEY, FIGURE_MAX_HEIGHT)
    outputs = sum(output_height(output, cap) + 8 for output in cell.get("outputs", []))
    return code + outputs + CELL_GAP


def has_figure(output) -> bool:
    return "image/png" in output.get("data", {})


def fit_figures(cell) -> None:
    """Give a code cell too tall for a slide a tighter figure cap (``FIGURE_CAP_KEY``), so that its
    code, text and figures fit together; ``figure_css`` turns it into a CSS rule."""
    if cell.cell_type != "code" or cell_height(cell) <= SLIDE_BUDGET:
        return
    figures = sum(has_figure(output) for output in cell.get("outputs", []))
    if not figures:
        return
    cell.metadata[FIGURE_CAP_KEY] = 0
    rest = cell_height(cell) - figures * (IMAGE_MARGIN + 8)  # everything but the figures themselves
    cell.metadata[FIGURE_CAP_KEY] = max(MIN_FIGURE_HEIGHT, int((SLIDE_BUDGET - rest) / figures - IMAGE_MARGIN - 8))


def figure_css(notebook) -> str:
    """CSS rules for the cells ``fit_figures`` gave a tighter figure cap."""
    rules = [
        f'.reveal [id="cell-id={cell.get("id")}"] .jp-OutputArea-output img '
        f"{{ max-height: {cell.metadata[FIGURE_CAP_KEY]}px; }}"
        for cell in notebook.cells
        if FIGURE_CAP_KEY in cell.metadata
    ]
    return "<style>\n" + "\n".join(rules) + "\n</style>" if rules else ""


# ----------------------------------------------------------------------------------------------
# Splitting long markdown cells
# ----------------------------------------------------------------------------------------------


def markdown_blocks(source: str) -> list[str]:
    """Paragraph-level blocks of markdown: fenced code, $$ math and tables are never cut inside; a
    heading always starts a block."""
    blocks, current = [], []
    in_fence = in_math = False
    for line in source.split("\n"):
        if HEADING.match(line) and not in_fence and not in_math and current:
            blocks.append("\n".join(current))
            current = []
        if FENCE.match(line):
            in_fence = not in_fence
        if line.strip().startswith("$$") and not in_fence:
            in_math = not in_math if line.strip() == "$$" or line.strip().count("$$") == 1 else in_math
        if not line.strip() and not in_fence and not in_math:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def split_table(block: str) -> list[str]:
    """A long markdown table as several, each with the header and at most TABLE_ROWS_PER_PIECE rows."""
    lines = block.split("\n")
    if len(lines) < 3 or not all(TABLE_ROW_LINE.match(line) for line in lines):
        return [block]
    header, rows = lines[:2], lines[2:]
    pieces = [rows[i : i + TABLE_ROWS_PER_PIECE] for i in range(0, len(rows), TABLE_ROWS_PER_PIECE)]
    return ["\n".join(header + piece) for piece in pieces]


def split_markdown(source: str) -> list[str]:
    """Pieces of a markdown cell: a heading starts a piece, and each piece is estimated to fit on a
    slide (a piece never cuts a block)."""
    blocks = [piece for block in markdown_blocks(source) for piece in split_table(block)]
    pieces, current = [], []
    for block in blocks:
        too_tall = markdown_height("\n\n".join([*current, block])) + CELL_GAP > SLIDE_BUDGET
        if current and (too_tall or HEADING.match(block)):
            pieces.append("\n\n".join(current))
            current = []
        current.append(block)
    if current:
        pieces.append("\n\n".join(current))
    return pieces


def source_removed(cell) -> bool:
    """A continuation cell (``split_code_cell``): nbconvert shows its outputs, not its code."""
    return bool(cell.metadata.get("transient", {}).get("remove_source"))


def merge_streams(cell) -> None:
    """Join consecutive outputs of the same stream into one (as Jupyter does when it saves)."""
    merged = []
    for output in cell.get("outputs", []):
        previous = merged[-1] if merged else None
        if previous and output.get("output_type") == "stream" == previous.get("output_type"):
            if output.get("name") == previous.get("name"):
                previous["text"] = previous.get("text", "") + output.get("text", "")
                continue
        merged.append(copy.deepcopy(output))
    cell["outputs"] = merged


def split_code_cell(cell) -> list:
    """The code cell, fitted to a slide: its figures scaled down if need be (``fit_figures``), or, if
    that is not enough or would make them too small to read, its outputs carried on to
    continuation cells that show no code."""
    merge_streams(cell)
    fit_figures(cell)
    readable = cell.metadata.get(FIGURE_CAP_KEY, FIGURE_MAX_HEIGHT) >= READABLE_FIGURE_HEIGHT
    if cell_height(cell) <= SLIDE_BUDGET and readable:
        return [cell]
    cell.metadata.pop(FIGURE_CAP_KEY, None)
    outputs, cell["outputs"] = cell["outputs"], []
    pieces = [cell]
    for output in outputs:
        last = pieces[-1]
        last["outputs"].append(output)
        if len(last["outputs"]) > 1 and cell_height(last) > SLIDE_BUDGET:
            last["outputs"].pop()
            piece = nbformat.v4.new_code_cell(cell.source, metadata=copy.deepcopy(cell.metadata))
            piece.metadata.setdefault("transient", {})["remove_source"] = True
            piece.metadata.get("slideshow", {}).pop("slide_type", None)
            piece["id"] = f"{cell.get('id', 'cell')}-out{len(pieces)}"
            piece["outputs"] = [output]
            pieces.append(piece)
    for piece in pieces:
        fit_figures(piece)
    return pieces


def split_cell(cell) -> list:
    """The cell, or its pieces when it is too tall for one slide (or a markdown cell with several headings)."""
    if cell.cell_type == "code":
        return split_code_cell(cell)
    if cell.cell_type != "markdown":
        return [cell]
    texts = split_markdown(cell.source)
    if len(texts) == 1:
        return [cell]
    pieces = []
    for number, text in enumerate(texts):
        piece = nbformat.v4.new_markdown_cell(text, metadata=copy.deepcopy(cell.metadata))
        piece["id"] = f"{cell.get('id', 'cell')}-{number}"
        if number:
            piece.metadata.get("slideshow", {}).pop("slide_type", None)  # only the first keeps a given type
        pieces.append(piece)
    return pieces


# ----------------------------------------------------------------------------------------------
# Giving every cell a slide type
# ----------------------------------------------------------------------------------------------


def is_setup_cell(cell) -> bool:
    """Imports, version checks, seeds: not for the projector."""
    if cell.cell_type != "code":
        return False
    if cell.source.startswith("# Setup"):
        return True
    lines = [line for line in cell.source.split("\n") if line.strip() and not line.lstrip().startswith("#")]
    return bool(lines) and all(SETUP_LINE.match(line) or line.startswith((" ", ")")) for line in lines)


def starts_slide(cell) -> bool:
    return cell.cell_type == "markdown" and bool(HEADING.match(cell.source.lstrip()))


def lay_out(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Split long cells and give every cell without one a slide type, so that every slide fits.

    A cell that already has ``slideshow.slide_type`` keeps it (an author's choice wins).
    """
    for index, cell in enumerate(notebook.cells):
        cell.setdefault("id", f"slide-cell-{index}")  # figure_css finds cells by id
    cells = [piece for cell in notebook.cells for piece in split_cell(cell)]
    used = 0.0
    for index, cell in enumerate(cells):
        slideshow = cell.metadata.setdefault("slideshow", {})
        height = cell_height(cell)
        given = slideshow.get("slide_type")
        if given is None:
            if is_setup_cell(cell):
                given = "skip"
            elif index == 0 or starts_slide(cell):
                given = "slide"
            elif used + height > SLIDE_BUDGET and used > 0:
                given = "subslide"
            else:
                given = "-"
            slideshow["slide_type"] = given
        if given in ("slide", "subslide"):
            used = height
        elif given in ("-", "fragment"):
            used += height
    notebook.cells = cells
    return notebook
