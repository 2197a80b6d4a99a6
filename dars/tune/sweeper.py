"""The ``hydra/sweeper=dars_optuna`` sweeper: open or resume the study, then until ``n_trials`` trials
are finished, ask a batch of ``n_jobs`` trials, launch them as one batch through the configured
launcher and tell each its result (read from its run directory). The package docstring
(:mod:`dars.tune`) has the overview; hydra_plugins/dars_optuna_sweeper registers this class."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

from dars.tune.job import GuardedTask, PrunedRun, Pruning
from dars.tune.objective import objective_values
from dars.tune.outputs import write_outputs
from dars.tune.space import format_value, parse_search_space
from dars.tune.study import StoredStudy

log = logging.getLogger(__name__)


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, (ListConfig, list, tuple)):
        return list(x)
    return [x]


class DarsOptunaSweeperImpl(Sweeper):
    """The sweeper; its arguments are ``hydra.sweeper.*`` (docs/tuning.md). Hydra instantiates plugins
    only from the hydra_plugins package, whose DarsOptunaSweeper wraps this class."""

    def __init__(
        self,
        params: dict[str, str] | None = None,
        objective: Any = "val/all/pass@1",
        direction: Any = "maximize",
        objective_from: str = "final",
        n_trials: int = 20,
        n_jobs: int = 1,
        storage: str | None = None,
        study_name: str | None = None,
        seed: int | None = 0,
        n_startup_trials: int = 10,
        enqueue_trials: Any = None,
        pruner: Any = None,
    ) -> None:
        super().__init__()
        self.params = dict(params or {})
        self.metrics = [str(m) for m in _as_list(objective)]
        dirs = [str(d).lower() for d in _as_list(direction)]
        if len(dirs) == 1 and len(self.metrics) > 1:
            dirs = dirs * len(self.metrics)
        if len(dirs) != len(self.metrics) or any(d not in ("maximize", "minimize") for d in dirs):
            raise ValueError(f"direction {dirs} must be maximize/minimize, one per objective {self.metrics}")
        self.directions = dirs
        self.objective_from = objective_from
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.storage = storage
        self.study_name = study_name
        self.seed = seed
        self.n_startup_trials = int(n_startup_trials)
        self.enqueue_trials = [
            OmegaConf.to_container(p) if isinstance(p, DictConfig) else dict(p) for p in (enqueue_trials or [])
        ]
        # Hydra instantiates nested _target_ nodes itself; a plain dict with _target_ is instantiated here
        if isinstance(pruner, (DictConfig, dict)):
            from hydra.utils import instantiate

            pruner = instantiate(pruner)
        self.pruner = pruner
        if self.pruner is not None and len(self.metrics) > 1:
            raise ValueError("pruning needs a single objective (Optuna does not prune multi-objective studies)")
        self.config: DictConfig | None = None
        self.launcher = None
        self.task: GuardedTask | None = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.task = GuardedTask(task_function)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=self.task, config=config
        )

    # -- study
    def _open_study(self, sweep_dir: Path) -> StoredStudy:
        url = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        stored = StoredStudy(url, self.study_name or sweep_dir.name, pruner=self.pruner, directions=self.directions)
        study = stored.study
        if len(self.metrics) > 1 and study.metric_names is None:
            study.set_metric_names(self.metrics)
        # reseed with the history length: reproducible, and a resumed study does not redraw its first points
        seed = None if self.seed is None else int(self.seed) + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        log.info("optuna study %r in %s (%d trials stored)", stored.name, url, len(study.trials))
        return stored

    def sweep(self, arguments: list[str]) -> Any:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        space, fixed = parse_search_space(parser.parse_overrides(lines))
        if not space:
            raise ValueError("dars_optuna: no search space; set hydra.sweeper.params (see docs/tuning.md)")
        log.info("search space: %s", {k: repr(v) for k, v in space.items()})

        stored = self._open_study(sweep_dir)
        stored.fail_stale_trials()
        study = stored.study
        if not study.trials:
            for p in self.enqueue_trials:
                study.enqueue_trial(p, skip_if_exists=True)

        n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        budget = max(0, self.n_trials - n_done)
        log.info("%d of %d trials complete; running %d more", n_done, self.n_trials, budget)
        returns = []
        while budget > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, budget))]
            budget -= len(trials)
            batch, launched = [], []
            for t in trials:
                ovs = fixed + [f"{k}={format_value(t.params[k])}" for k in space]
                t.set_user_attr("overrides", " ".join(ovs))
                try:  # a composition error (bad value for a config group, ...) fails this trial only
                    self.validate_batch_is_legal([ovs])
                except Exception as e:  # noqa: BLE001
                    self._fail(study, t, f"config composition failed: {e}")
                    continue
                batch.append(ovs)
                launched.append(t)
            if not batch:
                continue
            if self.pruner is not None:
                self.task.pruning = Pruning(
                    url=stored.url,
                    study=stored.name,
                    metric=self.metrics[0],
                    pruner=self.pruner,
                    trials={"\x00".join(o): t.number for o, t in zip(batch, launched)},
                )
            try:
                results = self.launcher.launch(batch, initial_job_idx=launched[0].number)
            except BaseException as e:
                for t in launched:
                    self._fail(study, t, f"launcher failed: {e!r}")
                raise
            for t, r in zip(launched, results):
                self._tell(study, t, r)
            returns.append(results)
            self.write_outputs(study, sweep_dir)
        self.write_outputs(study, sweep_dir)
        return returns

    def _fail(self, study, trial, reason: str) -> None:
        log.warning("trial %d FAIL: %s", trial.number, reason)
        trial.set_user_attr("fail_reason", reason[:2000])
        study.tell(trial, state=TrialState.FAIL)

    def _tell(self, study, trial, ret) -> None:
        from hydra.core.utils import JobStatus

        run_dir = None
        if ret.hydra_cfg is not None:
            run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
            trial.set_user_attr("run_dir", str(run_dir))
        # Hydra's JobReturn.return_value re-raises a failed job's exception; _return_value is the exception
        if ret.status != JobStatus.COMPLETED and isinstance(ret._return_value, PrunedRun):
            log.info("trial %d PRUNED: %s", trial.number, ret._return_value)
            trial.set_user_attr("pruned", str(ret._return_value))
            study.tell(trial, state=TrialState.PRUNED)
            return
        if ret.status != JobStatus.COMPLETED:
            self._fail(study, trial, f"run failed: {ret._return_value!r}")
            return
        try:
            if run_dir is not None and (run_dir / "eval" / "summary.jsonl").exists():
                values, step = objective_values(run_dir, self.metrics, self.directions, self.objective_from)
            elif self.metrics == ["val/all/pass@1"] and isinstance(ret._return_value, (int, float)):
                values, step = [float(ret._return_value)], -1
            else:
                raise RuntimeError(f"no eval/summary.jsonl in {run_dir}")
        except Exception as e:  # noqa: BLE001
            self._fail(study, trial, str(e))
            return
        trial.set_user_attr("step", step)
        study.tell(trial, values if len(values) > 1 else values[0])
        log.info("trial %d %s -> %s", trial.number, trial.params, dict(zip(self.metrics, values)))

    # -- outputs
    def write_outputs(self, study, sweep_dir: Path) -> None:
        write_outputs(study, sweep_dir, self.metrics, self.directions)
