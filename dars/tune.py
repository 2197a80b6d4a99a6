"""Optuna tuning of dars runs: the ``hydra/sweeper=dars_optuna`` sweeper's logic (docs/tuning.md).

    python -m dars.run --config-dir sweeps --config-name n_max_hw            # or:
    python -m dars.run -m experiment=dars_hw hydra/sweeper=dars_optuna \\
        '+hydra.sweeper.params={algorithm.n_max: "choice(32,48,64)"}'

Built on Optuna >= 4 with ask/tell (hydra-optuna-sweeper pins optuna < 3 and re-runs every trial):

* the search space is written in Hydra's sweep syntax and parsed by Hydra's own override parser;
* each trial is one ordinary dars run (its own deterministic run directory); its objective values are
  read from the finished run's ``eval/summary.jsonl`` (final or best validation line);
* the study lives in a persistent storage (SQLite in the sweep directory by default), so re-running
  the same command resumes: completed trials are kept, trials left RUNNING by a dead sweep are marked
  FAIL, and only the missing number of COMPLETE trials (``n_trials`` is the total) runs;
* ``n_jobs`` trials are asked at once and launched as one batch through the configured launcher;
* a run that fails (exception, config error, missing metric) is told FAIL and the study goes on;
* the sweep directory gets best_params.yaml (or the Pareto set), trials.csv, optimization_history.png
  and, for two objectives, pareto_front.png.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger("dars.tune")


# ----------------------------------------------------------------------------- search space


def override_to_distribution(override: Any):
    """One parsed Hydra sweep override -> an Optuna distribution.

    choice(a,b,..) / a,b,..        -> CategoricalDistribution
    range(start,stop[,step])       -> IntDistribution (ints, stop exclusive) or FloatDistribution(step)
    interval(lo,hi) / int(...)     -> FloatDistribution / IntDistribution (both ends included)
    tag(log, interval(...))        -> the same with log=True
    """
    import optuna.distributions as od
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        choices = [v for v in value.list]
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ValueError(f"{key}: choice values must be scalars, got {c!r}")
        return od.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        if value.shuffle:
            log.warning("%s: shuffle() has no meaning for an Optuna search space; ignored", key)
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            if step <= 0 or stop <= start:
                raise ValueError(f"{key}: range({start},{stop},{step}) must increase")
            last = start + ((stop - 1 - start) // step) * step
            return od.IntDistribution(start, last, step=step)
        n = int(math.ceil((stop - start) / step))
        return od.FloatDistribution(float(start), float(start + (n - 1) * step), step=float(step))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in (value.tags or set())
        if isinstance(value.start, int) and isinstance(value.end, int):
            return od.IntDistribution(value.start, value.end, log=log_scale)
        return od.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{key}: sweep type {type(value).__name__} is not supported by the dars_optuna sweeper")


def parse_search_space(overrides: Sequence[Any]) -> tuple[dict[str, Any], list[str]]:
    """Parsed Hydra overrides -> ({key: distribution} for sweeps, ["key=value", ...] fixed overrides)."""
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for ov in overrides:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            space[key] = override_to_distribution(ov)
        else:
            fixed.append(f"{key}={ov.get_value_element_as_str()}")
    return space, fixed


def parse_search_space_strings(lines: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """``["algorithm.n_max=choice(32,64)", ...]`` -> parse_search_space (no config loader needed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return parse_search_space(OverridesParser.create().parse_overrides(list(lines)))


def format_value(v: Any) -> str:
    """An Optuna parameter value as a Hydra override value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ----------------------------------------------------------------------------- objectives


def read_summaries(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "eval" / "summary.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def objective_values(
    run_dir: Path, metrics: Sequence[str], directions: Sequence[str], which: str = "final"
) -> tuple[list[float], int]:
    """The objective values of a finished run and the validation step they come from.

    which='final': the last validation line; 'best': the line best by the first metric."""
    lines = read_summaries(run_dir)
    if not lines:
        raise RuntimeError(f"no validation results in {run_dir}/eval/summary.jsonl")
    if which == "best":
        sign = 1.0 if directions[0] == "maximize" else -1.0
        usable = [ln for ln in lines if isinstance(ln.get(metrics[0]), (int, float))]
        line = max(usable, key=lambda ln: sign * ln[metrics[0]]) if usable else lines[-1]
    elif which == "final":
        line = lines[-1]
    else:
        raise ValueError(f"objective_from must be 'final' or 'best', got {which!r}")
    missing = [m for m in metrics if m not in line]
    if missing:
        avail = ", ".join(sorted(k for k in line if k.startswith("val/"))[:20])
        raise RuntimeError(f"metric(s) {missing} not in the validation line of {run_dir}; available: {avail}, ...")
    vals = [float(line[m]) for m in metrics]
    if any(not math.isfinite(v) for v in vals):
        raise RuntimeError(f"non-finite objective {vals} in {run_dir}")
    return vals, int(line.get("step", -1))


# ----------------------------------------------------------------------------- study helpers


def fail_stale_trials(study) -> list[int]:
    """Trials left RUNNING by a sweep that died: mark them FAIL (returns their numbers)."""
    from optuna.trial import TrialState

    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_system_attr(t._trial_id, "fail_reason", "left RUNNING by an earlier sweep")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        stale.append(t.number)
    if stale:
        log.warning("marked %d trial(s) left RUNNING by an earlier sweep as FAIL: %s", len(stale), stale)
    return stale


class PrunedRun(Exception):
    """Raised inside a run when the study's pruner stops it after a validation."""


class GuardedTask:
    """The task function, with ``sys.exit(n)`` (dars' config errors) turned into an exception so that
    Hydra records the job as FAILED instead of the exit ending the whole sweep.

    With ``pruning`` set (by the sweeper, per batch), each validation line the run writes is reported to
    its trial and the run stops with PrunedRun when the pruner says so. The job finds its trial by its
    override list, so this works in-process (basic launcher) and in submitit jobs (the object is pickled
    at launch, and the storage must be reachable from the job, e.g. SQLite on a shared file system)."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "task")
        self.pruning: dict | None = None

    def __call__(self, cfg):
        try:
            if self.pruning:
                return self._call_pruned(cfg)
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

    def _call_pruned(self, cfg):
        import optuna
        from hydra.core.hydra_config import HydraConfig

        from dars.runlog import RunLog

        p = self.pruning
        trial_id = p["trials"].get("\x00".join(HydraConfig.get().overrides.task))
        if trial_id is None:
            return self.fn(cfg)
        study = optuna.load_study(study_name=p["study"], storage=p["storage"], pruner=p["pruner"])
        trial = optuna.trial.Trial(study, trial_id)
        metric, orig = p["metric"], RunLog.log_eval

        def log_eval(runlog, step, problems, summary):
            orig(runlog, step, problems, summary)
            value = summary.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                trial.report(float(value), int(step))
                if trial.should_prune():
                    raise PrunedRun(f"pruned at step {step} ({metric}={value})")

        RunLog.log_eval = log_eval
        try:
            return self.fn(cfg)
        finally:
            RunLog.log_eval = orig


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, (ListConfig, list, tuple)):
        return list(x)
    return [x]


# ----------------------------------------------------------------------------- the sweeper

try:
    from hydra.plugins.sweeper import Sweeper as _SweeperBase
except ImportError:  # pragma: no cover
    _SweeperBase = object


class DarsOptunaSweeperImpl(_SweeperBase):
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
    def _open_study(self, sweep_dir: Path):
        import optuna

        url = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        name = self.study_name or sweep_dir.name
        study = optuna.create_study(
            study_name=name, storage=url, directions=self.directions, load_if_exists=True, pruner=self.pruner
        )
        self._url = url
        stored = [d.name.lower() for d in study.directions]
        if stored != self.directions:
            raise ValueError(f"study {name!r} in {url} has directions {stored}, config asks {self.directions}")
        if len(self.metrics) > 1 and study.metric_names is None:
            study.set_metric_names(self.metrics)
        # reseed with the history length: reproducible, and a resumed study does not redraw its first points
        seed = None if self.seed is None else int(self.seed) + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        log.info("optuna study %r in %s (%d trials stored)", name, url, len(study.trials))
        return study

    def sweep(self, arguments: list[str]) -> Any:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from optuna.trial import TrialState

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

        study = self._open_study(sweep_dir)
        fail_stale_trials(study)
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
                self.task.pruning = {
                    "storage": self._url,
                    "study": study.study_name,
                    "metric": self.metrics[0],
                    "pruner": self.pruner,
                    "trials": {"\x00".join(o): t._trial_id for o, t in zip(batch, launched)},
                }
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
        from optuna.trial import TrialState

        log.warning("trial %d FAIL: %s", trial.number, reason)
        trial.set_user_attr("fail_reason", reason[:2000])
        study.tell(trial, state=TrialState.FAIL)

    def _tell(self, study, trial, ret) -> None:
        from hydra.core.utils import JobStatus

        run_dir = None
        if ret.hydra_cfg is not None:
            run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
            trial.set_user_attr("run_dir", str(run_dir))
        if ret.status != JobStatus.COMPLETED and isinstance(ret._return_value, PrunedRun):
            from optuna.trial import TrialState

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


def write_outputs(study, sweep_dir: Path, metrics: Sequence[str], directions: Sequence[str]) -> None:
    """best_params.yaml (single objective) or pareto_front.yaml (several), trials.csv, plots."""
    from optuna.trial import TrialState

    sweep_dir = Path(sweep_dir)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}

    def entry(t) -> dict:
        return {
            "trial": t.number,
            "values": dict(zip(metrics, [float(v) for v in t.values])),
            "params": dict(t.params),
            "run_dir": t.user_attrs.get("run_dir"),
        }

    head = {"study": study.study_name, "objectives": dict(zip(metrics, directions)), "trials": counts}
    if complete:
        if len(metrics) == 1:
            best = study.best_trial
            out = {
                **head,
                "best_trial": best.number,
                "best_value": float(best.value),
                "best_params": dict(best.params),
                "run_dir": best.user_attrs.get("run_dir"),
            }
            OmegaConf.save(OmegaConf.create(out), sweep_dir / "best_params.yaml")
        else:
            front = sorted(study.best_trials, key=lambda t: t.number)
            out = {**head, "pareto_front": [entry(t) for t in front]}
            OmegaConf.save(OmegaConf.create(out), sweep_dir / "pareto_front.yaml")

    df = study.trials_dataframe(
        attrs=(
            "number",
            "value",
            "values",
            "params",
            "state",
            "user_attrs",
            "datetime_start",
            "datetime_complete",
            "duration",
        )
    )
    if len(metrics) == 1 and "value" in df.columns:
        df = df.rename(columns={"value": metrics[0]})
    elif len(metrics) == 1 and "values" in df.columns:
        df = df.rename(columns={"values": metrics[0]})
    df.to_csv(sweep_dir / "trials.csv", index=False)
    if complete:
        _plot_history(complete, metrics, directions, sweep_dir / "optimization_history.png")
        if len(metrics) == 2:
            _plot_pareto(complete, study.best_trials, metrics, directions, sweep_dir / "pareto_front.png")


def _plot_history(complete, metrics, directions, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 1, figsize=(6, 3 * len(metrics)), squeeze=False)
    xs = [t.number for t in complete]
    for i, (m, d) in enumerate(zip(metrics, directions)):
        ax = axes[i][0]
        ys = [t.values[i] for t in complete]
        best, cur = [], None
        for y in ys:
            cur = y if cur is None else (max(cur, y) if d == "maximize" else min(cur, y))
            best.append(cur)
        ax.scatter(xs, ys, label="trial", color="tab:blue")
        ax.step(xs, best, where="post", color="tab:red", label=f"best so far ({d})")
        ax.set_xlabel("trial")
        ax.set_ylabel(m)
        ax.legend(fontsize=8)
    axes[0][0].set_title("optimisation history")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_pareto(complete, front, metrics, directions, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([t.values[0] for t in complete], [t.values[1] for t in complete], color="tab:gray", label="trials")
    f = sorted(front, key=lambda t: t.values[0])
    ax.plot([t.values[0] for t in f], [t.values[1] for t in f], "o-", color="tab:red", label="Pareto front")
    for t in f:
        ax.annotate(str(t.number), (t.values[0], t.values[1]), fontsize=7)
    ax.set_xlabel(f"{metrics[0]} ({directions[0]})")
    ax.set_ylabel(f"{metrics[1]} ({directions[1]})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
