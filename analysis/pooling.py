"""A label's results: the judged runs of one label pooled over the problems they share, then its
value per benchmark, over all problems (micro) and the benchmarks' mean (macro), for every metric,
with bootstrap CIs.

:mod:`analysis.core` fills one :class:`LabelPool` per label from the runs' per-problem values at
their judged checkpoints (:func:`analysis.run_metrics.problem_matrix`) and turns them into the
``results`` frame of its :class:`~analysis.core.Analysis` with :func:`pooled_results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.metrics import bootstrap_ci, summarize
from analysis.names import ALL, MACRO, benchmark_order
from analysis.run_metrics import group_codes


@dataclass
class LabelPool:
    """The judged runs of one label: their per-problem frames, the (metric, k) columns they all
    have, their steps."""

    frames: list[pd.DataFrame] = field(default_factory=list)
    cols: list[tuple[str, int]] | None = None
    steps: list[int] = field(default_factory=list)


def pooled_results(
    label_order: list[str],
    pools: dict[str, LabelPool],
    K: int | None,
    n_boot: int,
    seed: int,
    level: float,
    notes: list[str],
) -> tuple[pd.DataFrame, dict[str, None]]:
    """The ``results`` rows of every label in ``label_order`` that has judged runs (CIs from
    ``n_boot`` bootstrap replicates at ``level``, none when ``n_boot`` is 0), and the benchmarks
    in the order the runs list them. A label whose runs do not share every problem is pooled over
    the ones they share, which is said in ``notes``."""
    res_rows = []
    all_sources: dict[str, None] = {}  # ordered: benchmarks in the order the runs list them
    for lab in label_order:
        pool = pools.get(lab)
        if pool is None or not pool.frames:
            continue
        mats, steps, cols = pool.frames, pool.steps, pool.cols
        if len(mats) == 1:
            pooled = mats[0].iloc[:, : len(cols)]
        else:
            common = mats[0].index
            for m in mats[1:]:
                common = common.intersection(m.index)
            if len(common) < max(len(m) for m in mats):
                notes.append(f"{lab}: pooled {len(mats)} runs over the {len(common)} problems they share")
            stack = np.stack([m.loc[common].iloc[:, : len(cols)].to_numpy() for m in mats])
            with np.errstate(invalid="ignore"):
                pooled = pd.DataFrame(
                    np.nanmean(stack, axis=0) if np.isnan(stack).any() else stack.mean(axis=0), index=common
                )
        sources = pooled.index.get_level_values("source").to_numpy()
        order = benchmark_order(sources)
        all_sources.update(dict.fromkeys(order))
        codes = group_codes(sources, order)
        vals = pooled.to_numpy(dtype=np.float64)
        s = summarize(vals, codes, len(order))
        ci = bootstrap_ci(vals, codes, len(order), n_boot=n_boot, seed=seed, level=level) if n_boot > 0 else None
        step_val = steps[0] if len(set(steps)) == 1 else np.nan
        for j, (metric, k) in enumerate(cols):
            kk = k if metric != "avg" else (K or 0)
            for g, b in enumerate(order):
                res_rows.append(
                    _res(
                        lab,
                        b,
                        metric,
                        kk,
                        s["per_group"][g, j],
                        ci["group_lo"][g, j] if ci else np.nan,
                        ci["group_hi"][g, j] if ci else np.nan,
                        s["n_problems"][g],
                        s["n_defined"][g, j],
                        step_val,
                        len(mats),
                    )
                )
            res_rows.append(
                _res(
                    lab,
                    ALL,
                    metric,
                    kk,
                    s["micro"][j],
                    ci["micro_lo"][j] if ci else np.nan,
                    ci["micro_hi"][j] if ci else np.nan,
                    int(s["n_problems"].sum()),
                    s["micro_defined"][j],
                    step_val,
                    len(mats),
                )
            )
            res_rows.append(
                _res(
                    lab,
                    MACRO,
                    metric,
                    kk,
                    s["macro"][j],
                    ci["macro_lo"][j] if ci else np.nan,
                    ci["macro_hi"][j] if ci else np.nan,
                    int(s["n_problems"].sum()),
                    s["micro_defined"][j],
                    step_val,
                    len(mats),
                )
            )
    results = pd.DataFrame(
        res_rows,
        columns=["label", "benchmark", "metric", "k", "value", "lo", "hi", "n_problems", "n_defined", "step", "n_runs"],
    )
    return results, all_sources


def _res(label, bench, metric, k, value, lo, hi, n_problems, n_defined, step, n_runs) -> dict:
    return {
        "label": label,
        "benchmark": bench,
        "metric": metric,
        "k": int(k),
        "value": float(value),
        "lo": float(lo),
        "hi": float(hi),
        "n_problems": int(n_problems),
        "n_defined": int(n_defined),
        "step": step,
        "n_runs": n_runs,
    }
