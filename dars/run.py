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

from dars.config import ConfigError, check_overrides, validate
from dars.runlog import atomic_write_text

log = logging.getLogger("dars")


def format_summary(summary: dict, n_val: int) -> str:
    """Per-benchmark Avg@K / Pass@1 / Pass@K as a small text table (no step-0 evaluation to compare with)."""
    benches = list(dict.fromkeys(k.split("/")[1] for k in summary if k.startswith("val/")))
    benches = [b for b in benches if b not in ("all", "macro")]
    rows = [("benchmark", f"Avg@{n_val}", "Pass@1", f"Pass@{n_val}")]
    for b in benches + ["all", "macro"]:
        get = lambda key, b=b: summary.get(f"val/{b}/{key}")
        if get(f"avg@{n_val}") is None:
            continue
        label = {"all": "overall (micro)", "macro": "overall (macro)"}.get(b, b)
        rows.append(
            (
                label,
                f"{100 * get(f'avg@{n_val}'):.1f}",
                f"{100 * get('pass@1'):.1f}",
                f"{100 * get(f'pass@{n_val}'):.1f}",
            )
        )
    return _text_table(rows)


def format_before_after(rows: list[dict], n_val: int) -> str:
    """Base (step 0), final and the difference with its 95 % CI, Avg@K and Pass@K, per benchmark."""
    head = ("benchmark", f"Avg@{n_val} base", "final", "Δ [95% CI]", f"Pass@{n_val} base", "final", "Δ [95% CI]")
    out = [head]
    for r in rows:
        cells = ["overall (micro)" if r["benchmark"] == "all" else r["benchmark"]]
        for m in ("avg", "pass"):
            cells += [
                f"{100 * r[f'{m}/base']:.1f}",
                f"{100 * r[f'{m}/final']:.1f}",
                f"{100 * r[f'{m}/delta']:+.1f} [{100 * r[f'{m}/lo']:+.1f}, {100 * r[f'{m}/hi']:+.1f}]",
            ]
        out.append(tuple(cells))
    return _text_table(out)


def verdict_line(rows: list[dict], n_val: int) -> str:
    """One sentence a newcomer can read: did training move overall Avg@K beyond the noise?"""
    r = next(r for r in rows if r["benchmark"] == "all")
    d, lo, hi = 100 * r["avg/delta"], 100 * r["avg/lo"], 100 * r["avg/hi"]
    what = (
        "better than its base" if lo > 0 else "worse than its base" if hi < 0 else "not distinguishable from its base"
    )
    return (
        f"overall Avg@{n_val}: {100 * r['avg/base']:.1f} -> {100 * r['avg/final']:.1f} "
        f"({d:+.1f} points, 95% CI [{lo:+.1f}, {hi:+.1f}] over problems): {what}"
    )


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


_FRESH = {".hydra", "run.log", "eval", ".lock"}  # what Hydra and a just-started run create before any work
_MAIN_STARTED = False  # set once Hydra has composed the config and called main (see cli())


def _is_fresh(run_dir: Path) -> bool:
    """Nothing in the run directory but what Hydra wrote for this very start (and an empty eval/)."""
    if not run_dir.exists():
        return True
    names = {p.name for p in run_dir.iterdir()}
    return names <= _FRESH and not any((run_dir / "eval").glob("*"))


def _fail(run_dir: Path, fresh: bool, kind: str, error: Exception, code: int) -> None:
    """One message on stderr and exit ``code``; a run directory this start created is removed."""
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"dars: {kind}: {error}", file=sys.stderr)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise error  # one failed job in a sweep; the launcher records it and the others still run
    sys.exit(code)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    global _MAIN_STARTED
    _MAIN_STARTED = True
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    fresh = _is_fresh(run_dir)
    from dars.backends import get_backend
    from dars.data import DataError
    from dars.runlock import RunBusy, RunLock
    from dars.runlog import RunDirError

    try:
        validate(cfg)
        check_overrides(list(hc.overrides.task), cfg)
        backend = get_backend(cfg.backend.name)
        backend.check(cfg)
    except ConfigError as e:
        _fail(run_dir, fresh, "config error", e, 2)
    try:
        lock = RunLock(run_dir).acquire()  # one writer per run directory, for the run's whole life
    except RunBusy as e:
        _fail(run_dir, False, "busy", e, 3)  # (never removes anything: the directory is someone else's)
    try:
        log.info("run %s -> %s", cfg.run_name, run_dir)
        summary = backend.run(cfg, run_dir)
        if summary:  # (still holding the lock: results.txt belongs to this run's writer too)
            table = final_report(run_dir, summary, cfg.eval.n_val)
            atomic_write_text(run_dir / "results.txt", table + "\n")
    except (ConfigError, DataError) as e:  # found once the model's tokenizer could render the data
        lock.release()
        _fail(run_dir, fresh, "config error" if isinstance(e, ConfigError) else "data error", e, 2)
    except RunDirError as e:
        lock.release()
        _fail(run_dir, False, "run directory error", e, 2)
    finally:
        lock.release()
    if summary:
        print(
            f"\n{cfg.run_name}: step {summary['step']} against the base model (step 0), {cfg.eval.n_val} samples "
            f"per problem, T={cfg.eval.temperature}\n{table}\n"
        )
        return summary.get("val/all/pass@1")
    return None


def cli() -> None:
    """``python -m dars.run``: Hydra exits 1 for every error it reports itself; an error it reports
    before our main ever ran is a command-line mistake (unknown experiment or key, bad override
    syntax), so it exits 2 like every other bad input."""
    try:
        main()
    except SystemExit as e:
        if e.code == 1 and not _MAIN_STARTED:
            sys.exit(2)
        raise


if __name__ == "__main__":
    cli()
