"""What every widget of the course shares: a figure built once, updated in place, shown as PNG,
with errors in an Output and PNG/CSV export.
"""

from __future__ import annotations

import base64
import csv
import io
import re
import time
import traceback
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from course_lib import viz

# ----------------------------------------------------------------------------------------
# The common machinery
# ----------------------------------------------------------------------------------------


def figure_to_png(figure: Figure, dpi: int | None = None) -> bytes:
    """Render a matplotlib figure to PNG bytes with a single draw (Agg, fast PNG compression).

    ``dpi`` defaults to the figure's own.
    """
    if dpi is not None and dpi != figure.dpi:
        figure.set_dpi(dpi)
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return canvas_to_png(canvas)


def canvas_to_png(canvas: FigureCanvasAgg) -> bytes:
    """The pixels the canvas holds now as PNG bytes, without drawing anything (fast PNG compression)."""
    picture = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # fast to encode; a few kB larger
    return buffer.getvalue()


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class FigureWidget:
    """Base class: a figure rendered as PNG into an ``ipywidgets.Image`` with controls above it.

    Subclasses fill ``self.controls``, build ``self.figure`` once in ``_build_figure`` and
    change its artists in ``_update``; they return the displayed data from ``current_matrix``.
    """

    dpi = 80

    def __init__(self, controls: dict[str, widgets.Widget], figsize=(10, 5)):
        self.controls = controls
        # Constrained layout is computed on the first draw and again only when the labels change
        # (see _layout_key): laying the figure out on every update would double the update time.
        self.figure = Figure(figsize=figsize, dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(self.figure)
        self._laid_out_for: object = object()
        self._background = None  # the pixels of everything _changing_artists() leaves out (see refresh)
        # Any full draw (savefig, figure_to_png) may change the canvas: the kept pixels are then redrawn.
        self.figure.canvas.mpl_connect("draw_event", self._forget_background)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.output = widgets.Output()
        self.last_error: BaseException | None = None
        self.update_seconds: deque[float] = deque(maxlen=200)
        self._held = False
        self._missed_update = False
        self.status = widgets.Label(value="")
        save_png = widgets.Button(description="Save PNG", icon="image", layout=widgets.Layout(width="120px"))
        save_csv = widgets.Button(description="Save CSV", icon="table", layout=widgets.Layout(width="120px"))
        save_png.on_click(self._guarded(lambda _: self._save("png")))
        save_csv.on_click(self._guarded(lambda _: self._save("csv")))
        self.buttons = {"save_png": save_png, "save_csv": save_csv}
        self._build_figure()
        self.refresh()
        for control in controls.values():
            control.observe(self._guarded(lambda _change: self.refresh()), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")),
                self.image,
                widgets.HBox([save_png, save_csv, self.status]),
                self.output,
            ]
        )

    # -- to be provided by each widget --
    def _build_figure(self) -> None:
        raise NotImplementedError

    def _update(self) -> None:
        raise NotImplementedError

    def current_matrix(self) -> np.ndarray:
        """The numbers currently displayed (see each widget's docstring)."""
        raise NotImplementedError

    def _layout_key(self) -> object:
        """Anything whose change needs a new layout (e.g. the tick labels); constant by default."""
        return None

    def _changing_artists(self) -> list | None:
        """The artists an update can change, in drawing order, or None (the default) to redraw the whole
        figure every time. With a list, ``refresh`` draws everything else once, keeps those pixels, and
        then draws only these artists over them (much quicker when most of the figure is text that
        never changes). ``tests/test_widgets.py`` checks that the result equals a full redraw."""
        return None

    def _csv_labels(self) -> tuple[list[str] | None, list[str] | None]:
        """Row and column labels written by ``export_csv`` (None for plain indices)."""
        return None, None

    # -- shared behaviour --
    def _guarded(self, callback: Callable) -> Callable:
        """Wrap a callback so that an exception is shown in the Output widget, never lost."""

        def run(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except Exception as error:  # shown to the learner, kept on .last_error
                self.last_error = error
                self.output.append_stderr("".join(traceback.format_exception(error)))
                return None

        return run

    def refresh(self) -> None:
        """Redraw from the current control values and put the new PNG into the Image widget.

        The time it took is appended to ``update_seconds`` (the latest 200 updates).
        """
        if self._held:
            self._missed_update = True
            return
        start = time.perf_counter()
        self._update()
        key = self._layout_key()
        new_layout = key != self._laid_out_for
        self.figure.set_layout_engine("constrained" if new_layout else "none")
        self._laid_out_for = key
        changing = self._changing_artists()
        if changing is None:
            self.image.value = figure_to_png(self.figure, self.dpi)
        else:
            if new_layout or self._background is None:
                self._background = self._draw_background(changing)
            self.image.value = self._draw_over_background(changing)
        self.update_seconds.append(time.perf_counter() - start)

    def _forget_background(self, _event=None) -> None:
        self._background = None

    def _draw_background(self, changing: list):
        """Draw the figure without the ``changing`` artists and return a copy of its pixels."""
        canvas = self.figure.canvas
        for artist in changing:
            artist.set_animated(True)  # a full draw skips animated artists
        try:
            canvas.draw()
            return canvas.copy_from_bbox(self.figure.bbox)
        finally:
            for artist in changing:
                artist.set_animated(False)  # so savefig and figure_to_png still draw everything

    def _draw_over_background(self, changing: list) -> bytes:
        """Put the kept background back, draw the ``changing`` artists over it, and return the PNG."""
        canvas = self.figure.canvas
        canvas.restore_region(self._background)
        for artist in changing:
            self.figure.draw_artist(artist)
        return canvas_to_png(canvas)

    @contextmanager
    def hold(self):
        """Change several controls at once and redraw only once, at the end::

        with explorer.hold():
            explorer.controls["d_model"].value = 16
            explorer.controls["base"].value = 100.0
        """
        self._held = True
        self._missed_update = False
        try:
            yield self
        finally:
            self._held = False
            if self._missed_update:
                self._guarded(self.refresh)()

    def export_png(self, path) -> Path:
        """Write the current figure as a PNG file; returns the path."""
        path = Path(path)
        self.figure.savefig(path, format="png", dpi=110, bbox_inches="tight")
        self._laid_out_for = object()  # savefig laid the figure out at its own dpi: lay it out again on screen
        return path

    def export_csv(self, path) -> Path:
        """Write ``current_matrix()`` as CSV (with row/column labels when there are some); returns the path."""
        path = Path(path)
        matrix = np.atleast_2d(self.current_matrix())
        row_labels, col_labels = self._csv_labels()
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if col_labels is not None:
                writer.writerow(([""] if row_labels is not None else []) + list(col_labels))
            for index, row in enumerate(matrix):
                values = [viz.format_cell(v, "{:.6g}") for v in row]
                writer.writerow(([row_labels[index]] if row_labels is not None else []) + values)
        return path

    def _save(self, kind: str) -> None:
        path = Path.cwd() / f"{_snake_case(type(self).__name__)}.{kind}"
        (self.export_png if kind == "png" else self.export_csv)(path)
        self.status.value = f"saved {path}"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(figure_to_png(self.figure, self.dpi)).decode("ascii")
        bundle["text/plain"] = f"<{type(self).__name__}: a widget; run the notebook to use its controls>"
        return bundle


def _slider_style():
    return {"description_width": "initial"}
