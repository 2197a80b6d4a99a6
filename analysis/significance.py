"""Which cells of a results table are bold: a column's best, only where it is significantly best.

The paper's tables bold the best value of each column. Bolding the plain maximum says "this row
won" also when the differences are far inside the confidence intervals. Here a column's best
row is bold only when its paired difference to **every** other ranked row has a confidence
interval entirely above 0: the same comparisons as the paired-delta table and the claims
(:class:`analysis.paired.Comparer`, at each run's judged checkpoint; per benchmark and overall
micro). Otherwise nothing in that column is bold. Columns without such an interval (macro means,
maj@k) and tables made without intervals (``--bootstrap 0``) have nothing bold, and the footnote
says so. ``(base)`` / ``(partial)`` rows (:mod:`analysis.exclusions`) are never ranked.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.core import Analysis
from analysis.exclusions import shown_labels
from analysis.names import ALL, benchmark_display
from analysis.paired import Comparer


def make_comparer(a: Analysis) -> Comparer | None:
    """The comparer the bests use (None when the analysis has no intervals: ``--bootstrap 0``)."""
    o = a.options
    if o.n_boot <= 0:
        return None
    return Comparer(a, n_boot=o.n_boot, seed=o.seed, level=o.level, pool_seed_variance=o.pool_seed_variance)


def _lower(cmp: Comparer, best: str, other: str, metric: str, bench: str) -> float:
    """Lower CI bound of best − other (NaN when the comparison or its interval is missing)."""
    c = cmp.compare(best, other, metric)
    if c.delta is None:
        return math.nan
    d = c.delta if bench == ALL else c.by_benchmark.get(bench)
    return d.lo if d is not None else math.nan


def significant_best(
    a: Analysis, table: pd.DataFrame, columns: dict[str, tuple[str, str] | None], cmp: Comparer | None
) -> tuple[pd.DataFrame, str]:
    """(bold mask, footnote) for ``table`` (rows = labels).

    ``columns``: table column -> (comparer metric, data source or ``all``), or None for a column
    no paired interval exists for (never bold)."""
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    level = f"{round(100 * a.options.level)}%"
    if cmp is None:
        return mask, (
            "Nothing is bold: no confidence intervals were computed (--bootstrap 0), so no row can be called best."
        )
    unranked = shown_labels(a.excluded)
    ranked = [lab for lab in table.index if lab not in unranked]
    n_bold, testable = 0, 0
    for col in table.columns:
        spec = columns.get(col)
        vals = pd.to_numeric(table.loc[ranked, col], errors="coerce").dropna() if ranked else None
        if spec is None or vals is None or len(vals) < 2:
            continue
        testable += 1
        order = vals.sort_values(ascending=False, kind="stable").index
        best, others = order[0], order[1:]
        metric, bench = spec
        # the interval of best - other must exclude 0 for every other row; the runner-up first,
        # since it is the likeliest to fail (all() stops there: fewer bootstraps)
        if all(_lower(cmp, best, other, metric, bench) > 0 for other in others):
            mask.loc[best, col] = True
            n_bold += 1
    rule = (
        f"Bold: a column's best value, only where its paired difference to every other row "
        f"has a {level} CI entirely above 0 (the comparisons of paired_deltas: bootstrap over "
        "seeds and problems at the judged checkpoints)"
    )
    parts = [rule + "; a column without bold has no significantly best row."]
    if testable == 0:
        parts = [
            "Nothing is bold: "
            + (
                "no paired interval is computed for these columns."
                if len(ranked) >= 2
                else "fewer than two rows to rank."
            )
        ]
    elif n_bold == 0:
        parts.append("Here no column's best is significantly better than every other row.")
    never = [c for c in table.columns if columns.get(c) is None]
    if never and testable:
        parts.append(f"Never bold (no paired interval): {', '.join(map(str, never))}.")
    if unranked & set(table.index):
        parts.append("(base) / (partial) rows are not ranked.")
    return mask, " ".join(parts)


def per_benchmark_columns(table: pd.DataFrame, a: Analysis, metric: str | None) -> dict:
    """Column -> (comparer metric, data source) of a per-benchmark table; Macro (and every
    column when ``metric`` is None) has no paired interval."""
    by_display = {benchmark_display(b): b for b in a.benchmarks}
    cols = {}
    for c in table.columns:
        src = ALL if c == "Micro" else by_display.get(c)
        cols[c] = (metric, src) if metric and src else None
    return cols
