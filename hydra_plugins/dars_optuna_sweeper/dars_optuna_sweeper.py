"""Registers ``hydra/sweeper=dars_optuna`` (see docs/tuning.md); the sweeper itself is
dars.tune.sweeper.DarsOptunaSweeperImpl.

Hydra imports every module under the ``hydra_plugins`` namespace package at start-up, so storing the
config node here is all the registration a sweeper needs (as hydra-optuna-sweeper and
hydra-submitit-launcher do)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class DarsOptunaSweeperConf:
    _target_: str = "hydra_plugins.dars_optuna_sweeper.dars_optuna_sweeper.DarsOptunaSweeper"
    # search space, Hydra sweep syntax: int(interval(16,128)), choice(32,48,64), tag(log, interval(1e-6,1e-4)),
    # range(16,129,16), a,b,c. Plain values are fixed overrides for every trial.
    params: dict[str, str] | None = None
    # one metric key of eval/summary.jsonl (e.g. val/all/pass@1) or a list of them (multi-objective -> Pareto front)
    objective: Any = "val/all/pass@1"
    # maximize | minimize, or a list with one entry per objective
    direction: Any = "maximize"
    # which validation line of the finished run is the trial's value: final | best (best by the first objective)
    objective_from: str = "final"
    # total number of COMPLETE trials wanted in the study (re-running the command only runs the missing ones)
    n_trials: int = 20
    # trials asked and launched together as one launcher batch (parallel with submitit/slurm launchers)
    n_jobs: int = 1
    # Optuna storage URL; null = sqlite:///<hydra.sweep.dir>/optuna.db
    storage: str | None = None
    # null = the sweep directory's name (the sweep_name)
    study_name: str | None = None
    # TPE seed (a resumed study reseeds with seed + number of trials so far: reproducible, no repeats)
    seed: int | None = 0
    n_startup_trials: int = 10
    # trials to evaluate first, e.g. [{algorithm.n_max: 64}] (only when the study is new)
    enqueue_trials: list[dict[str, Any]] = field(default_factory=list)
    # null = no pruning; else an Optuna pruner, e.g. {_target_: optuna.pruners.MedianPruner, n_startup_trials: 4,
    # n_warmup_steps: 2}: every validation of a run is reported (first objective) and a pruned run stops there
    pruner: Any = None


ConfigStore.instance().store(group="hydra/sweeper", name="dars_optuna", node=DarsOptunaSweeperConf, provider="dars")


class DarsOptunaSweeper(Sweeper):
    """Hydra only instantiates plugins from the hydra_plugins package: a thin shell around dars.tune.sweeper."""

    def __init__(self, **kwargs: Any) -> None:
        # here, not at the top: Hydra imports this module at every start-up, and optuna is an extra
        from dars.tune.sweeper import DarsOptunaSweeperImpl

        self.sweeper = DarsOptunaSweeperImpl(**kwargs)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
