"""Stage-2 overhead: a DARS step (stage 1 + stage 2) against a single-stage step that generates the
same number of rollouts per prompt in one call, on the same batch from the same weights.

    python benchmarks/bench_stage2_overhead.py                      # tiny preset, DARS-HW-Breadth
    python benchmarks/bench_stage2_overhead.py --steps 6 experiment=dars_et scale.breadth_batch_size=32

Both variants run the real training step (generation, math-verify scoring, filter, advantages,
full-batch update); weights and optimiser state are restored before each, so the pair differs
only in how the rollouts are generated. Prints per-step times and the ratio DARS / single-stage
(target <= 1.10). A measurement, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class RecordingEngine:
    """Wraps the rollout engine: records the counts of each call, or forces one set of counts."""

    def __init__(self, engine):
        self.engine = engine
        self.calls: list[list[int]] = []
        self.force_counts: list[int] | None = None

    def generate(self, prompt_ids, counts, params):
        if self.force_counts is not None:
            counts = self.force_counts
        self.calls.append(list(counts))
        return self.engine.generate(prompt_ids, counts, params)

    def sync_weights(self):
        self.engine.sync_weights()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="measured batch pairs (after one warm-up pair)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=dars_et")
    args = ap.parse_args()

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import dars.config  # run-name resolver
    from dars.backends.embedded import EmbeddedTrainer

    overrides = ["experiment=dars_hw_breadth", "train.progress_bar=false", *args.overrides]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
    dars.config.validate(cfg)
    schedule = cfg.algorithm.schedule
    tmp = Path(tempfile.mkdtemp(prefix="bench-stage2-"))
    trainer = EmbeddedTrainer(cfg, tmp)
    trainer.setup()
    engine = RecordingEngine(trainer.engine)
    trainer.engine = engine
    weights = copy.deepcopy(trainer.model.state_dict())
    opt_state = copy.deepcopy(trainer.optimizer.state_dict())

    def restore(batch_index: int) -> None:
        trainer.model.load_state_dict(weights)
        trainer.optimizer.load_state_dict(opt_state)
        trainer.state.batch_index = batch_index
        trainer.state.step = 0

    print(
        f"{cfg.experiment_name} on the {cfg.preset_name} preset: {cfg.train.batch_size} prompts x n={cfg.rollout.n}, "
        f"schedule {schedule}, n_max {cfg.algorithm.n_max}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'batch':>5} {'rollouts':>8} {'stage2':>6} | {'DARS step s':>11} {'gen1+gen2 s':>11} | "
        f"{'single step s':>13} {'gen s':>6} | {'ratio step':>10} {'ratio gen':>9}"
    )
    ratios, gen_ratios, t_dars_all, t_single_all = [], [], 0.0, 0.0
    for b in range(args.steps + 1):
        restore(b)
        engine.calls, engine.force_counts = [], None
        cfg.algorithm.schedule = schedule
        t0 = time.perf_counter()
        rec = trainer.training_step()
        t_dars = time.perf_counter() - t0
        if rec is None:
            print(f"{b:>5} skipped (every group filtered)")
            continue
        counts = list(engine.calls[0])
        if len(engine.calls) > 1:
            counts = [a + e for a, e in zip(counts, engine.calls[1])]

        restore(b)
        engine.calls, engine.force_counts = [], counts
        cfg.algorithm.schedule = "uniform"  # one stage generating the same counts
        t0 = time.perf_counter()
        rec1 = trainer.training_step()
        t_single = time.perf_counter() - t0
        engine.force_counts = None
        cfg.algorithm.schedule = schedule
        if rec1 is None:
            print(f"{b:>5} single-stage step skipped (every group filtered)")
            continue
        gen_d = rec["time/gen1"] + rec["time/gen2"]
        gen_s = rec1["time/gen1"]
        tag = " (warm-up)" if b == 0 else ""
        print(
            f"{b:>5} {sum(counts):>8} {rec['rollouts/stage2']:>6} | {t_dars:>11.2f} {gen_d:>11.2f} | "
            f"{t_single:>13.2f} {gen_s:>6.2f} | {t_dars / t_single:>10.3f} {gen_d / gen_s:>9.3f}{tag}"
        )
        if b == 0:
            continue
        ratios.append(t_dars / t_single)
        gen_ratios.append(gen_d / gen_s)
        t_dars_all += t_dars
        t_single_all += t_single
    trainer.cleanup()
    if ratios:
        print(
            f"\nstage-2 overhead, DARS step / single-stage step with the same rollouts: "
            f"total {t_dars_all / t_single_all:.3f}, median {statistics.median(ratios):.3f} "
            f"(generation only: median {statistics.median(gen_ratios):.3f}); target <= 1.10"
        )


if __name__ == "__main__":
    main()
