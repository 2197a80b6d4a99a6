"""``python tests/kill_driver.py ARGS``: ``python -m dars.run ARGS``, SIGKILLed at one chosen instant.

Tests only. ``DARS_KILL_AT=<point>:<n>`` names the instant; the process kills itself (a real
SIGKILL: no handler, no cleanup, no flush) the n-th time it reaches it:

    after_metrics_append    right after a metrics.jsonl record is appended and fsynced
    torn_metrics_line       half-way through writing a metrics.jsonl record (a torn last line)
    checkpoint_write        half-way through writing a checkpoint's state.pt
    before_latest_pointer   after a checkpoint folder is in place, before ``latest`` names it
    during_validation       after a validation's samples are scored, before anything is written
    before_eval_summary     after eval/step_<k>.jsonl is written, before its summary.jsonl line

The patches wrap the real functions; nothing else about the run changes."""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, as `python -m` would see it

import torch

from dars import checkpoint, runlog
from dars.backends import embedded

POINT, NTH = os.environ["DARS_KILL_AT"].split(":")
NTH = int(NTH)
_count = 0


def _reached() -> bool:
    global _count
    _count += 1
    return _count == NTH


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_append, _atomic, _save, _validation = (
    runlog._append_jsonl,
    checkpoint.atomic_write_text,
    torch.save,
    embedded.run_validation,
)


def append_jsonl(path, record):
    if path.name == "metrics.jsonl" and POINT == "torn_metrics_line" and _reached():
        with open(path, "a") as f:
            line = json.dumps(record) + "\n"
            f.write(line[: len(line) // 2])
            f.flush()
            os.fsync(f.fileno())
        _die()
    if path.name == "summary.jsonl" and POINT == "before_eval_summary" and _reached():
        _die()
    out = _append(path, record)
    if path.name == "metrics.jsonl" and POINT == "after_metrics_append" and _reached():
        _die()
    return out


def atomic_write_text(path, text):
    if Path(path).name == "latest" and POINT == "before_latest_pointer" and _reached():
        _die()
    return _atomic(path, text)


def save(obj, f, *args, **kwargs):
    out = _save(obj, f, *args, **kwargs)
    if POINT == "checkpoint_write" and hasattr(f, "truncate") and _reached():
        f.flush()
        f.truncate(f.tell() // 2)  # what a kill in the middle of the write leaves on disk
        os.fsync(f.fileno())
        _die()
    return out


def run_validation(*args, **kwargs):
    out = _validation(*args, **kwargs)
    if POINT == "during_validation" and _reached():
        _die()
    return out


runlog._append_jsonl = append_jsonl
checkpoint.atomic_write_text = atomic_write_text
torch.save = save
embedded.run_validation = run_validation

if __name__ == "__main__":
    sys.argv = ["dars.run", *sys.argv[1:]]
    runpy.run_module("dars.run", run_name="__main__", alter_sys=True)  # exactly `python -m dars.run`
