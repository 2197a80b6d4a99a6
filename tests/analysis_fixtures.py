"""Hand-made run directories for the analysis tests, written exactly per docs/run-format.md.

Everything here is independent of the ``analysis`` package (plain json + math.comb), so the
tests compare the package against a second, straightforward implementation.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `import analysis` works however pytest is started
    sys.path.insert(0, str(ROOT))


def comb_pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k = 1 - C(n-c, k) / C(n, k) with exact integers (1 when n - c < k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_ks(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


# problems: (data_source, id, scores, preds); aime hard, math easy; n_val = 4
HAND_EVAL_A = [
    ("aime", "aime-0", [0, 0, 0, 0], ["1", "2", "", "3"]),
    ("aime", "aime-1", [1, 0, 0, 0], ["7", "5", "5", ""]),
    ("math", "math-0", [1, 1, 1, 1], ["4", "4", "4", "4"]),
    ("math", "math-1", [1, 0, 1, 0], ["9", "8", "9", "8"]),
    ("math", "math-2", [1, 1, 1, 0], ["2", "2", "2", "3"]),
]
HAND_EVAL_B = [  # a later checkpoint: better
    ("aime", "aime-0", [1, 0, 0, 0], ["6", "1", "1", ""]),
    ("aime", "aime-1", [1, 1, 0, 0], ["7", "7", "5", "5"]),
    ("math", "math-0", [1, 1, 1, 1], ["4", "4", "4", "4"]),
    ("math", "math-1", [1, 1, 1, 0], ["9", "9", "9", "8"]),
    ("math", "math-2", [1, 1, 1, 1], ["2", "2", "2", "2"]),
]


def summary_line(step: int, problems, n_val: int) -> dict:
    """eval/summary.jsonl record computed with math.comb (as the trainer would write it)."""
    rec = {"step": step, "n_val": n_val, "temperature": 1.0, "top_p": 1.0, "max_response_length": 16}
    benches: dict[str, list] = {}
    for src, _id, scores, _p in problems:
        benches.setdefault(src, []).append(scores)
    ks = pass_ks(n_val)
    per = {}
    for b, rows in benches.items():
        rec[f"val/{b}/avg@{n_val}"] = sum(sum(r) / len(r) for r in rows) / len(rows)
        for k in ks:
            rec[f"val/{b}/pass@{k}"] = sum(comb_pass_at_k(len(r), sum(r), k) for r in rows) / len(rows)
        rec[f"val/{b}/n_problems"] = len(rows)
        per[b] = rows
    allrows = [r for rows in per.values() for r in rows]
    rec[f"val/all/avg@{n_val}"] = sum(sum(r) / len(r) for r in allrows) / len(allrows)
    rec[f"val/macro/avg@{n_val}"] = sum(rec[f"val/{b}/avg@{n_val}"] for b in per) / len(per)
    for k in ks:
        rec[f"val/all/pass@{k}"] = sum(comb_pass_at_k(len(r), sum(r), k) for r in allrows) / len(allrows)
        rec[f"val/macro/pass@{k}"] = sum(rec[f"val/{b}/pass@{k}"] for b in per) / len(per)
    return rec


def metrics_records(steps: int, n: int, extra_per_step: int, prompts: int = 4, seed: int = 0):
    """Simple, exactly known metrics.jsonl records."""
    recs = []
    total_opt = 0
    for t in range(1, steps + 1):
        total_opt += 2
        s2 = extra_per_step * t
        recs.append(
            {
                "step": t,
                "epoch": 0,
                "prompts": prompts,
                "rollouts/stage1": prompts * n,
                "rollouts/stage2": s2,
                "rollouts/per_prompt": (prompts * n + s2) / prompts,
                "tokens/generated": 100 * (prompts * n + s2),
                "acc/stage1": 0.1 * t + 0.01 * seed,
                "groups/solve_none": 1,
                "groups/solve_all": 1,
                "groups/solve_partial": prompts - 2,
                "groups/kept": prompts - 2,
                "stage2/saved": 0.5,
                "entropy/token_mean": 1.0 / t + 0.001 * seed,
                "entropy/seq_mean": 1.2 / t,
                "loss/pg": 0.0,
                "loss/clipfrac": 0.0,
                "grad_norm": 0.1,
                "optim/steps": 2,
                "optim/skipped": 0,
                "optim/total": total_opt,
                "lr": 1e-6,
                "response_length/mean": 100.0,
                "time/gen1": 0.1,
                "time/gen2": 0.1,
                "time/reward": 0.0,
                "time/update": 0.1,
                "time/step": 0.3,
                "samples/seen": prompts * t,
            }
        )
    return recs


def write_handmade_run(
    root: Path,
    experiment: str,
    seed: int = 0,
    evals: dict[int, list] | None = None,
    steps: int = 4,
    n: int = 8,
    extra_per_step: int = 0,
    state: str = "completed",
    n_val: int = 4,
    summary: bool = True,
    name: str | None = None,
) -> Path:
    """A run directory per docs/run-format.md with hand-chosen evaluations."""
    run = Path(root) / (name or f"{experiment}-s{seed}")
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text(
        f"experiment_name: {experiment}\nseed: {seed}\npreset_name: test\n"
        f"rollout:\n  n: {n}\nalgorithm:\n  n_max: 32\n  schedule: et\n"
        f"train:\n  batch_size: 4\neval:\n  n_val: {n_val}\n"
    )
    recs = metrics_records(steps, n, extra_per_step, seed=seed)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    evals = evals if evals is not None else {2: HAND_EVAL_A, 4: HAND_EVAL_B}
    if evals:
        (run / "eval").mkdir(exist_ok=True)
        lines = []
        for step, probs in sorted(evals.items()):
            with open(run / "eval" / f"step_{step}.jsonl", "w") as f:
                f.writelines(
                    json.dumps(
                        {
                            "data_source": src,
                            "id": pid,
                            "prompt": f"prompt of {pid}",
                            "answer": "x",
                            "scores": scores,
                            "response_lengths": [10] * len(scores),
                            "preds": preds,
                        }
                    )
                    + "\n"
                    for src, pid, scores, preds in probs
                )
            lines.append(json.dumps(summary_line(step, probs, n_val)) + "\n")
        if summary:
            (run / "eval" / "summary.jsonl").write_text("".join(lines))
    (run / "status.json").write_text(
        json.dumps(
            {
                "state": state,
                "step": steps,
                "total_steps": steps if state == "completed" else 2 * steps,
                "experiment": experiment,
                "seed": seed,
                "error": "boom" if state == "failed" else None,
                "updated": "2025-01-01T00:00:00+00:00",
            }
        )
    )
    return run


def read_step_file(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


# --------------------------------------------------------------------------------------------
# seed groups with planted effects (claims and paired-delta tests)
# --------------------------------------------------------------------------------------------

PLANTED_N_VAL = 8
PLANTED_BENCH = (("aime", 9), ("math", 21))  # 30 problems


def planted_problems() -> list[tuple[str, str, int]]:
    """(data_source, id, base correct count) of the planted validation set: counts 2..5, and
    every fifth problem unsolved by the base model (count 0), so Pass@K can move too."""
    out, i = [], 0
    for src, m in PLANTED_BENCH:
        for j in range(m):
            out.append((src, f"{src}-{j}", 0 if i % 5 == 4 else 2 + i % 4))
            i += 1
    return out


def planted_counts(shift: int, offset: int, seed: int, base_shift: int = 0) -> list[int]:
    """Correct counts of a trained run: base + shift + a jitter in {-1, 0, +1} that cycles over
    problems (mean 0 over every 3 problems and over every 3 seeds), clipped to 0..n_val."""
    return [
        min(PLANTED_N_VAL, max(0, c + base_shift + shift + (seed + p + offset) % 3 - 1))
        for p, (_s, _i, c) in enumerate(planted_problems())
    ]


def _problems(counts: list[int]) -> list[tuple]:
    n = PLANTED_N_VAL
    return [
        (src, pid, [1] * c + [0] * (n - c), [str(k) for k in range(n)])
        for (src, pid, _c), c in zip(planted_problems(), counts)
    ]


def write_planted_run(
    root: Path,
    experiment: str,
    seed: int,
    shift: int = 0,
    offset: int = 0,
    entropy: float = 1.0,
    rpp: float = 8.0,
    steps: int = 6,
    base_counts: list[int] | None = None,
    final_counts: list[int] | None = None,
    trained: bool = True,
) -> Path:
    """One run: step-0 evaluation of the base model (``base_counts``, default the planted base)
    and, when ``trained``, training metrics with planted ``entropy/token_mean`` and
    ``rollouts/per_prompt`` levels and a final evaluation at ``steps``."""
    base = base_counts if base_counts is not None else [c for _s, _i, c in planted_problems()]
    evals = {0: _problems(base)}
    if trained:
        final = final_counts if final_counts is not None else planted_counts(shift, offset, seed)
        evals[steps] = _problems(final)
    run = write_handmade_run(
        root,
        experiment,
        seed=seed,
        evals=evals,
        steps=steps,
        n_val=PLANTED_N_VAL,
        state="completed" if trained else "failed",
    )
    recs = []
    for r in metrics_records(steps, 8, 0, seed=seed) if trained else []:
        t = r["step"]
        r["entropy/token_mean"] = entropy + 0.002 * seed + 0.01 * ((t + seed) % 2)
        r["rollouts/per_prompt"] = rpp + 0.05 * seed + 0.02 * (t % 2)
        recs.append(r)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


def planted_mean_delta(v_counts: list[list[int]], r_counts: list[list[int]], k: int | None = None):
    """Expected Δ (fraction) from counts, straightforwardly: Avg (k None) or Pass@k."""
    n = PLANTED_N_VAL

    def val(c):
        return c / n if k is None else comb_pass_at_k(n, c, k)

    v = [val(c) for row in v_counts for c in row]
    r = [val(c) for row in r_counts for c in row]
    return sum(v) / len(v) - sum(r) / len(r)


# --------------------------------------------------------------------------------------------
# runs that are not complete trained results (issue #11: the analysis never ranks them)
# --------------------------------------------------------------------------------------------

HAND_EVAL_PERFECT = [(src, pid, [1] * len(s), preds) for src, pid, s, preds in HAND_EVAL_B]


def write_base_only_run(
    root: Path, experiment: str, seed: int = 0, problems=None, steps: int = 0, state: str = "failed"
) -> Path:
    """A run killed before its first validation after step 0: ``steps`` training records (0:
    an empty metrics.jsonl) and only the step-0 (base model) evaluation, by default a perfect
    one, so that ranking it would put it on top."""
    return write_handmade_run(
        root,
        experiment,
        seed=seed,
        steps=steps,
        state=state,
        evals={0: problems if problems is not None else HAND_EVAL_PERFECT},
    )
