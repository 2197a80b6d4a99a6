"""Command-line options shared by the entry points (the console report is
:func:`analysis.tables.print_report`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.checkpoints import parse_checkpoint
from analysis.core import Options
from analysis.names import EXCLUDED_SOURCES


def _label_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected PATTERN=LABEL, got {text!r}")
    pat, lab = text.split("=", 1)
    if not pat:
        raise argparse.ArgumentTypeError(f"empty pattern in {text!r}")
    return pat, lab


def _checkpoint(text: str) -> str:
    try:
        parse_checkpoint(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _level(text: str) -> float:
    v = float(text)
    if v > 1:
        v /= 100.0
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError("confidence level must be in (0, 1) or (0, 100)")
    return v


def add_analysis_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("runs and labels")
    g.add_argument(
        "--label",
        action="append",
        type=_label_pair,
        default=[],
        metavar="PATTERN=LABEL",
        help="name the row/line of the runs matching PATTERN (run directory name, path or "
        "experiment name; exact match first, then shell glob). Runs given the same label are "
        "pooled and treated as seeds of one group. Repeatable. Example: --label dars_et=DARS-ET",
    )
    g.add_argument(
        "--labels", metavar="FILE", help="YAML or JSON mapping PATTERN: LABEL (same meaning as --label; --label wins)"
    )
    g.add_argument(
        "--pool-seeds",
        action="store_true",
        default=True,
        help="the default: runs that differ only in their seed (run name without its "
        "'-s<seed>' part) form one label: one pooled row, one line with a band over seeds, one "
        "seed group in the claims and paired deltas",
    )
    g.add_argument(
        "--per-seed",
        "--no-pool-seeds",
        dest="pool_seeds",
        action="store_false",
        help="one label per run instead (seeds shown separately; the claims then compare single runs)",
    )
    g.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out runs whose name, path or experiment matches GLOB (repeatable)",
    )
    g.add_argument(
        "--order",
        metavar="L1,L2,...",
        help="row/legend order of labels (comma separated; unlisted labels follow in the "
        "default order: the seven experiments, then alphabetical)",
    )
    g.add_argument(
        "--include-base",
        action="store_true",
        help="show runs judged at step 0 (killed before training, or never validated after "
        "step 0: their numbers are the base model's) as rows '<label> (base)'; by default they "
        "are listed under 'Not trained / excluded runs' and left out. Never ranked or compared",
    )
    g.add_argument(
        "--include-partial",
        action="store_true",
        help="show runs that stopped or are still running before their total_steps as rows "
        "'<label> (partial)' (e.g. to watch a sweep in progress); by default they are listed "
        "with their step and left out. Never ranked or compared",
    )
    g = ap.add_argument_group("metrics")
    g.add_argument(
        "--checkpoint",
        type=_checkpoint,
        default="last",
        metavar="SPEC",
        help="checkpoint each run is judged at: 'last' (default), 'best:<benchmark>[:avg|pass|"
        "pass@<k>]' (highest value on that benchmark; 'all' = micro overall, 'macro'), or "
        "'step:<k>' (that step, else the latest evaluation before it)",
    )
    g.add_argument(
        "--k",
        type=int,
        default=None,
        metavar="K",
        help="K of Pass@K / Avg@K (default: the runs' eval.n_val, else the largest sample count)",
    )
    g.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="B",
        help="bootstrap resamples for the confidence intervals (default 1000; 0 = no CIs)",
    )
    g.add_argument(
        "--bootstrap-seed",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the bootstrap (default 0; same seed, same intervals)",
    )
    g.add_argument(
        "--ci", type=_level, default=0.95, metavar="LEVEL", help="confidence level, 0.95 or 95 (default 0.95)"
    )
    g.add_argument(
        "--exclude-sources",
        default=",".join(EXCLUDED_SOURCES),
        metavar="S1,S2",
        help="data_source values left out of every table and figure (default 'train', as the "
        "upstream repository's macro accuracy does; '' keeps all)",
    )
    g.add_argument(
        "--seed-variance",
        choices=("pooled", "own"),
        default="pooled",
        help="paired comparisons of trained groups: 'pooled' (default) estimates the run-to-run "
        "variance from every group of the sweep run with the same seeds (seeds as blocks: 12 "
        "degrees of freedom for 7 groups x 3 seeds), 'own' from the two compared groups only",
    )
    g.add_argument("--no-maj", action="store_true", help="skip maj@k even when preds are stored")
    g.add_argument(
        "--recompute-trajectories",
        action="store_true",
        help="compute every checkpoint's numbers (figure 3, best-checkpoint choice) from "
        "eval/step_<k>.jsonl instead of eval/summary.jsonl (the judged checkpoint is always "
        "computed from the per-problem file and checked against the summary)",
    )


def options_from_args(args: argparse.Namespace) -> Options:
    labels: dict[str, str] = {}
    if getattr(args, "labels", None):
        text = Path(args.labels).read_text()
        try:
            data = json.loads(text)
        except ValueError:
            import yaml

            data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise SystemExit(f"error: {args.labels} must hold a mapping PATTERN: LABEL")
        labels.update({str(k): str(v) for k, v in data.items()})
    labels.update(dict(args.label))
    return Options(
        k=args.k,
        checkpoint=args.checkpoint,
        n_boot=max(0, args.bootstrap),
        seed=args.bootstrap_seed,
        level=args.ci,
        labels=labels,
        exclude=list(args.exclude),
        pool_seeds=args.pool_seeds,
        pool_seed_variance=args.seed_variance == "pooled",
        exclude_sources=tuple(s for s in args.exclude_sources.split(",") if s.strip()),
        maj=not args.no_maj,
        order=[s.strip() for s in args.order.split(",")] if args.order else None,
        use_summary=not args.recompute_trajectories,
        include_base=args.include_base,
        include_partial=args.include_partial,
    )
