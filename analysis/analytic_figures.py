"""Figures 5 and 6: the analytic ones (no runs needed), drawn from :mod:`analysis.analytic`.

5. ``fig5_advantage``: cumulative advantage vs accuracy, GRPO and, for every schedule defined by a
   target mass, the target and what the integer schedule delivers.
6. ``fig6_expected_rollouts``: expected rollouts per prompt vs true solve rate, every configured
   schedule.

Both draw each schedule of :mod:`dars.schedules` that has a ``conf/schedule/*.yaml``; the paper's
schedules keep the names and looks below, any other gets its own name and a colour of its own.
:mod:`analysis.figures` writes them with the others.
"""

from __future__ import annotations

import numpy as np

from analysis import analytic
from analysis.style import DOUBLE_COL, PALETTE, SINGLE_COL, colour_map  # selects Agg first

# isort: split
import matplotlib.pyplot as plt  # after analysis.style, which picks the Agg backend

# how figures 5 and 6 name and draw the schedules of the paper: (name, palette key, line style,
# line width); any other schedule of dars.schedules gets its name and a colour of its own
SCHEDULE_LOOK = {
    "et": ("ET", "dars_et", "-", None),
    "hw": ("HW", "dars_hw", "-", None),
    "et_table": ("ET table (pre-Aug 2025)", "dars_et", ":", 1.0),
    "hw_table": ("HW table (pre-Aug 2025)", "dars_hw", ":", 1.0),
}
HISTORY_SCHEDULES = ("et_table", "hw_table")  # fig6_expected_rollouts(tables=False) leaves out
TARGET_LABELS = {"et": "ET target (peak)", "hw": r"HW target $2(1-p)\cdot$peak"}


def _schedule_look(kind: str, kinds) -> tuple[str, str, str, float | None]:
    """(name, colour, line style, line width) of one schedule in figures 5 and 6."""
    if kind in SCHEDULE_LOOK:
        name, key, ls, lw = SCHEDULE_LOOK[kind]
        return name, PALETTE[key], ls, lw
    return kind, colour_map([k for k in kinds if k not in SCHEDULE_LOOK])[kind], "-", None


def fig5_advantage(n: int = 8, n_max: dict[str, int] | None = None):
    """Cumulative advantage n*S(p) of GRPO (without and with std) and, for every schedule defined
    by a target mass (:mod:`dars.schedules`), its target; dots: what the integer schedule
    delivers at p_hat = c/n (at the n_max of its conf/schedule YAML, or ``n_max[kind]``)."""
    caps = {k: v for k, v in analytic.schedules(n, n_max).items() if analytic.has_target(k)}
    p = np.linspace(0.0, 1.0, 401)
    fig, axes = plt.subplots(1, 2, figsize=(DOUBLE_COL, 2.5), layout="constrained")
    for ax, use_std, title in (
        (axes[0], False, "(a) GRPO without std (DARS default)"),
        (axes[1], True, "(b) GRPO with std"),
    ):
        formula = r"$n\cdot2\sqrt{p(1-p)}$" if use_std else r"$n\cdot2p(1-p)$"
        ax.plot(p, analytic.advantage_mass(p, n, use_std), color="black", label=f"GRPO {formula}")
        for kind in caps:
            name, colour, _, _ = _schedule_look(kind, caps)
            ax.plot(
                p,
                analytic.target(p, n, kind, use_std),
                color=colour,
                ls="--",
                label=TARGET_LABELS.get(kind, f"{name} target"),
            )
        for kind, nm in caps.items():
            name, colour, _, _ = _schedule_look(kind, caps)
            pp, mass = analytic.achieved_mass(n, nm, kind, use_std)
            ax.plot(pp, mass, ls="none", marker="o", color=colour, label=f"{name} delivered ($n_{{max}}$={nm})")
        ax.set_xlabel("Accuracy $p$")
        ax.set_ylabel("Cumulative advantage")
        ax.set_title(title + f", n={n}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 2.25 * analytic.peak(n, use_std))
        ax.legend(loc="upper right", frameon=False, fontsize=6.5)
    return fig


def fig6_expected_rollouts(n: int = 8, n_max: dict[str, int] | None = None, tables: bool = True):
    """Expected total rollouts per prompt vs true solve rate q (binomial over the stage-1 count)
    for every configured schedule of :mod:`dars.schedules` (``tables=False``: without the
    pre-August-2025 lookup tables); a schedule that never adds rollouts is the GRPO line."""
    caps = analytic.schedules(n, n_max)
    if not tables:
        caps = {k: v for k, v in caps.items() if k not in HISTORY_SCHEDULES}
    q = np.linspace(0.0, 1.0, 201)
    curves = {k: analytic.expected_rollouts(q, n, nm, k) for k, nm in caps.items()}
    fig, ax = plt.subplots(figsize=(SINGLE_COL, 2.6), layout="constrained")
    flat = [k for k, y in curves.items() if np.allclose(y, n)]  # plain GRPO: drawn once, last
    for kind, y in curves.items():
        if kind in flat:
            continue
        name, colour, ls, lw = _schedule_look(kind, caps)
        label = name if kind in HISTORY_SCHEDULES else f"{name} ($n_{{max}}$={caps[kind]})"
        ax.plot(q, y, color=colour, ls=ls, label=label, **({"lw": lw} if lw else {}))
    if flat:
        ax.plot(q, np.full_like(q, n), color=PALETTE["baseline"], ls="--", lw=1.0, label=f"GRPO (n={n})")
    ax.set_xlabel("True solve rate $q$")
    ax.set_ylabel("Expected rollouts / prompt")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, None)
    ax.set_title(f"Expected rollouts per prompt, n={n}")
    ax.legend(frameon=False)
    return fig
