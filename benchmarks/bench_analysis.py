"""Benchmark of the analysis at the paper's evaluation size.

Builds, in a temporary directory, a sweep of a few runs (default 4) with 20 validation
checkpoints each of 1560 problems x 128 samples (aime 30, math 500, olympiad_bench 675, amc 83,
minerva 272; scores, response lengths and extracted answers per sample, as
docs/run-format.md specifies), then times:

* JSONL parsing of one ``eval/step_<k>.jsonl`` (json line by line, pyarrow full, pyarrow with
  only the columns the trajectories need);
* ``analysis.core.analyse`` + ``analysis.tables.write_tables`` in process (the "metrics and
  tables" target: <= 5 s);
* the figures, separately;
* the whole ``python -m analysis.regenerate`` command as a subprocess (adds interpreter start-up
  and imports).

    python benchmarks/bench_analysis.py [--runs 4] [--checkpoints 20] [--keep DIR] [--no-cli]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPERIMENTS = ["baseline", "dars_et", "dars_hw", "dars_hw_breadth", "dars_et_breadth", "depth_naive", "breadth_naive"]


def build(root: Path, n_runs: int, checkpoints: int, n_val: int) -> float:
    from analysis.synthetic import PAPER_SIZES, write_sweep

    t = time.perf_counter()
    write_sweep(
        root,
        EXPERIMENTS[:n_runs],
        seeds=(0,),
        steps=checkpoints * 5,
        eval_every=5,
        n_val=n_val,
        sizes=PAPER_SIZES,
        preds=True,
    )
    return time.perf_counter() - t


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=4, help="runs in the sweep (default 4)")
    ap.add_argument("--checkpoints", type=int, default=20, help="checkpoints per run (default 20)")
    ap.add_argument("--n-val", type=int, default=128, help="samples per problem (default 128)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--keep", metavar="DIR", help="build the sweep in DIR and keep it")
    ap.add_argument("--no-cli", action="store_true", help="skip the subprocess timing")
    ap.add_argument("--no-figures", action="store_true", help="skip the figure timing")
    args = ap.parse_args(argv)

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    sweep = tmp / "sweep"
    out = tmp / "out"
    try:
        if not (sweep / "multirun.yaml").exists():
            t_build = build(sweep, args.runs, args.checkpoints, args.n_val)
            print(
                f"built {args.runs} runs x {args.checkpoints} checkpoints x 1560 problems x "
                f"{args.n_val} samples in {t_build:.1f} s"
            )
        files = sorted(sweep.glob("*/eval/step_*.jsonl"))
        size = sum(f.stat().st_size for f in files)
        print(f"{len(files)} eval files, {size / 1e6:.0f} MB on disk")

        # ---- JSONL parsing of one file
        import pyarrow.json as pj

        from analysis import readers

        one = files[0]
        data = one.read_bytes()
        t_json = best_of(lambda: [json.loads(line) for line in data.splitlines()])
        t_pa_full = best_of(
            lambda: pj.read_json(
                io.BytesIO(data),
                read_options=pj.ReadOptions(use_threads=False),
                parse_options=pj.ParseOptions(
                    explicit_schema=readers.NATIVE_SCHEMA_FULL, unexpected_field_behavior="ignore"
                ),
            )
        )
        t_min = best_of(lambda: readers.read_native_eval(one, 0, samples=False))
        t_full = best_of(lambda: readers.read_native_eval(one, 0, samples=True))
        print(f"one eval file ({len(data) / 1e6:.1f} MB, 1560 lines):")
        print(f"  json.loads per line          {1e3 * t_json:7.1f} ms")
        print(f"  pyarrow, all 5 columns       {1e3 * t_pa_full:7.1f} ms")
        print(f"  read_native_eval(samples=F)  {1e3 * t_min:7.1f} ms   (trajectories)")
        print(f"  read_native_eval(samples=T)  {1e3 * t_full:7.1f} ms   (judged checkpoint)")

        # ---- in-process analysis + tables, then figures
        from analysis.core import Options, analyse
        from analysis.figures import write_figures
        from analysis.tables import write_tables

        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            a = analyse([sweep], Options(n_boot=args.bootstrap))
            write_tables(a, out / "tables")
            times.append(time.perf_counter() - t0)
        print(f"metrics + tables (in process, best of 2): {min(times):.2f} s  [target <= 5 s]")
        print("  breakdown: " + ", ".join(f"{k} {v:.2f} s" for k, v in a.timings.items()))
        t0 = time.perf_counter()
        a2 = analyse([sweep], Options(n_boot=args.bootstrap, use_summary=False))
        write_tables(a2, out / "tables_recomputed")
        t_re = time.perf_counter() - t0
        print(f"metrics + tables with --recompute-trajectories (every checkpoint parsed): {t_re:.2f} s")
        print("  breakdown: " + ", ".join(f"{k} {v:.2f} s" for k, v in a2.timings.items()))
        if not args.no_figures:
            t0 = time.perf_counter()
            written, _ = write_figures(a, out / "figures")
            t_fig = time.perf_counter() - t0
            print(f"figures ({len(written)} figures, PNG+PDF): {t_fig:.2f} s")

        if not args.no_cli:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "analysis.regenerate",
                    str(sweep),
                    "--out",
                    str(out / "cli"),
                    "--no-figures",
                    "--quiet",
                ],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            t_cli = time.perf_counter() - t0
            print(
                f"python -m analysis.regenerate --no-figures (subprocess, incl. start-up and "
                f"imports): {t_cli:.2f} s, exit {r.returncode}"
            )
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import analysis.core"], env=env, cwd=ROOT)
            print(f"  of which interpreter + imports: {time.perf_counter() - t0:.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
