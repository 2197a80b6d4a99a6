"""The config schema: every field the code reads, with its type and range (checked by
:func:`dars.config.check_schema`; ``from dars.config import SCHEMA, Field`` works too)."""

from __future__ import annotations

from typing import NamedTuple


class Field(NamedTuple):
    """One config field: its type, its range, and when it must be present."""

    kind: type  # int | float | bool | str | list | dict (float also takes ints)
    lo: float | None = None  # lower bound (inclusive unless gt)
    hi: float | None = None  # upper bound (inclusive)
    gt: bool = False  # lo itself excluded
    null: str | None = None  # null allowed; what it means (said in the range message)
    when: str | None = None  # required only with: synthetic | parquet | verl | vllm | tiny (None: always)
    need: bool = True  # must be present where it applies (False: read with a default)
    eg: str = ""  # a good value, for the fix in the message
    item: type | None = None  # list element type


def _i(lo=None, hi=None, **kw) -> Field:
    return Field(int, lo, hi, **kw)


def _f(lo=None, hi=None, **kw) -> Field:
    return Field(float, lo, hi, **kw)


def _b(**kw) -> Field:
    return Field(bool, eg="true", **kw)


def _s(**kw) -> Field:
    return Field(str, **kw)


_SCALE_INTS = (
    "n",
    "depth_naive_n",
    "batch_size",
    "breadth_batch_size",
    "mini_batch_size",
    "steps",
    "breadth_steps",
    "train_per_level",
    "val_per_level",
    "n_gpus_per_node",
    "n_val",
    "max_prompt_length",
    "max_response_length",
    "max_tokens_per_micro_batch",
    "rollout_micro_batch_size",
)
_SCALE_FREQS = ("test_freq", "breadth_test_freq", "save_freq", "breadth_save_freq")

# Every field the code reads (dars/backends/*, dars/model.py, dars/data/, ...). Dotted key -> Field.
# scale.* come first: the groups interpolate them, so a bad preset value is named where it was set.
# A new field in conf/ belongs here too (tests/test_config.py checks that every composed key is listed).
SCHEMA: dict[str, Field] = {
    **{f"scale.{k}": _i(1, need=False, eg="8") for k in _SCALE_INTS},
    **{f"scale.{k}": _i(0, need=False, eg="20") for k in _SCALE_FREQS},
    "scale.lr": _f(0, gt=True, need=False, eg="1e-4"),
    "scale.breadth_lr": _f(0, gt=True, need=False, eg="5e-4"),
    "seed": _i(eg="1"),
    "experiment_name": _s(eg="custom"),
    "preset_name": _s(eg="tiny"),
    "sweep_name": _s(eg="my_sweep"),
    "run_name": _s(eg="my_run"),
    "paths.output_dir": _s(eg="outputs"),
    "paths.cache_dir": _s(eg="~/.cache/dars"),
    "paths.data_dir": _s(eg="data"),
    # train (dars/backends/embedded.py; verl.py translates the same fields)
    "train.batch_size": _i(1, eg="32"),
    "train.lr": _f(0, gt=True, eg="1e-4"),
    "train.betas": Field(list, item=float, eg="[0.9,0.999]"),
    "train.weight_decay": _f(0, eg="0.01"),
    "train.grad_clip": _f(0, gt=True, eg="1.0"),
    "train.total_steps": _i(1, eg="40"),
    "train.total_epochs": _i(1, eg="1000"),
    "train.max_tokens_per_micro_batch": _i(1, eg="4096"),
    "train.test_freq": _i(0, eg="20"),  # 0 = only after the last step
    "train.val_before_train": _b(),
    "train.save_freq": _i(0, eg="20"),  # 0 = only at the end
    "train.keep_checkpoints": _i(1, eg="1"),
    "train.progress_bar": _b(),
    "train.update_mode": _s(eg="mini_batch"),
    "train.ppo_mini_batch_size": _i(1, eg="16"),
    "train.ppo_epochs": _i(1, eg="1"),
    # algorithm (dars/algorithm.py, dars/schedules.py)
    "algorithm.schedule": _s(eg="hw"),
    "algorithm.n_max": _i(1, eg="64"),
    "algorithm.use_std": _b(),
    "algorithm.filter_groups": _b(),
    "algorithm.upper_threshold": _f(0, 1, gt=True, eg="1.0"),
    "algorithm.clip_ratio_low": _f(0, eg="0.2"),
    "algorithm.clip_ratio_high": _f(0, eg="0.2"),
    "algorithm.entropy_coeff": _f(0, eg="0.001"),
    "algorithm.kl_coef": _f(0, eg="0.0"),
    "algorithm.loss_agg_mode": _s(eg="seq-mean-token-sum-norm"),
    # rollout (dars/rollout/)
    "rollout.n": _i(1, eg="8"),
    "rollout.temperature": _f(0, gt=True, eg="1.0"),
    "rollout.top_p": _f(0, 1, gt=True, eg="1.0"),
    "rollout.top_k": _i(-1, eg="-1"),  # -1 (or 0) = off
    "rollout.max_prompt_length": _i(1, eg="1024"),
    "rollout.max_response_length": _i(1, eg="3072"),
    "rollout.micro_batch_size": _i(1, eg="512"),
    "rollout.engine": _s(eg="hf"),
    "rollout.vllm.gpu_memory_utilization": _f(0, 1, gt=True, when="vllm", eg="0.3"),
    "rollout.vllm.max_num_seqs": _i(1, when="vllm", eg="256"),
    "rollout.vllm.dtype": _s(when="vllm", eg="auto"),
    "rollout.vllm.enable_sleep_mode": _b(when="vllm"),
    # eval (dars/evaluate.py)
    "eval.n_val": _i(1, eg="16"),
    "eval.temperature": _f(0, gt=True, eg="1.0"),
    "eval.top_p": _f(0, 1, gt=True, eg="1.0"),
    "eval.save_responses": _b(),
    "eval.max_k": _i(1, null="n_val", need=False, eg="8"),
    # reward (dars/rewards/)
    "reward.version": _s(eg="math_verify"),
    "reward.num_workers": _i(0, null="sized to the machine", eg="0"),
    "reward.timeout_s": _f(0, gt=True, eg="5.0"),
    # model (dars/model.py); build and warm_start only for the tiny model (model.path=null)
    "model.path": _s(null="the tiny model", eg="/path/to/checkpoint"),
    "model.device": _s(eg="auto"),
    "model.dtype": _s(eg="auto"),
    "model.gradient_checkpointing": _b(),
    **{
        f"model.build.{k}": _i(1, when="tiny", eg="128")
        for k in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "intermediate_size",
            "max_position_embeddings",
        )
    },
    "model.build.tie_word_embeddings": _b(when="tiny"),
    "model.warm_start.steps": _i(0, when="tiny", eg="0"),
    "model.warm_start.batch_size": _i(1, when="tiny", eg="128"),
    "model.warm_start.lr": _f(0, gt=True, when="tiny", eg="3e-3"),
    "model.warm_start.seed": _i(when="tiny", eg="3"),
    "model.warm_start.mix": Field(dict, null="every level weight 1", need=False, eg="{mul:0.5}"),
    "model.warm_start.worked_share": _f(0, 1, when="tiny", eg="0.6"),
    "model.warm_start.use_shipped": _b(need=False),
    # data (dars/data/synthetic.py for synthetic, dars/data/parquet.py for parquet)
    "data.name": _s(eg="synthetic"),
    "data.levels": Field(list, item=str, when="synthetic", eg="[add21,mul]"),
    "data.train_per_level": _i(1, when="synthetic", eg="500"),
    "data.val_per_level": _i(1, when="synthetic", eg="100"),
    "data.val_pool": _f(0, 1, gt=True, when="synthetic", eg="0.2"),  # < 1 too: _check_synthetic
    "data.prompt_template": _s(when="synthetic", eg="'{question}='"),
    "data.train_file": _s(when="parquet", eg="/data/train.parquet"),
    "data.val_file": _s(when="parquet", eg="/data/val.parquet"),
    "data.use_template": _b(when="parquet"),
    "data.filter_overlong_prompts": _b(when="parquet"),
    "data.allow_invalid_rows": _b(when="parquet"),
    "data.shuffle": _b(),
    "data.seed": _i(when="synthetic", eg="0"),  # the parquet loaders shuffle with the run seed
    # backend (dars/backends/verl/ reads the rest)
    "backend.name": _s(eg="embedded"),
    "backend.nnodes": _i(1, when="verl", eg="1"),
    "backend.n_gpus_per_node": _i(1, when="verl", eg="8"),
    "backend.rollout_engine": _s(when="verl", eg="vllm"),
    "backend.tensor_parallel_size": _i(1, when="verl", eg="1"),
    "backend.gpu_memory_utilization": _f(0, 1, gt=True, when="verl", eg="0.7"),
    "backend.agent_workers": _i(1, when="verl", eg="8"),
    "backend.ray_num_cpus": _i(1, null="SLURM_CPUS_PER_TASK or all", when="verl", eg="16"),
    "backend.dry_run": _b(when="verl"),
    "backend.extra_overrides": Field(list, item=str, when="verl", eg="'[\"trainer.val_only=true\"]'"),
    # logger (dars/runlog.py)
    "logger.wandb.enabled": _b(),
    "logger.wandb.project": _s(eg="dars"),
    "logger.wandb.entity": _s(null="your default entity", eg="my-team"),
    "logger.wandb.mode": _s(null="online with a key, offline without", eg="offline"),
}

_KIND_TEXT = {
    int: "an integer (int)",
    float: "a number (float)",
    bool: "true or false (bool)",
    str: "a string (str)",
    list: "a list",
    dict: "a mapping",
}
