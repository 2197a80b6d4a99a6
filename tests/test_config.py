"""Every experiment x preset composes and validates; bad configs fail before any work with one
clear message, a non-zero exit and no run directory left behind."""

import json

import pytest
from conftest import ROOT, compose_config, run_dars
from omegaconf import OmegaConf

from dars.config import SCHEMA, ConfigError, check_overrides, validate  # also registers the run-name resolver

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (ROOT / "conf/preset").glob("*.yaml"))


def make_checkpoint(path, chat_template: bool = True):
    """The files a Hugging Face checkpoint folder has, with placeholder contents (validate only
    looks at which files are there, and at tokenizer_config.json's chat_template)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    (path / "tokenizer.json").write_text("{}")
    tc = {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"} if chat_template else {}
    (path / "tokenizer_config.json").write_text(json.dumps(tc))
    return path


@pytest.fixture
def checkpoint(tmp_path):
    return make_checkpoint(tmp_path / "ckpt")


def test_catalogue_is_the_seven_paper_rows():
    assert (
        sorted(["baseline", "depth_naive", "breadth_naive", "dars_et", "dars_hw", "dars_et_breadth", "dars_hw_breadth"])
        == EXPERIMENTS
    )
    assert {"tiny", "qwen2.5-math-1.5b", "qwen2.5-math-7b", "llama-3.1-8b"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_preset_composes(experiment, preset, checkpoint, paper_data):
    extra = [] if preset == "tiny" else [f"model.path={checkpoint}", f"paths.data_dir={paper_data}"]
    cfg = compose_config([f"experiment={experiment}", f"preset={preset}", *extra])
    validate(cfg)
    s, a, t = cfg.scale, cfg.algorithm, cfg.train
    assert cfg.experiment_name == experiment
    assert cfg.run_name.startswith(f"{experiment}-s0")
    breadth = "breadth" in experiment
    assert t.batch_size == (s.breadth_batch_size if breadth else s.batch_size)
    assert t.lr == (s.breadth_lr if breadth else s.lr)
    assert cfg.rollout.n == (s.depth_naive_n if experiment == "depth_naive" else s.n)
    assert a.schedule == {"et": "et", "hw": "hw"}.get(
        experiment.split("_")[-1].replace("breadth", "") or "x", a.schedule
    )
    if experiment.startswith("dars"):
        assert a.filter_groups and t.update_mode == "full_batch" and t.ppo_epochs == 2
        assert a.n_max == (32 if "_et" in experiment else 64)
        assert a.schedule == ("et" if "_et" in experiment else "hw")
    if experiment in ("baseline", "depth_naive"):
        assert a.schedule == "uniform" and not a.filter_groups and t.update_mode == "mini_batch"
        assert t.batch_size // t.ppo_mini_batch_size == 2  # 2 optimiser steps per step, as the paper
    if experiment == "breadth_naive":
        assert a.schedule == "uniform" and t.update_mode == "full_batch"


def test_paper_preset_values():
    cfg = compose_config(["experiment=dars_hw_breadth", "preset=qwen2.5-math-1.5b", "model.path=/x"])
    assert (cfg.train.batch_size, cfg.rollout.n, cfg.algorithm.n_max, cfg.train.lr) == (3072, 8, 64, 5e-6)
    assert (cfg.train.total_steps, cfg.rollout.max_response_length, cfg.eval.n_val) == (86, 3072, 128)
    cfg = compose_config(["experiment=dars_et_breadth", "preset=llama-3.1-8b", "model.path=/x"])
    assert (cfg.rollout.n, cfg.algorithm.n_max, cfg.train.lr, cfg.train.total_steps) == (16, 32, 1e-6, 120)


@pytest.mark.parametrize("experiment", ["baseline", "dars_hw", "dars_hw_breadth"])
def test_the_one_gpu_preset_is_one_gpu_of_the_eight_gpu_preset(experiment):
    """preset=qwen2.5-math-1.5b-1gpu: every batch 1/8, every per-prompt setting the paper's."""
    one = compose_config([f"experiment={experiment}", "preset=qwen2.5-math-1.5b-1gpu", "model.path=/x"])
    eight = compose_config([f"experiment={experiment}", "preset=qwen2.5-math-1.5b", "model.path=/x"])
    assert one.train.batch_size * 8 == eight.train.batch_size
    assert one.train.ppo_mini_batch_size * 8 == eight.train.ppo_mini_batch_size
    for key in (
        "rollout.n",
        "rollout.max_prompt_length",
        "rollout.max_response_length",
        "eval.n_val",
        "train.lr",
        "train.total_steps",
        "train.test_freq",
        "algorithm.n_max",
        "algorithm.schedule",
        "train.ppo_epochs",
    ):
        assert OmegaConf.select(one, key) == OmegaConf.select(eight, key), key
    assert one.model.gradient_checkpointing and not eight.model.gradient_checkpointing
    assert one.train.max_tokens_per_micro_batch == 16384 and one.scale.n_gpus_per_node == 1


def _job(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    cfg = compose_config(overrides)
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


@pytest.mark.parametrize(
    "row,depth", [("breadth_naive", "baseline"), ("dars_et_breadth", "dars_et"), ("dars_hw_breadth", "dars_hw")]
)
def test_breadth_is_one_override(row, depth):
    """conf/train/breadth.yaml is the breadth settings, once: each breadth row is its depth row plus train=breadth."""
    breadth = _job([f"experiment={row}"])
    plus = _job([f"experiment={depth}", "train=breadth"])
    assert breadth.pop("experiment_name") == row and plus.pop("experiment_name") == depth
    assert breadth.pop("run_name") == f"{row}-s0" and plus.pop("run_name") == f"{depth}-s0-train=breadth"
    assert breadth == plus


def test_the_7b_preset_is_the_15b_preset_renamed():
    common = ["experiment=dars_hw_breadth", "model.path=/x"]
    big, small = _job([*common, "preset=qwen2.5-math-7b"]), _job([*common, "preset=qwen2.5-math-1.5b"])
    assert (big.pop("preset_name"), small.pop("preset_name")) == ("qwen2.5-math-7b", "qwen2.5-math-1.5b")
    assert big.pop("sweep_name") == "qwen2.5-math-7b" and small.pop("sweep_name") == "qwen2.5-math-1.5b"
    assert big == small


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["algorithm.n_max=4"], "algorithm.n_max=4 is smaller than rollout.n=8"),
        (["experiment=baseline", "train.batch_size=6"], "not divisible by train.ppo_mini_batch_size"),
        (["eval.max_k=64"], "eval.max_k=64 needs at least"),
        (["reward.version=exact"], "reward.version='exact' is unknown"),
        (["model.path=/no/such/checkpoint"], "model.path=/no/such/checkpoint is not a local directory"),
        (["preset=qwen2.5-math-1.5b"], "model.path is required"),
        (["algorithm.loss_agg_mode=mean"], "loss_agg_mode='mean' is unknown"),
        # a schedule's own rule (dars.schedules.CHECKS), asked generically
        (["schedule=et_table", "rollout.n=6"], "schedule=et_table is a lookup table for n=8 only (got rollout.n=6)"),
        # typed values that used to crash mid-run (TypeError / ZeroDivisionError, exit 1) or pass silently
        (["train.lr=fast"], "train.lr='fast' must be a number (float), e.g. train.lr=1e-4"),
        (["experiment=baseline", "train.ppo_mini_batch_size=0"], "train.ppo_mini_batch_size=0 must be >= 1"),
        (["eval.max_k=0"], "eval.max_k=0 must be >= 1 (or null = n_val)"),
        (["seed=abc"], "seed='abc' must be an integer (int), e.g. seed=1"),
        (["+foo=1"], "foo"),  # an added key nothing reads
    ],
)
def test_bad_config_fails_cleanly(overrides, message, tmp_path, cache_dir):
    proc = run_dars([*overrides, f"paths.output_dir={tmp_path}"], tmp_path, cache_dir, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dars: config error: "), proc.stderr
    assert message in lines[0]
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "a failed config check left files behind"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*-s*")), "run directory left"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["experiment=dars_xx"], "Could not find 'experiment/dars_xx'"),  # and it lists the choices
        (["train.bach_size=8"], "Could not override 'train.bach_size'"),  # a key that does not exist
        (["train.lr=="], "Error parsing override"),  # not an override at all
    ],
)
def test_command_line_errors_hydra_reports_exit_2_and_leave_nothing(overrides, message, tmp_path, cache_dir):
    """Hydra reports these itself before dars' main runs (it exits 1 for them); the README promises 2."""
    proc = run_dars(overrides, tmp_path, cache_dir, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stdout + proc.stderr
    assert message in err and "Traceback" not in err
    if "experiment" in overrides[0]:
        assert "dars_hw_breadth" in err
    assert not (tmp_path / "runs").exists()


def test_a_run_that_fails_after_its_checks_still_exits_1(tmp_path, cache_dir):
    """Only errors from before the run exit 2: a failure inside the run is not a usage error."""
    bad = make_checkpoint(tmp_path / "empty-files")  # passes the file check, cannot be loaded
    proc = run_dars([f"model.path={bad}", "train.total_steps=1"], tmp_path / "out", cache_dir, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]


def test_validate_raises_config_error_directly():
    cfg = compose_config(["rollout.temperature=0"])
    with pytest.raises(ConfigError, match="temperature"):
        validate(cfg)


def test_loss_agg_mode_old_name_dars_is_still_accepted():
    """Configs in the wild say ``loss_agg_mode: dars``: it validates (dars.algorithm maps it to
    seq-mean-token-sum-norm, with a one-time warning; tests/test_algorithm.py)."""
    assert compose_config([]).algorithm.loss_agg_mode == "seq-mean-token-sum-norm"
    validate(compose_config(["algorithm.loss_agg_mode=dars"]))


def test_paper_grid_sweep_file_composes():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "dars.run", "--config-dir", "sweeps", "--config-name", "paper_grid", "--cfg", "hydra"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mode: MULTIRUN" in proc.stdout
    assert "experiment: glob(*)" in proc.stdout and "seed: 0,1,2" in proc.stdout


def test_a_bad_job_in_a_sweep_fails_alone(tmp_path, cache_dir):
    from conftest import FAST

    proc = run_dars(
        ["-m", "experiment=dars_et", "algorithm.n_max=4,32", "train.total_steps=1", *FAST],
        tmp_path,
        cache_dir,
        check=False,
    )
    assert proc.returncode != 0
    assert "algorithm.n_max=4 is smaller than rollout.n=8" in proc.stderr
    runs = [p.name for p in (tmp_path / "sweeps/tiny").iterdir() if p.is_dir()]
    assert len(runs) == 1 and "n_max=32" in runs[0]  # the good job ran; the bad one left nothing
    assert '"completed"' in (tmp_path / "sweeps/tiny" / runs[0] / "status.json").read_text()


def test_help_lists_experiments_and_presets():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "dars.run", "--help"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "experiment: baseline, breadth_naive, dars_et" in proc.stdout
    assert "preset: llama-3.1-8b, qwen2.5-math-1.5b" in proc.stdout


# ---------------------------------------------------------------------------- the schema: types and ranges
def _config_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as e:
        validate(compose_config(overrides))
    return str(e.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["train.lr=fast"], "train.lr='fast' must be a number (float), e.g. train.lr=1e-4"),
        (["algorithm.n_max=lots"], "algorithm.n_max='lots' must be an integer (int), e.g. algorithm.n_max="),
        (["train.batch_size=8.5"], "train.batch_size=8.5 must be an integer (int), e.g. train.batch_size="),
        (["train.batch_size=true"], "train.batch_size=true must be an integer (int)"),  # bool is not 1
        (["seed=abc"], "seed='abc' must be an integer (int), e.g. seed="),
        (["experiment=baseline", "train.ppo_mini_batch_size=0"], "train.ppo_mini_batch_size=0 must be >= 1, e.g. "),
        (["algorithm.upper_threshold=1.5"], "algorithm.upper_threshold=1.5 must be in (0, 1]"),
        (["rollout.top_p=0"], "rollout.top_p=0 must be in (0, 1]"),
        (["train.val_before_train=yes"], "train.val_before_train='yes' must be true or false (bool)"),
        (["train.lr=null"], "train.lr=null must be set: a number (float), e.g. train.lr=1e-4"),
        (["reward.timeout_s=soon"], "reward.timeout_s='soon' must be a number (float)"),
        (["data.levels=[add21,1]"], "data.levels=['add21', 1] must be a list of str, not 1"),
        # a preset value is named where it is set, not where it is used
        (["scale.lr=fast"], "scale.lr='fast' must be a number (float), e.g. scale.lr=1e-4"),
        (["train.batch_size=${paths.data_dir}"], "train.batch_size='data' (from paths.data_dir) must be an integer"),
        (["~train.grad_clip"], "train.grad_clip is missing; set it, e.g. +train.grad_clip=1.0"),
        (["logger.wandb.mode=on"], "logger.wandb.mode='on' is unknown; use online, offline, disabled or null"),
    ],
)
def test_typed_values_are_checked_before_any_work(overrides, message):
    assert message in _config_error(overrides)


def test_eval_max_k_zero_says_the_real_fix():
    msg = _config_error(["eval.max_k=0"])
    assert "eval.max_k=0 must be >= 1 (or null = n_val)" in msg and "raise eval.n_val" not in msg
    assert "raise eval.n_val" in _config_error(["eval.max_k=64"])  # too large: that fix is right


def test_float_fields_take_ints_and_nullable_fields_take_null():
    cfg = compose_config(["train.lr=1", "eval.max_k=null", "reward.num_workers=null", "train.weight_decay=0"])
    validate(cfg)
    assert cfg.train.lr == 1


def _leaf_keys(node, prefix=""):
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and SCHEMA.get(key) is None:
            yield from _leaf_keys(v, key + ".")
        else:
            yield key


@pytest.mark.parametrize(
    "overrides",
    [[f"preset={p}", "model.path=/x"] for p in PRESETS]
    + [
        ["backend=verl", "logger=wandb"],
        ["model=qwen2_1.5b_shape"],
        ["data=parquet", "data.train_file=x", "data.val_file=x"],
        ["model=hf", "model.path=/x", "data=math12k_no_template"],
        ["update=full_batch", "schedule=et_table"],
    ],
)
def test_schema_lists_every_field_of_the_composed_config(overrides):
    """A field added to conf/ without an entry in dars.config.SCHEMA would go unchecked (and a
    `+` override of it would be refused): list it there with its type and range."""
    from omegaconf import OmegaConf

    cfg = compose_config(overrides)
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=False)
    missing = sorted(k for k in _leaf_keys(plain) if k not in SCHEMA)
    assert not missing, f"add these to dars.config.SCHEMA: {missing}"


SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


def compose_sweep(sweep: str, overrides: list[str]):
    """The sweep file itself composed as ``python -m dars.run --config-dir sweeps --config-name SWEEP``
    composes it (its defaults: conf/config.yaml, hydra/sweeper), with its Hydra part."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        cfg = compose(
            sweep, overrides=[*overrides, f"hydra.searchpath=[file://{ROOT / 'conf'}]"], return_hydra_config=True
        )
        HydraConfig.instance().set_config(cfg)
    return cfg


def _distribution_values(dist) -> list:
    """Representative values of an Optuna distribution: every choice, every point of a stepped int
    range of up to 16 points, else both ends."""
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, od.IntDistribution) and (dist.high - dist.low) // dist.step < 16:
        return list(range(dist.low, dist.high + 1, dist.step))
    return [dist.low, dist.high]


def _basic_sweep_values(override) -> list[str]:
    """Every value of a basic-sweeper parameter: each choice / range value, every experiment a glob matches."""
    from hydra.core.override_parser.types import Glob

    v = override.value()
    if isinstance(v, Glob):
        return v.filter(EXPERIMENTS)
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(v)]


def sweep_trials(sweep: str) -> list[dict[str, str]]:
    """Every trial a sweep file may run, as overrides: the full product of its parameters'
    representative values, read from the composed sweep config. An Optuna study's search space is
    parsed by the sweeper's own code (dars.tune.space), and its sweeper is built from the composed config;
    its enqueued trials come too."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from dars.tune.space import format_value, parse_search_space_strings
    from dars.tune.sweeper import DarsOptunaSweeperImpl

    spec = compose_sweep(sweep, []).hydra.sweeper
    assert spec.params, f"sweeps/{sweep}.yaml has no hydra.sweeper.params"
    lines = [f"{k}={v}" for k, v in spec.params.items()]
    if spec._target_.endswith("DarsOptunaSweeper"):
        kwargs = OmegaConf.to_container(spec, resolve=True)
        kwargs.pop("_target_")
        sweeper = DarsOptunaSweeperImpl(**kwargs)  # the study's settings are valid (directions, ...)
        space, fixed = parse_search_space_strings(lines)
        assert space and sorted([*space, *(f.split("=", 1)[0] for f in fixed)]) == sorted(spec.params)
        values = {k: [format_value(x) for x in _distribution_values(d)] for k, d in space.items()}
        values.update({k: [v] for k, v in (f.split("=", 1) for f in fixed)})
        extra = [{k: format_value(v) for k, v in t.items()} for t in sweeper.enqueue_trials]
        assert all(set(t) <= set(space) for t in extra), "an enqueued trial sets a key outside the search space"
    else:
        assert spec._target_.endswith("BasicSweeper"), spec._target_
        values = {o.get_key_element(): _basic_sweep_values(o) for o in OverridesParser.create().parse_overrides(lines)}
        extra = []
    keys = list(values)
    trials = [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]
    firsts = trials[0]
    return trials + [dict(firsts, **t) for t in extra]


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_trial_validates(sweep):
    """Each trial a sweep in sweeps/ may run (the product of its choices, both ends of each interval,
    every experiment a glob matches, the enqueued trials) composes from the sweep file itself and
    validates, as dars.run would see the trial."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    trials = sweep_trials(sweep)
    assert len(trials) > 1
    parser = OverridesParser.create()
    for trial in trials:
        overrides = [f"{k}={v}" for k, v in trial.items()]
        cfg = compose_sweep(sweep, overrides)
        validate(cfg)
        assert cfg.sweep_name == sweep and cfg.hydra.mode.name == "MULTIRUN"
        seen = {"experiment": cfg.experiment_name, "schedule": cfg.algorithm.schedule}
        for o in parser.parse_overrides(overrides):  # the trial's values are what the run sees
            k = o.get_key_element()
            assert seen.get(k, OmegaConf.select(cfg, k)) == o.value(), (sweep, k, o.value())


def test_the_sweep_trials_cover_each_search_space():
    """What test_every_sweep_trial_validates runs, per sweep: each choice, interval end, glob match."""
    et = sweep_trials("n_max_et")
    assert sorted(int(t["algorithm.n_max"]) for t in et[:-1]) == [12, 16, 20, 24, 28, 32, 35]
    assert et[-1]["algorithm.n_max"] == "32" and all(t["experiment"] == "dars_et" for t in et)  # enqueued
    assert {t["algorithm.n_max"] for t in sweep_trials("n_max_hw")} == {"12", "64"}
    pareto = sweep_trials("n_max_pareto")
    assert len(pareto) == 2 * 7 * 2 and {t["schedule"] for t in pareto} == {"et", "hw"}
    assert {t["train.lr"] for t in pareto} == {"5e-06", "0.0001"}
    grid = sweep_trials("paper_grid")
    assert len(grid) == 7 * 3 and {t["experiment"] for t in grid} == set(EXPERIMENTS)


# ---------------------------------------------------------------------------- model: checkpoint and device
def test_an_empty_model_dir_names_what_is_missing(tmp_path):
    msg = _config_error(["model=hf", f"model.path={tmp_path}"])
    assert f"model.path={tmp_path} is not a complete Hugging Face checkpoint" in msg
    assert "config.json" in msg and "weights" in msg and "tokenizer file" in msg
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    msg = _config_error(["model=hf", f"model.path={tmp_path}"])
    assert "config.json" not in msg and "weights" not in msg and "tokenizer.json" in msg
    (tmp_path / "tokenizer.model").write_bytes(b"")  # a sentencepiece tokenizer counts
    validate(compose_config(["model=hf", f"model.path={tmp_path}"]))


def test_use_template_needs_a_chat_template_in_the_checkpoint(tmp_path, paper_data):
    ckpt = make_checkpoint(tmp_path / "base", chat_template=False)
    common = ["preset=qwen2.5-math-1.5b", f"model.path={ckpt}", f"paths.data_dir={paper_data}"]  # data=openr1
    msg = _config_error(common)
    assert f"data.use_template=true but the tokenizer in model.path={ckpt} has no chat template" in msg
    assert "data.use_template=false" in msg
    validate(compose_config([*common, "data.use_template=false"]))
    (ckpt / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")  # how new transformers save it
    validate(compose_config(common))


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_without_cuda_says_use_auto_or_cpu(device, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    msg = _config_error([f"model.device={device}"])
    assert f"model.device={device}" in msg and "use model.device=auto or cpu" in msg
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    validate(compose_config([f"model.device={device}"]))
    assert "cuda:0..cuda:0" in _config_error(["model.device=cuda:1"])


def test_mps_device_without_mps_and_unknown_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert "use model.device=auto or cpu" in _config_error(["model.device=mps"])
    assert "model.device='gpu' is unknown; use auto" in _config_error(["model.device=gpu"])
    validate(compose_config(["model.device=cpu"]))


# ---------------------------------------------------------------------------- data=parquet with the tiny model
def _long_prompt_files(tmp_path, n_train=40, n_val=5):
    from dars.data.parquet import write_verl_parquet

    def rows(n, split):
        return [
            {
                "data_source": "math",
                "prompt": [{"role": "user", "content": f"Compute {i} plus {i}, please."}],
                "ability": "math",
                "reward_model": {"ground_truth": str(2 * i), "style": "rule"},
                "extra_info": {"index": i, "split": split},
            }
            for i in range(n)
        ]

    return (
        write_verl_parquet(rows(n_train, "train"), tmp_path / "train.parquet"),
        write_verl_parquet(rows(n_val, "test"), tmp_path / "val.parquet"),
    )


def test_parquet_with_the_tiny_model_names_every_override_at_once(tmp_path):
    train, val = _long_prompt_files(tmp_path)
    common = [
        "experiment=baseline",
        "data=parquet",
        f"data.train_file={train}",
        f"data.val_file={val}",
        "scale.batch_size=8",
        "scale.mini_batch_size=4",
    ]
    msg = _config_error(common)
    assert "\n" not in msg
    fix = msg.split("needs: ", 1)[1].split(" (", 1)[0].split()
    assert fix[:2] == ["model.warm_start.steps=0", "data.use_template=false"]
    assert fix[2].startswith("rollout.max_prompt_length=") and len(fix) == 3  # prompts of ~30 chars, limit 16
    validate(compose_config([*common, *fix]))  # exactly what it asked for is enough
    # what is already set is not asked for again
    msg = _config_error([*common, "model.warm_start.steps=0", fix[2]])
    assert msg.split("needs: ", 1)[1].startswith("data.use_template=false (")


def test_parquet_with_a_checkpoint_asks_for_none_of_the_tiny_fixes(tmp_path, checkpoint):
    train, val = _long_prompt_files(tmp_path)
    validate(
        compose_config(
            [
                "experiment=baseline",
                "data=parquet",
                f"data.train_file={train}",
                f"data.val_file={val}",
                "scale.batch_size=8",
                "scale.mini_batch_size=4",
                f"model.path={checkpoint}",
            ]
        )
    )


# ---------------------------------------------------------------------------- + overrides nothing reads
@pytest.mark.parametrize(
    "overrides,named",
    [
        (["+foo=1", "train.lr=1e-4"], "+foo"),
        (["+train.bach_size=8"], "+train.bach_size (did you mean train.batch_size?)"),
        (["++eval.n_vals=4"], "+eval.n_vals (did you mean eval.n_val?)"),
    ],
)
def test_unknown_appended_keys_are_refused(overrides, named):
    with pytest.raises(ConfigError) as e:
        check_overrides(overrides)
    msg = str(e.value)
    assert "unknown key(s) added with '+'" in msg and named in msg and "drop the '+'" in msg
    assert "train.lr" not in msg.split("Nothing")[0]  # only the appended key is blamed


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.lr=1e-4", "experiment=dars_et", "seed=1"],  # plain changes
        ["++train.lr=1e-4"],  # force-add of a known key
        ["+model.warm_start.mix.add1=1.0"],  # a free mapping: any level may be listed
        ["~model.warm_start.mix"],  # deletions are validate()'s to judge
        ["+schedule@algorithm=et"],  # a config group: Hydra checks it
        ["+hydra.launcher.additional_parameters.mail-type=FAIL"],  # hydra's own config
        ['backend.extra_overrides=["trainer.val_only=true"]'],  # the verl pass-through
    ],
)
def test_known_and_legitimate_overrides_pass(overrides):
    check_overrides(overrides)


def test_appending_a_known_key_where_nothing_reads_it_is_refused():
    cfg = compose_config(["data=synthetic"])
    with pytest.raises(ConfigError, match=r"\+data.use_template \(read only with data=parquet\)"):
        check_overrides(["+data.use_template=false"], cfg)
    check_overrides(["+data.use_template=false"])  # without the config only the key itself is judged


def test_data_the_tokenizer_cannot_render_exits_2_before_training(tmp_path, cache_dir):
    """Found only once the checkpoint's tokenizer is loaded (every prompt over the length limit):
    still one line, exit 2, and the run directory this start made is gone."""
    from dars.data.parquet import write_verl_parquet

    rows = [
        {
            "data_source": "train",
            "prompt": [{"role": "user", "content": "What is " + "1+" * 40 + "1?"}],
            "ability": "math",
            "reward_model": {"ground_truth": "41", "style": "rule"},
            "extra_info": {"index": i, "split": "train"},
        }
        for i in range(16)
    ]
    write_verl_parquet(rows, tmp_path / "train.parquet")
    write_verl_parquet(rows[:4], tmp_path / "val.parquet")
    out = tmp_path / "out"
    proc = run_dars(
        [
            "data=parquet",
            f"data.train_file={tmp_path / 'train.parquet'}",
            f"data.val_file={tmp_path / 'val.parquet'}",
            f"model.path={ROOT / 'dars/assets/tiny_base'}",
            "data.use_template=false",
            "experiment=baseline",
            "train.batch_size=8",
            "train.ppo_mini_batch_size=4",
        ],
        out,
        cache_dir,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dars: data error: "), proc.stderr
    assert "every prompt is longer than max_prompt_length" in lines[0] and "Fix:" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not any(p.is_file() for p in out.rglob("*")), "the failed start left files behind"
