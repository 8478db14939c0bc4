"""One look for every figure: fonts (Chinese glyphs included), colour maps, and input checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib import font_manager

# ----------------------------------------------------------------------------------------
# Style and fonts
# ----------------------------------------------------------------------------------------

CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"
_LATIN_FAMILY = "DejaVu Sans"  # for bold text and markers: the CJK font has no bold face


def find_cjk_font() -> Path | None:
    """Path of the Noto Sans CJK SC font shipped inside the ``mplfonts`` package (or None)."""
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "fonts" / CJK_FONT_FILE
        if candidate.is_file():
            return candidate
    return None


def setup_style() -> str | None:
    """Apply the course look and register the CJK font; returns the CJK family name (or None).

    Called once on import. Call it again after ``sns.set_theme(...)`` or
    ``plt.rcdefaults()``, which reset the fonts.
    """
    sns.set_theme(style="white", context="notebook", palette="colorblind")  # lines and bars: colour-blind-safe too
    family = None
    font_path = find_cjk_font()
    if font_path is not None:
        font_manager.fontManager.addfont(str(font_path))
        family = font_manager.FontProperties(fname=str(font_path)).get_name()
    fallbacks = [name for name in ("DejaVu Sans", "Arial", "Liberation Sans") if name != family]
    # "sans-serif" picks the first installed family of the list above; naming DejaVu Sans
    # again makes matplotlib fall back to it glyph by glyph (e.g. for "ᵀ", absent from the CJK font).
    matplotlib.rcParams["font.family"] = ["sans-serif", "DejaVu Sans"]
    matplotlib.rcParams["font.sans-serif"] = ([family] if family else []) + fallbacks
    matplotlib.rcParams["axes.unicode_minus"] = False  # the CJK font has no U+2212 minus sign
    matplotlib.rcParams["figure.dpi"] = 100
    matplotlib.rcParams["savefig.dpi"] = 100
    matplotlib.rcParams["axes.titlesize"] = 12
    matplotlib.rcParams["axes.labelsize"] = 10
    matplotlib.rcParams["image.cmap"] = "viridis"
    return family


CJK_FONT_FAMILY = setup_style()

# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


def to_numpy(array, where: str = "to_numpy", name: str = "matrix") -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float numpy array."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {name} must be a tensor or array of numbers, got {type(array).__name__}") from error


def _require_ndim(where: str, name: str, array: np.ndarray, ndim, expected: str) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if array.ndim not in allowed:
        raise ValueError(f"{where}: {name} must be {expected}, got shape {tuple(array.shape)}")


def _require_labels(where: str, name: str, labels, size: int, axis_name: str, matrix_shape) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(
            f"{where}: {name} has {len(labels)} entries but the matrix has {size} {axis_name} "
            f"(matrix shape {tuple(matrix_shape)}); pass one label per {axis_name[:-1]}"
        )
    return labels


# ----------------------------------------------------------------------------------------
