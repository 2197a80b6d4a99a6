"""Everything the tables and figures show, computed once from the run directories.

:func:`analyse` discovers the runs, groups them into *labels* (the rows of the tables and the
lines of the figures; by default the runs that differ only in their seed, see
:mod:`analysis.labels`; runs sharing a label are pooled), reads every validation
checkpoint (trajectories), picks the checkpoint each run is judged at, leaves out the runs that
are not complete trained results (judged at step 0, or stopped before their total_steps; see
:mod:`analysis.exclusions`), and computes per-problem Avg/Pass@k/maj@k there with bootstrap
CIs. The result is an :class:`Analysis` of tidy pandas
DataFrames, which :mod:`analysis.tables` and :mod:`analysis.figures` only format.

This module holds the options, the result and the order of the steps; which checkpoint a run is
judged at is :mod:`analysis.checkpoints`, the numbers of one run (one checkpoint's rows and
per-problem values, its training frame and cost row) :mod:`analysis.run_metrics`, a label's runs
pooled into its rows of the results :mod:`analysis.pooling`.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.checkpoints import choose_checkpoint, parse_checkpoint
from analysis.exclusions import Excluded, relabel, split_runs
from analysis.labels import assign_labels, excluded, order_labels
from analysis.names import ALL, BENCHMARKS, EXCLUDED_SOURCES, MACRO, benchmark_order, is_known_benchmark
from analysis.pooling import LabelPool, pooled_results
from analysis.readers import EvalData
from analysis.run_metrics import (
    TRAIN_COST_COLUMNS,
    check_summary,
    cost_row,
    derive_training,
    drop_excluded,
    problem_matrix,
    summary_trajectory,
    trajectory_rows,
)
from analysis.runs import Run, discover

# what callers import from here (the checkpoint choice and the per-run numbers live in
# analysis.checkpoints and analysis.run_metrics)
__all__ = [
    "TRAIN_COST_COLUMNS",
    "Analysis",
    "Options",
    "analyse",
    "choose_checkpoint",
    "parse_checkpoint",
    "problem_matrix",
    "summary_trajectory",
    "trajectory_rows",
]


@dataclass
class Options:
    """Analysis options (the CLI flags of the same names)."""

    k: int | None = None  # Pass@K; default: the runs' n_val (largest sample count)
    checkpoint: str = "last"  # last | best:<bench>[:avg|pass] | step:<k>
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    labels: dict[str, str] = field(default_factory=dict)  # pattern -> label
    exclude: list[str] = field(default_factory=list)  # run-name/path globs to leave out
    pool_seeds: bool = True  # runs differing only in seed share a label (analysis.labels)
    pool_seed_variance: bool = True  # paired comparisons: run-to-run variance pooled over the sweep
    exclude_sources: tuple[str, ...] = EXCLUDED_SOURCES
    maj: bool = True
    order: list[str] | None = None
    # trajectories (every checkpoint but the judged one) from eval/summary.jsonl when it has
    # every number needed; False recomputes them from eval/step_<k>.jsonl
    use_summary: bool = True
    # runs that are not complete trained results (analysis.exclusions) are left out unless
    # these keep them as rows of their own, labelled "<label> (base)" / "<label> (partial)"
    include_base: bool = False
    include_partial: bool = False


@dataclass
class Analysis:
    """Results; every frame is tidy (one row per observation)."""

    options: Options
    runs: list[Run]  # runs used (at least training metrics or one evaluation)
    skipped: list[tuple[str, str]]  # (run path, reason) for runs left out entirely
    notes: list[str]  # global notes
    run_label: dict[str, str]  # run path -> label
    label_order: list[str]
    label_experiment: dict[str, str]
    K: int | None
    benchmarks: list[str]  # data sources in table order
    training: pd.DataFrame  # label, run, experiment, step, <metrics.jsonl keys>, derived
    trajectory: pd.DataFrame  # label, run, step, benchmark, metric, k, value
    results: pd.DataFrame  # label, benchmark, metric, k, value, lo, hi, n_problems, n_defined, ...
    checkpoints: pd.DataFrame  # label, run, step, how
    cost: pd.DataFrame  # one row per run
    timings: dict[str, float] = field(default_factory=dict)
    # run path -> (per-problem values at its judged checkpoint, their (metric, k) columns), as
    # problem_matrix gives them; what the paired differences (analysis.paired) are built from
    problems: dict[str, tuple[pd.DataFrame, list[tuple[str, int]]]] = field(default_factory=dict)
    # runs judged at step 0 (base model) or stopped before total_steps: analysis.exclusions
    excluded: list[Excluded] = field(default_factory=list)

    def run_notes(self) -> list[tuple[str, str, list[str]]]:
        return [(self.run_label.get(str(r.path), r.name), str(r.path), r.notes) for r in self.runs]

    def value(self, label: str, benchmark: str, metric: str, k: int | None = None) -> float:
        """One number from :attr:`results` (NaN when absent)."""
        df = self.results
        m = (df["label"] == label) & (df["benchmark"] == benchmark) & (df["metric"] == metric)
        if k is not None:
            m &= df["k"] == k
        sel = df.loc[m, "value"]
        return float(sel.iloc[0]) if len(sel) else float("nan")

    @property
    def has_eval(self) -> bool:
        return len(self.results) > 0


def _workers() -> int:
    """Threads for file parsing (pyarrow and numpy release the GIL)."""
    return max(1, min(8, os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------
# main entry
# --------------------------------------------------------------------------------------------


def analyse(dirs: list[str | Path], opts: Options | None = None, with_eval: bool = True) -> Analysis:
    """Discover runs below ``dirs`` and compute all results (see module docstring)."""
    opts = opts or Options()
    spec = parse_checkpoint(opts.checkpoint)
    t0 = time.perf_counter()
    found, notes = discover([Path(d) for d in dirs])
    timings = {"discover": time.perf_counter() - t0}
    if opts.exclude:
        left = [r for r in found if not excluded(r, opts.exclude)]
        if len(left) < len(found):
            notes.append(f"left out {len(found) - len(left)} run(s) matching --exclude")
        found = left
    t1 = time.perf_counter()
    runs, skipped = _admit(found)
    timings["training"] = time.perf_counter() - t1

    run_label = assign_labels(runs, opts)
    label_order, label_experiment = order_labels(runs, run_label, opts.order)
    training = _training_frame(runs, run_label)
    K = opts.k if opts.k is not None else _default_k(runs)

    t2 = time.perf_counter()
    trajectory, K = _trajectories(runs, run_label, K, opts, with_eval, notes)
    timings["trajectories"] = time.perf_counter() - t2

    # ---- checkpoint choice and per-problem values there (runs in parallel threads: parsing
    # and numpy release the GIL)
    t3 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        judged = list(pool.map(lambda r: _judge(r, trajectory, spec, K, opts, with_eval), runs))
    # untrained and partial runs are not results: out, or kept as rows of their own
    keep, run_label, excluded_runs, ex_notes = split_runs(
        runs, [j[1] if j[3] is not None else None for j in judged], run_label, opts.include_base, opts.include_partial
    )
    notes += ex_notes
    if len(keep) < len(runs) or excluded_runs:
        runs, judged = [runs[i] for i in keep], [judged[i] for i in keep]
        label_order, label_experiment = order_labels(runs, run_label, opts.order)
        training, trajectory = (relabel(df, run_label) for df in (training, trajectory))
    pools, checkpoints, cost, problems = _collect(runs, judged, run_label, K, with_eval)
    timings["checkpoint_load"] = time.perf_counter() - t3

    t4 = time.perf_counter()
    results, all_sources = pooled_results(label_order, pools, K, opts.n_boot, opts.seed, opts.level, notes)
    timings["results"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    benches = (
        benchmark_order(all_sources)
        if all_sources
        else benchmark_order(
            trajectory["benchmark"][~trajectory["benchmark"].isin([ALL, MACRO])].unique() if len(trajectory) else []
        )
    )
    return Analysis(
        options=opts,
        runs=runs,
        skipped=skipped,
        notes=notes,
        run_label=run_label,
        label_order=label_order,
        label_experiment=label_experiment,
        K=K,
        benchmarks=benches,
        training=training,
        trajectory=trajectory,
        results=results,
        checkpoints=checkpoints,
        cost=cost,
        timings=timings,
        problems=problems,
        excluded=excluded_runs,
    )


# --------------------------------------------------------------------------------------------
# the steps of analyse, in order
# --------------------------------------------------------------------------------------------


def _admit(found: list[Run]) -> tuple[list[Run], list[tuple[str, str]]]:
    """The runs with anything on disk (their state noted first), and (path, why) for the rest."""
    skipped: list[tuple[str, str]] = []
    runs: list[Run] = []
    for r in found:
        tr = r.training() if r.kind == "native" else pd.DataFrame()
        if tr.empty and not r.eval_files:
            state = f" (state: {r.state})" if r.state != "unknown" else ""
            why = "nothing written yet: no training metrics and no evaluation" + state
            if r.state == "failed" and r.status and r.status.get("error"):
                why += f"; error: {r.status['error']}"
            skipped.append((str(r.path), why))
            continue
        if r.state == "running":
            st = r.status or {}
            r.notes.insert(0, f"in progress (step {st.get('step', '?')}/{st.get('total_steps', '?')})")
        elif r.state == "interrupted":
            st = r.status or {}
            r.notes.insert(
                0,
                f"interrupted at step {st.get('step', '?')}/{st.get('total_steps', '?')} (its process "
                f"died without recording an end; the same command resumes it)",
            )
        elif r.state in ("failed", "killed"):
            err = (r.status or {}).get("error")
            r.notes.insert(0, f"run {r.state}" + (f": {err}" if err else "") + "; analysed what is on disk")
        runs.append(r)
    return runs, skipped


def _training_frame(runs: list[Run], run_label: dict[str, str]) -> pd.DataFrame:
    """Every native run's metrics.jsonl with the derived columns, tagged with label and run."""
    frames = []
    for r in runs:
        tr = r.training() if r.kind == "native" else pd.DataFrame()
        if tr.empty:
            continue
        d = derive_training(tr)
        d.insert(0, "label", run_label[str(r.path)])
        d.insert(1, "run", str(r.path))
        d.insert(2, "experiment", r.experiment)
        frames.append(d)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _default_k(runs: list[Run]) -> int | None:
    """K from the runs validated after step 0 when there are any: a killed run (left out,
    analysis.exclusions) with another eval.n_val must not set the K of the tables."""
    nvals = [r.n_val for r in runs if r.n_val and max(r.eval_steps, default=0) > 0] or [
        r.n_val for r in runs if r.n_val
    ]
    return max(nvals) if nvals else None


def _trajectories(
    runs: list[Run], run_label: dict[str, str], K: int | None, opts: Options, with_eval: bool, notes: list[str]
) -> tuple[pd.DataFrame, int | None]:
    """Every checkpoint's numbers (from eval/summary.jsonl where it has them all, else from the
    per-problem file, read in parallel threads), and K (the largest sample count when neither
    the options nor the runs set it)."""
    loaded: list[tuple[Run, EvalData]] = []
    unknown_sources: set[str] = set()
    excluded_any = False
    traj_rows: list[dict] = []
    to_read: list[tuple[Run, int]] = []
    if with_eval:
        for r in runs:
            from_summary = summary_trajectory(r, K, opts.exclude_sources) if (opts.use_summary and K) else {}
            for step in r.eval_steps:
                if step in from_summary:
                    benches, rows = from_summary[step]
                    unknown_sources.update(b for b in benches if not is_known_benchmark(b))
                    excluded_any |= any(b in opts.exclude_sources for b in benches)
                    for row in rows:
                        row.update(label=run_label[str(r.path)], run=str(r.path), step=step)
                    traj_rows.extend(rows)
                else:
                    to_read.append((r, step))

        def read(item):
            r, step = item
            try:
                return r.eval(step)
            except (ValueError, OSError) as e:
                return e

        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            evs = list(pool.map(read, to_read))
        for (r, step), ev in zip(to_read, evs):
            if isinstance(ev, Exception):
                r.notes.append(f"eval at step {step} unreadable; skipped ({ev})")
                continue
            r.notes.extend(n for n in ev.notes if n not in r.notes)
            ev, dropped = drop_excluded(ev, opts.exclude_sources)
            excluded_any |= dropped > 0
            if ev.n_problems == 0:
                r.notes.append(f"eval at step {step} has no problems; skipped")
                continue
            unknown_sources.update(s for s in set(ev.source) if not is_known_benchmark(s))
            loaded.append((r, ev))
    if K is None and loaded:
        K = max(int(ev.n.max()) for _, ev in loaded)
    for r, ev in loaded:
        for row in trajectory_rows(ev, K):
            row.update(label=run_label[str(r.path)], run=str(r.path), step=ev.step)
            traj_rows.append(row)
    del loaded
    trajectory = pd.DataFrame(traj_rows, columns=["label", "run", "step", "benchmark", "metric", "k", "value"])
    if excluded_any:
        notes.append(
            "data_source(s) "
            + ", ".join(repr(s) for s in opts.exclude_sources)
            + " left out of the tables (as upstream's macro accuracy does); --exclude-sources '' keeps them"
        )
    if unknown_sources:
        notes.append(
            "data_source(s) not among the paper's benchmarks ("
            + ", ".join(BENCHMARKS)
            + "): "
            + ", ".join(sorted(unknown_sources))
            + "; reported under their own names"
        )
    return trajectory, K


def _judge(r: Run, trajectory: pd.DataFrame, spec: tuple, K: int | None, opts: Options, with_eval: bool):
    """(the run's trajectory, judged step or None, why, problem_matrix there or None)."""
    rt = trajectory[trajectory["run"] == str(r.path)]
    step, how = choose_checkpoint(rt, spec, K) if with_eval else (None, "no evaluation")
    if step is None:
        return rt, None, how, None
    try:
        ev = r.eval(step, samples=True)
        check_summary(r, step, ev)
        ev, _ = drop_excluded(ev, opts.exclude_sources)
        Kr = K or int(ev.n.max())
        if ev.n.size and int(ev.n.min()) < Kr:
            short = int((ev.n < Kr).sum())
            r.notes.append(
                f"{short} problem(s) at step {step} have fewer than K={Kr} samples: their "
                f"Pass@k for k above their sample count is missing, not counted"
            )
        return rt, step, how, problem_matrix(ev, Kr, opts.maj)
    except (ValueError, OSError) as e:
        r.notes.append(f"checkpoint step {step} unreadable ({e})")
        return rt, None, how, None


def _collect(runs: list[Run], judged: list, run_label: dict[str, str], K: int | None, with_eval: bool):
    """Per-label pools, the checkpoints and cost frames, and run path -> problem_matrix."""
    pools: dict[str, LabelPool] = {}
    ck_rows, cost_rows = [], []
    problems: dict[str, tuple[pd.DataFrame, list[tuple[str, int]]]] = {}
    for r, (rt, step, how, mc) in zip(runs, judged):
        lab = run_label[str(r.path)]
        pass_k = np.nan
        if step is not None and mc is not None:
            sel = rt[(rt["step"] == step) & (rt["benchmark"] == ALL) & (rt["metric"] == "pass") & (rt["k"] == K)]
            pass_k = float(sel["value"].iloc[0]) if len(sel) else np.nan
            mat, cols = mc
            problems[str(r.path)] = mc
            pool = pools.setdefault(lab, LabelPool())
            pool.frames.append(mat)
            if pool.cols is None or len(cols) < len(pool.cols):
                pool.cols = cols
            pool.steps.append(step)
            ck_rows.append({"label": lab, "run": str(r.path), "step": step, "how": how})
        elif with_eval and not r.eval_files and r.kind == "native":
            r.notes.append("no evaluation yet: in the training figures and cost table only")
        cost_rows.append(cost_row(r, lab, r.training() if r.kind == "native" else pd.DataFrame(), step, pass_k))
    checkpoints = pd.DataFrame(ck_rows, columns=["label", "run", "step", "how"])
    cost = pd.DataFrame(cost_rows, columns=TRAIN_COST_COLUMNS)
    return pools, checkpoints, cost, problems
