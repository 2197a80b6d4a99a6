"""The task function as each trial's job runs it: a config error's ``sys.exit`` becomes an exception
(the trial fails, the sweep goes on), and with a pruner every validation is reported to the trial,
which stops the run when the pruner says so."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dars.runlog import on_eval
from dars.tune.study import StoredStudy


class PrunedRun(Exception):
    """Raised inside a run when the study's pruner stops it after a validation."""


@dataclass
class Pruning:
    """What a job needs to report to its trial; pickled into submitit jobs with the task, so it holds
    plain values (the storage must be reachable from the job, e.g. SQLite on a shared file system)."""

    url: str  # storage URL
    study: str  # study name
    metric: str  # the (single) objective, a key of the validation summary line
    pruner: Any
    trials: dict[str, int]  # "\x00"-joined override list of a job -> its trial's number


class GuardedTask:
    """The task function, with ``sys.exit(n)`` (dars' config errors) turned into an exception so that
    Hydra records the job as FAILED instead of the exit ending the whole sweep.

    With ``pruning`` set (by the sweeper, per batch), each validation line the run writes is reported to
    its trial and the run stops with PrunedRun when the pruner says so. The job finds its trial by its
    override list, so this works in-process (basic launcher) and in submitit jobs (the object is pickled
    at launch)."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "task")
        self.pruning: Pruning | None = None

    def __call__(self, cfg):
        try:
            if self.pruning:
                return self._call_pruned(cfg, self.pruning)
            return self.fn(cfg)
        except SystemExit as e:
            if e.code in (0, None):
                return None
            msg = f"run exited with status {e.code}"
            try:
                from dars.config import validate

                validate(cfg)
            except Exception as ce:  # noqa: BLE001 - the message is what we want
                msg += f": {ce}"
            raise RuntimeError(msg) from None

    def _call_pruned(self, cfg, p: Pruning):
        from hydra.core.hydra_config import HydraConfig

        number = p.trials.get("\x00".join(HydraConfig.get().overrides.task))
        if number is None:
            return self.fn(cfg)
        stored = StoredStudy(p.url, p.study, pruner=p.pruner)

        def report(step: int, summary: dict) -> None:
            value = summary.get(p.metric)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                return  # no such metric in this line, or NaN (written as null): nothing to report
            if stored.report(number, int(step), float(value)):
                raise PrunedRun(f"pruned at step {step} ({p.metric}={value})")

        with on_eval(report):
            return self.fn(cfg)
