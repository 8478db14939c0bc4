"""Publish the course for reading without a kernel: an offline HTML site and reveal.js slides.

    python -m course_lib.tooling.publish site   [--out site]     every lesson as HTML + an index page
    python -m course_lib.tooling.publish slides [--out slides]   every lesson as a reveal.js deck

Both work offline: MathJax, require.js, jQuery, reveal.js and Font Awesome are installed from the
npm registry once (needs ``npm``) into a shared cache, and ``<out>/assets`` holds hard links to that
one copy; every page points at those local files instead of a CDN. Widgets appear as the static
snapshot stored with each notebook (the ``image/png`` every course widget adds to its output), so
pages need no kernel and no widget JavaScript. Slides are 1280x720 and follow each cell's ``slideshow.slide_type``; cells without one
are laid out by ``tag_slides`` (``slide_layout``): a heading starts a slide, set-up cells are
skipped, long cells are split and what does not fit goes on to a sub-slide, so nothing is cut.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat

from course_lib.tooling import slide_layout

ROOT = Path(__file__).resolve().parents[2]  # the course folder (this file is course_lib/tooling/publish.py)
NOTEBOOKS = ROOT / "notebooks"
NPM_PACKAGES = ("reveal.js@4", "requirejs@2", "jquery@2", "mathjax@2", "font-awesome@4")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# nbconvert's reveal.js template always imports Mermaid from a CDN. The lessons contain no Mermaid
# diagrams, so the decks import this do-nothing module instead (inline: browsers refuse module
# files from file:// pages) and stay fully offline.
MERMAID_STAND_IN = "data:text/javascript,export default { initialize() {}, run() {} };"


def assets_cache() -> Path:
    """Where the one copy of the npm assets lives: ``$COURSE_ASSETS_CACHE``, else the user's cache folder."""
    if os.environ.get("COURSE_ASSETS_CACHE"):
        return Path(os.environ["COURSE_ASSETS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(base) / "transformer-course" / "web-assets"


def fetch_assets(cache: Path) -> Path:
    """Install the front-end libraries from the npm registry into ``cache/node_modules``, once.

    npm runs in a fresh folder that is then renamed into place, so two builds at once never see a
    half-installed copy.
    """
    modules = cache / "node_modules"
    if all((modules / name.split("@")[0]).exists() for name in NPM_PACKAGES):
        return modules
    npm = shutil.which("npm") or shutil.which("npm.cmd")
    if npm is None:
        raise RuntimeError("publishing needs npm (Node.js) to fetch MathJax and reveal.js; install Node.js first")
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="web-assets-", dir=cache.parent))
    (staging / "package.json").write_text(json.dumps({"name": "course-assets", "private": True}))
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", *NPM_PACKAGES], cwd=staging, check=True)
    if modules.exists():  # another build finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        shutil.rmtree(cache, ignore_errors=True)
        staging.rename(cache)
    return modules


def link_tree(source: Path, target: Path) -> None:
    """Mirror ``source`` into ``target`` with hard links (a copy where a link is impossible)."""
    for folder, _, files in os.walk(source):
        destination = target / Path(folder).relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in files:
            original, link = Path(folder) / name, destination / name
            if link.exists():
                if os.path.samefile(original, link):
                    continue
                link.unlink()
            try:
                os.link(original, link)
            except OSError:  # another file system, or links not allowed
                shutil.copy2(original, link)


def install_assets(assets: Path) -> Path:
    """``assets/node_modules``: the front-end libraries, hard links to one shared copy.

    The site and the slides each get a complete, self-contained ``assets`` folder (copy one
    anywhere and it works), while the ~85 MB of files are stored once, in ``assets_cache()``.
    """
    link_tree(fetch_assets(assets_cache()), assets / "node_modules")
    return assets / "node_modules"


# MathJax 2 adds a MathML copy of every formula for screen readers and hides it with the old CSS
# `clip`, which current Chromium ignores for native MathML, so each formula showed twice. This keeps
# the copy for screen readers (opacity, not display:none) and hides it on screen.
ASSISTIVE_MATHML_CSS = (
    "<style>.MJX_Assistive_MathML{position:absolute!important;top:0;left:0;clip:rect(1px,1px,1px,1px);"
    "padding:1px 0 0 0!important;border:0!important;height:1px!important;width:1px!important;"
    "overflow:hidden!important;display:block!important;user-select:none;"
    "clip-path:inset(50%)!important;opacity:0!important}</style>"
)


def with_hidden_assistive_mathml(page_html: str) -> str:
    return page_html.replace("</head>", ASSISTIVE_MATHML_CSS + "</head>", 1)


def static_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy whose widget outputs keep only their static snapshot (image/png and text)."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    notebook.metadata.pop("widgets", None)
    return notebook


def tag_slides(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give every untagged cell a slide type so that every slide fits 1280x720 (see ``slide_layout``):
    a heading starts a slide, set-up cells are skipped, long cells are split, and what does not fit
    goes on to a sub-slide."""
    return slide_layout.lay_out(notebook)


def lesson_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def lesson_title(notebook: nbformat.NotebookNode, path: Path) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem.replace("_", " ")


def asset_urls(prefix: str) -> dict[str, str]:
    """Exporter settings that point at the local copies, relative to a page (``prefix`` = path to assets/)."""
    modules = f"{prefix}node_modules"
    return {
        "mathjax_url": f"{modules}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
        "require_js_url": f"{modules}/requirejs/require.js",
        "jquery_url": f"{modules}/jquery/dist/jquery.min.js",
        "widget_renderer_url": "",
    }


def navigation_bar(previous: tuple[str, str] | None, following: tuple[str, str] | None) -> str:
    parts = ['<nav class="course-nav" style="padding:8px 16px;border-bottom:1px solid #ddd;font-family:sans-serif">']
    parts.append('<a href="index.html">Course outline</a>')
    if previous:
        parts.append(f' · <a href="{previous[0]}">← {html.escape(previous[1])}</a>')
    if following:
        parts.append(f' · <a href="{following[0]}">{html.escape(following[1])} →</a>')
    parts.append("</nav>")
    return "".join(parts)


def build_site(out: Path) -> list[Path]:
    """Render every lesson to ``out/NN_name.html`` plus ``out/index.html``; return the pages."""
    from nbconvert import HTMLExporter

    install_assets(out / "assets")
    lessons = [(path, nbformat.read(path, as_version=4)) for path in lesson_paths()]
    titles = [(f"{path.stem}.html", lesson_title(notebook, path)) for path, notebook in lessons]
    exporter = HTMLExporter(template_name="lab", **asset_urls("assets/"))
    pages = []
    for index, (path, notebook) in enumerate(lessons):
        body, _ = exporter.from_notebook_node(static_copy(notebook))
        previous = titles[index - 1] if index > 0 else None
        following = titles[index + 1] if index + 1 < len(titles) else None
        body_start = body.index(">", body.index("<body")) + 1  # just inside <body ...>
        body = body[:body_start] + navigation_bar(previous, following) + body[body_start:]
        page = out / f"{path.stem}.html"
        page.write_text(with_hidden_assistive_mathml(body), encoding="utf-8")
        pages.append(page)
    items = "\n".join(f'<li><a href="{href}">{html.escape(title)}</a></li>' for href, title in titles)
    index_page = out / "index.html"
    index_page.write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Transformers, built step by step</title></head>"
        "<body style='font-family:sans-serif;max-width:760px;margin:40px auto'>"
        "<h1>Transformers, built step by step</h1>"
        "<p>Read each lesson with its stored outputs, figures and widget snapshots. To run them and play "
        "with the widgets, open the notebooks in JupyterLab (<code>python tasks.py lab</code>).</p>"
        f"<ol start='0'>{items}</ol></body></html>",
        encoding="utf-8",
    )
    return [index_page, *pages]


def build_slides(out: Path) -> list[Path]:
    """Render every lesson to a reveal.js deck ``out/NN_name.slides.html``; return the decks."""
    from nbconvert import SlidesExporter

    install_assets(out / "assets")
    exporter = SlidesExporter(
        reveal_url_prefix="assets/node_modules/reveal.js",
        reveal_width=str(slide_layout.SLIDE_WIDTH),
        reveal_height=str(slide_layout.SLIDE_HEIGHT),
        reveal_theme="white",  # its fonts ship with reveal.js ("simple" loads Google Fonts)
        mermaid_js_url=MERMAID_STAND_IN,
        font_awesome_url="assets/node_modules/font-awesome/css/font-awesome.min.css",
        **asset_urls("assets/"),
    )
    decks = []
    for path in lesson_paths():
        notebook = tag_slides(static_copy(nbformat.read(path, as_version=4)))
        body, _ = exporter.from_notebook_node(notebook)
        deck = out / f"{path.stem}.slides.html"
        css = slide_layout.SLIDES_CSS + slide_layout.figure_css(notebook)
        body = body.replace("</head>", css + "</head>", 1)
        deck.write_text(with_hidden_assistive_mathml(body), encoding="utf-8")
        decks.append(deck)
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("site", "slides"))
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: site/ or slides/)")
    args = parser.parse_args(argv)
    out = (args.out or ROOT / args.what).resolve()
    out.mkdir(parents=True, exist_ok=True)
    built = build_site(out) if args.what == "site" else build_slides(out)
    print(f"wrote {len(built)} pages to {out}; open {built[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
