"""Figure style: paper-size defaults and a fixed look (colour, line style, marker) per
experiment.

The seven experiments always get the same colour, line style and marker in every figure:
breadth variants (the large full batch) are dashed, and the marker names the schedule family
(baseline circle, naive depth square, naive breadth diamond, ET up-triangle, HW
down-triangle), so the figures read in greyscale too. Any other name gets one of the extra
colours, chosen from a hash of the name (so a name keeps its colour from one call to the next)
with linear probing to avoid clashes within one figure set. Labels that share an experiment
(e.g. an n_max sweep) share its colour and differ in line style and marker; no two labels of a
figure set share all three.

Markers sit at a few points per line only (:func:`mark_every`), and each label's markers are
shifted along x by its own fraction of the spacing, so lines that lie exactly on top of each
other (e.g. three runs with no stage 2 in the stage-2 panel) still show every label's markers.
"""

from __future__ import annotations

import os
import sys
import zlib
from contextlib import contextmanager

import matplotlib
import numpy as np

# Headless Agg unless the caller already chose a backend (pyplot imported, e.g. a notebook, or
# MPLBACKEND set): the commands never open windows.
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.colors import to_rgba
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from analysis.names import EXPERIMENTS

PALETTE = {
    "baseline": "#4d4d4d",
    "depth_naive": "#8c564b",
    "breadth_naive": "#e377c2",
    "dars_et": "#1f77b4",
    "dars_hw": "#ff7f0e",
    "dars_et_breadth": "#2ca02c",
    "dars_hw_breadth": "#d62728",
}
# (line style, marker) per experiment, see the module docstring
LOOK = {
    "baseline": ("-", "o"),
    "depth_naive": ("-", "s"),
    "breadth_naive": ("--", "D"),
    "dars_et": ("-", "^"),
    "dars_hw": ("-", "v"),
    "dars_et_breadth": ("--", "^"),
    "dars_hw_breadth": ("--", "v"),
}
assert set(PALETTE) == set(LOOK) == set(EXPERIMENTS)

EXTRA_COLOURS = [
    "#9467bd",
    "#17becf",
    "#bcbd22",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
]
LINESTYLES = ["-", "--", ":", "-."]
# 7 markers: coprime with the 4 line styles, so cycling both gives 28 distinct pairs
MARKERS = ["o", "s", "D", "^", "v", "P", "X"]
MARKS_PER_LINE = 8  # markers on one curve (training and Pass@k curves)
BAND_ALPHA = 0.12  # most opaque fill of a min-max / CI band (see band_alpha)
BAND_EDGE_ALPHA = 0.6  # the band's outline, so its extent shows where fills overlap

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
    """label -> matplotlib kwargs (color, linestyle, marker) following the rules above."""
    keys = [label_experiment.get(lab, lab) for lab in label_order]
    cmap = colour_map(keys)
    seen: dict[str, int] = {}
    used: set[tuple[str, str, str]] = set()
    styles = {}
    for lab, key in zip(label_order, keys):
        i = seen.get(key, 0)
        seen[key] = i + 1
        hashed = MARKERS[zlib.crc32(str(key).encode()) % len(MARKERS)]
        ls0, mk0 = LOOK.get(key, (LINESTYLES[0], hashed))
        # the i-th label of one experiment: the experiment's look shifted i places in both
        # cycles (same colour, so line style and marker tell the labels apart)
        ls = LINESTYLES[(LINESTYLES.index(ls0) + i) % len(LINESTYLES)]
        m0 = MARKERS.index(mk0) + i
        for j in range(len(MARKERS)):  # colours ran out (over 12 unknown names): a free marker
            look = (cmap[key], ls, MARKERS[(m0 + j) % len(MARKERS)])
            if look not in used:
                break
        used.add(look)
        styles[lab] = {"color": look[0], "linestyle": look[1], "marker": look[2]}
    return styles


def mark_every(x, index: int, count: int, log: bool = False, n: int = MARKS_PER_LINE) -> list[int]:
    """Indices of ``x`` that carry a marker: ``n`` points evenly spread along x (in log2 x on a
    log axis), shifted by ``index / count`` of the spacing for the ``index``-th of ``count``
    labels, so the markers of coinciding lines do not hide each other. Few points: all."""
    x = np.asarray(x, dtype=np.float64)
    if x.size <= n:
        return list(range(x.size))
    with np.errstate(all="ignore"):
        t = np.log2(x) if log else x
    t = np.where(np.isfinite(t), t, np.nan)
    if np.isnan(t).all():
        return []
    lo, hi = float(np.nanmin(t)), float(np.nanmax(t))
    phase = (index % max(count, 1) + 0.5) / max(count, 1)
    targets = lo + (hi - lo) * (np.arange(n) + phase) / n
    # the data point nearest each target (NaN x never chosen)
    dist = np.abs(np.nan_to_num(t, nan=np.inf)[None, :] - targets[:, None])
    return sorted({int(i) for i in dist.argmin(axis=1)})


def legend(fig, axes, ncol_max: int = 4) -> None:
    """One legend above all panels: each label once, in drawing order (bands etc. skipped)."""
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), ncol_max), frameon=False)


def band_alpha(count: int) -> float:
    """Fill opacity of one of ``count`` bands: at most :data:`BAND_ALPHA`, and low enough that
    all ``count`` stacked on one spot stay at most half opaque (seven wide bands that overlap
    must not merge into one solid mass that hides the lines and each other)."""
    return min(BAND_ALPHA, 1.0 - 0.5 ** (1.0 / max(count, 1)))


def band(ax, x, lo, hi, colour: str, count: int = 1, linestyle: str = "-") -> None:
    """A min-max (or CI) band of one of ``count`` labels: a light fill, outlined thinly in the
    label's colour and line style, so each band's extent shows where the fills overlap."""
    ax.fill_between(
        x,
        lo,
        hi,
        facecolor=to_rgba(colour, band_alpha(count)),
        edgecolor=to_rgba(colour, BAND_EDGE_ALPHA),
        lw=0.4,
        linestyle=linestyle,
        label="_band",
    )


def whiskers(ax, x, y, colour: str, ylo, yhi, xlo=None, xhi=None, alpha: float = 0.8) -> None:
    """A band (or two: x and y) drawn as error bars at the points (x, y), not as a fill: bands
    of many labels then never merge into one mass. Arms are clipped at 0 (the mean of equal
    values can exceed their max by rounding)."""

    def arms(mid, lo, hi):
        return np.clip([mid - np.asarray(lo), np.asarray(hi) - mid], 0, None)

    ax.errorbar(
        x,
        y,
        yerr=arms(y, ylo, yhi),
        xerr=None if xlo is None else arms(x, xlo, xhi),
        fmt="none",
        ecolor=colour,
        elinewidth=0.6,
        capsize=0 if xlo is not None else 1.5,
        capthick=0.6,
        alpha=alpha,
        label="_band",
    )


def integer_axis(axis) -> None:
    """Integer ticks (training steps, counts): never 1.2, 1.4, ..."""
    axis.set_major_locator(MaxNLocator(integer=True))


class FittingLocator(MaxNLocator):
    """MaxNLocator with round steps that takes fewer ticks (down to 2) until the tick labels fit
    along the axis: a label is taken as 0.64 em per character wide (a DejaVu Sans digit; '.'
    and '-' half that) and 1.4 em tall, plus a gap of 1.2 em between labels. Long labels over
    a narrow range ("17.6050") on a single-column axis then never run together."""

    def __init__(self, nbins: int = 6):
        super().__init__(nbins=nbins, steps=[1, 2, 2.5, 5, 10])
        self._most = nbins

    def tick_values(self, vmin, vmax):
        axis = self.axis
        for nb in range(self._most, 1, -1):
            self.set_params(nbins=nb)
            ticks = super().tick_values(vmin, vmax)
            if axis is None or axis.axes is None:
                break
            lo, hi = sorted((vmin, vmax))
            shown = [t for t in ticks if lo <= t <= hi]
            em = axis.majorTicks[0].label1.get_fontsize()  # points
            box = axis.axes.bbox
            length = (box.width if axis.axis_name == "x" else box.height) * 72 / axis.figure.dpi
            if axis.axis_name == "x":
                text = "".join(axis.major.formatter.format_ticks(shown))
                need = 0.64 * em * (len(text) - 0.5 * sum(text.count(c) for c in ".-\u2212"))
            else:
                need = 1.4 * em * len(shown)
            if need + 1.2 * em * max(len(shown) - 1, 0) <= length:
                break
        self.set_params(nbins=self._most)  # the next draw (another size) starts afresh
        return ticks


def percent_axis(axis, nbins: int = 6) -> None:
    """An axis of values already scaled to % (as in the tables): at most ``nbins`` round ticks
    whose labels fit (:class:`FittingLocator`), plain labels (no offset such as '+1.76e1',
    which hides the values)."""
    axis.set_major_locator(FittingLocator(nbins))
    axis.set_major_formatter(ScalarFormatter(useOffset=False))


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
            "lines.linewidth": 1.2,
            "lines.markersize": 4,
            # a thin white rim: markers of neighbouring labels stay separate where they touch
            "lines.markeredgecolor": "white",
            "lines.markeredgewidth": 0.4,
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
