"""What a sweep leaves in its directory, rewritten after each batch: best_params.yaml (one objective)
or pareto_front.yaml (several), trials.csv, optimization_history.png and, for two objectives,
pareto_front.png."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf


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
