"""Config checks that run before any work, and the run-name resolver used by conf/config.yaml.

Every impossible setting fails here with one message that names the field and the fix, so a
sweep never burns GPU hours on a run that was doomed from its config. Three layers, in order:

1. :data:`SCHEMA` (in dars/config_schema.py): every field the code reads, with its type and range
   (``train.lr='fast'`` or ``train.batch_size=8.5`` fail here, not as a TypeError in the middle of step 1);
2. cross-field checks in :func:`validate` (n_max >= n, mini-batch divides batch, files exist, ...);
3. :func:`check_overrides`: ``+key=value`` overrides that add a key nothing reads (a typo).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from dars.algorithm import LOSS_AGG_ALIASES, LOSS_AGG_MODES
from dars.config_schema import _KIND_TEXT, SCHEMA, Field  # SCHEMA, Field: dars.config names too
from dars.schedules import SCHEDULES, config_problem


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


# ------------------------------------------------------------------------------------ the schema
def _kind_ok(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int subclass: train.batch_size=true is not 1
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _show(value: Any) -> str:
    """A value as it is typed on the command line (null, true, 'fast', 8.5)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _range_text(f: Field) -> str:
    if f.hi is not None:
        return f"in {'(' if f.gt else '['}{f.lo:g}, {f.hi:g}]"  # (every bounded field has both ends)
    return f"{'>' if f.gt else '>='} {f.lo:g}"


def _applies(when: str | None, cfg: DictConfig) -> bool:
    if when is None:
        return True
    if when in ("synthetic", "parquet"):
        return cfg.data.get("name") == when
    if when == "verl":
        return cfg.backend.get("name") == "verl"
    if when == "vllm":
        return cfg.rollout.get("engine") == "vllm"
    return not cfg.model.get("path")  # tiny: the built model


def _lookup(tree: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False, None
        tree = tree[part]
    return True, tree


def check_schema(cfg: DictConfig) -> None:
    """Type and range of every :data:`SCHEMA` field, in table order; the first bad one raises."""
    keys = [k for k in cfg if k != "hydra"]
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    raw = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=False)
    for key, f in SCHEMA.items():
        found, v = _lookup(plain, key)
        if not found:
            if f.need and _applies(f.when, cfg):
                raise ConfigError(f"{key} is missing; set it, e.g. +{key}={f.eg}")
            continue
        # a value interpolated from elsewhere (train.lr: ${scale.lr}) is fixed where it was set
        src = _lookup(raw, key)[1]
        m = re.fullmatch(r"\$\{([\w.]+)\}", src) if isinstance(src, str) else None
        target, where = (m.group(1), f" (from {m.group(1)})") if m else (key, "")
        if v is None:
            _need(f.null is not None, f"{key}=null{where} must be set: {_KIND_TEXT[f.kind]}, e.g. {target}={f.eg}")
            continue
        _need(_kind_ok(v, f.kind), f"{key}={_show(v)}{where} must be {_KIND_TEXT[f.kind]}, e.g. {target}={f.eg}")
        if f.item is not None:
            bad = [x for x in v if not _kind_ok(x, f.item)]
            _need(
                not bad,
                f"{key}={v}{where} must be a list of {f.item.__name__}, not {_show(bad[0]) if bad else ''}"
                f", e.g. {target}={f.eg}",
            )
        if f.kind in (int, float) and f.lo is not None:
            ok = (
                math.isfinite(v) and (f.lo is None or (v > f.lo if f.gt else v >= f.lo)) and (f.hi is None or v <= f.hi)
            )
            _need(
                ok,
                f"{key}={_show(v)}{where} must be {_range_text(f)}"
                + (f" (or null = {f.null})" if f.null else "")
                + f", e.g. {target}={f.eg}",
            )


# ------------------------------------------------------------------------------------ + overrides
def _known_key(key: str) -> bool:
    """In the schema, or inside a field whose keys are free (a mapping such as warm_start.mix)."""
    return key in SCHEMA or any(key.startswith(k + ".") for k, f in SCHEMA.items() if f.kind is dict)


def check_overrides(task_overrides: list[str], cfg: DictConfig | None = None) -> None:
    """Refuse ``+key=value`` / ``++key=value`` task overrides that add a key nothing reads.

    Hydra accepts any new key, so ``+train.learning_rate=1e-5`` would run with the default lr.
    ``task_overrides`` is ``HydraConfig.get().overrides.task``: hydra.* overrides (e.g.
    ``+hydra.launcher.additional_parameters.mail-type=FAIL``) are not in it, and raw verl overrides
    go through the existing list ``backend.extra_overrides``. ``+group=option`` adds of a config group
    under conf/ are Hydra's to check. With the composed ``cfg``, a known key added where nothing reads
    it (``+data.use_template=false`` with data=synthetic) is refused too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = {p.name for p in (Path(__file__).resolve().parents[1] / "conf").iterdir() if p.is_dir()}
    unknown = []
    for o in OverridesParser.create().parse_overrides(list(task_overrides)):
        key = o.key_or_group
        if not (o.is_add() or o.is_force_add()) or key.startswith("hydra.") or key in groups:
            continue
        if not _known_key(key):
            close = difflib.get_close_matches(key, list(SCHEMA), n=1, cutoff=0.6)
            unknown.append(f"+{key}" + (f" (did you mean {close[0]}?)" if close else ""))
        elif cfg is not None and key in SCHEMA and not _applies(SCHEMA[key].when, cfg):
            unknown.append(f"+{key} (read only with {_WHEN_TEXT[SCHEMA[key].when]})")
    _need(
        not unknown,
        f"unknown key(s) added with '+': {', '.join(unknown)}. Nothing reads them: check the spelling "
        f"and drop the '+' to change an existing field (python -m dars.run --cfg job lists every "
        f"field); raw verl settings go in 'backend.extra_overrides=[\"key=value\"]'",
    )


_WHEN_TEXT = {
    "synthetic": "data=synthetic",
    "parquet": "data=parquet",
    "verl": "backend=verl",
    "vllm": "rollout=vllm",
    "tiny": "the tiny model, model.path=null",
}


# ------------------------------------------------------------------------------------ validate
def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first impossible setting found."""
    try:
        # (the hydra node is skipped: it is only present when composed with return_hydra_config)
        OmegaConf.to_container(
            OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True, throw_on_missing=True
        )
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or str(e)
        hint = " Pass model.path=/path/to/a/local/checkpoint." if "model.path" in str(key) else ""
        raise ConfigError(f"{key} is required but was not set.{hint}") from None
    except OmegaConfBaseException as e:  # e.g. train.lr='${scale.lrr}': an interpolation to nowhere
        raise ConfigError(f"{getattr(e, 'full_key', '') or 'config'}: {str(e).splitlines()[0]}") from None
    check_schema(cfg)  # from here on every field has its type and range

    a, r, t, e = cfg.algorithm, cfg.rollout, cfg.train, cfg.eval
    from dars.backends import BACKENDS

    _need(
        cfg.backend.name in BACKENDS, f"backend={cfg.backend.name} is not available; choose one of {sorted(BACKENDS)}"
    )
    _need(
        a.schedule in SCHEDULES,
        f"algorithm.schedule={a.schedule!r} is unknown; choose one of {sorted(SCHEDULES)} "
        f"(schedule=NAME selects it with its n_max)",
    )
    _need(
        a.n_max >= r.n,
        f"algorithm.n_max={a.n_max} is smaller than rollout.n={r.n}: n_max caps the *total* rollouts per "
        f"prompt, so it must be >= n. Set algorithm.n_max>={r.n} (the paper: 32 for ET, 64 for HW with n=8).",
    )
    problem = config_problem(a.schedule, r.n, a.n_max)  # the schedule's own rule, kept next to it
    _need(problem is None, problem or "")
    _need(
        a.loss_agg_mode in LOSS_AGG_MODES or a.loss_agg_mode in LOSS_AGG_ALIASES,  # an alias: warned at use
        f"algorithm.loss_agg_mode={a.loss_agg_mode!r} is unknown; choose one of {list(LOSS_AGG_MODES)}",
    )

    _need(
        t.update_mode in ("mini_batch", "full_batch"),
        f"train.update_mode={t.update_mode!r} is unknown; use update=mini_batch or update=full_batch",
    )
    if t.update_mode == "mini_batch":
        _need(
            t.batch_size % t.ppo_mini_batch_size == 0,
            f"train.batch_size={t.batch_size} is not divisible by train.ppo_mini_batch_size="
            f"{t.ppo_mini_batch_size}; pick a mini-batch size that divides the batch (in prompts)",
        )
    _need(
        len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas),
        f"train.betas={list(t.betas)} must be two numbers in [0, 1), e.g. train.betas=[0.9,0.999]",
    )
    longest = r.max_prompt_length + r.max_response_length
    _need(
        t.max_tokens_per_micro_batch >= longest,
        f"train.max_tokens_per_micro_batch={t.max_tokens_per_micro_batch} cannot hold one sequence of "
        f"max_prompt_length + max_response_length = {longest} tokens; raise it",
    )

    if e.get("max_k") is not None:
        _need(
            e.max_k <= e.n_val,
            f"eval.max_k={e.max_k} needs at least that many samples per problem, but eval.n_val={e.n_val}; "
            f"raise eval.n_val or lower eval.max_k",
        )
    _need(r.engine in ("hf", "vllm"), f"rollout.engine={r.engine!r} is unknown; use rollout=hf or rollout=vllm")
    if r.engine == "vllm":
        from dars.rollout.vllm import INSTALL_HINT, vllm_installed

        _need(
            cfg.backend.name == "embedded",
            "rollout=vllm is the embedded backend's engine; backend=verl samples with its own "
            "backend.rollout_engine (vllm by default): drop rollout=vllm",
        )
        _need(vllm_installed(), INSTALL_HINT)
    if cfg.backend.name == "verl":
        _need(
            cfg.backend.rollout_engine in ("vllm", "sglang"),
            f"backend.rollout_engine={cfg.backend.rollout_engine!r} is unknown; use vllm or sglang",
        )
    mode = cfg.logger.wandb.mode
    _need(
        mode in (None, "online", "offline", "disabled"),
        f"logger.wandb.mode={mode!r} is unknown; use online, offline, disabled or null",
    )

    _check_model(cfg)
    d = cfg.data
    if d.name == "synthetic":
        _check_synthetic(cfg)
    elif d.name == "parquet":
        _check_parquet(cfg)
    else:
        _need(
            False,
            f"data.name={d.name!r} is unknown; choose data=synthetic or data=parquet "
            f"(or a preset of it such as data=openr1)",
        )

    from dars.rewards import REWARD_VERSIONS

    _need(
        cfg.reward.version in REWARD_VERSIONS,
        f"reward.version={cfg.reward.version!r} is unknown; choose one of {list(REWARD_VERSIONS)}",
    )


# a checkpoint folder needs these to load (AutoConfig / AutoModel / AutoTokenizer); one name each
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tiktoken.model")


def _checkpoint_gaps(path: Path) -> list[str]:
    names = {p.name for p in path.iterdir()}
    gaps = []
    if "config.json" not in names:
        gaps.append("config.json (the architecture)")
    if not any(n.endswith((".safetensors", ".bin", ".index.json")) for n in names):
        gaps.append("weights (*.safetensors or pytorch_model*.bin)")
    if not (set(_TOKENIZER_FILES) & names or any(n.endswith(".tiktoken") for n in names)):
        gaps.append(f"tokenizer file (one of {', '.join(_TOKENIZER_FILES)})")
    return gaps


def has_chat_template(path: Path) -> bool:
    """Whether the tokenizer saved in ``path`` has a chat template (without loading it: new
    transformers write chat_template.jinja, older ones a chat_template key in tokenizer_config.json)."""
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((path / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _check_model(cfg: DictConfig) -> None:
    m = cfg.model
    if m.path:
        p = Path(str(m.path)).expanduser()
        _need(
            p.is_dir(),
            f"model.path={m.path} is not a local directory; point it at a Hugging Face checkpoint on "
            f"disk (config.json, weights, tokenizer files). Nothing is downloaded at run time.",
        )
        gaps = _checkpoint_gaps(p)
        _need(
            not gaps,
            f"model.path={m.path} is not a complete Hugging Face checkpoint: no {'; no '.join(gaps)}. "
            f"Point it at the folder holding all of them (as written by save_pretrained or "
            f"huggingface-cli download MODEL --local-dir DIR)",
        )
    _need(
        m.dtype in ("auto", "float32", "bfloat16", "float16"),
        f"model.dtype={m.dtype!r} is unknown; use auto, float32, bfloat16 or float16",
    )
    dev = str(m.device)
    _need(
        dev in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", dev) is not None,
        f"model.device={dev!r} is unknown; use auto (cuda when available), cpu, cuda, cuda:N or mps",
    )
    if cfg.backend.name == "embedded" and dev not in ("auto", "cpu"):
        import torch  # only here: the check costs a torch import

        if dev == "mps":
            _need(
                torch.backends.mps.is_available(),
                "model.device=mps but this machine has no usable MPS (Apple GPU) device; use model.device=auto or cpu",
            )
        else:
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            _need(
                have > 0,
                f"model.device={dev} but torch sees no CUDA GPU on this machine "
                f"(torch.cuda.is_available() is False); use model.device=auto or cpu",
            )
            idx = int(dev.split(":")[1]) if ":" in dev else 0
            _need(
                idx < have,
                f"model.device={dev} but this machine has {have} CUDA GPU(s) (cuda:0..cuda:{have - 1}); "
                f"use model.device=cuda or auto",
            )


def _check_synthetic(cfg: DictConfig) -> None:
    from dars.data.synthetic import LEVELS, synthetic_splits_from_config

    d, t = cfg.data, cfg.train
    bad = [lv for lv in d.levels if lv not in LEVELS]
    _need(not bad, f"data.levels has unknown level(s) {bad}; known: {list(LEVELS)}")
    _need(len(d.levels) > 0, f"data.levels is empty; name at least one of {list(LEVELS)}")
    _need(
        d.val_pool < 1,
        f"data.val_pool={d.val_pool} must be in (0, 1) (the share of each level's questions "
        f"kept for validation), e.g. data.val_pool=0.2",
    )
    _need(
        "{question}" in d.prompt_template,
        f"data.prompt_template={d.prompt_template!r} has no {{question}} placeholder, e.g. "
        f"data.prompt_template='{{question}}='",
    )
    try:  # cheap (a few thousand draws), and a level too small for its split fails here, not mid-run
        synthetic_splits_from_config(d)
    except (ValueError, KeyError, IndexError) as err:
        raise ConfigError(str(err)) from None
    ws = cfg.model.get("warm_start")
    if not cfg.model.get("path") and ws is not None and ws.steps > 0:
        mix = dict(ws.get("mix") or {})
        unknown = [lv for lv in mix if lv not in LEVELS]
        _need(not unknown, f"model.warm_start.mix has unknown level(s) {unknown}; known: {list(LEVELS)}")
        _need(
            all(_kind_ok(w, float) and w >= 0 for w in mix.values())
            and sum(float(mix.get(lv, 1.0)) for lv in d.levels) > 0,
            f"model.warm_start.mix={mix} needs weights >= 0 and at least one level of data.levels above 0",
        )
    n_train = d.train_per_level * len(d.levels)
    _need(
        t.batch_size <= n_train,
        f"train.batch_size={t.batch_size} exceeds the train split ({n_train} prompts = "
        f"{d.train_per_level} x {len(d.levels)} levels); raise data.train_per_level",
    )


def _check_parquet(cfg: DictConfig) -> None:
    from dars.data import DataError
    from dars.data.parquet import validate_verl_parquet

    d, t, r, m = cfg.data, cfg.train, cfg.rollout, cfg.model
    if m.path:
        _need(
            not d.use_template or has_chat_template(Path(str(m.path)).expanduser()),
            f"data.use_template=true but the tokenizer in model.path={m.path} has no chat template (none in "
            f"tokenizer_config.json, no chat_template.jinja). Fix: data.use_template=false (contents "
            f"concatenated, as the Llama runs) or a checkpoint whose tokenizer has one",
        )
    for key in ("train_file", "val_file"):
        f = Path(str(d[key])).expanduser()
        _need(
            f.is_file(),
            f"data.{key}={d[key]} does not exist. Point it at a verl parquet file (set $DARS_DATA_DIR for "
            f"the presets), or make one with: python -m dars.data.prepare INPUT {f.name}",
        )
    # Without model.path the policy is the tiny model: character tokenizer, no chat template. Its
    # warm start trains on the synthetic levels, so with parquet data it must start from random
    # weights, and without a template. Its tokenizer is cheap, so prompt lengths are checked now too.
    from dars.model import build_char_tokenizer

    tiny = not m.path
    tok, fix, counts = build_char_tokenizer() if tiny else None, [], {}
    for key in ("train_file", "val_file"):
        f = Path(str(d[key])).expanduser()
        try:  # every row checked now: a bad file fails before any work
            summary = validate_verl_parquet(f, allow_invalid_rows=bool(d.allow_invalid_rows), tokenizer=tok)
        except DataError as err:
            raise ConfigError(f"data.{key}: {err}") from None
        lengths = summary.get("prompt_tokens")
        if lengths is not None and d.filter_overlong_prompts:
            counts[key] = (sum(n <= r.max_prompt_length for n in lengths), max(lengths))
        else:
            counts[key] = (summary["valid_rows"], None)
    if tiny:
        ws = m.get("warm_start")
        if ws is not None and ws.steps > 0:
            fix.append("model.warm_start.steps=0")
        if d.use_template:
            fix.append("data.use_template=false")
        (n_train, long_train), (n_val, long_val) = counts["train_file"], counts["val_file"]
        if long_train is not None and (n_train < t.batch_size or n_val == 0):  # too few fit: keep them all
            need = max(long_train, long_val)
            fix.append(f"rollout.max_prompt_length={need}")
            if need + r.max_response_length > t.max_tokens_per_micro_batch:
                fix.append(f"train.max_tokens_per_micro_batch={need + r.max_response_length}")
        _need(
            not fix,
            f"data=parquet with the tiny model (no model.path) needs: {' '.join(fix)} (the tiny model "
            f"has a character tokenizer without chat template, and its warm start is trained on the "
            f"synthetic levels). Add all of these, or pass model.path=/path/to/checkpoint (a local "
            f"Hugging Face model)",
        )
    n_train = counts["train_file"][0]
    _need(
        t.batch_size <= n_train,
        f"train.batch_size={t.batch_size} exceeds the train split ({n_train} usable rows in {d.train_file}); "
        f"lower train.batch_size or use a larger file",
    )
