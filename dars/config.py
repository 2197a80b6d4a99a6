"""Config checks that run before any work, and the run-name resolver used by conf/config.yaml.

Every impossible setting fails here with one message that names the field and the fix, so a
sweep never burns GPU hours on a run that was doomed from its config."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from dars.algorithm import LOSS_AGG_MODES
from dars.schedules import SCHEDULES


class ConfigError(ValueError):
    pass


def run_name(experiment: str, seed, overrides: str = "") -> str:
    """``<experiment>-s<seed>[-<overrides>]``, safe as one path component, stable across reruns."""
    name = f"{experiment}-s{seed}"
    if overrides:
        extra = re.sub(r"[^A-Za-z0-9._=,+-]", "_", overrides)
        if len(extra) > 80:  # long override lists: keep it readable, keep it unique
            extra = extra[:60] + "-" + hashlib.sha256(overrides.encode()).hexdigest()[:8]
        name += "-" + extra
    return name


if not OmegaConf.has_resolver("dars_run_name"):
    OmegaConf.register_new_resolver("dars_run_name", run_name)


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first impossible setting found."""
    try:
        # (the hydra node is skipped: it is only present when composed with return_hydra_config)
        OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                               resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or str(e)
        hint = " Pass model.path=/path/to/a/local/checkpoint." if "model.path" in str(key) else ""
        raise ConfigError(f"{key} is required but was not set.{hint}") from None

    a, r, t, e = cfg.algorithm, cfg.rollout, cfg.train, cfg.eval
    from dars.backends import BACKENDS

    _need(cfg.backend.name in BACKENDS,
          f"backend={cfg.backend.name} is not available; choose one of {sorted(BACKENDS)}")
    _need(r.n >= 1, f"rollout.n={r.n} must be >= 1")
    _need(a.schedule in SCHEDULES,
          f"algorithm.schedule={a.schedule!r} is unknown; choose one of {sorted(SCHEDULES)} "
          f"(schedule=NAME selects it with its n_max)")
    _need(a.n_max >= r.n,
          f"algorithm.n_max={a.n_max} is smaller than rollout.n={r.n}: n_max caps the *total* rollouts per "
          f"prompt, so it must be >= n. Set algorithm.n_max>={r.n} (the paper: 32 for ET, 64 for HW with n=8).")
    if a.schedule in ("et_table", "hw_table"):
        _need(r.n == 8, f"schedule={a.schedule} is a lookup table for n=8 only (got rollout.n={r.n}); use et/hw")
    _need(a.loss_agg_mode in LOSS_AGG_MODES,
          f"algorithm.loss_agg_mode={a.loss_agg_mode!r} is unknown; choose one of {list(LOSS_AGG_MODES)}")
    _need(0 < a.upper_threshold <= 1, f"algorithm.upper_threshold={a.upper_threshold} must be in (0, 1]")
    _need(a.clip_ratio_low >= 0 and a.clip_ratio_high >= 0, "algorithm.clip_ratio_low/high must be >= 0")
    _need(a.kl_coef >= 0 and a.entropy_coeff >= 0, "algorithm.kl_coef and entropy_coeff must be >= 0")

    _need(r.temperature > 0, f"rollout.temperature={r.temperature} must be > 0 for RL sampling")
    _need(0 < r.top_p <= 1, f"rollout.top_p={r.top_p} must be in (0, 1]")
    _need(r.max_response_length >= 1, "rollout.max_response_length must be >= 1")

    _need(t.update_mode in ("mini_batch", "full_batch"),
          f"train.update_mode={t.update_mode!r} is unknown; use update=mini_batch or update=full_batch")
    _need(t.batch_size >= 1, f"train.batch_size={t.batch_size} must be >= 1")
    if t.update_mode == "mini_batch":
        _need(t.batch_size % t.ppo_mini_batch_size == 0,
              f"train.batch_size={t.batch_size} is not divisible by train.ppo_mini_batch_size="
              f"{t.ppo_mini_batch_size}; pick a mini-batch size that divides the batch (in prompts)")
    _need(t.ppo_epochs >= 1, f"train.ppo_epochs={t.ppo_epochs} must be >= 1")
    _need(t.total_steps >= 1, f"train.total_steps={t.total_steps} must be >= 1")
    _need(t.lr > 0, f"train.lr={t.lr} must be > 0")
    longest = r.max_prompt_length + r.max_response_length
    _need(t.max_tokens_per_micro_batch >= longest,
          f"train.max_tokens_per_micro_batch={t.max_tokens_per_micro_batch} cannot hold one sequence of "
          f"max_prompt_length + max_response_length = {longest} tokens; raise it")

    _need(e.n_val >= 1, f"eval.n_val={e.n_val} must be >= 1")
    if e.get("max_k") is not None:
        _need(1 <= e.max_k <= e.n_val,
              f"eval.max_k={e.max_k} needs at least that many samples per problem, but eval.n_val={e.n_val}; "
              f"raise eval.n_val or lower eval.max_k")

    d = cfg.data
    if d.name == "synthetic":
        from dars.data import LEVELS

        bad = [lv for lv in d.levels if lv not in LEVELS]
        _need(not bad, f"data.levels has unknown level(s) {bad}; known: {list(LEVELS)}")
        _need(0 < d.val_pool < 1, f"data.val_pool={d.val_pool} must be in (0, 1) (the share of each level's "
                                  f"questions kept for validation)")
        from dars.data import synthetic_splits_from_config

        try:  # cheap (a few thousand draws), and a level too small for its split fails here, not mid-run
            synthetic_splits_from_config(d)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        ws = cfg.model.get("warm_start")
        if not cfg.model.get("path") and ws is not None and ws.steps > 0:
            _need(0 <= ws.worked_share <= 1, f"model.warm_start.worked_share={ws.worked_share} must be in [0, 1]")
            mix = dict(ws.get("mix") or {})
            _need(all(float(w) >= 0 for w in mix.values()) and sum(float(mix.get(lv, 1.0)) for lv in d.levels) > 0,
                  f"model.warm_start.mix={mix} needs weights >= 0 and at least one level of data.levels above 0")
        n_train = d.train_per_level * len(d.levels)
        _need(t.batch_size <= n_train,
              f"train.batch_size={t.batch_size} exceeds the train split ({n_train} prompts = "
              f"{d.train_per_level} x {len(d.levels)} levels); raise data.train_per_level")
    elif d.name == "parquet":
        from dars.verl_data import DataError, validate_verl_parquet

        # the tiny model's warm start trains on the synthetic task, so it needs its levels
        _need(bool(cfg.model.path) or cfg.model.get("warm_start", {}).get("steps", 0) == 0,
              "data=parquet with the tiny warm-started model: its base model is trained on the synthetic "
              "levels, which a parquet data config does not have. Pass model.path=/path/to/checkpoint "
              "(a local Hugging Face model; the shipped tiny base is dars/assets/tiny_base) or "
              "model.warm_start.steps=0 (random weights)")
        for key in ("train_file", "val_file"):
            f = Path(str(d[key])).expanduser()
            _need(f.is_file(),
                  f"data.{key}={d[key]} does not exist. Point it at a verl parquet file (set $DARS_DATA_DIR for "
                  f"the presets), or make one with: python -m dars.prepare_data INPUT {f.name}")
            try:  # every row checked now (no tokenizer needed): a bad file fails before any work
                summary = validate_verl_parquet(f, allow_invalid_rows=bool(d.allow_invalid_rows))
            except DataError as err:
                raise ConfigError(f"data.{key}: {err}") from None
            if key == "train_file":
                _need(t.batch_size <= summary["valid_rows"],
                      f"train.batch_size={t.batch_size} exceeds the train split ({summary['valid_rows']} valid "
                      f"rows in {f}); lower train.batch_size or use a larger file")
    else:
        _need(False, f"data.name={d.name!r} is unknown; choose data=synthetic or data=parquet "
                     f"(or a preset of it such as data=openr1)")

    m = cfg.model
    if m.path:
        _need(Path(str(m.path)).expanduser().is_dir(),
              f"model.path={m.path} is not a local directory; point it at a Hugging Face checkpoint on disk "
              f"(config.json, weights, tokenizer files). Nothing is downloaded at run time.")
    from dars.rewards import REWARD_VERSIONS

    _need(cfg.reward.version in REWARD_VERSIONS,
          f"reward.version={cfg.reward.version!r} is unknown; choose one of {list(REWARD_VERSIONS)}")
