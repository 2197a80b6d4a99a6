"""The dars_optuna Hydra sweeper (dars/tune/, hydra_plugins/dars_optuna_sweeper): real Optuna, real
Hydra, real tiny runs through ``python -m dars.run`` (about a minute and a half on 2 CPU cores)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from conftest import FAST, run_dars
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from dars.runlog import RunLog, on_eval
from dars.tune.job import PrunedRun
from dars.tune.objective import objective_values
from dars.tune.space import format_value, parse_search_space_strings
from dars.tune.study import StoredStudy

optuna.logging.set_verbosity(optuna.logging.WARNING)
QUICK = FAST + ["train.total_steps=1", "train.val_before_train=false"]


# ----------------------------------------------------------------------------- no runs


def test_search_space_parsing():
    space, fixed = parse_search_space_strings(
        [
            "algorithm.n_max=int(interval(16,128))",
            "rollout.n=choice(4,8)",
            "schedule=et,hw",
            "train.lr=tag(log, interval(1e-6,1e-4))",
            "algorithm.n_max2=range(16,129,16)",
            "x=interval(0,1)",
            "experiment=dars_hw",
        ]
    )
    assert space["algorithm.n_max"] == IntDistribution(16, 128)
    assert space["rollout.n"] == CategoricalDistribution([4, 8])
    assert space["schedule"] == CategoricalDistribution(["et", "hw"])
    assert space["train.lr"] == FloatDistribution(1e-6, 1e-4, log=True)
    assert space["algorithm.n_max2"] == IntDistribution(16, 128, step=16)
    assert space["x"] == FloatDistribution(0.0, 1.0)
    assert fixed == ["experiment=dars_hw"]
    assert [format_value(v) for v in (3, 1e-05, "hw", True)] == ["3", "1e-05", "hw", "true"]


def test_objective_values_final_and_best(tmp_path):
    (tmp_path / "eval").mkdir()
    lines = [
        {"step": 0, "val/all/pass@1": 0.2, "val/all/pass@4": 0.5},
        {"step": 2, "val/all/pass@1": 0.4, "val/all/pass@4": 0.6},
        {"step": 4, "val/all/pass@1": 0.3, "val/all/pass@4": 0.7},
    ]
    (tmp_path / "eval" / "summary.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    m = ["val/all/pass@1", "val/all/pass@4"]
    assert objective_values(tmp_path, m, ["maximize"] * 2, "final") == ([0.3, 0.7], 4)
    assert objective_values(tmp_path, m, ["maximize"] * 2, "best") == ([0.4, 0.6], 2)
    assert objective_values(tmp_path, m, ["minimize"] * 2, "best") == ([0.2, 0.5], 0)
    with pytest.raises(RuntimeError, match="not in the validation line"):
        objective_values(tmp_path, ["val/all/nope"], ["maximize"], "final")
    # a torn last line (the run was killed while writing it) is not a validation
    with open(tmp_path / "eval" / "summary.jsonl", "a") as f:
        f.write('{"step": 6, "val/all/pass@1": 0.')
    assert objective_values(tmp_path, m, ["maximize"] * 2, "final") == ([0.3, 0.7], 4)
    # NaN is written as null (docs/run-format.md): a non-finite objective, not a crash
    (tmp_path / "eval" / "summary.jsonl").write_text(json.dumps({"step": 2, "val/all/pass@1": None}) + "\n")
    with pytest.raises(RuntimeError, match="non-finite objective"):
        objective_values(tmp_path, ["val/all/pass@1"], ["maximize"], "final")


def test_running_trial_is_marked_fail(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.tell(study.ask({"a": IntDistribution(0, 3)}), 1.0)
    study.ask({"a": IntDistribution(0, 3)})  # a sweep died here
    assert StoredStudy(url, "s", directions=["maximize"]).fail_stale_trials() == [1]
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs["fail_reason"] == "left RUNNING by an earlier sweep"
    with pytest.raises(ValueError, match="has directions \\['maximize'\\], config asks \\['minimize'\\]"):
        StoredStudy(url, "s", directions=["minimize"])


def test_a_job_reports_to_its_trial_through_the_eval_listener(tmp_path):
    # what a pruned job does, in one process: the trial was asked elsewhere (the sweeper), the job
    # reaches it by number, and each validation RunLog writes is reported until the pruner stops it
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=url, direction="maximize").ask()
    stored = StoredStudy(url, "s", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    runlog = RunLog(tmp_path / "run")

    def report(step, summary):
        if stored.report(0, step, summary["val/all/pass@1"]):
            raise PrunedRun(f"pruned at step {step}")

    with on_eval(report):
        runlog.log_eval(1, [], {"step": 1, "val/all/pass@1": 0.7})
        with pytest.raises(PrunedRun, match="step 2"):
            runlog.log_eval(2, [], {"step": 2, "val/all/pass@1": 0.2})
    runlog.log_eval(3, [], {"step": 3, "val/all/pass@1": 0.1})  # outside the block: nobody listens
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    assert trial.intermediate_values == {1: 0.7, 2: 0.2}
    assert [r["step"] for r in runlog.eval_summaries()] == [1, 2, 3]  # written before the listener ran


# ----------------------------------------------------------------------------- real sweeps


def _sweep_conf(d: Path, name: str, body: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.yaml").write_text(
        "defaults:\n  - config\n  - override hydra/sweeper: dars_optuna\n  - _self_\n"
        f"sweep_name: {name}\nhydra:\n  mode: MULTIRUN\n  sweeper:\n{body}"
    )
    return d


def _trials(sweep: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}").trials


def test_study_end_to_end_and_resume(tmp_path, cache_dir):
    conf = _sweep_conf(
        tmp_path / "conf",
        "nmax",
        (
            "    n_trials: 2\n    seed: 0\n    n_startup_trials: 2\n"
            "    params:\n      experiment: dars_et\n      algorithm.n_max: choice(16,24,32,40,48,56,64)\n"
        ),
    )
    out = tmp_path / "out"
    cmd = ["--config-dir", str(conf), "--config-name", "nmax", *QUICK]
    run_dars(cmd, out, cache_dir)
    sweep = out / "sweeps" / "nmax"
    for f in ("best_params.yaml", "trials.csv", "optimization_history.png", "optuna.db"):
        assert (sweep / f).exists(), f
    first = _trials(sweep, "nmax")
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2
    best = OmegaConf.load(sweep / "best_params.yaml")
    assert best.best_value == max(t.value for t in first)
    assert set(best.best_params) == {"algorithm.n_max"}
    # the value is read from the run directory's final validation line
    for t in first:
        line = json.loads((Path(t.user_attrs["run_dir"]) / "eval" / "summary.jsonl").read_text().splitlines()[-1])
        assert t.value == line["val/all/pass@1"]
    mtimes = {t.number: (Path(t.user_attrs["run_dir"]) / "eval" / "summary.jsonl").stat().st_mtime_ns for t in first}
    csv = (sweep / "trials.csv").read_text().splitlines()
    assert len(csv) == 3 and "params_algorithm.n_max" in csv[0] and "val/all/pass@1" in csv[0]

    # a sweep that died mid-trial leaves a RUNNING trial behind
    optuna.load_study(study_name="nmax", storage=f"sqlite:///{sweep / 'optuna.db'}").ask()

    proc = run_dars(cmd + ["hydra.sweeper.n_trials=3"], out, cache_dir)
    assert "2 of 3 trials complete; running 1 more" in proc.stdout + proc.stderr
    trials = _trials(sweep, "nmax")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert [(t.number, t.params, t.value) for t in trials[:2]] == [(t.number, t.params, t.value) for t in first]
    for n, m in mtimes.items():  # the first two runs were not run again
        assert (Path(trials[n].user_attrs["run_dir"]) / "eval" / "summary.jsonl").stat().st_mtime_ns == m
    assert len(trials[3].user_attrs["run_dir"]) > 0

    # the same command again: target reached, nothing runs
    proc = run_dars(cmd + ["hydra.sweeper.n_trials=3"], out, cache_dir)
    assert "running 0 more" in proc.stdout + proc.stderr
    assert len(_trials(sweep, "nmax")) == 4


def test_failing_trial_and_pareto_front(tmp_path, cache_dir):
    # n_max=4 < rollout.n=8 fails dars' config check (sys.exit(2) inside the job): that trial is FAIL,
    # the batch's other trial and the next batch still run. Two objectives -> Pareto front.
    conf = _sweep_conf(
        tmp_path / "conf",
        "pareto",
        (
            "    objective: [val/all/pass@1, val/all/pass@4]\n    direction: [maximize, minimize]\n"
            "    n_trials: 3\n    n_jobs: 2\n    seed: 1\n    n_startup_trials: 3\n"
            "    enqueue_trials:\n      - {algorithm.n_max: 4}\n"
            "    params:\n      experiment: dars_hw\n      algorithm.n_max: int(interval(16,64))\n"
        ),
    )
    out = tmp_path / "out"
    run_dars(["--config-dir", str(conf), "--config-name", "pareto", *QUICK], out, cache_dir)
    sweep = out / "sweeps" / "pareto"
    trials = _trials(sweep, "pareto")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].params == {"algorithm.n_max": 4}
    assert "n_max=4 is smaller than rollout.n=8" in trials[0].user_attrs["fail_reason"]
    front = OmegaConf.load(sweep / "pareto_front.yaml")
    assert len(front.pareto_front) >= 1
    assert set(front.pareto_front[0]["values"]) == {"val/all/pass@1", "val/all/pass@4"}
    assert front.trials == {"FAIL": 1, "COMPLETE": 2}
    for f in ("pareto_front.png", "optimization_history.png", "trials.csv"):
        assert (sweep / f).exists(), f


def test_pruned_run_stops_early(tmp_path, cache_dir):
    # ThresholdPruner(lower=2) prunes at the first report (pass@1 <= 1): the run stops after its first
    # validation (step 1 of 3) and the trial is PRUNED with that intermediate value.
    conf = _sweep_conf(
        tmp_path / "conf",
        "prune",
        (
            "    n_trials: 1\n    pruner: {_target_: optuna.pruners.ThresholdPruner, lower: 2.0}\n"
            "    params:\n      experiment: dars_et\n      algorithm.n_max: choice(32,48)\n"
        ),
    )
    out = tmp_path / "out"
    run_dars(
        [
            "--config-dir",
            str(conf),
            "--config-name",
            "prune",
            *FAST,
            "train.total_steps=3",
            "train.test_freq=1",
            "train.val_before_train=false",
        ],
        out,
        cache_dir,
    )
    sweep = out / "sweeps" / "prune"
    (trial,) = _trials(sweep, "prune")
    assert trial.state == TrialState.PRUNED
    lines = (Path(trial.user_attrs["run_dir"]) / "eval" / "summary.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["step"] == 1
    assert list(trial.intermediate_values) == [1]
    assert trial.value == json.loads(lines[0])["val/all/pass@1"]
