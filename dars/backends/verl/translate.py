"""The run's resolved dars config as verl's command line (docs/verl.md §1.9).

:func:`verl_overrides` maps every setting verl reads to a Hydra override of ``conf/dars_ppo.yaml``
(verl's ``ppo_trainer`` plus a ``dars:`` section read by the trainer); :func:`command` puts them
after ``python -m dars.backends.verl.trainer``. Nothing here imports verl.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from omegaconf import DictConfig

from dars.algorithm import resolve_loss_agg_mode
from dars.data.parquet import NO_TEMPLATE_CHAT_TEMPLATE

VERL_MAIN = "dars.backends.verl.trainer"  # run as its own process (python -m)


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


def verl_overrides(
    cfg: DictConfig, run_dir: Path, *, model_path: str, train_file: str, val_file: str, use_template: bool
) -> list[str]:
    """The verl command line (Hydra overrides of conf/dars_ppo.yaml) for this run's config."""
    a, t, r, e, b = cfg.algorithm, cfg.train, cfg.rollout, cfg.eval, cfg.backend
    loss_agg_mode = resolve_loss_agg_mode(a.loss_agg_mode)  # an old alias (dars) -> its mode
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
        # dars' loss_agg_mode names are verl's; seq-mean-token-sum-norm's constant is L = max_response_length
        "actor_rollout_ref.actor.loss_agg_mode": loss_agg_mode,
        "actor_rollout_ref.actor.loss_scale_factor": (
            r.max_response_length if loss_agg_mode == "seq-mean-token-sum-norm" else None
        ),
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
        # --- reward: the DARS trainer scores each generation call's rows in one batch (BatchReward,
        # dars/backends/verl/reward.py); compute_score stays verl's custom function for one-item callers
        "reward.custom_reward_function.path": "pkg://dars.rewards",
        "reward.custom_reward_function.name": "compute_score",
        "+reward.custom_reward_function.reward_kwargs": reward_kwargs,
        "reward.num_workers": 1,  # verl's reward-loop actors sit idle (no streaming rewards): start one
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
        "dars.reward.version": cfg.reward.version,
        "dars.reward.timeout_s": float(cfg.reward.timeout_s),
        "dars.reward.num_workers": cfg.reward.num_workers,
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


def command(cfg: DictConfig, run_dir: Path, inputs: dict) -> list[str]:
    """The verl process of the run: this Python, the trainer module, the overrides."""
    return [sys.executable, "-m", VERL_MAIN, *verl_overrides(cfg, run_dir, **inputs)]
