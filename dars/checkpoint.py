"""Atomic, verified checkpoints: ``checkpoints/step_<k>/{state.pt,done.json}`` plus a ``latest`` pointer.

A checkpoint is written into a temporary folder, sealed with ``done.json`` (its step and the size
of ``state.pt``) and renamed into place; ``latest`` is replaced atomically afterwards. A kill at
any instant therefore leaves either the new checkpoint complete or the previous one as the newest
complete one. Loading trusts nothing: a checkpoint whose seal is missing, whose size differs or
that ``torch.load`` cannot read is skipped with a warning naming it, and the next older one is
used (``train.keep_checkpoints`` keeps two by default, so there is one to fall back to)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from dars.runlog import atomic_write_text

log = logging.getLogger("dars")


def _step_of(path: Path) -> int:
    return int(path.name.split("_")[1])


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (a crash of the machine, not only of the process)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(tmp / "state.pt", "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        atomic_write_text(
            tmp / "done.json", json.dumps({"step": step, "bytes": (tmp / "state.pt").stat().st_size}) + "\n"
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: leave no half checkpoint behind
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    _fsync_dir(root)
    atomic_write_text(root / "latest", final.name + "\n")
    done = sorted((p for p in root.glob("step_*") if p.is_dir()), key=_step_of)
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_unfinished(run_dir: Path) -> None:
    """Delete half-written checkpoint folders a killed save left behind (only the run's lock holder calls this)."""
    for tmp in (Path(run_dir) / "checkpoints").glob(".step_*.tmp"):
        log.info("removing the unfinished checkpoint %s (its save was interrupted)", tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be trusted, or None when its seal matches its contents."""
    try:
        seal = json.loads((path / "done.json").read_text())
    except FileNotFoundError:
        return None  # sealed before done.json existed (renamed into place only once complete): torch.load decides
    except (OSError, json.JSONDecodeError) as e:
        return f"unreadable done.json ({e})"
    state = path / "state.pt"
    if not state.exists():
        return "no state.pt"
    if seal.get("step") != _step_of(path) or seal.get("bytes") != state.stat().st_size:
        return (
            f"state.pt has {state.stat().st_size} bytes, its seal says {seal.get('bytes')} (truncated or overwritten)"
        )
    return None


def load_latest_valid(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that passes its checks and loads, with its state; None when there is none.
    Every checkpoint skipped on the way is named in the log with the reason."""
    root = Path(run_dir) / "checkpoints"
    for path in sorted((p for p in root.glob("step_*") if p.is_dir()), key=_step_of, reverse=True):
        problem = _problem(path)
        if problem is None:
            try:
                return path, torch.load(path / "state.pt", map_location="cpu", weights_only=False)
            except Exception as e:  # noqa: BLE001 (any unreadable file means: do not trust it)
                problem = f"torch.load failed: {type(e).__name__}: {e}"
        log.warning("checkpoint %s cannot be used: %s; falling back to the previous one", path, problem)
    return None
