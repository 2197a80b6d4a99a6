"""One command: every table and figure from run directories, plus an ``index.md``.

    python -m analysis.regenerate <sweep-or-run-dir> [...more dirs] --out <dir>

Finds every run below the given directories (Hydra multirun layout, single runs, runs copied
back from a cluster, folders of seed/verl validation dumps), writes ``<out>/tables/*`` (including
the claims table ``claims.{md,csv}`` and the paired differences ``paired_deltas.{md,csv}``),
``<out>/figures/*`` and ``<out>/index.md`` (which embeds them, the claims first), prints the main
table, the claims table and what was skipped and why. Runs that are not complete trained
results (judged at step 0, or stopped before their total_steps) are listed, not ranked
(:mod:`analysis.exclusions`). The report is written into a staging folder and moved into place
only when complete (:mod:`analysis.publish`). Exit status 2 when the inputs hold no runs (a
mistyped path, an empty folder) and 1 when runs were found but none could be analysed; in both
cases ``--out`` is left untouched.
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from analysis.claims import add_claims_args, claims_from_args, write_claims
from analysis.cli import add_analysis_args, options_from_args
from analysis.core import Analysis, analyse
from analysis.exclusions import excluded_section, total_steps
from analysis.figures import FIGURES, add_figure_args, write_figures
from analysis.publish import NO_RUNS, no_runs_message, refuse_missing_inputs, roots_without_runs, staged
from analysis.significance import make_comparer
from analysis.tables import print_report, write_tables

FIGURE_CAPTIONS = {
    1: "Token-level policy entropy (nats) of the update batch vs training: (a) mean over all "
    "response tokens (`entropy/token_mean`), (b) mean of per-sequence means "
    "(`entropy/seq_mean`). Several seeds: mean over seeds, band = min-max over seeds.",
    2: "Rollouts per prompt vs training: (a) stage 1, (b) stage 2 (extra DARS rollouts), "
    "(c) total, and (d) stage-2 rollouts per training step. Several seeds: mean over seeds, "
    "band = min-max over seeds.",
    3: "Pass@1 vs Pass@K (overall, micro) over validation checkpoints; arrows follow time, the "
    "hollow marker is the first checkpoint (the paper's first figure). Several seeds: mean "
    "over seeds at the steps every seed evaluated, error bars = min-max over seeds.",
    4: "Unbiased Pass@k for k = 1..K (log2 axis) at the judged checkpoint, per benchmark and "
    "overall (micro). Several seeds: mean over seeds, band = min-max over seeds; one run: "
    "band = bootstrap CI over problems.",
    5: "Analytic: cumulative advantage n*S(p) of a group of n=8 rollouts, GRPO without std "
    "(2p(1-p)) and with std (2*sqrt(p(1-p))), the ET target (flat at the peak) and the HW "
    "target (2(1-p)*peak) for p < 0.5; dots: what the integer schedule delivers at p_hat=c/8.",
    6: "Analytic: expected total rollouts per prompt vs the prompt's true solve rate q for n=8: "
    "ET (n_max 32), HW (n_max 64), the pre-August-2025 lookup tables, and plain GRPO.",
    7: "Training accuracy of the stage-1 rollouts (before any filter) and the fraction of "
    "prompts whose merged group solves none / some / all of its rollouts. Several seeds: "
    "mean over seeds, band = min-max over seeds.",
}


def _runs_section(a: Analysis) -> list[str]:
    lines = [
        "| Label | Run | Experiment | Seed | State | Train steps | Evaluations | Judged at |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for r in a.runs:
        lab = a.run_label.get(str(r.path), r.name)
        tr = r.training() if r.kind == "native" else None
        steps = int(tr["step"].max()) if tr is not None and len(tr) else "–"
        total = total_steps(r)
        steps = f"{steps} of {total}" if total is not None else steps
        ck = a.checkpoints[a.checkpoints["run"] == str(r.path)]
        judged = f"{int(ck['step'].iloc[0])} ({ck['how'].iloc[0]})" if len(ck) else "–"
        lines.append(
            f"| {lab} | `{r.path}` | {r.experiment} | {r.seed if r.seed is not None else '–'} | "
            f"{r.state if r.kind == 'native' else r.kind + ' dump'} | {steps} | "
            f"{len(r.eval_steps)} | {judged} |"
        )
    return lines


def write_index(
    a: Analysis | None,
    out: Path,
    tables: dict[str, Path],
    figures: dict[int, list[Path]],
    fig_notes: list[str],
    argv: list[str],
    report: str,
) -> Path:
    out = Path(out)
    L = ["# DARS analysis", ""]
    L.append(
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by "
        f"`python -m analysis.regenerate {' '.join(shlex.quote(x) for x in argv)}`."
    )
    L.append("")
    if a is not None:
        o = a.options
        L.append(
            f"K = {a.K}; checkpoint = `{o.checkpoint}`; bootstrap B = {o.n_boot}, seed = "
            f"{o.seed}, level = {o.level:g}; excluded data sources: "
            f"{', '.join(o.exclude_sources) or 'none'}."
        )
        L.append("")
        L += excluded_section(a.excluded)  # before any number: what the numbers leave out
    if "claims" in tables:  # the verdicts first: what the sweep says about each claim
        p = tables["claims"]
        L += [
            "## Claims",
            "",
            p.read_text().rstrip(),
            "",
            (
                f"Files: [{p.name}](tables/{p.name}), [claims.csv](tables/claims.csv), "
                "[claims_summary.csv](tables/claims_summary.csv)"
            ),
            "",
        ]
    if a is not None:
        L += ["## Runs", ""] + _runs_section(a) + [""]
    titles = {
        "main": "Main table (Avg@K per benchmark, overall Avg@K and Pass@K, %)",
        "main_ci": "Main table with confidence intervals",
        "pass1": "Pass@1 per benchmark",
        "passk": "Pass@K per benchmark",
        "maj": "Majority vote (maj@K) per benchmark",
        "paired_deltas": "Paired differences (vs each run's step 0 and vs the baseline)",
        "cost": "Cost",
    }
    for key, title in titles.items():
        if key in tables:
            p = tables[key]
            L += [
                f"## {title}",
                "",
                p.read_text().rstrip(),
                "",
                f"Files: [{p.name}](tables/{p.name}), [{p.stem}.csv](tables/{p.stem}.csv)"
                + (f", [{p.stem}.tex](tables/{p.stem}.tex)" if p.with_suffix(".tex").exists() else ""),
                "",
            ]
    if figures:
        L += ["## Figures", ""]
        for num in sorted(figures):
            png = [p for p in figures[num] if p.suffix == ".png"]
            others = [p for p in figures[num] if p.suffix != ".png"]
            L.append(f"### Figure {num}: {FIGURES[num]}")
            L.append("")
            if png:
                L.append(f"![{FIGURES[num]}](figures/{png[0].name})")
                L.append("")
            L.append(
                FIGURE_CAPTIONS[num]
                + (" " + ", ".join(f"[{p.suffix[1:].upper()}](figures/{p.name})" for p in others) if others else "")
            )
            L.append("")
    if fig_notes:
        L += ["## Figures not drawn", ""] + [f"- {n}" for n in fig_notes] + [""]
    L += ["## Notes and skipped runs", "", "```", report.rstrip(), "```", ""]
    path = out / "index.md"
    path.write_text("\n".join(L))
    return path


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.regenerate",
        description="Find every run below the given directories and write all tables, figures "
        "and an index.md that embeds them; print the main table and what was skipped and why. "
        "Runs that are not complete trained results (judged at step 0, or stopped before their "
        "total_steps) are listed and left out (--include-base / --include-partial show them). "
        "Exit status 2 when the inputs hold no runs, 1 when none could be analysed; then --out "
        "is left untouched.",
    )
    ap.add_argument("dirs", nargs="+", help="sweep, run or validation-dump directories")
    ap.add_argument(
        "--out",
        required=True,
        help="output directory (created); its tables/, figures/ and index.md are "
        "replaced only once the new ones are complete",
    )
    ap.add_argument("--no-figures", action="store_true", help="tables only")
    ap.add_argument("--quiet", action="store_true", help="print only problems, not the table")
    add_analysis_args(ap)
    add_claims_args(ap)
    add_figure_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    out = Path(args.out)
    # a mistyped path is never what was meant: a report without its runs would look complete
    if refuse_missing_inputs(args.dirs, out):
        return NO_RUNS

    claims = claims_from_args(args)
    t0 = time.perf_counter()
    a = analyse(args.dirs, options_from_args(args))
    found = [str(r.path) for r in a.runs] + [p for p, _ in a.skipped] + [e.path for e in a.excluded]
    if not found:
        print(no_runs_message(args.dirs, out, a.notes), file=sys.stderr)
        return NO_RUNS
    if not a.runs:  # runs found, none usable: the console says why; the old report stays
        print_report(a, sys.stdout, show_table=False)
        hint = (
            "; --include-base / --include-partial analyse the untrained / unfinished runs as they are"
            if a.excluded
            else ""
        )
        print(
            f"error: nothing could be analysed (no complete trained run with training metrics "
            f"or evaluations{hint}). Nothing was written: {out} was left as it was.",
            file=sys.stderr,
        )
        return 1
    for d in roots_without_runs(args.dirs, found) if len(args.dirs) > 1 else []:
        a.notes.append(f"{d}: no run directory below it (mistyped?)")

    with staged(out) as tmp:
        cmp = make_comparer(a)  # one set of comparisons for the bold bests and the claims
        tables = write_tables(a, tmp / "tables", cmp)
        if a.has_eval or len(a.training):
            tables.update(write_claims(a, tmp / "tables", claims, cmp))
        t_tables = time.perf_counter() - t0

        t1 = time.perf_counter()
        figures, fig_notes = (
            ({}, [])
            if args.no_figures
            else write_figures(a, tmp / "figures", args.only, args.formats, args.x_axis, args.smooth, args.dpi)
        )
        t_figs = time.perf_counter() - t1

        buf = io.StringIO()
        print_report(a, buf, show_table=False)
        for n in fig_notes:
            print(f"Note: {n}", file=buf)
        write_index(a, tmp, tables, figures, fig_notes, argv, buf.getvalue())
        claims_text = "Claims (tables/claims.md)\n\n" + tables["claims"].read_text() if "claims" in tables else ""
    index = out / "index.md"

    print_report(a, sys.stdout, show_table=not args.quiet, after_table=claims_text)
    for n in fig_notes:
        print(f"Note: {n}")
    print(
        f"Wrote {len(tables)} tables and {len(figures)} figures to {out} (index: {index}); "
        f"analysis + tables {t_tables:.2f} s, figures {t_figs:.2f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
