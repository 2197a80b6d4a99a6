"""A finished run's objective values, read from its run directory's ``eval/summary.jsonl``
(docs/run-format.md): the final validation line, or the line best by the first objective."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from dars.runlog import read_jsonl


def objective_values(
    run_dir: Path, metrics: Sequence[str], directions: Sequence[str], which: str = "final"
) -> tuple[list[float], int]:
    """The objective values of a finished run and the validation step they come from.

    which='final': the last validation line; 'best': the line best by the first metric."""
    lines = read_jsonl(Path(run_dir) / "eval" / "summary.jsonl")
    if not lines:
        raise RuntimeError(f"no validation results in {run_dir}/eval/summary.jsonl")
    if which == "best":
        sign = 1.0 if directions[0] == "maximize" else -1.0
        usable = [ln for ln in lines if isinstance(ln.get(metrics[0]), (int, float))]
        line = max(usable, key=lambda ln: sign * ln[metrics[0]]) if usable else lines[-1]
    elif which == "final":
        line = lines[-1]
    else:
        raise ValueError(f"objective_from must be 'final' or 'best', got {which!r}")
    missing = [m for m in metrics if m not in line]
    if missing:
        avail = ", ".join(sorted(k for k in line if k.startswith("val/"))[:20])
        raise RuntimeError(f"metric(s) {missing} not in the validation line of {run_dir}; available: {avail}, ...")
    vals = [math.nan if line[m] is None else float(line[m]) for m in metrics]  # runlog writes NaN/inf as null
    if any(not math.isfinite(v) for v in vals):
        raise RuntimeError(f"non-finite objective {vals} in {run_dir}")
    return vals, int(line.get("step", -1))
