"""Entry point: ``python -m dars.run [experiment=NAME] [preset=NAME] [key=value ...]``.

One call trains one run into its own deterministic directory; ``-m`` sweeps (e.g.
``-m 'experiment=glob(*)'``) run each combination in turn, or on Slurm with a submitit launcher.
Starting a run whose directory holds a checkpoint resumes it; a completed run just reports.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

# Models load from local directories only: a run never reaches for the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dars.config import ConfigError, validate

log = logging.getLogger("dars")


def format_summary(summary: dict, n_val: int) -> str:
    """Per-benchmark Avg@K / Pass@1 / Pass@K as a small text table (no step-0 evaluation to compare with)."""
    benches = list(dict.fromkeys(k.split("/")[1] for k in summary if k.startswith("val/")))
    benches = [b for b in benches if b not in ("all", "macro")]
    rows = [("benchmark", f"Avg@{n_val}", "Pass@1", f"Pass@{n_val}")]
    for b in benches + ["all", "macro"]:
        get = lambda key: summary.get(f"val/{b}/{key}")  # noqa: E731
        if get(f"avg@{n_val}") is None:
            continue
        label = {"all": "overall (micro)", "macro": "overall (macro)"}.get(b, b)
        rows.append((label, f"{100 * get(f'avg@{n_val}'):.1f}", f"{100 * get('pass@1'):.1f}",
                     f"{100 * get(f'pass@{n_val}'):.1f}"))
    return _text_table(rows)


def format_before_after(rows: list[dict], n_val: int) -> str:
    """Base (step 0), final and the difference with its 95 % CI, Avg@K and Pass@K, per benchmark."""
    head = ("benchmark", f"Avg@{n_val} base", "final", "Δ [95% CI]", f"Pass@{n_val} base", "final", "Δ [95% CI]")
    out = [head]
    for r in rows:
        cells = ["overall (micro)" if r["benchmark"] == "all" else r["benchmark"]]
        for m in ("avg", "pass"):
            cells += [f"{100 * r[f'{m}/base']:.1f}", f"{100 * r[f'{m}/final']:.1f}",
                      f"{100 * r[f'{m}/delta']:+.1f} [{100 * r[f'{m}/lo']:+.1f}, {100 * r[f'{m}/hi']:+.1f}]"]
        out.append(tuple(cells))
    return _text_table(out)


def verdict_line(rows: list[dict], n_val: int) -> str:
    """One sentence a newcomer can read: did training move overall Avg@K beyond the noise?"""
    r = next(r for r in rows if r["benchmark"] == "all")
    d, lo, hi = 100 * r["avg/delta"], 100 * r["avg/lo"], 100 * r["avg/hi"]
    what = ("better than its base" if lo > 0 else "worse than its base" if hi < 0
            else "not distinguishable from its base")
    return (f"overall Avg@{n_val}: {100 * r['avg/base']:.1f} -> {100 * r['avg/final']:.1f} "
            f"({d:+.1f} points, 95% CI [{lo:+.1f}, {hi:+.1f}] over problems): {what}")


def _text_table(rows: list[tuple]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def final_report(run_dir: Path, summary: dict, n_val: int) -> str:
    """The table the run ends with: before/after with CIs when the run validated at step 0."""
    from dars.evaluate import before_after
    from dars.runlog import read_jsonl

    step = summary["step"]
    base, final = read_jsonl(run_dir / "eval" / "step_0.jsonl"), read_jsonl(run_dir / "eval" / f"step_{step}.jsonl")
    rows = before_after(base, final, n_val) if step > 0 and base and final else []
    if not rows:
        return format_summary(summary, n_val)
    return format_before_after(rows, n_val) + "\n" + verdict_line(rows, n_val)


def _remove_if_fresh(run_dir: Path) -> None:
    """A run that failed its config check leaves nothing behind (Hydra made the folder already)."""
    leftovers = {p.name for p in run_dir.iterdir()} if run_dir.exists() else set()
    if leftovers <= {".hydra", "run.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    from dars.backends import get_backend

    try:
        validate(cfg)
        backend = get_backend(cfg.backend.name)
        if hasattr(backend, "check"):
            backend.check(cfg)
        log.info("run %s -> %s", cfg.run_name, run_dir)
        summary = backend.run(cfg, run_dir)
    except ConfigError as e:
        _remove_if_fresh(run_dir)
        print(f"dars: config error: {e}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one failed job in a sweep; the launcher records it and the others still run
        sys.exit(2)
    n_val = cfg.eval.n_val
    if summary:
        table = final_report(run_dir, summary, n_val)
        print(f"\n{cfg.run_name}: step {summary['step']} against the base model (step 0), {n_val} samples per "
              f"problem, T={cfg.eval.temperature}\n{table}\n")
        (run_dir / "results.txt").write_text(table + "\n")
        return summary.get("val/all/pass@1")
    return None


if __name__ == "__main__":
    main()
