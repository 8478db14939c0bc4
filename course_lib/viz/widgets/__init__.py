"""Interactive widgets of the course (ipywidgets + matplotlib only, no JavaScript of our own).

How to use one in a notebook: build it and put the object last in a cell::

    # NBVAL_IGNORE_OUTPUT
    explorer = PositionalEncodingExplorer()
    explorer

How they are built (the same for every widget):

* the figure is built once (a ``matplotlib.figure.Figure`` that pyplot does not know
  about, so no duplicate static copy appears under the cell);
* a control change updates the artists in place (``im.set_data``, ``set_clim``, bar
  heights, texts) and renders the figure to PNG bytes into an ``ipywidgets.Image``;
* an exception raised while updating is written into an ``ipywidgets.Output`` under the
  widget (and kept on ``.last_error``) instead of disappearing;
* ``_repr_mimebundle_`` returns the live widget view plus an ``image/png`` of the current
  figure, so a stored notebook read without a kernel still shows a figure.

Every widget has ``.widget`` (the ipywidgets container), ``.figure``, ``.controls`` (name ->
control), ``.current_matrix()`` (numpy array of the data shown), ``.export_png(path)`` and
``.export_csv(path)``, plus "Save PNG" / "Save CSV" buttons that write into the working folder.

One widget per module; all of them are importable from ``course_lib.viz.widgets``.
"""

from course_lib.viz.widgets.ablations import ABLATIONS, AblationModel, AblationToggles
from course_lib.viz.widgets.attention_step_through import (
    DEFAULT_SENTENCES,
    STAGES,
    AttentionStepThrough,
    attention_stage,
    qkv_from_attention,
    sentence_tokens,
)
from course_lib.viz.widgets.base import FigureWidget, figure_to_png
from course_lib.viz.widgets.explainer import (
    DEFAULT_PROMPT,
    EXPLAINER_PANELS,
    EXPLAINER_STAGES,
    GPTExplainer,
    LanguageModelExplainer,
    readable_tokens,
)
from course_lib.viz.widgets.head_grid import HeadGrid
from course_lib.viz.widgets.mask_explorer import MASK_KINDS, MaskExplorer
from course_lib.viz.widgets.positional_encoding import PositionalEncodingExplorer
from course_lib.viz.widgets.rope_explorer import RopeExplorer
from course_lib.viz.widgets.sampling_explorer import SamplingExplorer

__all__ = [
    "ABLATIONS",
    "AblationModel",
    "AblationToggles",
    "AttentionStepThrough",
    "DEFAULT_PROMPT",
    "DEFAULT_SENTENCES",
    "EXPLAINER_PANELS",
    "EXPLAINER_STAGES",
    "FigureWidget",
    "GPTExplainer",
    "HeadGrid",
    "LanguageModelExplainer",
    "MASK_KINDS",
    "MaskExplorer",
    "PositionalEncodingExplorer",
    "RopeExplorer",
    "STAGES",
    "SamplingExplorer",
    "attention_stage",
    "figure_to_png",
    "qkv_from_attention",
    "readable_tokens",
    "sentence_tokens",
]
