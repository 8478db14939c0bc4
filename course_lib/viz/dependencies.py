"""A picture of the grammar's long-range dependencies: each sentence a row, with an arc from each
word to the earlier word it depends on (lesson 11's corpus, ``course_lib.data.grammar``).

Built in lesson 11 (train a tiny GPT).
"""

from __future__ import annotations

from collections.abc import Sequence

from course_lib.data.grammar import ROLE_AGREEMENT, ROLE_CLOSING, ROLE_CONNECTIVE, Sentence

ROLE_COLOURS = {ROLE_AGREEMENT: "#0173b2", ROLE_CLOSING: "#de8f05", ROLE_CONNECTIVE: "#029e73"}
"""One colour-blind-safe colour per dependency (seaborn's "colorblind" palette)."""


def plot_dependencies(sentences: Sequence[Sentence], ax=None, title: str | None = None):
    """Draw sentences one per row, with an arc from each word to the earlier word it depends on.

    Arcs are coloured by role: agreeing verb -> its subject noun, closing bracket -> its opening
    bracket, "then"/"or" -> the sentence's first word. Returns the ``Figure``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as CurvePath

    if not sentences:
        raise ValueError("plot_dependencies: sentences must not be empty")
    row_height = 1.6
    if ax is None:
        width = max(8.0, 0.105 * max(len(s.text) for s in sentences))
        _, ax = plt.subplots(figsize=(min(width, 18.0), 0.95 * len(sentences) + 0.5))
    longest = max(len(s.words) for s in sentences)
    right = 0.0
    for row, sentence in enumerate(sentences):
        y = -row * row_height
        centres, x = [], 0.0
        for word in sentence.words:
            centres.append(x + 0.5 * len(word))
            x += len(word) + 1
        right = max(right, x)
        dependent_roles = {j: role for role, _, j in sentence.links}
        for index, word in enumerate(sentence.words):
            role = dependent_roles.get(index, "")
            ax.text(
                centres[index], y, word, ha="center", va="center", fontsize=10,
                color=ROLE_COLOURS.get(role, "#222222"), fontweight="bold" if role else "normal",
                fontfamily="DejaVu Sans",
            )  # fmt: skip
        for role, i, j in sentence.links:
            height = 0.35 + 0.9 * (j - i) / longest  # longer links arc higher
            start, end = (centres[i], y + 0.25), (centres[j], y + 0.25)
            control = ((start[0] + end[0]) / 2, y + 0.25 + 2 * height)  # a quadratic Bezier reaching ~height
            curve = CurvePath([start, control, end], [CurvePath.MOVETO, CurvePath.CURVE3, CurvePath.CURVE3])
            ax.add_patch(
                FancyArrowPatch(path=curve, arrowstyle="-|>", mutation_scale=9, color=ROLE_COLOURS[role], linewidth=1.3)
            )
    ax.set_xlim(-1, right)
    ax.set_ylim(-row_height * (len(sentences) - 1) - 0.5, 1.6)
    ax.set_axis_off()
    handles = [Line2D([], [], color=colour, linewidth=2, label=role) for role, colour in ROLE_COLOURS.items()]
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False, fontsize=9)
    if title is not None:
        ax.set_title(title, loc="left")
    return ax.figure
