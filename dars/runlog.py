"""Writing the run directory (docs/run-format.md) safely: appends that survive a kill, atomic
rewrites, truncation on resume so a resumed run never duplicates a step, optional wandb mirror."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RunDirError(RuntimeError):
    """The run directory contradicts itself (e.g. says completed but its records are gone): a
    user-facing problem with one fix, reported like a config error (exit 2) before any work."""


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """Complete records only: a torn last line (killed writer) is dropped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse every line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _append_jsonl(path: Path, record: dict) -> dict:
    """Append one record and fsync, so a kill leaves at most a torn last line (readers skip it)."""
    record = {k: _clean(v) for k, v in record.items()}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return record


# What on_eval registered: each is called as listener(step, summary) once a validation is written.
_eval_listeners: list[Callable[[int, dict], None]] = []


@contextlib.contextmanager
def on_eval(listener: Callable[[int, dict], None]) -> Iterator[None]:
    """Within the block, call ``listener(step, summary)`` after every validation a RunLog of this
    process writes (the line is on disk by then). A listener may raise to stop the run there: the Optuna
    sweeper's pruning does (dars/tune/job.py); the run records the exception as its error."""
    _eval_listeners.append(listener)
    try:
        yield
    finally:
        _eval_listeners.remove(listener)


class RunLog:
    def __init__(self, run_dir: Path, wandb_cfg=None, run_name: str = "", config: dict | None = None):
        self.dir = Path(run_dir)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.eval_dir = self.dir / "eval"
        self.summary_path = self.eval_dir / "summary.jsonl"
        self.status_path = self.dir / "status.json"
        self.eval_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = None
        if wandb_cfg is not None and wandb_cfg.enabled:
            self._wandb = self._init_wandb(wandb_cfg, run_name, config)

    # -- resume ---------------------------------------------------------------------------
    def truncate_after(self, step: int) -> int:
        """Forget everything logged after ``step`` (it will be recomputed identically), and any torn
        last line; returns how many training-step records were dropped. ``step=0`` (no checkpoint)
        keeps only the step-0 validation, which depends on the base model alone."""
        rows = read_jsonl(self.metrics_path)
        kept = [r for r in rows if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        summaries = [r for r in read_jsonl(self.summary_path) if r.get("step", 0) <= step]
        atomic_write_text(self.summary_path, "".join(json.dumps(r) + "\n" for r in summaries))
        evaluated = {r.get("step") for r in summaries}
        for f in self.eval_dir.glob("step_*.jsonl"):
            # also a per-problem file whose summary line a kill cut off: the validation is redone
            if int(f.stem.split("_")[1]) > step or int(f.stem.split("_")[1]) not in evaluated:
                f.unlink()
        self.check_steps(step)
        return len(rows) - len(kept)

    def check_steps(self, step: int) -> None:
        """``metrics.jsonl`` must hold exactly steps 1..step (one record each) once cut back to a
        checkpoint at ``step``: anything else means records were lost, and they cannot be rebuilt
        without training again."""
        steps = [r.get("step") for r in read_jsonl(self.metrics_path)]
        if steps != list(range(1, step + 1)):
            have = f"{len(steps)} record(s)" + (f" (steps {steps[0]}..{steps[-1]})" if steps else "")
            raise RunDirError(
                f"{self.metrics_path} holds {have}, but the run's state is at step {step}, which needs "
                f"steps 1..{step} exactly: records were deleted or edited, and they cannot be rebuilt without "
                f"training again. Move {self.dir} away (or delete it) and run the same command to train it afresh."
            )

    def completed_summary(self, total_steps: int) -> dict | None:
        """The final validation of a run that already reached ``total_steps`` (None when it has not),
        after checking its records are all there (:class:`RunDirError` when not)."""
        status = self.status()
        step = status.get("step")
        if status.get("state") != "completed" or not isinstance(step, int) or step < total_steps:
            return None
        self.check_steps(step)
        summaries = self.eval_summaries()
        if not summaries or summaries[-1].get("step") != step or not (self.eval_dir / f"step_{step}.jsonl").exists():
            raise RunDirError(
                f"{self.status_path} says completed at step {step}, but its final validation (a step-{step} line "
                f"in {self.summary_path} and {self.eval_dir / f'step_{step}.jsonl'}) is missing. Move {self.dir} "
                f"away (or delete it) and run the same command to train it afresh."
            )
        return summaries[-1]

    def eval_summaries(self) -> list[dict]:
        return read_jsonl(self.summary_path)

    def final_summary(self) -> dict:
        """The last validation's summary line ({} when the run never validated): what a run returns."""
        summaries = self.eval_summaries()
        return summaries[-1] if summaries else {}

    # -- writing --------------------------------------------------------------------------
    def log_step(self, record: dict) -> None:
        record = _append_jsonl(self.metrics_path, record)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=record["step"])

    def log_eval(self, step: int, problems: Iterable[dict], summary: dict) -> None:
        lines = "".join(json.dumps(p) + "\n" for p in problems)
        atomic_write_text(self.eval_dir / f"step_{step}.jsonl", lines)
        summary = _append_jsonl(self.summary_path, summary)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in summary.items() if k.startswith("val/")}, step=step)
        for listener in list(_eval_listeners):
            listener(step, summary)

    def set_status(self, state: str, **fields) -> None:
        status = self.status()
        if state == "running":  # who runs it: readers check this owner still holds the run's lock
            from dars.runlock import owner_record

            fields["owner"] = owner_record()
        status.update(fields, state=state, updated=dt.datetime.now().isoformat(timespec="seconds"))
        atomic_write_text(self.status_path, json.dumps(status, indent=1) + "\n")

    def status(self) -> dict:
        if self.status_path.exists():
            try:
                return json.loads(self.status_path.read_text())
            except json.JSONDecodeError:
                return {}
        return {}

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    # -- wandb ----------------------------------------------------------------------------
    def _init_wandb(self, wcfg, run_name: str, config: dict | None):
        import wandb

        # A cluster job has no key and often no network: default to offline rather than failing.
        mode = wcfg.mode or os.environ.get("WANDB_MODE")
        if mode is None and not os.environ.get("WANDB_API_KEY"):
            mode = "offline"
            log.info("wandb: no WANDB_API_KEY, logging offline (sync later with `wandb sync`)")
        id_file = self.dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        return wandb.init(
            project=wcfg.project,
            entity=wcfg.entity,
            name=run_name,
            id=run_id,
            resume="allow",
            dir=str(self.dir),
            mode=mode,
            config=config,
        )
