"""backend=verl: every experiment x preset becomes a verl config that verl itself accepts
(issue #7, acceptance 1). The translated overrides are composed with Hydra against verl 0.9.1's own
ppo_trainer schema (pkg://verl.trainer.config), then checked by verl's ``validate_config`` and its
dataclass conversions, and the composed values are compared with the dars config they came from.
The real verl entry point is also run on a dry-run command (``--cfg job``)."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from conftest import require_verl

require_verl()

from conftest import FAST, ROOT, compose_config, run_dars
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from test_config import make_checkpoint

from dars.backends import verl as backend
from dars.backends.verl import translate
from dars.config import validate  # also registers the run-name resolver
from dars.data.parquet import NO_TEMPLATE_CHAT_TEMPLATE

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (ROOT / "conf/preset").glob("*.yaml"))


def compose_verl(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "dars/backends/verl/conf"), version_base=None):
        cfg = compose("dars_ppo", overrides=[o for o in overrides if not o.startswith("hydra.")])
    OmegaConf.resolve(cfg)
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_preset_is_a_valid_verl_config(experiment, preset, paper_data, tmp_path):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    ckpt = make_checkpoint(tmp_path / "ckpt")  # validate looks for a checkpoint's files
    cfg = compose_config(
        [
            f"experiment={experiment}",
            f"preset={preset}",
            "backend=verl",
            f"paths.data_dir={paper_data}",
            f"model.path={ckpt}",
        ]
    )
    validate(cfg)
    backend.check(cfg)
    inputs = backend.prepare_inputs(cfg, tmp_path / "run")
    v = compose_verl(translate.verl_overrides(cfg, tmp_path / "run", **inputs))

    # verl's own checks and schemas
    validate_config(v, use_reference_policy=need_reference_policy(v), use_critic=need_critic(v))
    assert not need_critic(v) and not need_reference_policy(v)  # GRPO without KL: actor + rollout only
    omega_conf_to_dataclass(v.actor_rollout_ref.rollout)
    omega_conf_to_dataclass(v.algorithm)
    # (verl 0.9.1's RewardConfig cannot be converted even from its own defaults; the trainer never does)

    # the values verl will run with are the run's
    a, t, r, e = cfg.algorithm, cfg.train, cfg.rollout, cfg.eval
    actor, rollout = v.actor_rollout_ref.actor, v.actor_rollout_ref.rollout
    assert v.data.train_batch_size == t.batch_size and rollout.n == r.n
    assert (v.dars.schedule, v.dars.n_max, v.dars.filter_groups, v.dars.update_mode) == (
        a.schedule,
        a.n_max,
        a.filter_groups,
        t.update_mode,
    )
    assert actor.optim.lr == t.lr and actor.ppo_epochs == t.ppo_epochs and actor.entropy_coeff == a.entropy_coeff
    assert (v.data.max_prompt_length, v.data.max_response_length) == (r.max_prompt_length, r.max_response_length)
    assert rollout.response_length == r.max_response_length  # verl derives it from data.*
    assert (rollout.val_kwargs.n, rollout.val_kwargs.do_sample, rollout.val_kwargs.temperature) == (
        e.n_val,
        True,
        e.temperature,
    )
    assert v.trainer.total_training_steps == t.total_steps and v.trainer.test_freq == t.test_freq
    assert v.trainer.n_gpus_per_node == cfg.scale.n_gpus_per_node and v.trainer.use_v1 is False
    assert actor.loss_agg_mode == "seq-mean-token-sum-norm" and actor.loss_scale_factor == r.max_response_length
    assert v.algorithm.norm_adv_by_std_in_grpo is False and actor.use_kl_loss is False
    assert v.actor_rollout_ref.model.path == str(ckpt)
    if t.update_mode == "full_batch":
        assert actor.ppo_mini_batch_size == t.batch_size
    else:
        assert actor.ppo_mini_batch_size == t.ppo_mini_batch_size
    assert v.reward.custom_reward_function.path == "pkg://dars.rewards"
    assert v.reward.custom_reward_function.reward_kwargs.version == cfg.reward.version
    # streaming rewards off: verl builds our agent-loop manager, and the trainer's batch scorer gets the run's reward
    from verl.utils.import_utils import load_class_from_fqn

    from dars.backends.verl.reward import BatchRewardAgentLoopManager

    fqn = omega_conf_to_dataclass(v.actor_rollout_ref.rollout).agent.agent_loop_manager_class
    assert load_class_from_fqn(fqn, "AgentLoopManager") is BatchRewardAgentLoopManager
    assert OmegaConf.to_container(v.dars.reward) == {
        "version": cfg.reward.version,
        "timeout_s": cfg.reward.timeout_s,
        "num_workers": cfg.reward.num_workers,
    }
    templ = v.actor_rollout_ref.model.custom_chat_template
    if preset == "llama-3.1-8b" or preset == "tiny":
        assert templ == NO_TEMPLATE_CHAT_TEMPLATE  # raw prompt text, no chat markers
    else:
        assert templ is None  # the model's own chat template
    if preset != "tiny":
        assert v.data.train_files.endswith(cfg.data.train_file.split("/")[-1])


def test_paper_grid_numbers():
    """A few of docs/algorithm.md §10's numbers, end to end through the translation."""
    cfg = compose_config(["experiment=dars_hw_breadth", "preset=qwen2.5-math-1.5b", "backend=verl", "model.path=/m"])
    ov = dict(
        o.split("=", 1)
        for o in translate.verl_overrides(
            cfg, "/runs/x", model_path="/m", train_file="/d/t.parquet", val_file="/d/v.parquet", use_template=True
        )
    )
    assert ov["data.train_batch_size"] == "3072" and ov["dars.n_max"] == "64" and ov["dars.schedule"] == "hw"
    assert ov["actor_rollout_ref.actor.optim.lr"] == "5e-06" and ov["actor_rollout_ref.actor.ppo_epochs"] == "2"
    assert ov["actor_rollout_ref.rollout.gpu_memory_utilization"] == "0.7"
    assert ov["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] == "24576"
    assert ov["trainer.total_training_steps"] == "86" and ov["actor_rollout_ref.rollout.val_kwargs.n"] == "128"


def test_old_loss_agg_name_dars_translates_like_its_mode():
    """``loss_agg_mode: dars`` (configs in the wild) gives verl the same loss as its new name."""

    def overrides(mode: str) -> list[str]:
        cfg = compose_config(["backend=verl", "model.path=/m", f"algorithm.loss_agg_mode={mode}"])
        return translate.verl_overrides(
            cfg, "/runs/x", model_path="/m", train_file="/d/t.parquet", val_file="/d/v.parquet", use_template=True
        )

    def loss(ov: list[str]) -> list[str]:  # (the run names differ: they carry the override)
        return [o for o in ov if o.startswith("actor_rollout_ref.actor.loss_")]

    new, old = overrides("seq-mean-token-sum-norm"), overrides("dars")
    assert loss(old) == loss(new) and "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm" in old


def test_mini_batch_with_stage2_is_refused_with_the_fix(tmp_path, cache_dir):
    proc = run_dars(
        [*FAST, "backend=verl", "experiment=dars_et", "update=mini_batch"], tmp_path, cache_dir, check=False
    )
    assert proc.returncode == 2 and "Use update=full_batch" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_without_vllm_or_gpu_the_run_stops_with_one_message(tmp_path, cache_dir):
    proc = run_dars([*FAST, "backend=verl", "experiment=dars_et"], tmp_path, cache_dir, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "backend=verl needs" in proc.stderr or "GPU" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "a refused run left files behind"


def test_dry_run_command_runs_through_verls_entry_point(tmp_path, cache_dir):
    """The written command is accepted by the real verl Hydra app (composition + its config print)."""
    proc = run_dars([*FAST, "backend=verl", "experiment=dars_hw", "backend.dry_run=true"], tmp_path, cache_dir)
    command = next(tmp_path.rglob("verl/command.sh"))
    run_dir = command.parent.parent
    assert (run_dir / "verl/data/train.parquet").exists() and (run_dir / "verl/data/val.parquet").exists()
    assert "dry_run" in proc.stdout
    argv = shlex.split(command.read_text().split("\n", 2)[2].replace("\\\n", " "))
    assert argv[1:3] == ["-m", "dars.backends.verl.trainer"]
    out = subprocess.run(
        [sys.executable, *argv[1:], "--cfg", "job", "--resolve"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    printed = OmegaConf.create(out.stdout)
    assert printed.dars.schedule == "hw" and printed.dars.n_max == 64 and printed.dars.run_dir == str(run_dir)
    assert printed.actor_rollout_ref.rollout.name == "vllm" and printed.trainer.use_v1 is False


def test_multi_node_ranks_share_one_ray_cluster(tmp_path, cache_dir):
    """backend.nnodes=2 inside a 2-node Slurm allocation: rank 1 only joins Ray; rank 0's verl command
    goes through slurm/ray_cluster.sh (which starts the head and waits for both nodes). The Ray side
    runs in the script's dry-run mode (Ray itself is exercised by verl, not here)."""
    import os

    base = dict(
        os.environ,
        DARS_OUTPUT_DIR=str(tmp_path),
        DARS_CACHE_DIR=str(cache_dir),
        SLURM_NNODES="2",
        SLURM_JOB_NUM_NODES="2",
        SLURM_JOB_NODELIST="gpu-a,gpu-b",
        RAY_CLUSTER_DRY_RUN="1",
        RAY_HEAD_IP="10.0.0.1",
    )
    args = [sys.executable, "-m", "dars.run", *FAST, "backend=verl", "experiment=dars_et", "backend.nnodes=2"]
    worker = subprocess.run(
        [*args], env={**base, "SLURM_NODEID": "1"}, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "ray start --address=10.0.0.1:6379" in worker.stdout + worker.stderr
    assert not list(tmp_path.rglob("command.sh"))  # workers never start a driver

    head = subprocess.run(
        [*args, "backend.dry_run=true"],
        env={**base, "SLURM_NODEID": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert head.returncode == 0, head.stderr[-2000:]
    command = next(tmp_path.rglob("verl/command.sh")).read_text()
    assert "slurm/ray_cluster.sh" in command and "trainer.nnodes=2" in command
    # verl's ray.init joins the script's cluster (RAY_ADDRESS), where Ray refuses a num_cpus argument
    assert "ray_kwargs.ray_init.num_cpus" not in command

    wrong = subprocess.run(
        args,
        env={**base, "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 2 and "backend.nnodes=2 but this job has 1 node" in wrong.stderr
    wrong = subprocess.run(
        [a for a in args if a != "backend.nnodes=2"],
        env={**base, "SLURM_NODEID": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )  # hydra.launcher.nodes=2 set by hand
    assert wrong.returncode == 2 and "set backend.nnodes=2" in wrong.stderr
