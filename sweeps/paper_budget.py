"""Rollout budget and expected wall time of the paper grid, from the presets themselves.

    python sweeps/paper_budget.py                        # the README's "Paper scale" table
    python sweeps/paper_budget.py --gen 40000 --train 60000 --response 1000   # your own measured rates

Rollouts per step come from each experiment x preset config (batch, n, schedule, n_max). The number
of stage-2 extras depends on the model's stage-1 accuracy, which no config knows: by default p_hat is
taken uniform over {0, 1/n, ..., 1} (change with --acc-mix). Hours = tokens / throughput, with
throughputs per 8-GPU node that are *assumptions* (--gen, --train per preset size; measure one step
of your own and scale). Validation (n_val x problems at every test_freq and at the end) is counted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

import dars.config  # noqa: F401  (registers the run-name resolver)
from dars.schedules import extra_rollouts_batch

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["baseline", "depth_naive", "breadth_naive", "dars_et", "dars_hw", "dars_et_breadth", "dars_hw_breadth"]
PRESETS = {"qwen2.5-math-1.5b": "small", "qwen2.5-math-7b": "large", "llama-3.1-8b": "large"}
VAL_PROBLEMS = 1560  # capacity_val


def mean_rollouts(cfg, acc_mix: str) -> float:
    n, a = cfg.rollout.n, cfg.algorithm
    acc = np.arange(n + 1) / n if acc_mix == "uniform" else np.full(1, float(acc_mix))
    return n + float(extra_rollouts_batch(acc, n, a.n_max, a.schedule, a.use_std).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--response", type=float, default=1000, help="mean response tokens per rollout (cap 3072)")
    p.add_argument("--prompt", type=float, default=250, help="mean prompt tokens")
    p.add_argument(
        "--gen",
        type=float,
        nargs=2,
        default=[40e3, 12e3],
        metavar=("SMALL", "LARGE"),
        help="generated tokens/s per 8-GPU node for 1.5B and for 7B/8B models (assumed)",
    )
    p.add_argument(
        "--train",
        type=float,
        nargs=2,
        default=[60e3, 15e3],
        metavar=("SMALL", "LARGE"),
        help="trained tokens/s per node (forward+backward) for 1.5B and 7B/8B (assumed)",
    )
    p.add_argument("--acc-mix", default="uniform", help="'uniform' p_hat over {0..n}/n, or one accuracy, e.g. 0.3")
    args = p.parse_args()

    print("| preset | experiment | rollouts/step | train rollouts | val rollouts | hours (8 GPUs) |")
    print("|---|---|---|---|---|---|")
    for preset, size in PRESETS.items():
        gen, train = (args.gen[0], args.train[0]) if size == "small" else (args.gen[1], args.train[1])
        for exp in EXPERIMENTS:
            with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                cfg = compose(
                    "config",
                    overrides=[f"experiment={exp}", f"preset={preset}", "model.path=/m"],
                    return_hydra_config=True,
                )
                HydraConfig.instance().set_config(cfg)
            t = cfg.train
            per_step = t.batch_size * mean_rollouts(cfg, args.acc_mix)
            train_rollouts = per_step * t.total_steps
            validations = t.total_steps // t.test_freq + (t.total_steps % t.test_freq != 0) + bool(t.val_before_train)
            val_rollouts = validations * VAL_PROBLEMS * cfg.eval.n_val
            seconds = (train_rollouts + val_rollouts) * args.response / gen + train_rollouts * (
                args.prompt + args.response
            ) * (t.ppo_epochs + 1 / 3) / train
            print(
                f"| {preset} | {exp} | {per_step:,.0f} | {train_rollouts / 1e6:.2f}M | {val_rollouts / 1e6:.2f}M "
                f"| {seconds / 3600:,.0f} |"
            )


if __name__ == "__main__":
    main()
