"""Every experiment x preset composes and validates; bad configs fail before any work with one
clear message, a non-zero exit and no run directory left behind."""

import pytest

from dars.config import ConfigError, validate  # also registers the run-name resolver

from conftest import ROOT, compose_config, run_dars

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (ROOT / "conf/preset").glob("*.yaml"))


def test_catalogue_is_the_seven_paper_rows():
    assert EXPERIMENTS == sorted(["baseline", "depth_naive", "breadth_naive", "dars_et", "dars_hw",
                                  "dars_et_breadth", "dars_hw_breadth"])
    assert {"tiny", "qwen2.5-math-1.5b", "qwen2.5-math-7b", "llama-3.1-8b"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_and_preset_composes(experiment, preset, tmp_path, paper_data):
    extra = [] if preset == "tiny" else [f"model.path={tmp_path}", f"paths.data_dir={paper_data}"]
    cfg = compose_config([f"experiment={experiment}", f"preset={preset}", *extra])
    validate(cfg)
    s, a, t = cfg.scale, cfg.algorithm, cfg.train
    assert cfg.experiment_name == experiment
    assert cfg.run_name.startswith(f"{experiment}-s0")
    breadth = "breadth" in experiment
    assert t.batch_size == (s.breadth_batch_size if breadth else s.batch_size)
    assert t.lr == (s.breadth_lr if breadth else s.lr)
    assert cfg.rollout.n == (s.depth_naive_n if experiment == "depth_naive" else s.n)
    assert a.schedule == {"et": "et", "hw": "hw"}.get(experiment.split("_")[-1].replace("breadth", "") or "x",
                                                          a.schedule)
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


@pytest.mark.parametrize("overrides,message", [
    (["algorithm.n_max=4"], "algorithm.n_max=4 is smaller than rollout.n=8"),
    (["experiment=baseline", "train.batch_size=6"], "not divisible by train.ppo_mini_batch_size"),
    (["eval.max_k=64"], "eval.max_k=64 needs at least"),
    (["reward.version=exact"], "reward.version='exact' is unknown"),
    (["model.path=/no/such/checkpoint"], "model.path=/no/such/checkpoint is not a local directory"),
    (["preset=qwen2.5-math-1.5b"], "model.path is required"),
    (["algorithm.loss_agg_mode=mean"], "loss_agg_mode='mean' is unknown"),
])
def test_bad_config_fails_cleanly(overrides, message, tmp_path, cache_dir):
    proc = run_dars(overrides, tmp_path, cache_dir, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "a failed config check left files behind"


def test_unknown_experiment_lists_the_choices(tmp_path, cache_dir):
    proc = run_dars(["experiment=dars_xx"], tmp_path, cache_dir, check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "Could not find 'experiment/dars_xx'" in err and "dars_hw_breadth" in err


def test_validate_raises_config_error_directly():
    cfg = compose_config(["rollout.temperature=0"])
    with pytest.raises(ConfigError, match="temperature"):
        validate(cfg)


def test_paper_grid_sweep_file_composes():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dars.run", "--config-dir", "sweeps", "--config-name", "paper_grid",
                           "--cfg", "hydra"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mode: MULTIRUN" in proc.stdout
    assert "experiment: glob(*)" in proc.stdout and "seed: 0,1,2" in proc.stdout


def test_a_bad_job_in_a_sweep_fails_alone(tmp_path, cache_dir):
    from conftest import FAST

    proc = run_dars(["-m", "experiment=dars_et", "algorithm.n_max=4,32", "train.total_steps=1", *FAST],
                    tmp_path, cache_dir, check=False)
    assert proc.returncode != 0
    assert "algorithm.n_max=4 is smaller than rollout.n=8" in proc.stderr
    runs = [p.name for p in (tmp_path / "sweeps/tiny").iterdir() if p.is_dir()]
    assert len(runs) == 1 and "n_max=32" in runs[0]  # the good job ran; the bad one left nothing
    assert '"completed"' in (tmp_path / "sweeps/tiny" / runs[0] / "status.json").read_text()


def test_help_lists_experiments_and_presets():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dars.run", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert "experiment: baseline, breadth_naive, dars_et" in proc.stdout
    assert "preset: llama-3.1-8b, qwen2.5-math-1.5b" in proc.stdout
