"""``backend=verl``: one run on verl 0.9.1 + vLLM (GPUs; one node or several over Ray).

:func:`check` refuses what verl cannot run; :func:`run` writes the run's inputs (model path, the data
as verl parquet), translates the run's dars config into verl overrides
(:mod:`dars.backends.verl.translate`) and starts verl's trainer with the DARS step
(:mod:`dars.backends.verl.trainer`, config in ``conf/dars_ppo.yaml`` next to it) as a subprocess of
this job: verl's entry point is itself a Hydra app and leaves Ray actors behind, so one process per
run is the clean unit. That process writes ``metrics.jsonl`` and ``eval/`` of the run directory
(docs/run-format.md) with the same code as the embedded backend, so analysis reads both alike;
verl's own console log goes to ``<run_dir>/verl/driver.log`` and its checkpoints to
``<run_dir>/checkpoints/verl``.

Nothing here (nor in translate.py) imports verl: the translation runs, and is tested, wherever dars
is installed.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from dars.backends.verl.translate import command
from dars.config import ConfigError
from dars.data.parquet import problems_to_verl_rows, write_verl_parquet
from dars.data.synthetic import synthetic_splits_from_config

log = logging.getLogger("dars")

# the repository's slurm/ (dars/backends/verl/__init__.py is three folders below it)
RAY_CLUSTER_SCRIPT = Path(__file__).resolve().parents[3] / "slurm" / "ray_cluster.sh"


# ---------------------------------------------------------------- what verl cannot run
def check(cfg: DictConfig) -> None:
    """What the verl backend cannot express; one message each, with the fix."""
    a, t, b = cfg.algorithm, cfg.train, cfg.backend
    variable = a.filter_groups or a.schedule != "uniform"
    if t.update_mode == "mini_batch" and variable:
        raise ConfigError(
            "backend=verl runs mini-batch updates only on fixed-size batches, but this experiment has "
            f"{'a stage-2 schedule' if a.schedule != 'uniform' else 'the group filter'} (variable batch size). "
            "Use update=full_batch (as every DARS experiment does) or backend=embedded."
        )
    if t.update_mode == "mini_batch":
        dp = b.n_gpus_per_node * b.nnodes
        rows = t.ppo_mini_batch_size * cfg.rollout.n
        if rows % dp:
            raise ConfigError(
                f"train.ppo_mini_batch_size={t.ppo_mini_batch_size} prompts x rollout.n={cfg.rollout.n} = {rows} "
                f"rollouts do not split over {dp} GPUs (backend.n_gpus_per_node x backend.nnodes); "
                "pick a mini-batch whose rollout count divides the GPU count"
            )
    if b.nnodes < 1 or b.n_gpus_per_node < 1:
        raise ConfigError("backend.nnodes and backend.n_gpus_per_node must be >= 1")


# ---------------------------------------------------------------- inputs on disk
def prepare_inputs(cfg: DictConfig, run_dir: Path) -> dict:
    """Model path and verl-format data files for the run (the synthetic task is written as parquet
    into the run directory)."""
    if cfg.model.get("path"):
        model_path = str(Path(cfg.model.path).expanduser())
    else:
        from dars.model import ensure_base_model

        model_path = str(ensure_base_model(cfg, cfg.paths.cache_dir))
    d = cfg.data
    if d.name == "synthetic":
        train, val = synthetic_splits_from_config(d)
        data_dir = Path(run_dir) / "verl" / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        for split, problems in (("train", train), ("val", val)):
            path = data_dir / f"{split}.parquet"
            write_verl_parquet(problems_to_verl_rows(problems, split=split), path)
            files[split] = str(path)
        use_template = False  # the synthetic prompts are raw text, as the embedded backend sees them
    else:  # parquet: dars.config.validate has checked every row already
        files = {"train": str(Path(d.train_file).expanduser()), "val": str(Path(d.val_file).expanduser())}
        use_template = bool(d.use_template)
    return {
        "model_path": model_path,
        "train_file": files["train"],
        "val_file": files["val"],
        "use_template": use_template,
    }


# ---------------------------------------------------------------- the run
def run(cfg: DictConfig, run_dir: Path) -> dict:
    from dars.runlog import RunLog

    run_dir = Path(run_dir)
    b = cfg.backend  # dars.run has run validate() and check() already
    nodes = int(os.environ.get("SLURM_NNODES", os.environ.get("SLURM_JOB_NUM_NODES", 1)))
    rank = int(os.environ.get("SLURM_NODEID", os.environ.get("SLURM_PROCID", 0)) or 0)
    if b.nnodes == 1 and nodes > 1 and "SLURM_NODEID" in os.environ:
        raise ConfigError(
            f"this job has {nodes} nodes but backend.nnodes=1, so every node would start the same "
            f"run; set backend.nnodes={nodes} (hydra/launcher=slurm then asks for that many nodes)"
        )
    if b.nnodes > 1:
        if nodes != b.nnodes:
            raise ConfigError(
                f"backend.nnodes={b.nnodes} but this job has {nodes} node(s); submit with "
                f"hydra/launcher=slurm (it asks Slurm for backend.nnodes nodes)"
            )
        if rank != 0:  # worker nodes only join the Ray cluster the head starts
            rc = subprocess.run(["bash", str(RAY_CLUSTER_SCRIPT), "--", "true"]).returncode
            if rc != 0:
                raise RuntimeError(
                    f"slurm/ray_cluster.sh failed on node rank {rank} (exit {rc}); see its message above"
                )
            return {}

    if not b.dry_run:
        _check_verl_and_gpus(b)
    inputs = prepare_inputs(cfg, run_dir)
    cmd = command(cfg, run_dir, inputs)
    if b.nnodes > 1:
        cmd = ["bash", str(RAY_CLUSTER_SCRIPT), "--", *cmd]
    verl_dir = run_dir / "verl"
    verl_dir.mkdir(parents=True, exist_ok=True)
    (verl_dir / "command.sh").write_text(
        "#!/usr/bin/env bash\n# the verl process of this run\n" + " \\\n  ".join(shlex.quote(c) for c in cmd) + "\n"
    )
    if b.dry_run:
        print(f"dars: backend.dry_run: verl command written to {verl_dir / 'command.sh'}")
        return {}

    runlog = RunLog(run_dir)
    done = runlog.completed_summary(cfg.train.total_steps)  # (RunDirError when its records are gone)
    if done is not None:
        log.info("run already completed at step %d; nothing to do", done["step"])
        return done
    runlog.set_status(
        "running",
        step=runlog.status().get("step", 0),
        total_steps=cfg.train.total_steps,
        experiment=cfg.experiment_name,
        seed=cfg.seed,
        error=None,
    )
    env = {**os.environ, "DARS_REWARD_VERSION": cfg.reward.version, "PYTHONUNBUFFERED": "1"}
    log.info("verl: %s (log: %s)", " ".join(cmd[:3]), verl_dir / "driver.log")
    with open(verl_dir / "driver.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        for line in proc.stdout:  # tee: the job's log shows verl's progress too
            out.write(line)
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        rc = proc.wait()
    step = max((r.get("step", 0) for r in _metrics(run_dir)), default=0)
    if rc != 0:
        runlog.set_status("failed", step=step, error=f"verl exited with {rc}; see verl/driver.log")
        raise RuntimeError(f"verl exited with status {rc}; its log is {verl_dir / 'driver.log'}")
    runlog.set_status("completed", step=step)
    return runlog.final_summary()


def _metrics(run_dir: Path) -> list[dict]:
    from dars.runlog import read_jsonl

    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def _check_verl_and_gpus(b: DictConfig) -> None:
    import importlib.util

    if importlib.util.find_spec("verl") is None or importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "backend=verl needs verl 0.9.1 with vLLM on a GPU machine: "
            "pip install -e '.[verl]' there (README: Paper scale); on a CPU machine use "
            "backend=embedded, or backend.dry_run=true to only write the verl command"
        )
    if importlib.util.find_spec("flash_attn") is None:  # verl's FSDP actor loads models with flash_attention_2
        raise ConfigError(
            "backend=verl trains with flash-attention 2, which is not installed: "
            "pip install flash-attn==2.8.3 --no-build-isolation (the version verl's [fsdp] extra "
            "pins; it builds against the installed torch), or use verl's docker image"
        )
    import torch

    have = torch.cuda.device_count()
    if have < b.n_gpus_per_node:
        raise ConfigError(
            f"backend.n_gpus_per_node={b.n_gpus_per_node} but this node has {have} GPU(s); "
            "run it on a GPU node (hydra/launcher=slurm) or lower backend.n_gpus_per_node"
        )
