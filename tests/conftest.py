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
    "reward.num_workers=0",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    env = os.environ.get("DARS_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("dars-cache")


def run_dars(args: list[str], out: Path, cache: Path, timeout: float = 900, check: bool = True):
    """``python -m dars.run ARGS`` in a subprocess, as a user would type it."""
    env = dict(os.environ, DARS_OUTPUT_DIR=str(out), DARS_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "dars.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"dars.run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
