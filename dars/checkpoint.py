"""Atomic checkpoints: ``checkpoints/step_<k>/state.pt`` plus a ``latest`` pointer.

A checkpoint is written to a temporary folder and renamed into place, and ``latest`` is replaced
atomically afterwards, so a kill at any moment leaves the previous checkpoint usable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from dars.runlog import atomic_write_text


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    atomic_write_text(root / "latest", final.name + "\n")
    done = sorted((p for p in root.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.exists():
        path = root / pointer.read_text().strip()
        if (path / "state.pt").exists():
            return path
    done = [p for p in root.glob("step_*") if (p / "state.pt").exists()]
    return max(done, key=lambda p: int(p.name.split("_")[1])) if done else None


def load_checkpoint(path: Path) -> dict:
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
