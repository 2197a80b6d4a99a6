"""Claims as data: load them from YAML, judge them on an analysis, write the claims table.

A claim (``analysis/paper_claims.yaml`` ships the paper's C1-C8; users add or replace claims
with ``--claims FILE``) is one or more comparisons *variant vs reference* on a metric with a
claimed direction. Each comparison is judged at the analysis's judged checkpoint by
:mod:`analysis.paired` (hierarchical bootstrap over seeds and problems, :mod:`dars.stats`), and
its verdict - ``holds``, ``contradicted``, ``inconclusive`` or ``not run`` - comes only from the
interval and the claimed direction (:func:`dars.stats.verdict`). Nothing here knows which way a
claim is expected to go.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import pandas as pd
import yaml

from analysis.core import Analysis
from analysis.names import benchmark_display
from analysis.paired import METRIC_HELP, Comparer, paired_delta_frame, parse_metric
from dars.stats import DIRECTIONS, NOT_RUN, combine_verdicts, verdict

PAPER_CLAIMS = Path(__file__).with_name("paper_claims.yaml")
CLAIM_KEYS = {"id", "text", "quote", "source", "variant", "reference", "metric", "direction", "comparisons"}
COMPARISON_KEYS = {"variant", "reference", "metric", "direction"}


class ClaimsError(ValueError):
    """A claims file that cannot be used (the message names the file and the claim)."""


@dataclass(frozen=True)
class Check:
    """One comparison of a claim."""

    variant: str
    reference: str
    metric: str
    direction: str


@dataclass
class Claim:
    id: str
    text: str
    checks: list[Check]
    quote: str = ""
    source: str = ""
    origin: str = ""  # the file it came from


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _names(value, what: str, where: str) -> list[str]:
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise ClaimsError(f"{where}: {what} must be a name or a list of names, got {value!r}")


def _checks(spec: dict, defaults: dict, where: str) -> list[Check]:
    merged = {**defaults, **spec}
    for key in ("variant", "reference", "metric", "direction"):
        if key not in merged:
            raise ClaimsError(f"{where}: missing {key!r}")
    direction = str(merged["direction"])
    if direction not in DIRECTIONS:
        raise ClaimsError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    metrics = _names(merged["metric"], "metric", where)
    for m in metrics:
        try:
            parse_metric(m)
        except ValueError as e:
            raise ClaimsError(f"{where}: {e}") from None
    variants = _names(merged["variant"], "variant", where)
    references = _names(merged["reference"], "reference", where)
    return [Check(v, r, m, direction) for v, r, m in product(variants, references, metrics)]


def parse_claims(data, origin: str = "<claims>") -> list[Claim]:
    """Claims from the parsed YAML (a mapping with a ``claims`` list, or the list itself);
    ValueError naming the file and claim on anything malformed or unknown."""
    items = data.get("claims") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ClaimsError(f"{origin}: expected a 'claims:' list")
    out, seen = [], set()
    for i, item in enumerate(items):
        where = f"{origin}: claim {i + 1}"
        if not isinstance(item, dict):
            raise ClaimsError(f"{where}: expected a mapping, got {item!r}")
        cid = str(item.get("id", "")).strip()
        if not cid:
            raise ClaimsError(f"{where}: missing 'id'")
        where = f"{origin}: claim {cid}"
        if cid in seen:
            raise ClaimsError(f"{where}: id used twice")
        seen.add(cid)
        unknown = set(item) - CLAIM_KEYS
        if unknown:
            raise ClaimsError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(CLAIM_KEYS)}")
        defaults = {k: item[k] for k in COMPARISON_KEYS if k in item}
        if "comparisons" in item:
            comps = item["comparisons"]
            if not isinstance(comps, list) or not comps:
                raise ClaimsError(f"{where}: 'comparisons' must be a non-empty list")
            checks = []
            for j, comp in enumerate(comps):
                if not isinstance(comp, dict) or set(comp) - COMPARISON_KEYS:
                    raise ClaimsError(f"{where}: comparison {j + 1} must be a mapping of {sorted(COMPARISON_KEYS)}")
                checks += _checks(comp, defaults, f"{where}, comparison {j + 1}")
        else:
            checks = _checks({}, defaults, where)
        out.append(
            Claim(
                cid,
                str(item.get("text", "")).strip(),
                checks,
                str(item.get("quote", "") or "").strip(),
                str(item.get("source", "") or "").strip(),
                origin,
            )
        )
    return out


def load_claims(files=(), paper: bool = True) -> list[Claim]:
    """The shipped claims (``paper``) followed by those of ``files``; a claim whose id is
    already there replaces it in place."""
    claims: dict[str, Claim] = {}
    sources = ([PAPER_CLAIMS] if paper else []) + [Path(f) for f in files]
    for path in sources:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ClaimsError(f"{path}: cannot read claims ({e})") from None
        for c in parse_claims(data, str(path)):
            claims[c.id] = c
    return list(claims.values())


# --------------------------------------------------------------------------------------------
# judging
# --------------------------------------------------------------------------------------------

CLAIM_COLUMNS = [
    "claim",
    "variant",
    "reference",
    "metric",
    "direction",
    "unit",
    "delta",
    "lo",
    "hi",
    "half_width",
    "n_seeds",
    "n_seeds_ref",
    "paired_seeds",
    "n_problems",
    "verdict",
    "note",
    "text",
    "source",
]


def judge_claims(a: Analysis, claims: list[Claim], cmp: Comparer) -> pd.DataFrame:
    """One row per comparison of every claim; Δ, CI and half-width in ``unit`` (fractions for
    Avg/Pass, as every CSV; the metric's own unit otherwise)."""
    rows = []
    for claim in claims:
        for ch in claim.checks:
            c = cmp.compare(ch.variant, ch.reference, ch.metric)
            d = c.delta
            rows.append(
                {
                    "claim": claim.id,
                    "variant": c.variant_label or ch.variant,
                    "reference": c.reference_label or ch.reference,
                    "metric": c.metric.display(a.K),
                    "direction": ch.direction,
                    "unit": c.metric.unit,
                    "delta": d.estimate if d else math.nan,
                    "lo": d.lo if d else math.nan,
                    "hi": d.hi if d else math.nan,
                    "half_width": d.half_width if d else math.nan,
                    "n_seeds": d.n_seeds if d else 0,
                    "n_seeds_ref": d.n_seeds_ref if d else 0,
                    "paired_seeds": d.paired_seeds if d else False,
                    "n_problems": d.n_problems if d else 0,
                    "verdict": verdict(d, ch.direction),
                    "note": "; ".join(
                        ([c.reason] if c.reason else [])
                        + c.notes
                        + ([_no_interval(d)] if d and not math.isfinite(d.lo) else [])
                    ),
                    "text": claim.text,
                    "source": claim.source,
                }
            )
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _no_interval(d) -> str:
    if d.n_problems == 0 and min(d.n_seeds, d.n_seeds_ref) < 2:
        return "a per-run quantity needs >= 2 seeds per group for an interval"
    return "no interval (too few defined values)"


def claim_summary(claims: list[Claim], table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its comparisons' verdicts combined (all must hold)."""
    rows = []
    for c in claims:
        sub = table[table["claim"] == c.id]
        rows.append(
            {
                "claim": c.id,
                "verdict": combine_verdicts(sub["verdict"].tolist()),
                "comparisons": len(sub),
                "text": c.text,
                "quote": c.quote,
                "source": c.source,
            }
        )
    return pd.DataFrame(rows, columns=["claim", "verdict", "comparisons", "text", "quote", "source"])


# --------------------------------------------------------------------------------------------
# rendering and writing
# --------------------------------------------------------------------------------------------


def _num(v: float, digits: int, sign: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _display(unit: str) -> tuple[float, int]:
    """(scale, digits) of a unit in the Markdown tables: fractions as points."""
    return (100.0, 1) if unit == "fraction" else (1.0, 3) if unit == "nats" else (1.0, 2)


def _seeds(row) -> str:
    if row["verdict"] == NOT_RUN:
        return "–"
    if row["paired_seeds"]:
        return f"{row['n_seeds']} paired"
    return f"{row['n_seeds']} vs {row['n_seeds_ref']}"


def claims_markdown(table: pd.DataFrame, summary: pd.DataFrame, level: float) -> str:
    pct = f"{round(100 * level)}% CI"
    L = [
        "| Claim | Comparison | Metric | Δ | " + pct + " | ± | Seeds | Problems | Verdict |",
        "|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    for _, r in table.iterrows():
        sc, dg = _display(r["unit"])
        lo, hi = sc * r["lo"], sc * r["hi"]
        ci = "–" if not math.isfinite(lo) else f"[{_num(lo, dg)}, {_num(hi, dg)}]"
        claimed = ">" if r["direction"] == "greater" else "<"
        L.append(
            f"| {r['claim']} | {r['variant']} vs {r['reference']} ({claimed} 0) | "
            f"{r['metric']} | {_num(sc * r['delta'], dg)} | {ci} | "
            f"{_num(sc * r['half_width'], dg, sign=False)} | {_seeds(r)} | "
            f"{r['n_problems'] or '–'} | **{r['verdict']}** |"
        )
    L.append("")
    for _, s in summary.iterrows():
        src = f" Source: {s['source']}" if s["source"] else ""
        quote = f' ("{s["quote"]}")' if s["quote"] else ""
        L.append(f"- **{s['claim']}: {s['verdict']}**. {s['text']}.{src}{quote}" + ("." if src or quote else ""))
    notes = [(r["claim"], r["variant"], r["reference"], r["note"]) for _, r in table.iterrows() if r["note"]]
    if notes:
        L.append("")
        L += [f"- {c} {v} vs {ref}: {n}" for c, v, ref, n in notes]
    return "\n".join(L) + "\n"


def _caption(a: Analysis, n_boot: int) -> str:
    o = a.options
    return (
        f"Δ = variant − reference at the judged checkpoint ({o.checkpoint}); Avg/Pass in "
        "points (the CSVs hold fractions), overall = every problem weighs the same. "
        f"{round(100 * o.level)}% CI: "
        f"hierarchical bootstrap over seeds and problems (B={n_boot}, seed={o.seed}), t "
        "interval with the small-seed correction of dars.stats"
        + (
            "; between trained groups with shared seeds, the run-to-run variance is pooled over "
            "every group of the sweep run with those seeds (seeds as blocks)"
            if o.pool_seed_variance
            else "; each comparison's own seed variance"
        )
        + "; `base` = each run's own step-0 evaluation. Verdict: holds = CI entirely on the "
        "claimed side of 0, "
        "contradicted = entirely on the other side, else inconclusive."
    )


def paired_markdown(frame: pd.DataFrame, a: Analysis) -> str:
    """Rows = variant vs reference and metric; columns = benchmarks and overall; cells
    ``Δ [lo, hi]`` in points."""
    if frame.empty:
        return "No paired comparisons could be made.\n"
    benches = [b for b in a.benchmarks if b in set(frame["benchmark"])] + ["all"]
    L = [
        "| Comparison | Metric | Seeds | " + " | ".join(benchmark_display(b) for b in benches) + " |",
        "|---|---|---|" + "---:|" * len(benches),
    ]
    for (v, ref, m), g in frame.groupby(["variant", "reference", "metric"], sort=False):
        g = g.set_index("benchmark")
        first = g.iloc[0]
        seeds = (
            f"{first['n_seeds']} paired" if first["paired_seeds"] else f"{first['n_seeds']} vs {first['n_seeds_ref']}"
        )
        cells = []
        for b in benches:
            if b not in g.index:
                cells.append("–")
                continue
            r = g.loc[b]
            cells.append(
                f"{100 * r['delta']:+.1f} [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]"
                if math.isfinite(r["lo"])
                else f"{100 * r['delta']:+.1f}"
            )
        L.append(f"| {v} vs {ref} | {m} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(L) + "\n"


def claims_n_boot(a: Analysis) -> int:
    """Bootstrap replicates for the claims: ``--bootstrap``, or 1000 when it is 0 (a verdict
    needs an interval)."""
    return a.options.n_boot if a.options.n_boot > 0 else 1000


def write_claims(a: Analysis, out: Path, claims: list[Claim], cmp: Comparer | None = None) -> dict[str, Path]:
    """Write ``claims.{md,csv}``, ``claims_summary.csv`` and ``paired_deltas.{md,csv}`` under
    ``out``; returns name -> Markdown path. ``cmp``: a comparer to reuse (e.g. the one that
    decided the tables' bold bests), used only when it has the claims' bootstrap size."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_boot = claims_n_boot(a)
    if cmp is None or cmp.n_boot != n_boot:
        cmp = Comparer(
            a,
            n_boot=n_boot,
            seed=a.options.seed,
            level=a.options.level,
            pool_seed_variance=a.options.pool_seed_variance,
        )
    written = {}
    if claims:
        table = judge_claims(a, claims, cmp)
        summary = claim_summary(claims, table)
        left = "".join(f"\n- {n}" for n in cmp.notes)
        (out / "claims.md").write_text(
            claims_markdown(table, summary, a.options.level)
            + "\n"
            + _caption(a, n_boot)
            + "\n"
            + left
            + ("\n" if left else "")
        )
        table.to_csv(out / "claims.csv", index=False)
        summary.to_csv(out / "claims_summary.csv", index=False)
        written["claims"] = out / "claims.md"
    frame = paired_delta_frame(cmp)
    (out / "paired_deltas.md").write_text(
        paired_markdown(frame, a) + "\nΔ in points [95% CI]. " + _caption(a, n_boot) + "\n"
    )
    frame.to_csv(out / "paired_deltas.csv", index=False)
    written["paired_deltas"] = out / "paired_deltas.md"
    return written


def add_claims_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("claims")
    g.add_argument(
        "--claims",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML file of claims judged on these runs (same format as analysis/paper_claims.yaml;"
        " a claim with the id of a shipped one replaces it; repeatable). Metrics: " + METRIC_HELP,
    )
    g.add_argument(
        "--no-paper-claims", action="store_true", help="do not judge the paper's claims C1-C8 (only those of --claims)"
    )


def claims_from_args(args: argparse.Namespace) -> list[Claim]:
    try:
        return load_claims(args.claims, paper=not args.no_paper_claims)
    except ClaimsError as e:
        raise SystemExit(f"error: {e}") from None
