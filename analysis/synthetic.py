"""Synthetic run directories, written exactly per docs/run-format.md (for tests, benchmarks and
trying the analysis without a GPU), plus converters to the upstream and verl dump formats.

The numbers are a toy model, not a simulation of training: each validation problem has a latent
difficulty; an experiment raises a skill level over training (Pass@1 up) and sharpens the policy
(Pass@K down for hard problems) at experiment-specific rates, so the figures show the paper's
qualitative story. Training metrics use the real schedules (:mod:`dars.schedules`) for the
stage-2 rollout counts.

``python -m analysis.synthetic <out_dir> [--experiments ...] [--seeds ...]`` writes a sweep.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dars.metrics import pass_at_k_array, pass_at_k_curve_ks
from dars.runlog import read_jsonl
from dars.schedules import extra_rollouts_batch

PAPER_SIZES = {"aime": 30, "math": 500, "olympiad_bench": 675, "amc": 83, "minerva": 272}
SMALL_SIZES = {"aime": 6, "math": 12, "olympiad_bench": 10, "amc": 5, "minerva": 7}
_BENCH_DIFFICULTY = {"aime": 3.0, "math": -1.2, "olympiad_bench": 1.0, "amc": 1.2, "minerva": 1.6}


@dataclass(frozen=True)
class ExperimentSpec:
    n: int
    n_max: int
    schedule: str
    batch_size: int
    full_batch: bool
    gain: float  # skill gained over training (Pass@1)
    sharpen: float  # policy sharpening (Pass@K loss)
    entropy_keep: float  # fraction of entropy kept


EXPERIMENT_SPECS = {
    "baseline": ExperimentSpec(8, 8, "uniform", 128, False, 1.0, 0.9, 0.35),
    "depth_naive": ExperimentSpec(32, 32, "uniform", 128, False, 1.05, 0.7, 0.4),
    "breadth_naive": ExperimentSpec(8, 8, "uniform", 3072, True, 1.5, 1.3, 0.6),
    "dars_et": ExperimentSpec(8, 32, "et", 128, True, 1.1, 0.35, 0.45),
    "dars_hw": ExperimentSpec(8, 64, "hw", 128, True, 1.1, 0.25, 0.5),
    "dars_et_breadth": ExperimentSpec(8, 32, "et", 3072, True, 1.55, 0.45, 0.7),
    "dars_hw_breadth": ExperimentSpec(8, 64, "hw", 3072, True, 1.55, 0.35, 0.75),
}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def problem_set(sizes: dict[str, int], seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """(data_source, id, difficulty) of every validation problem (shared by all runs)."""
    rng = np.random.default_rng(10_000 + seed)
    src, ids, diff = [], [], []
    for b, m in sizes.items():
        d = rng.normal(_BENCH_DIFFICULTY.get(b, 0.5), 1.6, size=m)
        src += [b] * m
        ids += [f"{b}-{i}" for i in range(m)]
        diff.append(d)
    return src, ids, np.concatenate(diff) if diff else np.zeros(0)


def solve_prob(diff: np.ndarray, spec: ExperimentSpec, frac: float) -> np.ndarray:
    """Solve probability of each problem after a fraction ``frac`` of training."""
    skill = -0.6 + spec.gain * frac
    sharp = 1.0 + spec.sharpen * frac
    return _sigmoid(sharp * (skill - diff))


def _fmt_list(values) -> str:
    return "[" + ",".join(map(str, values)) + "]"


def write_eval_step(
    run_dir: Path,
    step: int,
    src: list[str],
    ids: list[str],
    p: np.ndarray,
    n_val: int,
    rng: np.random.Generator,
    preds: bool = True,
    responses: bool = False,
    ragged: bool = False,
) -> dict:
    """Write ``eval/step_<step>.jsonl`` and return its summary.jsonl record."""
    P = len(src)
    scores = (rng.random((P, n_val)) < p[:, None]).astype(np.int8)
    lengths = rng.integers(40, 900, size=(P, n_val))
    n_per = np.full(P, n_val)
    if ragged:  # some problems with fewer samples (e.g. a generation that crashed)
        n_per = np.where(rng.random(P) < 0.2, rng.integers(1, n_val, size=P), n_val)
    lines = []
    for i in range(P):
        m = int(n_per[i])
        sc = scores[i, :m]
        rec = (
            '{"data_source": '
            + json.dumps(src[i])
            + ', "id": '
            + json.dumps(ids[i])
            + ', "prompt": '
            + json.dumps(f"Problem {ids[i]}: compute the answer.")
            + ', "answer": '
            + json.dumps(f"A{i}")
            + ', "scores": '
            + _fmt_list(sc.tolist())
            + ', "response_lengths": '
            + _fmt_list(lengths[i, :m].tolist())
        )
        if preds:
            wrong = rng.integers(0, 3, size=m)
            empty = rng.random(m) < 0.05
            pr = [
                f"A{i}" if s else ("" if e else f"W{i}_{w}")
                for s, w, e in zip(sc.tolist(), wrong.tolist(), empty.tolist())
            ]
            rec += ', "preds": ' + json.dumps(pr)
        if responses:
            rec += ', "responses": ' + json.dumps([f"... so the answer is {j}" for j in range(m)])
        lines.append(rec + "}\n")
    eval_dir = run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / f"step_{step}.jsonl").write_text("".join(lines))
    # the summary line, as the trainer writes it
    summ = {"step": step, "n_val": n_val, "temperature": 1.0, "top_p": 1.0, "max_response_length": 3072}
    c = np.array([int(scores[i, : int(n_per[i])].sum()) for i in range(P)])
    srcs = np.array(src)
    ks = pass_at_k_curve_ks(n_val)
    bench_vals = {}
    for b in dict.fromkeys(src):
        m = srcs == b
        summ[f"val/{b}/avg@{n_val}"] = float(np.mean(c[m] / n_per[m]))
        for k in ks:
            summ[f"val/{b}/pass@{k}"] = float(np.nanmean(pass_at_k_array(n_per[m], c[m], k)))
        summ[f"val/{b}/n_problems"] = int(m.sum())
        bench_vals[b] = {k: summ[f"val/{b}/pass@{k}"] for k in ks}
    summ[f"val/all/avg@{n_val}"] = float(np.mean(c / n_per))
    summ[f"val/macro/avg@{n_val}"] = float(np.mean([summ[f"val/{b}/avg@{n_val}"] for b in bench_vals]))
    for k in ks:
        summ[f"val/all/pass@{k}"] = float(np.nanmean(pass_at_k_array(n_per, c, k)))
        summ[f"val/macro/pass@{k}"] = float(np.mean([v[k] for v in bench_vals.values()]))
    return summ


def training_records(spec: ExperimentSpec, steps: int, rng: np.random.Generator, mini_batch: int = 64) -> list[dict]:
    """metrics.jsonl records of a toy run (real schedules for the stage-2 counts)."""
    recs = []
    seen = 0
    optim_total = 0
    B = spec.batch_size
    for t in range(1, steps + 1):
        frac = t / steps
        q = _sigmoid(rng.normal(-0.3 + 1.2 * spec.gain * frac, 1.8, size=B))
        c1 = rng.binomial(spec.n, q)
        extra = extra_rollouts_batch(c1 / spec.n, spec.n, spec.n_max, spec.schedule)
        c2 = rng.binomial(extra, q)
        acc = (c1 + c2) / (spec.n + extra)
        none, full = int((acc == 0).sum()), int((acc == 1).sum())
        partial = B - none - full
        filt = spec.schedule != "uniform"
        kept = partial if filt else B
        len1 = rng.normal(500, 60, size=B).clip(50)
        tokens = float((len1 * spec.n).sum() + (len1 * 1.3 * extra).sum())
        n_opt = math.ceil(max(kept, 1) / mini_batch) if not spec.full_batch else 2
        optim_total += n_opt
        seen += B
        stage0 = c1 == 0
        ent = 0.12 + 0.55 * (spec.entropy_keep + (1 - spec.entropy_keep) * math.exp(-6 * frac))
        ent *= 1 + rng.normal(0, 0.03)
        recs.append(
            {
                "step": t,
                "epoch": 0,
                "prompts": B,
                "rollouts/stage1": B * spec.n,
                "rollouts/stage2": int(extra.sum()),
                "rollouts/per_prompt": float((B * spec.n + extra.sum()) / B),
                "tokens/generated": round(tokens),
                "acc/stage1": float(c1.sum() / (B * spec.n)),
                "groups/solve_none": none,
                "groups/solve_all": full,
                "groups/solve_partial": partial,
                "groups/kept": kept,
                "stage2/saved": float(((c2 > 0) & stage0).sum() / stage0.sum()) if stage0.any() else 0.0,
                "entropy/token_mean": float(ent),
                "entropy/seq_mean": float(ent * 1.08),
                "loss/pg": float(rng.normal(0, 0.01)),
                "loss/clipfrac": float(abs(rng.normal(0.002, 0.001))),
                "grad_norm": float(abs(rng.normal(0.3, 0.05))),
                "optim/steps": n_opt,
                "optim/skipped": 0,
                "optim/total": optim_total,
                "lr": 1e-6,
                "response_length/mean": float(len1.mean()),
                "time/gen1": 1.0,
                "time/gen2": 0.5 if spec.schedule != "uniform" else 0.0,
                "time/reward": 0.1,
                "time/update": 1.0,
                "time/step": 2.6,
                "samples/seen": seen,
            }
        )
    return recs


def write_run(
    root: Path,
    experiment: str,
    seed: int = 0,
    steps: int = 20,
    eval_every: int = 5,
    n_val: int = 16,
    sizes: dict[str, int] | None = None,
    preds: bool = True,
    responses: bool = False,
    state: str = "completed",
    truncate_metrics: bool = False,
    unfinished_eval: bool = False,
    ragged: bool = False,
    preset: str = "toy",
    spec: ExperimentSpec | None = None,
    run_name: str | None = None,
    step0: bool = False,
) -> Path:
    """Write one run directory ``root/<experiment>-s<seed>`` and return its path.

    ``state="running"`` writes training up to half of ``steps``; ``truncate_metrics`` leaves a
    half-written last line in metrics.jsonl; ``unfinished_eval`` adds an eval/step_<k>.jsonl
    without its summary line (a validation still being written); ``step0`` also validates the
    base model before training (``train.val_before_train``; the same model for every
    experiment), which the claims' ``base`` reference needs."""
    spec = spec or EXPERIMENT_SPECS.get(experiment) or EXPERIMENT_SPECS["baseline"]
    sizes = sizes or SMALL_SIZES
    run = Path(root) / (run_name or f"{experiment}-s{seed}")
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    cfg = (
        f"experiment_name: {experiment}\nseed: {seed}\npreset_name: {preset}\n"
        f"rollout:\n  n: {spec.n}\n  temperature: 1.0\n"
        f"algorithm:\n  n_max: {spec.n_max}\n  schedule: {spec.schedule}\n  kl_coef: 0.0\n"
        f"train:\n  batch_size: {spec.batch_size}\n  total_steps: {steps}\n"
        f"eval:\n  n_val: {n_val}\n  every: {eval_every}\n"
    )
    (run / ".hydra" / "config.yaml").write_text(cfg)
    (run / ".hydra" / "overrides.yaml").write_text(f"- experiment={experiment}\n- seed={seed}\n")
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    name: train\n")
    rng = np.random.default_rng(1000 * seed + sum(map(ord, experiment)))
    done = steps if state == "completed" else max(1, steps // 2)
    recs = training_records(spec, steps, rng)[:done]
    text = "".join(json.dumps(r) + "\n" for r in recs)
    if truncate_metrics:
        text += json.dumps(training_records(spec, steps, rng)[0])[:40]
    (run / "metrics.jsonl").write_text(text)
    src, ids, diff = problem_set(sizes)
    summaries = []
    eval_steps = [0] * step0 + [s for s in range(eval_every, done + 1, eval_every)]
    if done == steps and steps not in eval_steps:
        eval_steps.append(steps)
    erng = np.random.default_rng(7 + 31 * seed + sum(map(ord, experiment)))
    for s in eval_steps:
        p = solve_prob(diff, spec, s / steps)
        summaries.append(write_eval_step(run, s, src, ids, p, n_val, erng, preds, responses, ragged))
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "summary.jsonl").write_text("".join(json.dumps(x) + "\n" for x in summaries))
    if unfinished_eval:
        s = (eval_steps[-1] if eval_steps else 0) + eval_every
        p = solve_prob(diff, spec, min(s, steps) / steps)
        write_eval_step(run, s, src, ids, p, n_val, erng, preds, responses)
    status = {
        "state": state,
        "step": done,
        "total_steps": steps,
        "experiment": experiment,
        "seed": seed,
        "error": "CUDA error: out of memory" if state == "failed" else None,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (run / "status.json").write_text(json.dumps(status))
    (run / "train.log").write_text(f"[toy] {experiment} seed {seed}: {done}/{steps} steps\n")
    return run


def write_sweep(
    root: Path, experiments=("baseline", "dars_et", "dars_hw", "dars_hw_breadth"), seeds=(0,), **kw
) -> list[Path]:
    """A Hydra-multirun-shaped sweep: ``root/multirun.yaml`` + one run per (experiment, seed)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    return [write_run(root, e, s, **kw) for e in experiments for s in seeds]


# --------------------------------------------------------------------------------------------
# converters to the foreign dump formats (for interoperability tests)
# --------------------------------------------------------------------------------------------


def _native_steps(run_dir: Path) -> list[tuple[int, list[dict]]]:
    out = []
    for p in sorted((Path(run_dir) / "eval").glob("step_*.jsonl")):
        step = int(p.stem.split("_")[1])
        out.append((step, read_jsonl(p)))
    return sorted(out)


def to_upstream_dumps(run_dir: Path, out_dir: Path) -> Path:
    """Rewrite a native run's evaluations as the upstream repository's ``val_generations/<step>.json``."""
    dest = Path(out_dir) / "val_generations"
    dest.mkdir(parents=True, exist_ok=True)
    for step, recs in _native_steps(run_dir):
        items = [
            {
                "input": r["prompt"],
                "output": [f"response {j}" for j in range(len(r["scores"]))],
                "answer": r["answer"],
                "score": [float(s) for s in r["scores"]],
                "response_length": r.get("response_lengths", []),
                "data_source": r["data_source"],
            }
            for r in recs
        ]
        (dest / f"{step}.json").write_text(json.dumps(items))
    return Path(out_dir)


def to_verl_dumps(run_dir: Path, out_dir: Path, with_preds: bool = True) -> Path:
    """Rewrite a native run's evaluations as verl ``validation_data_dir/<step>.jsonl`` files
    (one line per sample; samples of a problem interleaved with other problems' samples, as a
    repeated-and-shuffled generation batch would give)."""
    dest = Path(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for step, recs in _native_steps(run_dir):
        lines = []
        width = max(len(r["scores"]) for r in recs)
        for j in range(width):  # sample-major order: problems interleave
            for r in recs:
                if j >= len(r["scores"]):
                    continue
                rec = {
                    "input": r["prompt"],
                    "output": f"response {j}",
                    "gts": r["answer"],
                    "score": float(r["scores"][j]),
                    "step": step,
                    "data_source": r["data_source"],
                }
                if with_preds and "preds" in r:
                    rec["pred"] = r["preds"][j]
                lines.append(json.dumps(rec) + "\n")
        (dest / f"{step}.jsonl").write_text("".join(lines))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.synthetic",
        description="Write a synthetic sweep of run directories (docs/run-format.md) for trying "
        "the analysis; the numbers are a toy model, not training results.",
    )
    ap.add_argument("out", help="sweep directory to create")
    ap.add_argument(
        "--experiments", nargs="+", default=list(EXPERIMENT_SPECS), help="experiment names (default: all seven)"
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per run (default: 40)")
    ap.add_argument("--eval-every", type=int, default=5, help="validation interval (default: 5)")
    ap.add_argument("--n-val", type=int, default=32, help="samples per problem (default: 32)")
    ap.add_argument("--paper-size", action="store_true", help="the paper's 1560 validation problems instead of 40")
    ap.add_argument(
        "--no-step0",
        dest="step0",
        action="store_false",
        help="no validation of the base model before training (default: one at "
        "step 0, as the tiny preset; the claims' 'base' reference needs it)",
    )
    args = ap.parse_args(argv)
    sizes = PAPER_SIZES if args.paper_size else SMALL_SIZES
    runs = write_sweep(
        Path(args.out),
        args.experiments,
        args.seeds,
        steps=args.steps,
        eval_every=args.eval_every,
        n_val=args.n_val,
        sizes=sizes,
        step0=args.step0,
    )
    print(f"wrote {len(runs)} runs under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
