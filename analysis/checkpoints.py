"""Which checkpoint a run is judged at: the ``--checkpoint`` spec and the choice it makes.

``last`` (the latest validation), ``step:<k>`` (that step, else the latest one before it) or
``best:<benchmark>[:avg|pass|pass@<k>]`` (the highest value on that benchmark among the trained
checkpoints). :func:`choose_checkpoint` reads one run's trajectory frame (see
:func:`analysis.run_metrics.trajectory_rows`) and says why it picked the step it picked.
"""

from __future__ import annotations

import re

import pandas as pd

from analysis.names import ALL, benchmark_display, canonical_benchmark


def parse_checkpoint(spec: str) -> tuple:
    """'last' | 'best:<bench>[:avg|pass|pass@<k>]' | 'step:<k>' -> tuple; ValueError if bad."""
    spec = str(spec).strip()
    if spec == "last":
        return ("last",)
    if spec.startswith("step:"):
        try:
            return ("step", int(spec[5:]))
        except ValueError:
            raise ValueError(f"bad checkpoint {spec!r}: step:<int> expected") from None
    if spec.startswith("best:"):
        parts = spec[5:].split(":")
        bench = parts[0] or ALL
        metric = parts[1] if len(parts) > 1 else "avg"
        if metric not in ("avg",) and not re.fullmatch(r"pass(@\d+)?", metric):
            raise ValueError(f"bad checkpoint metric {metric!r}: avg, pass or pass@<k>")
        return ("best", bench, metric)
    raise ValueError(f"bad checkpoint {spec!r}: last, best:<benchmark>[:avg|pass], step:<k>")


def _match_bench(bench: str, available: list[str]) -> str | None:
    if bench in available:
        return bench
    low = bench.lower()
    for b in available:
        if b.lower() == low or benchmark_display(b).lower() == low:
            return b
    can = canonical_benchmark(bench)
    for b in available:
        if can and canonical_benchmark(b) == can:
            return b
    return None


def choose_checkpoint(traj: pd.DataFrame, spec: tuple, K: int | None) -> tuple[int | None, str]:
    """Pick the step from one run's trajectory frame; returns (step or None, explanation)."""
    if traj.empty:
        return None, "no evaluation"
    steps = sorted(traj["step"].unique())
    if spec[0] == "last":
        return int(steps[-1]), "last"
    if spec[0] == "step":
        want = spec[1]
        if want in steps:
            return int(want), f"step {want}"
        earlier = [s for s in steps if s <= want]
        if not earlier:
            return None, f"no evaluation at or before step {want}"
        return int(earlier[-1]), f"step {want} not evaluated; used step {earlier[-1]}"
    _, bench, metric = spec
    bench_m = _match_bench(bench, sorted(traj["benchmark"].unique()))
    if bench_m is None:
        return int(steps[-1]), f"benchmark {bench!r} not found; used last"
    if metric == "avg":
        sel = traj[(traj["benchmark"] == bench_m) & (traj["metric"] == "avg")]
    else:
        k = int(metric.split("@")[1]) if "@" in metric else K
        sel = traj[(traj["benchmark"] == bench_m) & (traj["metric"] == "pass") & (traj["k"] == k)]
    sel = sel.dropna(subset=["value"])
    if (sel["step"] > 0).any():  # step 0 is the base model, not a checkpoint of the training
        sel = sel[sel["step"] > 0]
    if sel.empty:
        return int(steps[-1]), f"no {metric} on {bench_m}; used last"
    best = sel.sort_values(["value", "step"], ascending=[False, True]).iloc[0]
    return int(best["step"]), f"best {metric} on {benchmark_display(bench_m)}"
