"""The study in its storage, on Optuna's public API: create or resume it, fail the trials a dead
sweep left RUNNING, and reach one trial by its number (from the sweeper, or from inside the trial's
own job when it reports validations for pruning)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


class StoredStudy:
    """An Optuna study together with the storage object it lives in, both held here.

    Optuna hands out a live Trial only from ``study.ask()``. A trial asked elsewhere (by an earlier
    sweep that died, or by the sweeper while this code runs in the trial's job) is reached by its
    number, which the storage maps to the trial's id; the storage's own methods then write to it.
    ``url`` and ``name`` are plain strings, so a job can open the same study again."""

    def __init__(self, url: str, name: str, *, pruner: Any = None, directions: Sequence[str] | None = None):
        """Open study ``name`` in the storage at ``url`` (any SQLAlchemy URL, as Optuna takes it).
        With ``directions`` it is created when new, and must have those directions when it is not."""
        self.url, self.name = url, name
        self.storage = optuna.storages.RDBStorage(url)
        if directions is None:
            self.study = optuna.load_study(study_name=name, storage=self.storage, pruner=pruner)
            return
        self.study = optuna.create_study(
            study_name=name, storage=self.storage, directions=list(directions), load_if_exists=True, pruner=pruner
        )
        stored = [d.name.lower() for d in self.study.directions]
        if stored != list(directions):
            raise ValueError(f"study {name!r} in {url} has directions {stored}, config asks {list(directions)}")

    def trial_id(self, number: int) -> int:
        study_id = self.storage.get_study_id_from_name(self.name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def fail_stale_trials(self) -> list[int]:
        """Trials left RUNNING by a sweep that died: mark them FAIL (returns their numbers). Called when
        a sweep starts, when no trial of the study can be running any more."""
        stale = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.storage.set_trial_user_attr(self.trial_id(t.number), "fail_reason", "left RUNNING by an earlier sweep")
            self.study.tell(t.number, state=TrialState.FAIL)
            stale.append(t.number)
        if stale:
            log.warning("marked %d trial(s) left RUNNING by an earlier sweep as FAIL: %s", len(stale), stale)
        return stale

    def report(self, number: int, step: int, value: float) -> bool:
        """Trial ``number``'s intermediate ``value`` at ``step`` (what ``Trial.report`` stores; a step
        reported again, by a resumed run, is overwritten); True when the study's pruner says stop."""
        trial_id = self.trial_id(number)
        self.storage.set_trial_intermediate_value(trial_id, step, value)
        return self.study.pruner.prune(self.study, self.storage.get_trial(trial_id))
