"""Optuna tuning of dars runs: the ``hydra/sweeper=dars_optuna`` sweeper (docs/tuning.md).

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

The package, in the order a sweep uses it:

* :mod:`dars.tune.space`: Hydra sweep overrides -> Optuna distributions, and values back to overrides;
* :mod:`dars.tune.study`: the study in its storage (open or resume, stale trials, a trial by number);
* :mod:`dars.tune.job`: the task function as each trial's job runs it (exit codes, pruning);
* :mod:`dars.tune.objective`: a finished run's objective values, from its run directory;
* :mod:`dars.tune.sweeper`: the sweeper itself (ask a batch, launch it, tell the results);
* :mod:`dars.tune.outputs`: best_params.yaml / pareto_front.yaml, trials.csv and the plots.

``hydra_plugins/dars_optuna_sweeper`` registers the sweeper with Hydra.
"""
