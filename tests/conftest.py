"""Shared test setup: offline, no wandb, one small cached base model per session.

Run tests with the README's command (``pytest``). Training tests use a shorter warm start than
the tiny preset (``model.warm_start.steps=150``) so the base model builds in well under a minute;
set DARS_CACHE_DIR to reuse it across sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Overrides every training test uses: a quick base model and a CPU-small run.
FAST = [
    "model.warm_start.steps=150",
    "train.progress_bar=false",
    "scale.n_val=4",
    "scale.val_per_level=4",
    "scale.train_per_level=40",  # 200 train prompts
    "scale.batch_size=8",  # the tiny preset's ratios at a quarter of its batch sizes
    "scale.mini_batch_size=4",
    "scale.breadth_batch_size=64",
    "reward.num_workers=0",
]
FAST_TRAIN_PROMPTS = 5 * 40  # the train split under FAST (5 levels)
LEVELS = ["add21", "sub2", "mul", "add3", "mul3"]  # the tiny preset's benchmarks


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    env = os.environ.get("DARS_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("dars-cache")


def run_dars(args: list[str], out: Path, cache: Path, timeout: float = 900, check: bool = True):
    """``python -m dars.run ARGS`` in a subprocess, as a user would type it."""
    env = dict(os.environ, DARS_OUTPUT_DIR=str(out), DARS_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "dars.run", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dars.run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def compose_config(overrides: list[str]):
    """The composed dars config (with its Hydra part, so the run-name resolver works), as `dars.run`
    would see it, without running anything."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    import dars.config  # noqa: F401  (registers the run-name resolver)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
    return cfg


def environment_skip(reason: str) -> None:
    """Skip a test whose real part this machine lacks (no root for Slurm, no verl tier), saying why.
    Where the environment is known to have everything (CI: DARS_STRICT_TESTS=1 or CI set), the same
    situation is a failure, so a broken install can never turn into a green run by skipping."""
    if os.environ.get("DARS_STRICT_TESTS") or os.environ.get("CI"):
        pytest.fail(f"{reason} (skips are failures here: DARS_STRICT_TESTS/CI is set)")
    pytest.skip(reason)


def require_verl():
    """verl's CPU tier (``pip install -e '.[dev,verl-cpu]'``; the README's test command installs it)."""
    try:
        import verl  # noqa: F401
    except ImportError:
        environment_skip("needs the CPU tier of verl: pip install -e '.[dev,verl-cpu]'")


PAPER_FILES = [
    "openr1.parquet",
    "capacity_val.parquet",
    "math12.3k_no_template.parquet",
    "capacity_val_no_template.parquet",
]


@pytest.fixture(scope="session")
def paper_data(tmp_path_factory) -> Path:
    """Small valid stand-ins for the paper presets' data files under one ``paths.data_dir`` (the real
    openr1 / capacity_val cannot be downloaded here): 3072 training rows (one breadth batch) and 10
    validation problems over the five capacity_val benchmarks."""
    from dars.data.parquet import write_verl_parquet

    d = tmp_path_factory.mktemp("paper_data")
    sources = ["aime", "math", "olympiad_bench", "amc", "minerva"]
    for name in PAPER_FILES:
        size = 10 if "val" in name else 3072
        rows = [
            {
                "data_source": sources[i % 5] if size == 10 else "train",
                "prompt": [{"role": "user", "content": f"What is {i}+{i}?"}],
                "ability": "math",
                "reward_model": {"ground_truth": str(2 * i), "style": "rule"},
                "extra_info": {"index": i, "split": "test" if size == 10 else "train"},
            }
            for i in range(size)
        ]
        write_verl_parquet(rows, d / name)
    return d
