"""Everything the tables and figures show, computed once from the run directories.

:func:`analyse` discovers the runs, groups them into *labels* (the rows of the tables and the
lines of the figures; by default the runs that differ only in their seed, see
:mod:`analysis.labels`; runs sharing a label are pooled), reads every validation
checkpoint (trajectories), picks the checkpoint each run is judged at, leaves out the runs that
are not complete trained results (judged at step 0, or stopped before their total_steps; see
:mod:`analysis.exclusions`), and computes per-problem Avg/Pass@k/maj@k there with bootstrap
CIs. The result is an :class:`Analysis` of tidy pandas
DataFrames, which :mod:`analysis.tables` and :mod:`analysis.figures` only format.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.exclusions import Excluded, relabel, split_runs
from analysis.labels import assign_labels, excluded, order_labels
from analysis.metrics import (
    avg_per_problem,
    bootstrap_ci,
    factorize_answers,
    maj_at_k,
    pass_at_k_matrix,
    summarize,
)
from analysis.names import (
    ALL,
    BENCHMARKS,
    EXCLUDED_SOURCES,
    MACRO,
    benchmark_display,
    benchmark_order,
    is_known_benchmark,
)
from analysis.readers import EvalData
from analysis.runs import Run, discover
from dars.metrics import pass_at_k_curve_ks


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
# checkpoints
# --------------------------------------------------------------------------------------------


def parse_checkpoint(spec: str) -> tuple:
    """'last' | 'best:<bench>[:avg|pass|pass@<k>]' | 'step:<k>' -> tuple; ValueError if bad."""
    spec = str(spec).strip()
    if spec == "last":
        return ("last",)
    if spec.startswith("step:"):
        try:
            return ("step", int(spec[5:]))
        except ValueError:
            raise ValueError(f"bad checkpoint {spec!r}: step:<int> expected")
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
    from analysis.names import canonical_benchmark

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


# --------------------------------------------------------------------------------------------
# per-checkpoint computations
# --------------------------------------------------------------------------------------------


def _drop_excluded(ev: EvalData, exclude: tuple[str, ...]) -> tuple[EvalData, int]:
    if not exclude:
        return ev, 0
    mask = ~np.isin(ev.source.astype(str), list(exclude))
    dropped = int((~mask).sum())
    return (ev.select(mask) if dropped else ev), dropped


def _codes(sources: np.ndarray, order: list[str]) -> np.ndarray:
    pos = {b: i for i, b in enumerate(order)}
    return np.fromiter((pos[s] for s in sources), dtype=np.int64, count=len(sources))


def trajectory_rows(ev: EvalData, K: int) -> list[dict]:
    """Per-benchmark and overall Avg, Pass@1 and Pass@K of one checkpoint (no CI)."""
    order = benchmark_order(ev.source)
    codes = _codes(ev.source, order)
    avg = avg_per_problem(ev.n, ev.c)
    ks = sorted({1, K})
    vals = np.column_stack([avg, pass_at_k_matrix(ev.n, ev.c, ks)])
    s = summarize(vals, codes, len(order))
    metrics = [("avg", K)] + [("pass", k) for k in ks]
    rows = []
    for j, (metric, k) in enumerate(metrics):
        for g, b in enumerate(order):
            rows.append({"benchmark": b, "metric": metric, "k": k, "value": s["per_group"][g, j]})
        rows.append({"benchmark": ALL, "metric": metric, "k": k, "value": s["micro"][j]})
        rows.append({"benchmark": MACRO, "metric": metric, "k": k, "value": s["macro"][j]})
    return rows


def summary_trajectory(
    run: Run, K: int, exclude: tuple[str, ...]
) -> dict[int, tuple[list[str], list[dict]]]:
    """Trajectory rows from a native run's ``eval/summary.jsonl`` (step -> (benchmarks, rows)).

    Uses each benchmark's ``avg@<n_val>``, ``pass@1``, ``pass@K`` and ``n_problems``; micro is
    the problem-weighted mean of the benchmarks (exact, since every problem has n_val samples in
    the native format), macro their plain mean; excluded sources are left out. Steps whose line
    lacks any of these keys, or whose eval/step_<k>.jsonl is not usable, are not returned (the
    caller reads the file instead)."""
    if run.summary is None or run.kind != "native":
        return {}
    out = {}
    for rec in run.summary.to_dict("records"):
        step = int(rec["step"])
        if step not in run.eval_files:
            continue
        try:
            if run.eval_files[step][0].stat().st_size == 0:
                continue  # an empty per-problem file: let the reader report it
        except OSError:
            continue
        nv = rec.get("n_val")
        if nv is None or (isinstance(nv, float) and np.isnan(nv)):
            continue
        nv = int(nv)
        benches = sorted({key[4:].rsplit("/", 1)[0] for key in rec
                          if key.startswith("val/") and key.endswith(f"/avg@{nv}")}
                         - {ALL, MACRO})
        vals = {}
        ok = bool(benches)
        for b in benches:
            try:
                got = [rec[f"val/{b}/avg@{nv}"], rec[f"val/{b}/pass@1"], rec[f"val/{b}/pass@{K}"],
                       rec[f"val/{b}/n_problems"]]
            except KeyError:
                ok = False
                break
            if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in got):
                ok = False
                break
            vals[b] = got
        if not ok:
            continue
        keep = [b for b in benchmark_order(benches) if b not in exclude]
        if not keep:
            continue
        w = np.array([vals[b][3] for b in keep], dtype=np.float64)
        rows = []
        for j, (metric, k) in enumerate((("avg", K), ("pass", 1), ("pass", K))):
            if metric == "pass" and k == K and K == 1 and j == 2:
                continue
            v = np.array([vals[b][j] for b in keep], dtype=np.float64)
            for b, x in zip(keep, v):
                rows.append({"benchmark": b, "metric": metric, "k": k, "value": float(x)})
            rows.append({"benchmark": ALL, "metric": metric, "k": k,
                         "value": float((v * w).sum() / w.sum())})
            rows.append({"benchmark": MACRO, "metric": metric, "k": k, "value": float(v.mean())})
        out[step] = (benches, rows)
    return out


def problem_matrix(ev: EvalData, K: int, maj: bool) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """Per-problem values at one checkpoint: columns avg, pass@1..K, maj@(1,2,4..K)."""
    cols: list[tuple[str, int]] = [("avg", 0)] + [("pass", k) for k in range(1, K + 1)]
    mats = [avg_per_problem(ev.n, ev.c)[:, None], pass_at_k_matrix(ev.n, ev.c, range(1, K + 1))]
    if maj and ev.has_preds:
        codes = factorize_answers(ev.sample_preds)
        for k in pass_at_k_curve_ks(K):  # 1, 2, 4, ..., K
            mats.append(
                maj_at_k(ev.sample_problem, ev.sample_position, codes, ev.sample_scores, ev.n, k)[
                    :, None
                ]
            )
            cols.append(("maj", k))
    values = np.hstack(mats)
    # a problem id may repeat (e.g. duplicated prompts in a dump): number the repeats
    ids = pd.Series(ev.ids, dtype=object)
    occ = ids.groupby([pd.Series(ev.source, dtype=object), ids]).cumcount().to_numpy()
    index = pd.MultiIndex.from_arrays([ev.source, ev.ids, occ], names=["source", "id", "occ"])
    return pd.DataFrame(values, index=index), cols


# --------------------------------------------------------------------------------------------
# training frame
# --------------------------------------------------------------------------------------------


def _derive_training(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()

    def col(name):
        return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)

    prompts = col("prompts")
    s1, s2 = col("rollouts/stage1"), col("rollouts/stage2")
    df["rollouts/total"] = s1 + s2.fillna(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        df["rollouts/stage1_per_prompt"] = s1 / prompts
        df["rollouts/stage2_per_prompt"] = s2 / prompts
        if "rollouts/per_prompt" not in df:
            df["rollouts/per_prompt"] = df["rollouts/total"] / prompts
        for g in ("solve_none", "solve_partial", "solve_all"):
            df[f"groups/frac_{g}"] = col(f"groups/{g}") / prompts
    df["x/prompts"] = col("samples/seen") if "samples/seen" in df else prompts.cumsum()
    df["x/rollouts"] = df["rollouts/total"].cumsum()
    df["x/tokens"] = col("tokens/generated").cumsum()
    return df


TRAIN_COST_COLUMNS = [
    "label",
    "run",
    "experiment",
    "seed",
    "state",
    "step",
    "optim_steps",
    "prompts",
    "rollouts",
    "rpp_stage1",
    "rpp_stage2",
    "rpp_total",
    "tokens",
    "pass_K",
    "pass_K_per_Mtok",
]


def _cost_row(run: Run, label: str, tr: pd.DataFrame, step: int | None, pass_k: float) -> dict:
    row = {
        "label": label,
        "run": run.name,
        "experiment": run.experiment,
        "seed": run.seed,
        "state": run.state,
        "step": step,
    }
    if tr.empty:
        row.update(optim_steps=np.nan, prompts=np.nan, rollouts=np.nan, rpp_stage1=np.nan,
                   rpp_stage2=np.nan, rpp_total=np.nan, tokens=np.nan)
    else:
        t = tr if step is None else tr[tr["step"] <= step]
        if step is None and len(tr):
            row["step"] = int(tr["step"].max())

        def ssum(c):
            return float(pd.to_numeric(t[c], errors="coerce").sum()) if c in t and len(t) else np.nan

        if "optim/total" in t and len(t) and pd.notna(t["optim/total"].iloc[-1]):
            row["optim_steps"] = float(t["optim/total"].iloc[-1])
        else:
            row["optim_steps"] = ssum("optim/steps")
        prompts = ssum("prompts")
        s1, s2 = ssum("rollouts/stage1"), ssum("rollouts/stage2")
        s2 = 0.0 if np.isnan(s2) else s2
        row["prompts"] = prompts
        row["rollouts"] = s1 + s2
        with np.errstate(invalid="ignore", divide="ignore"):
            row["rpp_stage1"] = s1 / prompts if prompts else np.nan
            row["rpp_stage2"] = s2 / prompts if prompts else np.nan
            row["rpp_total"] = (s1 + s2) / prompts if prompts else np.nan
        row["tokens"] = ssum("tokens/generated")
    row["pass_K"] = pass_k
    tok = row.get("tokens")
    row["pass_K_per_Mtok"] = (
        100.0 * pass_k / (tok / 1e6) if tok and not np.isnan(tok) and tok > 0 and not np.isnan(pass_k)
        else np.nan
    )
    return row


# --------------------------------------------------------------------------------------------
# main entry
# --------------------------------------------------------------------------------------------


def analyse(
    dirs: list[str | Path], opts: Options | None = None, with_eval: bool = True
) -> Analysis:
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
    skipped: list[tuple[str, str]] = []
    runs: list[Run] = []
    t1 = time.perf_counter()
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
            r.notes.insert(0, f"interrupted at step {st.get('step', '?')}/{st.get('total_steps', '?')} (its process "
                              f"died without recording an end; the same command resumes it)")
        elif r.state in ("failed", "killed"):
            err = (r.status or {}).get("error")
            r.notes.insert(0, f"run {r.state}" + (f": {err}" if err else "")
                           + "; analysed what is on disk")
        runs.append(r)
    timings["training"] = time.perf_counter() - t1

    run_label = assign_labels(runs, opts)
    label_order, label_experiment = order_labels(runs, run_label, opts.order)

    # ---- training frame
    frames = []
    for r in runs:
        tr = r.training() if r.kind == "native" else pd.DataFrame()
        if tr.empty:
            continue
        d = _derive_training(tr)
        d.insert(0, "label", run_label[str(r.path)])
        d.insert(1, "run", str(r.path))
        d.insert(2, "experiment", r.experiment)
        frames.append(d)
    training = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # ---- K
    K = opts.k
    if K is None:
        # from the runs validated after step 0 when there are any: a killed run (left out,
        # analysis.exclusions) with another eval.n_val must not set the K of the tables
        nvals = ([r.n_val for r in runs if r.n_val and max(r.eval_steps, default=0) > 0]
                 or [r.n_val for r in runs if r.n_val])
        K = max(nvals) if nvals else None

    # ---- trajectories: read every checkpoint (problem-level counts only)
    t2 = time.perf_counter()
    loaded: list[tuple[Run, EvalData]] = []
    unknown_sources: set[str] = set()
    excluded_any = False
    traj_rows: list[dict] = []
    to_read: list[tuple[Run, int]] = []
    if with_eval:
        for r in runs:
            from_summary = (
                summary_trajectory(r, K, opts.exclude_sources) if (opts.use_summary and K) else {}
            )
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
            ev, dropped = _drop_excluded(ev, opts.exclude_sources)
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
    trajectory = pd.DataFrame(
        traj_rows, columns=["label", "run", "step", "benchmark", "metric", "k", "value"]
    )
    timings["trajectories"] = time.perf_counter() - t2
    if excluded_any:
        notes.append(
            "data_source(s) " + ", ".join(repr(s) for s in opts.exclude_sources)
            + " left out of the tables (as the seed's macro accuracy does); --exclude-sources '' keeps them"
        )
    if unknown_sources:
        notes.append(
            "data_source(s) not among the paper's benchmarks ("
            + ", ".join(BENCHMARKS) + "): " + ", ".join(sorted(unknown_sources))
            + "; reported under their own names"
        )

    # ---- checkpoint choice and per-problem values there (runs in parallel threads: parsing
    # and numpy release the GIL)
    t3 = time.perf_counter()
    ck_rows = []
    per_label_frames: dict[str, list[pd.DataFrame]] = {}
    per_label_cols: dict[str, list[tuple[str, int]]] = {}
    per_label_steps: dict[str, list[int]] = {}
    cost_rows = []
    problems: dict[str, tuple[pd.DataFrame, list[tuple[str, int]]]] = {}

    def judge(r: Run):
        rt = trajectory[trajectory["run"] == str(r.path)]
        step, how = choose_checkpoint(rt, spec, K) if with_eval else (None, "no evaluation")
        if step is None:
            return rt, None, how, None
        try:
            ev = r.eval(step, samples=True)
            _check_summary(r, step, ev)
            ev, _ = _drop_excluded(ev, opts.exclude_sources)
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

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        judged = list(pool.map(judge, runs))
    # untrained and partial runs are not results: out, or kept as rows of their own
    keep, run_label, excluded_runs, ex_notes = split_runs(
        runs, [j[1] if j[3] is not None else None for j in judged], run_label,
        opts.include_base, opts.include_partial)
    notes += ex_notes
    if len(keep) < len(runs) or excluded_runs:
        runs, judged = [runs[i] for i in keep], [judged[i] for i in keep]
        label_order, label_experiment = order_labels(runs, run_label, opts.order)
        training, trajectory = (relabel(df, run_label) for df in (training, trajectory))
    for r, (rt, step, how, mc) in zip(runs, judged):
        lab = run_label[str(r.path)]
        pass_k = np.nan
        if step is not None and mc is not None:
            sel = rt[(rt["step"] == step) & (rt["benchmark"] == ALL) & (rt["metric"] == "pass")
                     & (rt["k"] == K)]
            pass_k = float(sel["value"].iloc[0]) if len(sel) else np.nan
            mat, cols = mc
            problems[str(r.path)] = mc
            per_label_frames.setdefault(lab, []).append(mat)
            prev = per_label_cols.get(lab)
            if prev is None or len(cols) < len(prev):
                per_label_cols[lab] = cols
            per_label_steps.setdefault(lab, []).append(step)
            ck_rows.append({"label": lab, "run": str(r.path), "step": step, "how": how})
        elif with_eval and not r.eval_files and r.kind == "native":
            r.notes.append("no evaluation yet: in the training figures and cost table only")
        cost_rows.append(_cost_row(r, lab, r.training() if r.kind == "native" else pd.DataFrame(),
                                   step, pass_k))
    checkpoints = pd.DataFrame(ck_rows, columns=["label", "run", "step", "how"])
    cost = pd.DataFrame(cost_rows, columns=TRAIN_COST_COLUMNS)
    timings["checkpoint_load"] = time.perf_counter() - t3

    # ---- pooled per-label results with bootstrap CIs
    t4 = time.perf_counter()
    res_rows = []
    all_sources: dict[str, None] = {}  # ordered: benchmarks in the order the runs list them
    for lab in label_order:
        mats, steps = per_label_frames.get(lab), per_label_steps.get(lab, [])
        if not mats:
            continue
        cols = per_label_cols[lab]
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
                pooled = pd.DataFrame(np.nanmean(stack, axis=0) if np.isnan(stack).any()
                                      else stack.mean(axis=0), index=common)
        sources = pooled.index.get_level_values("source").to_numpy()
        order = benchmark_order(sources)
        all_sources.update(dict.fromkeys(order))
        codes = _codes(sources, order)
        vals = pooled.to_numpy(dtype=np.float64)
        s = summarize(vals, codes, len(order))
        ci = bootstrap_ci(vals, codes, len(order), n_boot=opts.n_boot, seed=opts.seed,
                          level=opts.level) if opts.n_boot > 0 else None
        step_val = steps[0] if len(set(steps)) == 1 else np.nan
        for j, (metric, k) in enumerate(cols):
            kk = k if metric != "avg" else (K or 0)
            for g, b in enumerate(order):
                res_rows.append(_res(lab, b, metric, kk, s["per_group"][g, j],
                                     ci["group_lo"][g, j] if ci else np.nan,
                                     ci["group_hi"][g, j] if ci else np.nan,
                                     s["n_problems"][g], s["n_defined"][g, j], step_val, len(mats)))
            res_rows.append(_res(lab, ALL, metric, kk, s["micro"][j],
                                 ci["micro_lo"][j] if ci else np.nan,
                                 ci["micro_hi"][j] if ci else np.nan,
                                 int(s["n_problems"].sum()), s["micro_defined"][j], step_val, len(mats)))
            res_rows.append(_res(lab, MACRO, metric, kk, s["macro"][j],
                                 ci["macro_lo"][j] if ci else np.nan,
                                 ci["macro_hi"][j] if ci else np.nan,
                                 int(s["n_problems"].sum()), s["micro_defined"][j],
                                 step_val, len(mats)))
    results = pd.DataFrame(
        res_rows,
        columns=["label", "benchmark", "metric", "k", "value", "lo", "hi", "n_problems",
                 "n_defined", "step", "n_runs"],
    )
    timings["results"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    benches = benchmark_order(all_sources) if all_sources else benchmark_order(
        trajectory["benchmark"][~trajectory["benchmark"].isin([ALL, MACRO])].unique()
        if len(trajectory) else []
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


def _check_summary(run: Run, step: int, ev: EvalData) -> None:
    """Compare the recomputed overall Avg with the run's eval/summary.jsonl line (a cheap check
    that the summary and the per-problem file agree)."""
    if run.summary is None or ev.n.size == 0:
        return
    row = run.summary[run.summary["step"] == step]
    if row.empty:
        return
    nv = int(row["n_val"].iloc[0]) if "n_val" in row and pd.notna(row["n_val"].iloc[0]) else None
    key = f"val/all/avg@{nv}" if nv else None
    if key and key in row and pd.notna(row[key].iloc[0]):
        mine = float(np.mean(avg_per_problem(ev.n, ev.c)))
        theirs = float(row[key].iloc[0])
        if abs(mine - theirs) > 1e-6:
            run.notes.append(
                f"step {step}: eval/summary.jsonl says {key}={theirs:.6f}, the problems give "
                f"{mine:.6f} (tables use the problems)"
            )
