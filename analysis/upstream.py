"""The upstream repository's ``analysis_results.py`` numbers, reproduced (docs/algorithm.md §8.2).

*Upstream* is the paper authors' repository, github.com/yangzhch6/DARS (docs/algorithm.md §1).

For one validation dump (``val_generations/<step>.json``: a JSON list of objects with ``score``
lists and ``data_source``) upstream's script prints:

* per-source accuracy: sum of scores / number of samples, per ``data_source``;
* **micro accuracy**: sum of all scores / all samples (the README's Avg@128);
* **macro accuracy**: mean of the per-source accuracies, ``data_source == "train"`` excluded;
* **Pass@k for k = 16, 32, ..., 128**: the unbiased estimator with ``c = sum(score)`` and ``n``
  *hard-coded to 128*, averaged over **all** items pooled (``train`` included). Pass@128 is the
  README's Pass@128.

:func:`upstream_numbers` computes exactly these (vectorised, via :func:`dars.metrics.pass_at_k`'s
array form); ``python -m analysis.upstream <file>`` prints them in upstream's layout. Any of
our other readable formats (native ``eval/step_<k>.jsonl``, verl JSONL) is accepted too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dars.metrics import pass_at_k_array

UPSTREAM_KS = tuple(range(16, 129, 16))  # the k of upstream's Pass@k lines
UPSTREAM_N = 128  # the sample count upstream's script hard-codes


def upstream_numbers(items: list[dict], num_samples: int = UPSTREAM_N, ks=UPSTREAM_KS) -> dict:
    """Upstream's numbers from its list of per-problem dicts (``score`` list, ``data_source``).

    Returns ``{"per_source": {src: acc}, "micro": float, "macro": float,
    "pass": {k: float}, "n_items": int, "sample_counts": sorted set of len(score)}``.
    ``num_samples`` is upstream's hard-coded n (128); pass@k needs integer correct counts."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    c_all, lens = [], []
    for it in items:
        sc = it["score"]
        src = it.get("data_source")
        s = float(sum(sc))
        sums[src] = sums.get(src, 0.0) + s
        counts[src] = counts.get(src, 0) + len(sc)
        c_all.append(s)
        lens.append(len(sc))
    per_source = {s: sums[s] / counts[s] for s in sums}
    micro = sum(sums.values()) / sum(counts.values())
    macro_list = [v for s, v in per_source.items() if s != "train"]
    macro = sum(macro_list) / len(macro_list) if macro_list else float("nan")
    c = np.asarray(c_all, dtype=np.float64)
    if not np.all(c == np.round(c)):
        raise ValueError("upstream's pass@k needs integer correct counts (0/1 scores)")
    n = np.full(c.shape, num_samples, dtype=np.int64)
    c_int = np.minimum(c.astype(np.int64), num_samples)
    passes = {k: float(np.mean(pass_at_k_array(n, c_int, k))) for k in ks}
    return {
        "per_source": per_source,
        "micro": micro,
        "macro": macro,
        "pass": passes,
        "n_items": len(items),
        "sample_counts": sorted(set(lens)),
    }


def load_items(path: Path) -> list[dict]:
    """Upstream-format items from an upstream dump, a native ``step_<k>.jsonl`` or a verl JSONL dump."""
    from analysis.readers import read_eval_file, sniff_dump_format

    path = Path(path)
    fmt = sniff_dump_format(path)
    if fmt == "upstream" and path.suffix == ".json":
        with open(path) as f:
            return json.load(f)
    ev = read_eval_file(path, 0, fmt, samples=True)
    items = []
    for i in range(ev.n_problems):
        sel = ev.sample_problem == i
        items.append({"data_source": ev.source[i], "score": ev.sample_scores[sel].tolist()})
    return items


def format_report(res: dict, path: str) -> str:
    """Text in the layout of upstream's script."""
    lines = [f"## Load data: {path}", str(res["per_source"])]
    lines.append(f"## Micro Accuracy: {res['micro']}")
    lines.append(f"## Macro Accuracy: {res['macro']}")
    for k, v in res["pass"].items():
        lines.append(f"##  Pass{k}: {v}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.upstream",
        description="Print the analysis_results.py numbers of the upstream repository (github.com/yangzhch6/DARS) for a validation dump: "
        "per-source accuracy, micro accuracy (sum correct / sum samples), macro accuracy (mean "
        "of per-source accuracy without data_source 'train') and pooled unbiased Pass@k for "
        "k = 16, 32, ..., 128 with n hard-coded to 128 (all items, 'train' included).",
    )
    ap.add_argument("path", nargs="+", help="val_generations/<step>.json (or another dump format)")
    ap.add_argument(
        "--n",
        type=int,
        default=UPSTREAM_N,
        help="the sample count upstream assumes for Pass@k (default 128, as hard-coded)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    rc = 0
    for p in args.path:
        try:
            items = load_items(Path(p))
            res = upstream_numbers(
                items, num_samples=args.n, ks=tuple(k for k in range(16, args.n + 1, 16)) or (args.n,)
            )
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {p}: {e}", file=sys.stderr)
            rc = 1
            continue
        print(format_report(res, p))
        if res["sample_counts"] != [args.n]:
            print(
                f"# note: items have {res['sample_counts']} samples, but Pass@k assumes n={args.n} "
                f"as upstream does (--n changes it)"
            )
    return rc


if __name__ == "__main__":
    sys.exit(main())
