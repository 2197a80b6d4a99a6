"""Per-run numbers: one checkpoint's trajectory rows and per-problem values, one run's training
frame and cost row.

Everything here looks at a single run (or a single validation checkpoint of it);
:mod:`analysis.core` pools the runs of a label and builds the :class:`~analysis.core.Analysis`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.metrics import avg_per_problem, factorize_answers, maj_at_k, pass_at_k_matrix, summarize
from analysis.names import ALL, MACRO, benchmark_order
from analysis.readers import EvalData
from analysis.runs import Run
from dars.metrics import pass_at_k_curve_ks

# --------------------------------------------------------------------------------------------
# one validation checkpoint
# --------------------------------------------------------------------------------------------


def drop_excluded(ev: EvalData, exclude: tuple[str, ...]) -> tuple[EvalData, int]:
    """``ev`` without the problems of the ``exclude`` data sources, and how many were dropped."""
    if not exclude:
        return ev, 0
    mask = ~np.isin(ev.source.astype(str), list(exclude))
    dropped = int((~mask).sum())
    return (ev.select(mask) if dropped else ev), dropped


def group_codes(sources: np.ndarray, order: list[str]) -> np.ndarray:
    """Each problem's benchmark as its position in ``order`` (the groups of ``summarize``)."""
    pos = {b: i for i, b in enumerate(order)}
    return np.fromiter((pos[s] for s in sources), dtype=np.int64, count=len(sources))


def trajectory_rows(ev: EvalData, K: int) -> list[dict]:
    """Per-benchmark and overall Avg, Pass@1 and Pass@K of one checkpoint (no CI)."""
    order = benchmark_order(ev.source)
    codes = group_codes(ev.source, order)
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


def summary_trajectory(run: Run, K: int, exclude: tuple[str, ...]) -> dict[int, tuple[list[str], list[dict]]]:
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
        benches = sorted(
            {key[4:].rsplit("/", 1)[0] for key in rec if key.startswith("val/") and key.endswith(f"/avg@{nv}")}
            - {ALL, MACRO}
        )
        vals = {}
        ok = bool(benches)
        for b in benches:
            try:
                got = [
                    rec[f"val/{b}/avg@{nv}"],
                    rec[f"val/{b}/pass@1"],
                    rec[f"val/{b}/pass@{K}"],
                    rec[f"val/{b}/n_problems"],
                ]
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
            rows.append({"benchmark": ALL, "metric": metric, "k": k, "value": float((v * w).sum() / w.sum())})
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
            mats.append(maj_at_k(ev.sample_problem, ev.sample_position, codes, ev.sample_scores, ev.n, k)[:, None])
            cols.append(("maj", k))
    values = np.hstack(mats)
    # a problem id may repeat (e.g. duplicated prompts in a dump): number the repeats
    ids = pd.Series(ev.ids, dtype=object)
    occ = ids.groupby([pd.Series(ev.source, dtype=object), ids]).cumcount().to_numpy()
    index = pd.MultiIndex.from_arrays([ev.source, ev.ids, occ], names=["source", "id", "occ"])
    return pd.DataFrame(values, index=index), cols


def check_summary(run: Run, step: int, ev: EvalData) -> None:
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


# --------------------------------------------------------------------------------------------
# training frame
# --------------------------------------------------------------------------------------------


def derive_training(df: pd.DataFrame) -> pd.DataFrame:
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


def cost_row(run: Run, label: str, tr: pd.DataFrame, step: int | None, pass_k: float) -> dict:
    row = {
        "label": label,
        "run": run.name,
        "experiment": run.experiment,
        "seed": run.seed,
        "state": run.state,
        "step": step,
    }
    if tr.empty:
        row.update(
            optim_steps=np.nan,
            prompts=np.nan,
            rollouts=np.nan,
            rpp_stage1=np.nan,
            rpp_stage2=np.nan,
            rpp_total=np.nan,
            tokens=np.nan,
        )
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
        100.0 * pass_k / (tok / 1e6) if tok and not np.isnan(tok) and tok > 0 and not np.isnan(pass_k) else np.nan
    )
    return row
