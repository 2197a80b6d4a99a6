"""Figure style: paper-size defaults and a fixed colour per experiment.

The seven experiments always get the same colour in every figure; any other name gets one of
the extra colours, chosen from a hash of the name (so a name keeps its colour from one call to
the next) with linear probing to avoid clashes within one figure set. Labels that share an
experiment (e.g. two seeds, or an n_max sweep) share its colour and differ in line style.
"""

from __future__ import annotations

import os
import sys
import zlib
from contextlib import contextmanager

import matplotlib

# Headless Agg unless the caller already chose a backend (pyplot imported, e.g. a notebook, or
# MPLBACKEND set): the commands never open windows.
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.names import EXPERIMENTS  # noqa: E402

PALETTE = {
    "baseline": "#4d4d4d",
    "depth_naive": "#8c564b",
    "breadth_naive": "#e377c2",
    "dars_et": "#1f77b4",
    "dars_hw": "#ff7f0e",
    "dars_et_breadth": "#2ca02c",
    "dars_hw_breadth": "#d62728",
}
assert set(PALETTE) == set(EXPERIMENTS)

EXTRA_COLOURS = ["#9467bd", "#17becf", "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                 "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"]
LINESTYLES = ["-", "--", ":", "-."]

SINGLE_COL = 3.5  # inches
DOUBLE_COL = 7.0


def colour_map(names) -> dict[str, str]:
    """name -> colour: the fixed palette for the seven experiments, hashed extras otherwise."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for nm in names:
        if nm in PALETTE:
            out[nm] = PALETTE[nm]
    for nm in sorted(n for n in set(names) if n not in PALETTE):
        slot = zlib.crc32(str(nm).encode()) % len(EXTRA_COLOURS)
        for i in range(len(EXTRA_COLOURS)):
            c = EXTRA_COLOURS[(slot + i) % len(EXTRA_COLOURS)]
            if c not in used:
                break
        else:  # more unknown names than extra colours: reuse (line styles still differ)
            c = EXTRA_COLOURS[slot]
        used.add(c)
        out[nm] = c
    return out


def label_styles(label_order, label_experiment: dict[str, str]) -> dict[str, dict]:
    """label -> matplotlib kwargs (color, linestyle) following the rules above."""
    keys = [label_experiment.get(lab, lab) for lab in label_order]
    cmap = colour_map(keys)
    seen: dict[str, int] = {}
    styles = {}
    for lab, key in zip(label_order, keys):
        i = seen.get(key, 0)
        seen[key] = i + 1
        styles[lab] = {"color": cmap[key], "linestyle": LINESTYLES[i % len(LINESTYLES)]}
    return styles


def rc() -> dict:
    base = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper")}
    base.update(
        {
            "font.size": 8,
            "axes.titlesize": 8,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "legend.title_fontsize": 7,
            "lines.linewidth": 1.3,
            "lines.markersize": 3.5,
            "axes.linewidth": 0.6,
            "grid.linewidth": 0.4,
            # constrained layout keeps everything inside the figure: no "tight" bbox (an extra
            # draw per file, and the saved size would no longer be the paper size asked for)
            "savefig.bbox": None,
            "pdf.fonttype": 42,  # embed TrueType (editable text, accepted by publishers)
            "ps.fonttype": 42,
        }
    )
    return base


@contextmanager
def paper_style():
    """Apply the paper style inside a ``with`` block (global rcParams left untouched)."""
    with plt.rc_context(rc()):
        yield
