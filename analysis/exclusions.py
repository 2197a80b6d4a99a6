"""Which runs are results: untrained and partially trained runs are listed, not ranked.

A run's numbers are a *result* only when they come from a trained model at the end of its
training. Two kinds of run are not (issue #11, "runs never lie"):

* **base** (not trained): the run is judged at step 0, so every number it would put in a table
  is the base model's (killed before its first training step, or trained a few steps but never
  validated after step 0). It would look exactly like a trained row and could even be the best.
* **partial**: the run stopped, or is still running, before its ``total_steps``
  (``status.json``, else ``train.total_steps`` of its config): any state but ``completed``
  (``running``, ``failed``, ``killed``, ``interrupted``, ... or no ``status.json``) with the last
  training step and the judged checkpoint below the total (a state other than ``completed``
  without any known total counts as partial too, "step 12 of ?", unless there is no
  ``status.json`` either). A run that says ``completed`` is complete even when it ended early (the trainer stops
  when ``train.total_epochs`` is exhausted); a dump folder carries no state and counts as
  complete.

By default both are left out of the analysis entirely (tables, bests, paired deltas, claims,
figures) and listed with the reason; ``Options.include_base`` / ``include_partial``
(``--include-base`` / ``--include-partial``) keep them as rows of their own, labelled
``<label> (base)`` / ``<label> (partial)``, never pooled with the complete runs of their group.
Such rows are shown only: never ranked (:mod:`analysis.significance`), compared or used in a
claim (:mod:`analysis.paired`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.runs import Run

TRAINED, PARTIAL, BASE_ONLY = "trained", "partial", "base"
SUFFIX = {BASE_ONLY: " (base)", PARTIAL: " (partial)"}


@dataclass
class Excluded:
    """A run that is not a complete trained result (see the module docstring)."""

    path: str
    name: str
    label: str  # the label of its group (as it would be without the exclusion)
    kind: str  # BASE_ONLY | PARTIAL
    state: str
    step: int  # last training step on disk (0: none)
    total: int | None  # total_steps (None: unknown)
    judged: int | None  # judged checkpoint (None: no evaluation)
    reason: str
    shown_as: str | None = None  # its label when kept (--include-base / --include-partial)
    notes: tuple[str, ...] = ()

    @property
    def progress(self) -> str:
        return f"step {self.step} of {self.total if self.total is not None else '?'}"


def _int(v) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def last_train_step(run: Run) -> int:
    """The last training step on disk: metrics.jsonl's largest ``step``; a dump (no metrics)
    counts its largest validation step."""
    if run.kind != "native":
        return max(run.eval_steps, default=0)
    tr = run.training()
    if len(tr) and "step" in tr:
        return int(tr["step"].max())
    return 0


def total_steps(run: Run) -> int | None:
    return _int((run.status or {}).get("total_steps")) or _int(run.cfg("train.total_steps"))


def classify(run: Run, judged: int | None) -> tuple[str, str]:
    """(kind, reason) of one run judged at ``judged`` (None: no evaluation)."""
    step, total = last_train_step(run), total_steps(run)
    state = run.state if run.kind == "native" else "dump"
    err = (run.status or {}).get("error")
    how = (
        "a dump folder"
        if state == "dump"
        else f"state {state}" + (f", error: {err}" if err and state != "completed" else "")
    )
    if judged == 0:
        if step == 0:
            why = "no training step (metrics.jsonl empty or missing)"
        elif any(s > 0 for s in run.eval_steps):
            why = f"trained to step {step} but its evaluations after step 0 are not usable"
        else:
            why = f"trained to step {step} but evaluated only at step 0"
        return BASE_ONLY, f"{why}: its numbers are the base model's ({how})"
    if run.kind != "native" or state == "completed":
        return TRAINED, ""
    reached = max(step, judged or 0)
    if total is not None and reached >= total:
        return TRAINED, ""
    if total is None and state == "unknown":
        return TRAINED, ""  # no status.json and no total_steps: nothing says it is unfinished
    judged_txt = f"judged at step {judged}" if judged is not None else "no evaluation"
    return PARTIAL, f"step {step} of {total if total is not None else '?'} ({how}); {judged_txt}"


def split_runs(
    runs: list[Run],
    judged_steps: list[int | None],
    run_label: dict[str, str],
    include_base: bool,
    include_partial: bool,
):
    """Apply the rule to every run: returns (kept run indices, new run_label for the kept
    runs, every Excluded record, notes). Kept base/partial runs get the label suffix."""
    keep, label, out, notes = [], {}, [], []
    left_out: dict[tuple[str, str], int] = {}
    for i, (r, step) in enumerate(zip(runs, judged_steps, strict=True)):
        path, lab = str(r.path), run_label[str(r.path)]
        kind, reason = classify(r, step)
        if kind == TRAINED:
            keep.append(i)
            label[path] = lab
            continue
        shown = lab + SUFFIX[kind] if (include_base if kind == BASE_ONLY else include_partial) else None
        out.append(
            Excluded(
                path,
                r.name,
                lab,
                kind,
                r.state if r.kind == "native" else "dump",
                last_train_step(r),
                total_steps(r),
                step,
                reason,
                shown,
                tuple(r.notes),
            )
        )
        if shown is not None:
            keep.append(i)
            label[path] = shown
        else:
            left_out[(lab, kind)] = left_out.get((lab, kind), 0) + 1
    kept_labels = set(label.values())
    for (lab, kind), n in left_out.items():
        if lab not in kept_labels:
            continue  # the whole group is gone: the excluded list says so
        what = "judged at step 0 (not trained yet)" if kind == BASE_ONLY else "partially trained"
        notes.append(f"{lab}: {n} run(s) {what} left out of its pooled results")
    return keep, label, out, notes


def _kind(e: Excluded) -> str:
    return "not trained" if e.kind == BASE_ONLY else "partial"


def excluded_lines(excluded: list[Excluded], with_notes: bool = True) -> list[str]:
    """The console / index.md list: one line per run (path, why, what was done with it)."""
    lines = []
    for e in excluded:
        done = (
            f"shown as '{e.shown_as}'"
            if e.shown_as
            else "left out (--include-base shows it)"
            if e.kind == BASE_ONLY
            else "left out (--include-partial shows it)"
        )
        lines.append(f"{e.path}: {_kind(e)}: {e.reason}; {done}")
        if with_notes and not e.shown_as:  # a shown run's notes are listed with the others
            lines += [f"    - {n}" for n in e.notes]
    return lines


def excluded_section(excluded: list[Excluded]) -> list[str]:
    """The Markdown section of index.md (empty when every run is a complete trained result)."""
    if not excluded:
        return []
    L = [
        "## Not trained / excluded runs",
        "",
        (
            "These runs are not complete trained results: a run judged at step 0 would show the "
            "base model's numbers, a partial run a model part-way through training. They are kept "
            "out of the tables, the bests, the paired differences, the claims and the figures "
            "unless shown as their own `(base)` / `(partial)` row, which is never ranked or "
            "compared."
        ),
        "",
        "| Run | Label | Kind | Progress | Why | Shown as |",
        "|---|---|---|---|---|---|",
    ]
    for e in excluded:
        why = e.reason.replace("|", "\\|")  # an error message may hold a pipe
        L.append(f"| `{e.path}` | {e.label} | {_kind(e)} | {e.progress} | {why} | {e.shown_as or 'left out'} |")
    return L + [""]


def shown_labels(excluded: list[Excluded]) -> set[str]:
    """The `(base)` / `(partial)` rows kept on request: shown, but never ranked, compared or
    used in a claim (they are not results)."""
    return {e.shown_as for e in excluded if e.shown_as}


def relabel(df: pd.DataFrame, run_label: dict[str, str]) -> pd.DataFrame:
    """The rows of the kept runs only (``run`` column), with their (possibly suffixed) labels."""
    if df.empty or "run" not in df:
        return df
    df = df[df["run"].isin(run_label)].copy()
    df["label"] = df["run"].map(run_label)
    return df.reset_index(drop=True)
