"""``backend=verl``: one run on verl 0.9.1 + vLLM (GPUs; one node or several over Ray).

The run's dars config is translated into verl overrides (:func:`verl_overrides`), and verl's trainer
with the DARS step (:mod:`dars.backends.verl_trainer`) runs as a subprocess of this job: verl's entry
point is itself a Hydra app and leaves Ray actors behind, so one process per run is the clean unit.
That process writes ``metrics.jsonl`` and ``eval/`` of the run directory (docs/run-format.md) with
the same code as the embedded backend, so analysis reads both alike; verl's own console log goes to
``<run_dir>/verl/driver.log`` and its checkpoints to ``<run_dir>/checkpoints/verl``.

Nothing here imports verl: the translation runs (and is tested) wherever dars is installed.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from dars.config import ConfigError

log = logging.getLogger("dars")

VERL_MAIN = "dars.backends.verl_trainer"
RAY_CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / "slurm" / "ray_cluster.sh"

# dars loss aggregation -> verl actor.loss_agg_mode. "dars" (sum_t / L_max, mean over sequences) is
# verl's seq-mean-token-sum-norm with loss_scale_factor = max_response_length.
LOSS_AGG = {"dars": "seq-mean-token-sum-norm", "token-mean": "token-mean", "seq-mean-token-mean": "seq-mean-token-mean"}


# ---------------------------------------------------------------- config translation
def _value(v) -> str:
    """A Python value in Hydra's override grammar."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if re.fullmatch(r"[\w./:+@-]+", s) and s not in ("null", "true", "false"):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def verl_overrides(
    cfg: DictConfig, run_dir: Path, *, model_path: str, train_file: str, val_file: str, use_template: bool
) -> list[str]:
    """The verl command line (Hydra overrides of dars_ppo.yaml) for this run's config."""
    from dars.data.parquet import NO_TEMPLATE_CHAT_TEMPLATE

    a, t, r, e, b = cfg.algorithm, cfg.train, cfg.rollout, cfg.eval, cfg.backend
    run_dir = Path(run_dir).resolve()
    full_batch = t.update_mode == "full_batch"
    loggers = ["console"] + (["wandb"] if cfg.logger.wandb.enabled else [])
    reward_kwargs = {"version": cfg.reward.version, "timeout_s": float(cfg.reward.timeout_s), "return_dict": True}
    ov = {
        # --- data (verl-format parquet; the synthetic task is written as such first)
        "data.train_files": train_file,
        "data.val_files": val_file,
        "data.train_batch_size": t.batch_size,
        "data.max_prompt_length": r.max_prompt_length,
        "data.max_response_length": r.max_response_length,
        "data.filter_overlong_prompts": bool(cfg.data.get("filter_overlong_prompts", True)),
        "data.truncation": "error",
        "data.shuffle": bool(cfg.data.shuffle),
        "data.seed": cfg.seed,
        # --- policy
        "actor_rollout_ref.model.path": model_path,
        "actor_rollout_ref.model.custom_chat_template": None if use_template else NO_TEMPLATE_CHAT_TEMPLATE,
        "actor_rollout_ref.actor.optim.lr": float(t.lr),
        "actor_rollout_ref.actor.optim.betas": [float(x) for x in t.betas],
        "actor_rollout_ref.actor.optim.weight_decay": float(t.weight_decay),
        "actor_rollout_ref.actor.optim.lr_warmup_steps": 0,  # constant LR, no warm-up
        "actor_rollout_ref.actor.optim.clip_grad": float(t.grad_clip),
        "actor_rollout_ref.actor.grad_clip": float(t.grad_clip),
        # full-batch: the config check wants mini <= batch; the DARS trainer uses the real size
        "actor_rollout_ref.actor.ppo_mini_batch_size": t.batch_size if full_batch else t.ppo_mini_batch_size,
        "actor_rollout_ref.actor.ppo_epochs": t.ppo_epochs,
        "actor_rollout_ref.actor.shuffle": False,
        "actor_rollout_ref.actor.data_loader_seed": cfg.seed,
        "actor_rollout_ref.actor.use_dynamic_bsz": True,  # micro-batches by token budget
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": t.max_tokens_per_micro_batch,
        "actor_rollout_ref.actor.clip_ratio_low": float(a.clip_ratio_low),
        "actor_rollout_ref.actor.clip_ratio_high": float(a.clip_ratio_high),
        "actor_rollout_ref.actor.entropy_coeff": float(a.entropy_coeff),
        "actor_rollout_ref.actor.use_kl_loss": a.kl_coef > 0,
        "actor_rollout_ref.actor.kl_loss_coef": float(a.kl_coef),
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",  # k3, as the embedded backend
        "actor_rollout_ref.actor.loss_agg_mode": LOSS_AGG[a.loss_agg_mode],
        "actor_rollout_ref.actor.loss_scale_factor": r.max_response_length if a.loss_agg_mode == "dars" else None,
        # --- rollout (vLLM); stage 2 uses the same sampling parameters
        "actor_rollout_ref.rollout.name": b.rollout_engine,
        "actor_rollout_ref.rollout.n": r.n,
        "actor_rollout_ref.rollout.temperature": float(r.temperature),
        "actor_rollout_ref.rollout.top_p": float(r.top_p),
        "actor_rollout_ref.rollout.top_k": r.top_k,
        "actor_rollout_ref.rollout.seed": cfg.seed,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": b.tensor_parallel_size,
        "actor_rollout_ref.rollout.gpu_memory_utilization": float(b.gpu_memory_utilization),
        "actor_rollout_ref.rollout.agent.num_workers": b.agent_workers,
        "actor_rollout_ref.rollout.val_kwargs.n": e.n_val,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True,  # Pass@k needs samples
        "actor_rollout_ref.rollout.val_kwargs.temperature": float(e.temperature),
        "actor_rollout_ref.rollout.val_kwargs.top_p": float(e.top_p),
        "actor_rollout_ref.rollout.val_kwargs.top_k": r.top_k,
        # --- advantage: computed by dars.algorithm in the trainer; verl's fields kept consistent
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": bool(a.use_std),
        "algorithm.use_kl_in_reward": False,
        # --- reward: dars.rewards.compute_score (math-verify in worker processes)
        "reward.custom_reward_function.path": "pkg://dars.rewards",
        "reward.custom_reward_function.name": "compute_score",
        "+reward.custom_reward_function.reward_kwargs": reward_kwargs,
        # --- trainer
        "trainer.use_v1": False,
        "trainer.project_name": cfg.logger.wandb.project,
        "trainer.experiment_name": cfg.run_name,
        "trainer.logger": loggers,
        "trainer.nnodes": b.nnodes,
        "trainer.n_gpus_per_node": b.n_gpus_per_node,
        "trainer.total_training_steps": t.total_steps,
        "trainer.total_epochs": t.total_epochs,
        "trainer.test_freq": t.test_freq,
        "trainer.save_freq": t.save_freq,
        "trainer.val_before_train": bool(t.val_before_train),
        "trainer.resume_mode": "auto",
        "trainer.default_local_dir": str(run_dir / "checkpoints" / "verl"),
        "trainer.max_actor_ckpt_to_keep": t.keep_checkpoints,
        "ray_kwargs.ray_init.num_cpus": b.ray_num_cpus or _cpus_for_ray(),
        # --- DARS (read by DarsRayTrainer)
        "dars.run_dir": str(run_dir),
        "dars.schedule": a.schedule,
        "dars.n_max": a.n_max,
        "dars.use_std": bool(a.use_std),
        "dars.filter_groups": bool(a.filter_groups),
        "dars.upper_threshold": float(a.upper_threshold),
        "dars.update_mode": t.update_mode,
        "dars.max_k": e.get("max_k"),
        "dars.save_responses": bool(e.save_responses),
        # --- the inner Hydra app keeps its files out of the way and the working directory as is
        "hydra.run.dir": str(run_dir / "verl" / "hydra"),
        "hydra.job.chdir": False,
    }
    if b.nnodes > 1:
        # slurm/ray_cluster.sh starts Ray with fixed --num-cpus per node and exports RAY_ADDRESS, so
        # verl's ray.init joins that cluster, and Ray refuses num_cpus when joining one (ValueError)
        del ov["ray_kwargs.ray_init.num_cpus"]
    return [f"{k}={_value(v)}" for k, v in ov.items()] + [str(x) for x in b.extra_overrides]


def _cpus_for_ray() -> int:
    # a fixed number: Ray's autodetection under Slurm sees the whole node and can hang (verl FAQ)
    return int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)


# ---------------------------------------------------------------- inputs on disk
def prepare_inputs(cfg: DictConfig, run_dir: Path) -> dict:
    """Model path and verl-format data files for the run (the synthetic task is written as parquet
    into the run directory)."""
    from dars.data.parquet import problems_to_verl_rows, write_verl_parquet

    if cfg.model.get("path"):
        model_path = str(Path(cfg.model.path).expanduser())
    else:
        from dars.model import ensure_base_model

        model_path = str(ensure_base_model(cfg, cfg.paths.cache_dir))
    d = cfg.data
    if d.name == "synthetic":
        from dars.data.synthetic import synthetic_splits_from_config

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


def command(cfg: DictConfig, run_dir: Path, inputs: dict) -> list[str]:
    return [sys.executable, "-m", VERL_MAIN, *verl_overrides(cfg, run_dir, **inputs)]


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
