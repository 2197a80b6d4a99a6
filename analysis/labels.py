"""Labels: which runs form one row of the tables / one line of the figures.

By default runs that differ only in their seed form one label (a *seed group*): run directories
are named ``<experiment>-s<seed>[-<other overrides>]`` (conf/config.yaml), so the group key is
the name without its ``-s<seed>`` part. Figures draw a label's mean over its runs with a band
over them; the claims and paired-delta tables treat its runs as seeds. ``Options.pool_seeds =
False`` (``--per-seed``) gives every run its own label instead.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter, defaultdict

from analysis.names import experiment_rank
from analysis.runs import Run


def strip_seed(name: str) -> str:
    """The run name without its ``-s<seed>`` part (the seed-group key)."""
    return re.sub(r"-s\d+(?=-|$)", "", name, count=1)


def excluded(run: Run, patterns: list[str]) -> bool:
    """Whether the run's name, path or experiment matches one of the globs."""
    cands = (run.name, str(run.path), run.experiment)
    return any(fnmatch.fnmatchcase(c, p) for p in patterns for c in cands)


def _user_label(run: Run, patterns: dict[str, str]) -> str | None:
    cands = [run.name, str(run.path), run.experiment]
    for pat, lab in patterns.items():  # exact first
        if pat in cands:
            return lab
    for pat, lab in patterns.items():
        if any(fnmatch.fnmatchcase(c, pat) for c in cands):
            return lab
    return None


def _pooled_labels(runs: list[Run]) -> dict[str, str]:
    """Seed groups: experiment name (or name without seed when other overrides differ); a group
    in which one seed occurs twice (e.g. the same sweep copied twice) is not a seed group: its
    runs are told apart by their parent folder."""
    label = {}
    for r in runs:
        base = strip_seed(r.name)
        label[str(r.path)] = r.experiment if base == r.experiment or r.kind == "dump" else base
    members: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        members[label[str(r.path)]].append(r)
    for lab, rs in members.items():
        if max(Counter(r.seed for r in rs).values()) > 1:
            for r in rs:
                label[str(r.path)] = f"{r.path.parent.name}/{lab}"
    return label


def _per_run_labels(runs: list[Run]) -> dict[str, str]:
    """One label per run: the experiment when it is unique, else the run directory name (with
    the parent folder when two runs share a name)."""
    by_exp = Counter(r.experiment for r in runs)
    names = Counter(r.name for r in runs)
    out = {}
    for r in runs:
        if by_exp[r.experiment] == 1:
            out[str(r.path)] = r.experiment
        elif names[r.name] > 1:
            out[str(r.path)] = f"{r.path.parent.name}/{r.name}"
        else:
            out[str(r.path)] = r.name
    return out


def assign_labels(runs: list[Run], opts) -> dict[str, str]:
    """run path -> label. User patterns (``opts.labels``, ``--label``) first, matched against
    run name, path and experiment (exact, then glob); then the default: seed groups
    (``opts.pool_seeds``, the default) or one label per run."""
    default = _pooled_labels(runs) if opts.pool_seeds else _per_run_labels(runs)
    out = {}
    for r in runs:
        user = _user_label(r, opts.labels)
        out[str(r.path)] = user if user is not None else default[str(r.path)]
    return out


def order_labels(runs: list[Run], run_label: dict[str, str], order: list[str] | None = None):
    """(label order, label -> experiment): the labels of ``order`` (``--order``) first, then the
    experiments in paper order, then alphabetical. A ``<label> (base)`` / ``(partial)`` row
    (analysis.exclusions) follows its group's label."""
    labels: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        labels[run_label[str(r.path)]].append(r)
    label_experiment = {}
    for lab, rs in labels.items():
        exps = {r.experiment for r in rs}
        label_experiment[lab] = exps.pop() if len(exps) == 1 else lab
    order_key = {lab: i for i, lab in enumerate(order or [])}

    def key(lab):
        group = re.sub(r" \((base|partial)\)$", "", lab)
        return (order_key.get(group, len(order_key)), experiment_rank(label_experiment[lab]), group, lab != group, lab)

    return sorted(labels, key=key), label_experiment
