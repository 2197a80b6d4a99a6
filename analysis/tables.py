"""Tables: the paper's main table, per-benchmark Pass@K and maj@K, CIs, and the cost table.

Each table is a pandas DataFrame (rows = labels) rendered to Markdown, LaTeX (booktabs;
:mod:`analysis.render`) and CSV. A column's best value is bold only where it is significantly better than every other row
(:mod:`analysis.significance`; the footnote says what bold means). ``python -m analysis.tables
<dirs> --out <dir>`` writes them under ``<dir>/tables`` and prints the main table with
:func:`print_report` (the console report every entry point prints).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from analysis.cli import add_analysis_args, options_from_args
from analysis.core import Analysis, analyse
from analysis.exclusions import BASE_ONLY, excluded_lines
from analysis.names import ALL, MACRO, benchmark_display
from analysis.publish import NO_RUNS, no_runs_message, refuse_missing_inputs, staged
from analysis.render import PCT, to_latex, to_markdown
from analysis.significance import make_comparer, per_benchmark_columns, significant_best

# --------------------------------------------------------------------------------------------
# table frames
# --------------------------------------------------------------------------------------------


def _pick(a: Analysis, metric: str, k: int | None, field: str = "value") -> pd.DataFrame:
    """label x benchmark frame of one metric (fractions)."""
    df = a.results[a.results["metric"] == metric]
    if k is not None:
        df = df[df["k"] == k]
    if df.empty:
        return pd.DataFrame(index=pd.Index([], name="label"))
    piv = df.pivot_table(index="label", columns="benchmark", values=field, aggfunc="first", dropna=False)
    labels = [lab for lab in a.label_order if lab in piv.index]
    return piv.reindex(labels)


def _partial(a: Analysis, metric: str, k: int | None) -> pd.DataFrame:
    df = a.results[a.results["metric"] == metric]
    if k is not None:
        df = df[df["k"] == k]
    if df.empty:
        return pd.DataFrame()
    df = df.assign(partial=(df["n_defined"] < df["n_problems"]) & df["value"].notna())
    piv = df.pivot_table(index="label", columns="benchmark", values="partial", aggfunc="first")
    return piv.reindex([lab for lab in a.label_order if lab in piv.index])


def main_table(a: Analysis) -> pd.DataFrame:
    """Rows = labels; columns = each benchmark's Avg@K, overall Avg@K (micro), overall Pass@K
    (micro). Values are fractions (0..1)."""
    K = a.K
    avg = _pick(a, "avg", None)
    pk = _pick(a, "pass", K)
    cols = {}
    for b in a.benchmarks:
        cols[benchmark_display(b)] = avg.get(b, np.nan)
    cols[f"Avg@{K}"] = avg.get(ALL, np.nan)
    cols[f"Pass@{K}"] = pk.get(ALL, np.nan)
    out = pd.DataFrame(cols, index=avg.index if len(avg) else pk.index)
    out.index.name = "label"
    return out


def main_table_full(a: Analysis) -> pd.DataFrame:
    """The main table with every number behind it (CSV): per-benchmark Avg@K and Pass@K,
    micro and macro, CI bounds, checkpoint step and run count."""
    K = a.K
    rows = []
    for lab in a.label_order:
        sub = a.results[a.results["label"] == lab]
        if sub.empty:
            continue
        row = {"label": lab, "experiment": a.label_experiment.get(lab, lab)}
        steps = a.checkpoints[a.checkpoints["label"] == lab]["step"].tolist()
        row["step"] = steps[0] if len(set(steps)) == 1 else ";".join(map(str, steps))
        row["n_runs"] = int(sub["n_runs"].iloc[0])
        for metric, k, tag in (("avg", None, f"avg@{K}"), ("pass", 1, "pass@1"), ("pass", K, f"pass@{K}")):
            m = sub[sub["metric"] == metric]
            if k is not None:
                m = m[m["k"] == k]
            for _, r in m.iterrows():
                b = r["benchmark"]
                row[f"{b}/{tag}"] = r["value"]
                row[f"{b}/{tag}/lo"] = r["lo"]
                row[f"{b}/{tag}/hi"] = r["hi"]
                if metric == "avg":
                    row[f"{b}/n_problems"] = r["n_problems"]
        rows.append(row)
    return pd.DataFrame(rows)


def ci_table(a: Analysis, digits: int = 1) -> pd.DataFrame:
    """Like :func:`main_table` but each cell is ``value [lo, hi]`` in percent (strings)."""
    K = a.K
    val, lo, hi = (_pick(a, "avg", None, f) for f in ("value", "lo", "hi"))
    pv, plo, phi = (_pick(a, "pass", K, f) for f in ("value", "lo", "hi"))

    def cell(v, low, high):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if math.isnan(low) or math.isnan(high):
            return f"{PCT * v:.{digits}f}"
        return f"{PCT * v:.{digits}f} [{PCT * low:.{digits}f}, {PCT * high:.{digits}f}]"

    cols = {}
    for b in a.benchmarks:
        if b in val:
            cols[benchmark_display(b)] = [cell(*x) for x in zip(val[b], lo[b], hi[b])]
    if ALL in val:
        cols[f"Avg@{K}"] = [cell(*x) for x in zip(val[ALL], lo[ALL], hi[ALL])]
    if ALL in pv:
        cols[f"Pass@{K}"] = [cell(*x) for x in zip(pv[ALL], plo[ALL], phi[ALL])]
    out = pd.DataFrame(cols, index=val.index)
    out.index.name = "label"
    return out


def per_benchmark_table(a: Analysis, metric: str = "pass", k: int | None = None) -> pd.DataFrame:
    """Rows = labels; columns = each benchmark's ``metric@k``, then micro and macro."""
    k = a.K if k is None else k
    piv = _pick(a, metric, k)
    if piv.empty:
        return piv
    cols = {}
    for b in a.benchmarks:
        if b in piv:
            cols[benchmark_display(b)] = piv[b]
    cols["Micro"] = piv.get(ALL, np.nan)
    cols["Macro"] = piv.get(MACRO, np.nan)
    out = pd.DataFrame(cols, index=piv.index)
    out.index.name = "label"
    return out


def maj_k(a: Analysis) -> int | None:
    m = a.results[a.results["metric"] == "maj"]
    return int(m["k"].max()) if len(m) else None


COST_DISPLAY = {
    "step": "Step",
    "optim_steps": "Optim. steps",
    "prompts": "Prompts",
    "rollouts": "Rollouts",
    "rpp_stage1": "Roll./prompt S1",
    "rpp_stage2": "Roll./prompt S2",
    "rpp_total": "Roll./prompt",
    "tokens_M": "Gen. tokens (M)",
    "pass_K": "Pass@K",
    "pass_K_per_Mtok": "Pass@K / M tok",
}


def cost_table(a: Analysis) -> pd.DataFrame:
    """Per label (mean over its runs): training cost up to the judged checkpoint.

    Columns: Step, optimiser steps, prompts seen, total rollouts, rollouts per prompt (stage 1,
    stage 2, total), generated tokens (millions), Pass@K at the checkpoint (%) and Pass@K (%)
    per million generated tokens."""
    c = a.cost.copy()
    if c.empty:
        return pd.DataFrame()
    c["tokens_M"] = c["tokens"] / 1e6
    c["pass_K"] = c["pass_K"] * PCT
    num = [
        "step",
        "optim_steps",
        "prompts",
        "rollouts",
        "rpp_stage1",
        "rpp_stage2",
        "rpp_total",
        "tokens_M",
        "pass_K",
        "pass_K_per_Mtok",
    ]
    for col in num:
        c[col] = pd.to_numeric(c[col], errors="coerce")
    g = c.groupby("label", sort=False)[num].mean()
    g["n_runs"] = c.groupby("label", sort=False).size()
    g = g.reindex([lab for lab in a.label_order if lab in g.index])
    g = g.rename(columns={k: v.replace("K", str(a.K)) if "Pass@K" in v else v for k, v in COST_DISPLAY.items()})
    g.index.name = "label"
    return g


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def checkpoint_note(a: Analysis) -> str:
    parts = []
    for lab in a.label_order:
        ck = a.checkpoints[a.checkpoints["label"] == lab]
        if ck.empty:
            continue
        steps = sorted(set(ck["step"].tolist()))
        hows = sorted(set(ck["how"].tolist()))
        parts.append(f"{lab}: step {', '.join(map(str, steps))} ({'; '.join(hows)})")
    return "; ".join(parts)


def main_caption(a: Analysis) -> str:
    o = a.options
    ci = f"{round(o.level * 100)}% CI: percentile bootstrap over problems, B={o.n_boot}, seed={o.seed}"
    return (
        f"Avg@{a.K} per benchmark and overall (micro: every problem weighs the same), overall "
        f"unbiased Pass@{a.K}, in %. Checkpoint: {o.checkpoint}. {ci}."
    )


def _write_per_benchmark(
    out: Path,
    name: str,
    table: pd.DataFrame,
    caption: str,
    foot: str,
    bold: tuple[pd.DataFrame, str],
    partial: pd.DataFrame | None = None,
) -> Path:
    """One per-benchmark table as <name>.md, .tex and .csv; returns the Markdown path."""
    mask, rule = bold
    (out / f"{name}.md").write_text(to_markdown(table, bold_best=mask, partial=partial) + foot + rule + "\n")
    (out / f"{name}.tex").write_text(
        to_latex(table, bold_best=mask, caption=f"{caption} {rule}", label=f"tab:{name}", partial=partial)
    )
    table.to_csv(out / f"{name}.csv")
    return out / f"{name}.md"


def write_tables(a: Analysis, out: Path, cmp=None) -> dict[str, Path]:
    """Write every table (md, tex, csv) under ``out``; return name -> Markdown path. ``cmp``:
    the :class:`analysis.paired.Comparer` whose intervals decide the bold bests (made here when
    not given; share the claims' to compute each comparison once)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    K = a.K
    if a.has_eval:
        cmp = cmp if cmp is not None else make_comparer(a)
        mt = main_table(a)
        pmask = pd.DataFrame(False, index=mt.index, columns=mt.columns)
        pp = _partial(a, "pass", K)
        if ALL in pp:
            pmask[f"Pass@{K}"] = pp[ALL].reindex(mt.index).fillna(False).astype(bool)
        foot = _footnote(a, pmask)
        main_cols = {benchmark_display(b): ("avg", b) for b in a.benchmarks}
        main_cols.update({f"Avg@{K}": ("avg", ALL), f"Pass@{K}": ("pass", ALL)})
        bold, rule = significant_best(a, mt, main_cols, cmp)
        (out / "main.md").write_text(to_markdown(mt, bold_best=bold, partial=pmask) + foot + rule + "\n")
        (out / "main.tex").write_text(
            to_latex(mt, bold_best=bold, caption=f"{main_caption(a)} {rule}", label="tab:main", partial=pmask)
        )
        main_table_full(a).to_csv(out / "main.csv", index=False)
        written["main"] = out / "main.md"

        ct = ci_table(a)
        (out / "main_ci.md").write_text(to_markdown(ct, bold_best=False) + foot)
        ct.to_csv(out / "main_ci.csv")
        written["main_ci"] = out / "main_ci.md"

        pt = per_benchmark_table(a, "pass", K)
        ppart = _partial(a, "pass", K)
        ppart = ppart.rename(columns={b: benchmark_display(b) for b in ppart.columns if b not in (ALL, MACRO)})
        ppart = ppart.rename(columns={ALL: "Micro", MACRO: "Macro"})
        written["passk"] = _write_per_benchmark(
            out,
            "passk",
            pt,
            f"Unbiased Pass@{K} per benchmark (%), micro and macro overall.",
            foot,
            significant_best(a, pt, per_benchmark_columns(pt, a, "pass"), cmp),
            ppart,
        )
        p1 = per_benchmark_table(a, "pass", 1)
        written["pass1"] = _write_per_benchmark(
            out,
            "pass1",
            p1,
            f"Pass@1 (= Avg@{K}) per benchmark (%), micro and macro overall.",
            # per problem Pass@1 = c/n = Avg@K: the Avg comparisons (already made) decide
            foot,
            significant_best(a, p1, per_benchmark_columns(p1, a, "avg"), cmp),
        )
        mk = maj_k(a)
        if mk:
            mj = per_benchmark_table(a, "maj", mk)
            written["maj"] = _write_per_benchmark(
                out,
                "maj",
                mj,
                f"maj@{mk} (majority vote over extracted answers, %).",
                foot,
                significant_best(a, mj, per_benchmark_columns(mj, a, None), cmp),
            )

        a.results.to_csv(out / "results_long.csv", index=False)
        a.trajectory.to_csv(out / "trajectory.csv", index=False)
    cost = cost_table(a)
    if not cost.empty:
        digits = {
            c: (
                0
                if c in ("Step", "Optim. steps", "Prompts", "Rollouts", "n_runs")
                else 3
                if c.endswith("M tok")
                else 2
                if c.startswith("Roll./") or "tokens" in c
                else 1
            )
            for c in cost.columns
        }
        (out / "cost.md").write_text(
            to_markdown(cost, digits=digits, scale=1.0, bold_best=False)
            + f"\nCosts are training-time totals up to the judged checkpoint (validation generation "
            f"not counted). Pass@{K} in %; last column = Pass@{K} (%) per million generated tokens.\n"
        )
        (out / "cost.tex").write_text(
            to_latex(
                cost,
                digits=digits,
                scale=1.0,
                bold_best=False,
                caption="Training cost up to the judged checkpoint.",
                label="tab:cost",
            )
        )
        a.cost.to_csv(out / "cost.csv", index=False)
        written["cost"] = out / "cost.md"
    if len(a.training):
        a.training.to_csv(out / "training.csv", index=False)
    return written


def _footnote(a: Analysis, partial: pd.DataFrame | None = None) -> str:
    lines = ["", f"Checkpoints: {checkpoint_note(a)}."]
    if partial is not None and partial.to_numpy().any():
        lines.append(
            f"\\* averaged over the problems that have at least {a.K} samples "
            f"(others have Pass@{a.K} missing); see results_long.csv n_defined."
        )
    pooled = a.results.groupby("label")["n_runs"].first()
    pooled = pooled[pooled > 1]
    if len(pooled):
        lines.append(
            "Pooled runs (mean over runs, per problem): " + ", ".join(f"{lab} ({n})" for lab, n in pooled.items()) + "."
        )
    out = [e for e in a.excluded if not e.shown_as]
    if out:  # so that a table copied on its own still says it is not the whole sweep
        base = sum(e.kind == BASE_ONLY for e in out)
        lines.append(
            f"Left out: {len(out)} run(s) that are not complete trained results ("
            f"{base} not trained, {len(out) - base} partial; see 'Not trained / "
            "excluded runs' in index.md)."
        )
    shown = sorted({e.shown_as for e in a.excluded if e.shown_as})
    if shown:
        lines.append("Not results (shown on request, never ranked): " + ", ".join(shown) + ".")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# console report
# --------------------------------------------------------------------------------------------


def print_report(a: Analysis, out: TextIO, show_table: bool = True, after_table: str = "") -> None:
    """Main table (+ ``after_table``, e.g. the claims table) + what was skipped and why +
    per-run notes."""
    if show_table and a.has_eval:
        print(to_markdown(main_table(a), bold_best=False), file=out, end="")
        print(_footnote(a), file=out)
    elif show_table:
        print("No evaluation results to tabulate.", file=out)
    if show_table and after_table:
        print(after_table.rstrip() + "\n", file=out)
    print(f"Runs analysed: {len(a.runs)}", file=out)
    for lab, path, notes in a.run_notes():
        if notes:
            print(f"  {lab} ({path}):", file=out)
            for n in notes:
                print(f"    - {n}", file=out)
    if a.excluded:
        print(f"Not trained / excluded runs ({len(a.excluded)}): not complete trained results, never ranked", file=out)
        for line in excluded_lines(a.excluded):
            print(f"  {line}", file=out)
    if a.skipped:
        print(f"Skipped {len(a.skipped)} run(s):", file=out)
        for path, why in a.skipped:
            print(f"  {path}: {why}", file=out)
    for n in a.notes:
        print(f"Note: {n}", file=out)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.tables",
        description="Write the main, Pass@K, maj@K, CI and cost tables (Markdown, LaTeX, CSV) "
        "for every run below the given directories, and print the main table.",
    )
    ap.add_argument("dirs", nargs="+", help="sweep, run or validation-dump directories")
    ap.add_argument("--out", required=True, help="output directory (tables go to <out>/tables)")
    add_analysis_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    out = Path(args.out)
    if refuse_missing_inputs(args.dirs, out):
        return NO_RUNS
    a = _analyse_or_exit(args, options_from_args(args))
    if a is None:
        return 1
    if not (a.runs or a.skipped or a.excluded):
        print(no_runs_message(args.dirs, out, a.notes), file=sys.stderr)
        return NO_RUNS
    if not (a.has_eval or len(a.training)):  # nothing to tabulate: keep what is there
        print_report(a, sys.stdout)
        print(f"error: nothing could be analysed; {out} was left as it was", file=sys.stderr)
        return 1
    with staged(out) as tmp:
        write_tables(a, tmp / "tables")
    print_report(a, sys.stdout)
    return 0


def _analyse_or_exit(args, opts):
    try:
        return analyse(args.dirs, opts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
