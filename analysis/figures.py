"""Figures (PNG + PDF, paper sizes, fixed colours per experiment).

1. ``fig1_entropy``: token entropy vs training step (token-mean; sequence-mean second panel).
2. ``fig2_rollouts``: rollouts per prompt (stage 1, stage 2, total) and stage-2 rollouts per step.
3. ``fig3_pass1_passk``: Pass@1 vs Pass@K over checkpoints, arrows in time order.
4. ``fig4_passk_curves``: Pass@k for k = 1..K (log2 axis) at the judged checkpoint, per
   benchmark and overall; band: min-max over seeds (one run: bootstrap CI over problems).
5. ``fig5_advantage``: analytic cumulative advantage vs accuracy, GRPO and the schedules' targets
   (:mod:`analysis.analytic_figures`, as 6).
6. ``fig6_expected_rollouts``: analytic expected rollouts per prompt vs true solve rate.
7. ``fig7_train_accuracy``: stage-1 training accuracy and group outcome fractions vs step.

A label with several runs (by default the seeds of one configuration) is drawn as the mean over
its runs with a band over them (min-max; figures 3 and 4: error bars). Accuracies and Pass@k in
% (x100, as in the tables); looks, markers, bands and axes: :mod:`analysis.style`. Every line
carries its label (``Line2D.get_label()``) so the plotted data can be read back. A run without
training metrics (killed after its step-0 validation) draws no training curve.
``python -m analysis.figures [dirs] --out <dir>`` writes them under ``<dir>/figures``; with no
directories only the analytic figures 5 and 6 are drawn.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import style  # first: selects the Agg backend before pyplot is imported
from analysis.analytic_figures import fig5_advantage, fig6_expected_rollouts
from analysis.cli import add_analysis_args, options_from_args
from analysis.core import Analysis, analyse
from analysis.names import ALL, benchmark_display
from analysis.style import DOUBLE_COL, SINGLE_COL, label_styles, paper_style

# isort: split
import matplotlib.pyplot as plt  # after analysis.style, which picks the Agg backend

X_AXES = {
    "step": ("step", "Training step"),
    "prompts": ("x/prompts", "Prompts seen"),
    "rollouts": ("x/rollouts", "Rollouts generated"),
    "tokens": ("x/tokens", "Generated tokens"),
}

FIGURES = {
    1: "fig1_entropy",
    2: "fig2_rollouts",
    3: "fig3_pass1_passk",
    4: "fig4_passk_curves",
    5: "fig5_advantage",
    6: "fig6_expected_rollouts",
    7: "fig7_train_accuracy",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (1 = unchanged); NaNs are skipped."""
    y = np.asarray(y, dtype=np.float64)
    if window <= 1 or y.size == 0:
        return y
    return pd.Series(y).rolling(window, min_periods=1).mean().to_numpy()


def training_series(
    training: pd.DataFrame, label: str, column: str, x: str = "step", window: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(x, y, y_min, y_max) of one label: mean over its runs per step (band = min/max over runs,
    None for a single run), then smoothed. Exactly what the training figures plot."""
    xcol = X_AXES[x][0]
    d = training[training["label"] == label]
    if d.empty or column not in d:
        return np.array([]), np.array([]), None, None
    d = d[["run", "step", xcol, column]].copy() if xcol != "step" else d[["run", "step", column]].copy()
    d[column] = pd.to_numeric(d[column], errors="coerce")
    g = d.groupby("step")
    y = g[column].mean()
    xs = g[xcol].mean() if xcol != "step" else pd.Series(y.index.to_numpy(), index=y.index)
    keep = y.notna().to_numpy()
    band = None, None
    if d["run"].nunique() > 1:
        band = (smooth(g[column].min().to_numpy()[keep], window), smooth(g[column].max().to_numpy()[keep], window))
    return xs.to_numpy()[keep].astype(float), smooth(y.to_numpy()[keep], window), band[0], band[1]


def _labels_with(a: Analysis, column: str) -> list[str]:
    if a.training.empty or column not in a.training:
        return []
    have = a.training.dropna(subset=[column])["label"].unique()
    return [lab for lab in a.label_order if lab in set(have)]


def _line(ax, a: Analysis, styles, lab: str, x, y, log: bool = False):
    """One label's curve in its fixed look, markers at a few points staggered per label."""
    marks = style.mark_every(x, a.label_order.index(lab), len(a.label_order), log)
    return ax.plot(x, y, label=lab, markevery=marks, **styles[lab])


def _plot_training_panels(
    a: Analysis, panels, x: str, window: int, ncols: int, height: float, y_from_zero: bool = False
):
    """``panels``: (column, y label, title, scale, integer y); scale 100 draws a fraction in %."""
    styles = label_styles(a.label_order, a.label_experiment)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(DOUBLE_COL, height * nrows), squeeze=False, layout="constrained", sharex=True
    )
    for ax, (col, ylabel, title, scale, int_y) in zip(axes.flat, panels):
        for lab in _labels_with(a, col):
            xs, ys, lo, hi = training_series(a.training, lab, col, x, window)
            if xs.size == 0:
                continue
            _line(ax, a, styles, lab, xs, ys * scale)
            if lo is not None:
                style.band(
                    ax, xs, lo * scale, hi * scale, styles[lab]["color"], len(a.label_order), styles[lab]["linestyle"]
                )
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if scale == 100:
            style.percent_axis(ax.yaxis)
        if int_y:
            style.integer_axis(ax.yaxis)
        if y_from_zero:  # counts: start at 0, with room for a line lying on 0
            top = ax.get_ylim()[1]
            ax.set_ylim(-0.03 * top, top)
    for ax in axes.flat:  # steps, prompts, rollouts and tokens are all counts
        style.integer_axis(ax.xaxis)
    for ax in axes[-1]:
        ax.set_xlabel(X_AXES[x][1])
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    style.legend(fig, axes)
    return fig


# --------------------------------------------------------------------------------------------
# figures from runs
# --------------------------------------------------------------------------------------------


def fig1_entropy(a: Analysis, x: str = "step", window: int = 1):
    """Token-level policy entropy (nats): token-mean and sequence-mean panels."""
    panels = [
        ("entropy/token_mean", "Entropy (nats)", "(a) token-mean entropy", 1, False),
        ("entropy/seq_mean", "Entropy (nats)", "(b) sequence-mean entropy", 1, False),
    ]
    return _plot_training_panels(a, panels, x, window, ncols=2, height=2.4)


def fig2_rollouts(a: Analysis, x: str = "step", window: int = 1):
    """Rollouts per prompt (stage 1, stage 2, total) and stage-2 rollouts per step."""
    panels = [
        ("rollouts/stage1_per_prompt", "Rollouts / prompt", "(a) stage 1 per prompt", 1, False),
        ("rollouts/stage2_per_prompt", "Rollouts / prompt", "(b) stage 2 per prompt", 1, False),
        ("rollouts/per_prompt", "Rollouts / prompt", "(c) total per prompt", 1, False),
        ("rollouts/stage2", "Rollouts", "(d) stage-2 rollouts per step", 1, True),
    ]
    return _plot_training_panels(a, panels, x, window, ncols=2, height=2.1, y_from_zero=True)


def fig7_train_accuracy(a: Analysis, x: str = "step", window: int = 1):
    """Stage-1 training accuracy (before any filter) and the fraction of prompts whose merged
    group solves none / some / all."""
    panels = [
        ("acc/stage1", "Accuracy (%)", "(a) training accuracy (stage 1)", 100, False),
        ("groups/frac_solve_none", "Prompts (%)", "(b) solve none", 100, False),
        ("groups/frac_solve_partial", "Prompts (%)", "(c) solve some", 100, False),
        ("groups/frac_solve_all", "Prompts (%)", "(d) solve all", 100, False),
    ]
    return _plot_training_panels(a, panels, x, window, ncols=2, height=2.1)


TRAJ_COLUMNS = ["step", "pass1", "passK", "pass1_lo", "pass1_hi", "passK_lo", "passK_hi", "n_runs"]


def trajectory_points(a: Analysis, label: str) -> pd.DataFrame:
    """step, pass1, passK of one label over its checkpoints: mean over its runs (seeds) at the
    steps every run has, with the min and max over the runs (``*_lo``, ``*_hi``) and their
    number. A run evaluated only at step 0 (killed before training) is left out of a label
    whose other runs trained. Exactly what figure 3 plots."""
    t = a.trajectory
    t = t[(t["label"] == label) & (t["benchmark"] == ALL) & (t["metric"] == "pass")]
    if t.empty:
        return pd.DataFrame(columns=TRAJ_COLUMNS)
    last = t.groupby("run")["step"].max()
    if (last > 0).any():
        t = t[t["run"].isin(last.index[last > 0])]
    n_runs = t["run"].nunique()
    aggs = ["mean", "count", "min", "max"]
    p1 = t[t["k"] == 1].groupby("step")["value"].agg(aggs)
    pk = t[t["k"] == a.K].groupby("step")["value"].agg(aggs)
    df = pd.DataFrame(
        {
            "pass1": p1["mean"],
            "passK": pk["mean"],
            "n1": p1["count"],
            "nk": pk["count"],
            "pass1_lo": p1["min"],
            "pass1_hi": p1["max"],
            "passK_lo": pk["min"],
            "passK_hi": pk["max"],
        }
    )
    df = df[(df["n1"] == n_runs) & (df["nk"] == n_runs)].dropna(subset=["pass1", "passK"])
    df["n_runs"] = n_runs
    return df.reset_index()[TRAJ_COLUMNS]


def fig3_pass1_passk(a: Analysis):
    """Pass@1 (x) against Pass@K (y) over checkpoints, one line per label, arrows in time order
    (the paper's first figure), both in %. The hollow marker is the first checkpoint."""
    styles = label_styles(a.label_order, a.label_experiment)
    fig, ax = plt.subplots(figsize=(SINGLE_COL, 3.0), layout="constrained")
    for lab in a.label_order:
        pts = trajectory_points(a, lab)
        if pts.empty:
            continue
        st = styles[lab]
        x, y = 100 * pts["pass1"].to_numpy(), 100 * pts["passK"].to_numpy()
        ax.plot(x, y, label=lab, **st)  # every checkpoint marked: each point is a datum
        if pts["n_runs"].max() > 1:  # the band over seeds: min-max in both coordinates
            cols = ("passK_lo", "passK_hi", "pass1_lo", "pass1_hi")
            lims = (100 * pts[c].to_numpy() for c in cols)
            style.whiskers(ax, x, y, st["color"], *lims, alpha=0.5)
        ax.plot(
            x[:1], y[:1], marker=st["marker"], ls="none", mfc="white", mec=st["color"], mew=1.0, ms=5.5, label="_start"
        )
        for i in range(len(x) - 1):
            ax.annotate(
                "",
                xy=(x[i + 1], y[i + 1]),
                xytext=(x[i], y[i]),
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": st["color"],
                    "lw": 0,
                    "shrinkA": 0,
                    "shrinkB": 2,
                    "mutation_scale": 7,
                },
            )
    ax.set_xlabel("Pass@1 (%)")
    ax.set_ylabel(f"Pass@{a.K} (%)")
    style.percent_axis(ax.xaxis)
    style.percent_axis(ax.yaxis)
    ax.set_title(f"Pass@1 vs Pass@{a.K} over training")
    style.legend(fig, ax, ncol_max=3)
    return fig


def passk_curve(a: Analysis, label: str, benchmark: str) -> pd.DataFrame:
    """k, value, lo, hi of Pass@k (k = 1..K) at the judged checkpoint: the label's value (the
    mean over its runs) and its band: min-max over the runs' own curves when the label has
    several runs (seeds), else the bootstrap CI over problems. What figure 4 plots."""
    r = a.results
    r = r[(r["label"] == label) & (r["benchmark"] == benchmark) & (r["metric"] == "pass")]
    r = r.sort_values("k")[["k", "value", "lo", "hi"]].reset_index(drop=True)
    runs = run_passk_curves(a, label, benchmark)
    if runs.shape[0] > 1 and len(r):
        ks = r["k"].to_numpy()
        cols = [k - 1 for k in ks if 0 < k <= runs.shape[1]]
        if len(cols) == len(ks):
            with np.errstate(all="ignore"):
                r["lo"] = np.nanmin(runs[:, cols], axis=0)
                r["hi"] = np.nanmax(runs[:, cols], axis=0)
    return r


def run_passk_curves(a: Analysis, label: str, benchmark: str) -> np.ndarray:
    """[runs, K]: each run's own Pass@1..K on ``benchmark`` (``all`` = micro) at its judged
    checkpoint (missing values skipped; runs judged at step 0 left out when others trained)."""
    judged = dict(zip(a.checkpoints["run"], a.checkpoints["step"], strict=True))
    paths = [p for p in a.problems if a.run_label.get(p) == label]
    if any(judged.get(p, 0) > 0 for p in paths):
        paths = [p for p in paths if judged.get(p, 0) > 0]
    curves = []
    for path in paths:
        mat, cols = a.problems[path]
        idx = [j for j, (m, _k) in enumerate(cols) if m == "pass"]
        vals = mat.iloc[:, idx].to_numpy(np.float64)
        if benchmark != ALL:
            vals = vals[mat.index.get_level_values("source") == benchmark]
        if len(vals):
            with np.errstate(all="ignore"):
                curves.append(np.nanmean(vals, axis=0))
    if not curves:
        return np.zeros((0, 0))
    width = min(len(c) for c in curves)
    return np.stack([c[:width] for c in curves])


def fig4_passk_curves(a: Analysis, benchmarks: list[str] | None = None):
    """Pass@k (k = 1..K, log2 axis, %) per benchmark and overall; bands as error bars."""
    styles = label_styles(a.label_order, a.label_experiment)
    benches = (benchmarks or a.benchmarks) + [ALL]
    ncols = 3 if len(benches) > 2 else len(benches)
    nrows = math.ceil(len(benches) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(DOUBLE_COL, 2.0 * nrows + 0.3), squeeze=False, layout="constrained")
    for ax, b in zip(axes.flat, benches):
        for lab in a.label_order:
            c = passk_curve(a, lab, b)
            c = c[c["value"].notna()]
            if c.empty:
                continue
            k, v = c["k"].to_numpy(), 100 * c["value"].to_numpy()
            (ln,) = _line(ax, a, styles, lab, k, v, log=True)
            if c["lo"].notna().any():  # the band as whiskers at this label's own markers
                m = ln.get_markevery()
                lo, hi = (100 * c[col].to_numpy()[m] for col in ("lo", "hi"))
                style.whiskers(ax, k[m], v[m], styles[lab]["color"], lo, hi)
        ax.set_xscale("log", base=2)
        style.percent_axis(ax.yaxis)
        ax.set_title(benchmark_display(b) if b != ALL else "Overall (micro)")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    for ax in axes[:, 0]:
        ax.set_ylabel("Pass@k (%)")
    for ax in axes[-1]:
        ax.set_xlabel("k")
    for ax in list(axes.flat)[len(benches) :]:
        ax.set_visible(False)
    style.legend(fig, axes)
    return fig


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def save(fig, out: Path, name: str, formats=("png", "pdf"), dpi: int = 200) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out / f"{name}.{fmt}"
        fig.savefig(p, dpi=dpi)
        paths.append(p)
    plt.close(fig)
    return paths


def write_figures(
    a: Analysis | None,
    out: Path,
    only: list[int] | None = None,
    formats=("png", "pdf"),
    x: str = "step",
    window: int = 1,
    dpi: int = 200,
) -> tuple[dict[int, list[Path]], list[str]]:
    """Draw the figures into ``out``; returns ({number: paths}, notes on figures not drawn)."""
    only = sorted(set(only or FIGURES))
    written: dict[int, list[Path]] = {}
    notes: list[str] = []
    has_train = a is not None and not a.training.empty
    with paper_style():
        for num in only:
            name = FIGURES[num]
            if num in (1, 2, 7):
                if not has_train:
                    notes.append(f"figure {num} ({name}) not drawn: no training metrics")
                    continue
                fn = {1: fig1_entropy, 2: fig2_rollouts, 7: fig7_train_accuracy}[num]
                fig = fn(a, x=x, window=window)
            elif num in (3, 4):
                if a is None or not a.has_eval:
                    notes.append(f"figure {num} ({name}) not drawn: no evaluations")
                    continue
                fig = fig3_pass1_passk(a) if num == 3 else fig4_passk_curves(a)
            elif num == 5:
                fig = fig5_advantage()
            else:
                fig = fig6_expected_rollouts()
            written[num] = save(fig, out, name, formats, dpi)
    return written, notes


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.figures",
        description="Draw the figures (PNG and PDF) for every run below the given directories. "
        "Without directories only the analytic figures 5 and 6 are drawn.",
    )
    ap.add_argument("dirs", nargs="*", help="sweep, run or validation-dump directories (optional)")
    ap.add_argument("--out", required=True, help="output directory (figures go to <out>/figures)")
    add_figure_args(ap)
    add_analysis_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    a = analyse(args.dirs, options_from_args(args)) if args.dirs else None
    written, notes = write_figures(
        a, Path(args.out) / "figures", args.only, args.formats, args.x_axis, args.smooth, args.dpi
    )
    for num, paths in written.items():
        print(f"figure {num}: " + ", ".join(map(str, paths)))
    for n in notes:
        print("note:", n)
    if a is not None:
        for path, why in a.skipped:
            print(f"skipped {path}: {why}")
    if args.dirs and a is not None and not a.runs:
        return 1
    return 0 if written else 1


def _only(text: str) -> list[int]:
    try:
        nums = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated figure numbers, e.g. 1,3,5") from None
    bad = [n for n in nums if n not in FIGURES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown figure(s) {bad}; 1..{len(FIGURES)}")
    return nums


def _formats(text: str) -> tuple[str, ...]:
    fm = tuple(t.strip().lower() for t in text.split(",") if t.strip())
    bad = [f for f in fm if f not in ("png", "pdf", "svg")]
    if bad or not fm:
        raise argparse.ArgumentTypeError("formats among png, pdf, svg")
    return fm


def add_figure_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("figures")
    g.add_argument(
        "--only",
        type=_only,
        default=None,
        metavar="N,N",
        help="draw only these figures (1-7; default all): " + ", ".join(f"{k}={v}" for k, v in FIGURES.items()),
    )
    g.add_argument(
        "--formats",
        type=_formats,
        default=("png", "pdf"),
        metavar="png,pdf",
        help="file formats (png, pdf, svg; default png,pdf)",
    )
    g.add_argument(
        "--x-axis",
        choices=list(X_AXES),
        default="step",
        help="x axis of the training figures 1, 2, 7: training step (default), "
        "prompts seen, rollouts generated or generated tokens",
    )
    g.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="W",
        help="trailing moving average over W steps for the training figures (default 1 = raw)",
    )
    g.add_argument("--dpi", type=int, default=200, help="PNG resolution (default 200)")


if __name__ == "__main__":
    sys.exit(main())
