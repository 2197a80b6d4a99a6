"""Find runs below directories and give uniform access to what each one has on disk.

A *native* run directory (docs/run-format.md) is recognised by ``metrics.jsonl``, ``eval/`` or
``status.json`` (a directory with only ``.hydra/`` is reported as "nothing written yet"). A
*dump* run is a directory holding ``val_generations/<step>.json`` (the upstream repository), or a
directory that itself holds ``<step>.json``/``<step>.jsonl`` validation dumps (upstream or
verl's ``trainer.validation_data_dir``). Hydra multirun sweeps (``<sweep>/<run>/...`` with
``multirun.yaml`` at the root) need nothing special: every run below is found.

``python -m analysis.runs <dirs>`` lists what was found.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.names import normalise_experiment
from analysis.readers import (
    DUMP_STEP_RE,
    NATIVE_STEP_RE,
    EvalData,
    read_eval_file,
    read_metrics,
    read_records,
    sniff_dump_format,
)

# never descended into (hidden folders such as .git, .venv, .hydra are skipped as well)
PRUNE_DIRS = {"checkpoints", "__pycache__", "wandb", "node_modules", "venv", "site-packages"}
GENERIC_DUMP_DIRS = {
    "val_generations",
    "validation",
    "val",
    "generations",
    "val_data",
    "validation_data",
    "val_dumps",
    "dumps",
}


def _get(cfg: dict, dotted: str, default=None):
    cur = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def load_config(path: Path) -> tuple[dict, list[str]]:
    """A Hydra ``config.yaml`` as a plain dict (interpolations resolved when possible)."""
    notes: list[str] = []
    try:
        from omegaconf import OmegaConf

        conf = OmegaConf.load(path)
        try:
            return OmegaConf.to_container(conf, resolve=True), notes  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - an interpolation that cannot resolve outside the run (e.g. ${hydra:})
            return OmegaConf.to_container(conf, resolve=False), notes  # type: ignore[return-value]
    except Exception as e:  # noqa: BLE001 - any unreadable config is a note, not a crash
        try:
            import yaml

            with open(path) as f:
                data = yaml.safe_load(f)
            return (data if isinstance(data, dict) else {}), notes
        except Exception:  # noqa: BLE001 - not YAML either: the note names OmegaConf's reason
            notes.append(f"unreadable {path.name}: {e}")
            return {}, notes


@dataclass
class Run:
    """One run directory (native or a folder of validation dumps)."""

    path: Path
    kind: str  # "native" | "dump"
    name: str
    experiment: str
    seed: int | None = None
    config: dict = field(default_factory=dict)
    status: dict | None = None
    eval_files: dict[int, tuple[Path, str | None]] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    metrics_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    _training: pd.DataFrame | None = field(default=None, repr=False)

    # --- config fields -------------------------------------------------------------------
    def cfg(self, dotted: str, default=None):
        return _get(self.config, dotted, default)

    @property
    def n_val(self) -> int | None:
        v = self.cfg("eval.n_val")
        if v is None and self.summary is not None and "n_val" in self.summary:
            vals = self.summary["n_val"].dropna()
            v = vals.iloc[-1] if len(vals) else None
        try:
            return int(v) if v is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def state(self) -> str:
        """status.json's state, except that "running" with nobody holding the run's lock (a SIGKILL,
        a full disk, a lost node) is "interrupted" (docs/run-format.md)."""
        if self.status and isinstance(self.status.get("state"), str):
            from dars.runlock import observed_state

            return observed_state(self.path, self.status) or "unknown"
        return "unknown"

    @property
    def eval_steps(self) -> list[int]:
        return sorted(self.eval_files)

    # --- data ----------------------------------------------------------------------------
    def training(self) -> pd.DataFrame:
        """``metrics.jsonl`` as a DataFrame (empty when absent); cached."""
        if self._training is None:
            if self.metrics_path is None or not self.metrics_path.exists():
                self._training = pd.DataFrame()
            else:
                df, notes = read_metrics(self.metrics_path)
                self.notes.extend(notes)
                self._training = df
        return self._training

    def eval(self, step: int, samples: bool = False) -> EvalData:
        """The validation data at ``step`` (raises ValueError when unreadable)."""
        path, fmt = self.eval_files[step]
        if fmt is None:
            fmt = sniff_dump_format(path)
            self.eval_files[step] = (path, fmt)
        return read_eval_file(path, step, fmt, samples)


def _read_status(path: Path) -> tuple[dict | None, list[str]]:
    try:
        with open(path) as f:
            data = json.load(f)
        return (data if isinstance(data, dict) else None), []
    except (OSError, ValueError) as e:
        return None, [f"unreadable status.json ({e.__class__.__name__}); state unknown"]


def _native_run(path: Path) -> Run:
    notes: list[str] = []
    cfg_path = path / ".hydra" / "config.yaml"
    config: dict = {}
    if cfg_path.exists():
        config, cn = load_config(cfg_path)
        notes += cn
    else:
        notes.append("no .hydra/config.yaml; experiment taken from status.json or the directory name")
    status, sn = (None, [])
    if (path / "status.json").exists():
        status, sn = _read_status(path / "status.json")
    notes += sn
    experiment = (
        _get(config, "experiment_name") or (status or {}).get("experiment") or re.sub(r"-s\d+.*$", "", path.name)
    )
    seed = _get(config, "seed", (status or {}).get("seed"))
    try:
        seed = int(seed) if seed is not None else None
    except (TypeError, ValueError):
        seed = None
    run = Run(
        path=path,
        kind="native",
        name=path.name,
        experiment=str(experiment),
        seed=seed,
        config=config,
        status=status,
        metrics_path=(path / "metrics.jsonl") if (path / "metrics.jsonl").exists() else None,
        notes=notes,
    )
    _index_native_eval(run)
    return run


def _index_native_eval(run: Run) -> None:
    eval_dir = run.path / "eval"
    files: dict[int, Path] = {}
    if eval_dir.is_dir():
        for p in eval_dir.iterdir():
            m = NATIVE_STEP_RE.match(p.name)
            if m and p.is_file():
                files[int(m.group(1))] = p
    summary = None
    if (eval_dir / "summary.jsonl").exists():
        recs, notes = read_records(eval_dir / "summary.jsonl")
        run.notes += [f"eval/{n}" for n in notes]
        recs = [r for r in recs if isinstance(r.get("step"), (int, float))]
        if recs:
            summary = pd.DataFrame.from_records(recs)
            summary["step"] = summary["step"].astype(int)
            summary = summary.drop_duplicates("step", keep="last").sort_values("step")
    run.summary = summary
    if summary is None:
        if files:
            run.notes.append("no eval/summary.jsonl; every eval/step_<k>.jsonl used as found")
        run.eval_files = {k: (p, "native") for k, p in sorted(files.items())}
        return
    listed = set(summary["step"].tolist())
    use = {}
    for k, p in sorted(files.items()):
        if k in listed:
            use[k] = (p, "native")
        elif run.state in ("running", "interrupted") and k == max(files):
            # being written, or cut off by a kill before its summary line (a resume redoes it)
            run.notes.append(f"eval at step {k} still being written (no summary line yet); skipped")
        else:
            run.notes.append(f"eval/step_{k}.jsonl has no summary line; used anyway")
            use[k] = (p, "native")
    missing = sorted(listed - set(files))
    if missing:
        run.notes.append("summary lists step(s) " + ", ".join(map(str, missing)) + " without an eval/step_<k>.jsonl")
    run.eval_files = use


def _dump_files(d: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    try:
        entries = list(d.iterdir())
    except OSError:
        return out
    for p in entries:
        m = DUMP_STEP_RE.match(p.name)
        if m and p.is_file():
            step = int(m.group(1))
            # prefer .json over .jsonl if both exist (should not happen)
            if step not in out or p.suffix == ".json":
                out[step] = p
    return out


def _dump_run(path: Path, files: dict[int, Path]) -> Run:
    name = path.name
    if name.lower() in GENERIC_DUMP_DIRS and path.parent != path:
        name = path.parent.name
    config: dict = {}
    notes: list[str] = []
    for cand in (path / ".hydra" / "config.yaml", path.parent / ".hydra" / "config.yaml"):
        if cand.exists():
            config, cn = load_config(cand)
            notes += cn
            break
    experiment = _get(config, "experiment_name") or _get(config, "trainer.experiment_name") or name
    experiment = normalise_experiment(str(experiment))
    seed = _get(config, "seed")
    try:
        seed = int(seed) if seed is not None else None
    except (TypeError, ValueError):
        seed = None
    return Run(
        path=path,
        kind="dump",
        name=name,
        experiment=experiment,
        seed=seed,
        config=config,
        eval_files={k: (p, None) for k, p in sorted(files.items())},
        notes=notes,
    )


def _classify(d: Path, names: set[str]) -> str | None:
    if "metrics.jsonl" in names or "status.json" in names:
        return "native"
    if "eval" in names and (d / "eval").is_dir():
        return "native"
    return None


def discover(roots: list[Path | str]) -> tuple[list[Run], list[str]]:
    """Every run below ``roots`` (sorted by path, duplicates removed) and global notes."""
    runs: dict[Path, Run] = {}
    notes: list[str] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            notes.append(f"{root}: does not exist")
            continue
        if root.is_file():
            # a single dump file: treat its folder as the run
            root = root.parent
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            names = set(filenames) | set(dirnames)
            kind = _classify(d, names)
            if kind == "native":
                key = d.resolve()
                if key not in runs:
                    runs[key] = _native_run(d)
                dirnames[:] = []
                continue
            if "val_generations" in dirnames:
                files = _dump_files(d / "val_generations")
                if files:
                    key = d.resolve()
                    if key not in runs:
                        run = _dump_run(d, files)
                        run.path = d
                        runs[key] = run
                    dirnames[:] = []
                    continue
            files = _dump_files(d)
            if files:
                key = d.resolve()
                if key not in runs:
                    runs[key] = _dump_run(d, files)
                dirnames[:] = []
                continue
            if ".hydra" in dirnames and (d / ".hydra" / "config.yaml").exists():
                if "multirun.yaml" not in filenames:
                    key = d.resolve()
                    if key not in runs:
                        run = _native_run(d)
                        runs[key] = run
                dirnames[:] = [x for x in dirnames if x not in PRUNE_DIRS and not x.startswith(".")]
                continue
            dirnames[:] = sorted(x for x in dirnames if x not in PRUNE_DIRS and not x.startswith("."))
    ordered = sorted(runs.values(), key=lambda r: str(r.path))
    if not ordered and not notes:
        notes.append("no run directories found below " + ", ".join(map(str, roots)))
    return ordered, notes


def describe(run: Run) -> str:
    tr = run.training()
    last = int(tr["step"].max()) if len(tr) else None
    steps = run.eval_steps
    parts = [
        f"{run.name}",
        f"[{run.kind}]",
        f"experiment={run.experiment}",
        f"seed={run.seed}" if run.seed is not None else "",
        f"state={run.state}" if run.kind == "native" else "",
        f"train_steps={last}" if last is not None else "no training metrics",
        f"evals={len(steps)}" + (f" ({steps[0]}..{steps[-1]})" if steps else ""),
    ]
    return " ".join(p for p in parts if p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.runs",
        description="List the run directories found below the given directories, what each "
        "holds (training metrics, evaluations, state) and any notes about them.",
    )
    ap.add_argument("dirs", nargs="+", help="sweep, run or dump directories to search")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    runs, notes = discover(args.dirs)
    for n in notes:
        print("note:", n)
    for r in runs:
        print(describe(r))
        print(f"    {r.path}")
        for n in r.notes:
            print(f"    note: {n}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
