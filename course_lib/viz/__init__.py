"""Pictures of the course: heatmaps, plots, the "you are here" map, and the widgets.

Importing this package

* registers the CJK font shipped by the ``mplfonts`` package (Noto Sans CJK SC) and puts
  it first in ``rcParams["font.sans-serif"]`` (DejaVu Sans stays as fallback), so Chinese
  tokens render as glyphs instead of empty boxes;
* sets the course's plotting style (seaborn's white theme, colour-blind-safe colormaps).

Modules:

* ``style``: fonts, colour maps and input checks shared by every figure;
* ``heatmaps``: matrices, attention weights, grids of heads;
* ``plots``: positional-encoding curves and sampling bars;
* ``transformer_map``: the map that opens every lesson (``show_map(lesson)``);
* ``widgets``: the interactive widgets, one per module, and the explainer.

Built for lesson 00 (overview) and used by every lesson.
"""

from course_lib.viz.heatmaps import (
    annotate_cells,
    format_cell,
    get_cmap,
    mark_infinite_cells,
    plot_attention,
    plot_head_grid,
    plot_matrix,
    set_tick_labels,
    update_image,
)
from course_lib.viz.plots import GREY, KEPT_COLOUR, plot_pe, plot_pe_curves, plot_sampling_bars
from course_lib.viz.style import CJK_FONT_FAMILY, CJK_FONT_FILE, find_cjk_font, setup_style, to_numpy
from course_lib.viz.transformer_map import (
    DECODER_PARTS,
    ENCODER_PARTS,
    LESSON_HIGHLIGHTS,
    LESSON_TITLES,
    MAP_PARTS,
    PART_GROUPS,
    draw_transformer_map,
    show_map,
)

__all__ = [
    "CJK_FONT_FAMILY",
    "CJK_FONT_FILE",
    "DECODER_PARTS",
    "ENCODER_PARTS",
    "GREY",
    "KEPT_COLOUR",
    "LESSON_HIGHLIGHTS",
    "LESSON_TITLES",
    "MAP_PARTS",
    "PART_GROUPS",
    "annotate_cells",
    "draw_transformer_map",
    "find_cjk_font",
    "format_cell",
    "get_cmap",
    "mark_infinite_cells",
    "plot_attention",
    "plot_head_grid",
    "plot_matrix",
    "plot_pe",
    "plot_pe_curves",
    "plot_sampling_bars",
    "set_tick_labels",
    "setup_style",
    "show_map",
    "to_numpy",
    "update_image",
]
