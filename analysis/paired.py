"""Paired differences between labels (seed groups) at the judged checkpoint.

A comparison is *variant* vs *reference*, where each is a label of the analysis (or an
experiment name that names exactly one label), or ``base``: each variant run's own step-0
evaluation (the base model, validated before training), so ``x vs base`` pairs every run with
itself. Per-problem metrics (``avg``, ``pass``, ``pass@<k>``) use the per-problem values at each
run's judged checkpoint and the problems every run involved shares; per-run metrics are means
of a ``metrics.jsonl`` column over the training up to the judged checkpoint. The statistics
(hierarchical bootstrap, interval, verdict) are :mod:`dars.stats`.

Which runs count: a run judged at step 0 (killed before training: only the base evaluation) is
not a trained run of its label and is left out (with a note). Seeds: two trained groups are
compared with *paired seeds* on the seeds they share when they share at least two (or both are
one run with the same seed); pairing on a single common seed would throw away every other seed
and with them the only estimate of seed-to-seed spread, so then the groups are compared
unpaired over all their runs.

Seed variance: by default a comparison's seed part uses the run-to-run variance pooled over
every trained group of the sweep that was run with the same seeds (seeds as blocks,
:func:`dars.stats.block_residual_variance`): 7 groups x 3 seeds give 12 degrees of freedom
where one comparison alone has 2. ``pool_seed_variance=False`` (``--seed-variance own``) keeps
each comparison's own.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.core import Analysis
from analysis.exclusions import BASE_ONLY, shown_labels
from analysis.names import ALL
from analysis.run_metrics import problem_matrix
from analysis.runs import Run
from dars.stats import Delta, block_residual_variance, scalar_delta, stratified_deltas

BASE = "base"


@dataclass(frozen=True)
class Metric:
    """What a comparison measures. ``kind``: ``problem`` (per-problem values at the judged
    checkpoint; ``k`` = None for Avg@K, else Pass@k, 0 = the analysis's K) or ``run`` (the mean
    of the ``metrics.jsonl`` column ``key`` over training, or over its second half)."""

    name: str
    kind: str
    k: int | None = None
    key: str = ""
    second_half: bool = False

    def display(self, K: int | None) -> str:
        if self.kind == "problem":
            return f"Avg@{K}" if self.k is None else f"Pass@{self.k or K}"
        return f"{self.key} (mean over {'the 2nd half of ' if self.second_half else ''}training)"

    @property
    def unit(self) -> str:
        """Unit of the values (CSV): fractions for Avg/Pass (tables show points)."""
        if self.kind == "problem":
            return "fraction"
        return {"entropy/token_mean": "nats", "entropy/seq_mean": "nats", "rollouts/per_prompt": "rollouts/prompt"}.get(
            self.key, ""
        )


# per-run aliases the shipped claims use (any `mean:<key>` / `second_half:<key>` works too)
RUN_ALIASES = {
    "entropy_second_half": ("entropy/token_mean", True),
    "rollouts_per_prompt": ("rollouts/per_prompt", False),
}
METRIC_HELP = (
    "avg (Avg@K), pass (Pass@K), pass@<k>, entropy_second_half, rollouts_per_prompt, "
    "mean:<metrics.jsonl key>, second_half:<metrics.jsonl key>"
)


def parse_metric(name: str) -> Metric:
    """A metric name -> :class:`Metric`; ValueError naming the accepted forms otherwise."""
    text = str(name).strip()
    if text == "avg":
        return Metric(text, "problem", None)
    if text == "pass":
        return Metric(text, "problem", 0)
    m = re.fullmatch(r"pass@(\d+)", text)
    if m and int(m.group(1)) >= 1:
        return Metric(text, "problem", int(m.group(1)))
    if text in RUN_ALIASES:
        key, half = RUN_ALIASES[text]
        return Metric(text, "run", key=key, second_half=half)
    m = re.fullmatch(r"(mean|second_half):(.+)", text)
    if m:
        return Metric(text, "run", key=m.group(2), second_half=m.group(1) == "second_half")
    raise ValueError(f"unknown metric {name!r}; one of: {METRIC_HELP}")


@dataclass
class Comparison:
    """One variant-vs-reference comparison; ``delta`` is None when it could not be made
    (``reason`` says why). ``by_benchmark``: per-benchmark Δ (per-problem metrics)."""

    variant: str
    reference: str
    metric: Metric
    delta: Delta | None = None
    by_benchmark: dict[str, Delta] = field(default_factory=dict)
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    variant_label: str | None = None
    reference_label: str | None = None


class Comparer:
    """Builds and caches comparisons on one :class:`Analysis`."""

    def __init__(
        self, a: Analysis, n_boot: int = 1000, seed: int = 0, level: float = 0.95, pool_seed_variance: bool = True
    ):
        self.a, self.n_boot, self.seed, self.level = a, n_boot, seed, level
        self.pool_seed_variance = pool_seed_variance
        self._blocks: dict[tuple, tuple[list, int] | None] = {}
        self.notes: list[str] = []  # runs left out, once per run
        ck = a.checkpoints.set_index("run")["step"].to_dict() if len(a.checkpoints) else {}
        self.judged: dict[str, int] = {p: int(s) for p, s in ck.items()}
        self.members: dict[str, list[Run]] = {}
        for r in a.runs:
            self.members.setdefault(a.run_label[str(r.path)], []).append(r)
        for r in a.runs:
            if self.judged.get(str(r.path)) == 0:
                self.notes.append(
                    f"{r.name}: judged at step 0 (no training yet): left out of the paired comparisons and claims"
                )
        # runs that are not complete trained results (analysis.exclusions); when kept as a
        # `(base)` / `(partial)` row, that row is shown only: no comparison, no claim
        self.not_results = shown_labels(a.excluded)
        for e in a.excluded:
            if e.shown_as:
                continue
            what = "judged at step 0 (no training yet)" if e.kind == BASE_ONLY else f"partial ({e.progress})"
            self.notes.append(f"{e.name}: {what}: left out of the paired comparisons and claims")
        self._step0: dict[str, tuple[pd.DataFrame, list] | None] = {}  # run -> problem_matrix
        self._run_values: dict[tuple[str, Metric], float] = {}
        self._cache: dict[tuple, Comparison] = {}

    # ---- names and runs ------------------------------------------------------------------
    def resolve(self, name: str) -> tuple[str | None, str]:
        """A claim's name -> (label, ''), or (None, why not)."""
        if name in self.not_results:
            return None, f"{name!r} is not a complete trained result (not compared)"
        if name in self.members:
            return name, ""
        labs = [
            lab
            for lab in self.a.label_order
            if self.a.label_experiment.get(lab) == name and lab not in self.not_results
        ]
        if len(labs) == 1:
            return labs[0], ""
        if labs:
            return None, f"several labels of experiment {name!r} ({', '.join(labs)}): name one"
        return None, f"no runs of {name!r} in this analysis"

    def _trained(self, label: str, metric: Metric) -> list[Run]:
        runs = self.members.get(label, [])
        if metric.kind == "problem":
            return [r for r in runs if self.judged.get(str(r.path), 0) > 0 and str(r.path) in self.a.problems]
        return [r for r in runs if np.isfinite(self._run_value(r, metric))]

    def _run_value(self, r: Run, metric: Metric) -> float:
        """Mean of a metrics.jsonl column over the run's training up to its judged checkpoint
        (all of it when it has none), or over the second half of those steps."""
        key = (str(r.path), metric)
        if key not in self._run_values:
            self._run_values[key] = self._compute_run_value(r, metric)
        return self._run_values[key]

    def _compute_run_value(self, r: Run, metric: Metric) -> float:
        tr = self.a.training
        if tr.empty or metric.key not in tr:
            return float("nan")
        d = tr[tr["run"] == str(r.path)]
        if str(r.path) in self.judged:
            d = d[d["step"] <= self.judged[str(r.path)]]
        if d.empty:
            return float("nan")
        if metric.second_half:
            d = d[d["step"] > d["step"].max() / 2]
        v = pd.to_numeric(d[metric.key], errors="coerce").mean()
        return float(v) if pd.notna(v) else float("nan")

    def _values(self, r: Run, metric: Metric, step0: bool = False) -> pd.Series | None:
        """Per-problem values of one run (judged checkpoint, or its step 0)."""
        if step0:
            mat_cols = self._step0_matrix(r)
        else:
            mat_cols = self.a.problems.get(str(r.path))
        if mat_cols is None:
            return None
        mat, cols = mat_cols
        want = ("avg", 0) if metric.k is None else ("pass", metric.k or self.a.K)
        if want not in cols:
            return None
        return mat.iloc[:, cols.index(want)]

    def _step0_matrix(self, r: Run):
        key = str(r.path)
        if key not in self._step0:
            self._load_step0([r])
        return self._step0[key]

    def _load_step0(self, runs: list[Run]) -> None:
        todo = [r for r in runs if str(r.path) not in self._step0]
        excl = set(self.a.options.exclude_sources)

        def read(r: Run):
            if 0 not in r.eval_files or not self.a.K:
                return None
            try:
                ev = r.eval(0)
            except (ValueError, OSError):
                return None
            if excl:
                ev = ev.select(~np.isin(ev.source.astype(str), list(excl)))
            return problem_matrix(ev, self.a.K, maj=False) if ev.n_problems else None

        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            for r, m in zip(todo, pool.map(read, todo), strict=True):
                self._step0[str(r.path)] = m

    # ---- comparisons ---------------------------------------------------------------------
    def compare(self, variant: str, reference: str, metric: Metric | str) -> Comparison:
        metric = parse_metric(metric) if isinstance(metric, str) else metric
        key = (variant, reference, metric)
        if key not in self._cache:
            self._cache[key] = self._compare(variant, reference, metric)
        return self._cache[key]

    def _compare(self, variant: str, reference: str, metric: Metric) -> Comparison:
        c = Comparison(variant, reference, metric)
        vlab, why = self.resolve(variant)
        if vlab is None:
            c.reason = why
            return c
        c.variant_label = vlab
        runs_v = self._trained(vlab, metric)
        if not runs_v:
            c.reason = _none_trained(vlab, metric)
            return c
        if reference == BASE:
            c.reference_label = BASE
            if metric.kind != "problem":
                c.reason = f"{metric.name} is a training quantity: the base model has none"
                return c
            return self._vs_base(c, runs_v)
        rlab, why = self.resolve(reference)
        if rlab is None:
            c.reason = why
            return c
        c.reference_label = rlab
        if rlab == vlab:
            c.reason = "variant and reference are the same label"
            return c
        runs_r = self._trained(rlab, metric)
        if not runs_r:
            c.reason = _none_trained(rlab, metric)
            return c
        runs_v, runs_r, paired, note = pair_seeds(runs_v, runs_r)
        if note:
            c.notes.append(note)
        block = self._block(metric, tuple(sorted(r.seed for r in runs_v))) if paired else None
        if block is not None:
            c.notes.append(
                f"seed variance pooled over {block[1]} groups x {len(runs_v)} seeds (df {int(block[0][-1][1])})"
            )
        if metric.kind == "run":
            v = [self._run_value(r, metric) for r in runs_v]
            rv = [self._run_value(r, metric) for r in runs_r]
            c.delta = scalar_delta(v, rv, paired=paired, n_boot=self.n_boot, level=self.level, seed=self.seed)
            return c
        sv = [self._values(r, metric) for r in runs_v]
        sr = [self._values(r, metric) for r in runs_r]
        if any(s is None for s in sv + sr):
            c.reason = f"{metric.display(self.a.K)} not computed at the judged checkpoint"
            return c
        return self._finish(c, sv, sr, paired, block[0] if block else None)

    def _block(self, metric: Metric, seeds: tuple) -> tuple[list, int] | None:
        """Pooled run-to-run variance over every trained group run with all of ``seeds``:
        ([(σ², df) per benchmark in sorted order..., (σ², df) overall], number of groups), or
        None when fewer than three groups qualify (two would pool nothing new) or pooling is
        off. Only validation metrics are pooled (each run's mean over the problems all of them
        share): every group measures them the same way, while a training quantity's spread is
        a property of the variant (Depth-Naive's rollouts per prompt are always 32)."""
        if not self.pool_seed_variance or len(seeds) < 2 or metric.kind != "problem":
            return None
        key = (metric, seeds)
        if key in self._blocks:
            return self._blocks[key]
        groups = []
        for lab in self.a.label_order:
            by_seed = {r.seed: r for r in self._trained(lab, metric)}
            if all(s in by_seed for s in seeds):
                groups.append([by_seed[s] for s in seeds])
        out = None
        vals = [[self._values(r, metric) for r in g] for g in groups]
        if len(groups) >= 3 and not any(v is None for g in vals for v in g):
            common = vals[0][0].index
            for v in (v for g in vals for v in g):
                common = common.intersection(v.index)
            src = common.get_level_values("source").astype(str).to_numpy()
            cells = [[v.loc[common].to_numpy(np.float64) for v in g] for g in vals]
            parts = [src == b for b in sorted(set(src))] + [np.ones(len(src), bool)]
            out = (
                [block_residual_variance([[np.nanmean(x[m]) for x in g] for g in cells]) for m in parts],
                len(groups),
            )
        self._blocks[key] = out
        return out

    def _vs_base(self, c: Comparison, runs_v: list[Run]) -> Comparison:
        self._load_step0(runs_v)
        have = [r for r in runs_v if self._step0.get(str(r.path)) is not None]
        if not have:
            c.reason = "no step-0 (base model) evaluation in its runs (train.val_before_train=true writes one)"
            return c
        if len(have) < len(runs_v):
            c.notes.append(
                "without a step-0 evaluation, left out: " + ", ".join(r.name for r in runs_v if r not in have)
            )
        sv = [self._values(r, c.metric) for r in have]
        sr = [self._values(r, c.metric, step0=True) for r in have]
        if any(s is None for s in sv + sr):
            c.reason = f"{c.metric.display(self.a.K)} not computed for every run"
            return c
        return self._finish(c, sv, sr, paired=True)

    def _finish(
        self, c: Comparison, sv: list[pd.Series], sr: list[pd.Series], paired: bool, seed_var: list | None = None
    ) -> Comparison:
        """Align every run on the problems they all share and bootstrap."""
        common = sv[0].index
        for s in sv[1:] + sr:
            common = common.intersection(s.index)
        most = max(len(s) for s in sv + sr)
        if len(common) == 0:
            c.reason = "the runs share no validation problem"
            return c
        if len(common) < most:
            c.notes.append(f"compared on the {len(common)} problems every run has (of {most})")
        V = np.stack([s.loc[common].to_numpy(np.float64) for s in sv])
        R = np.stack([s.loc[common].to_numpy(np.float64) for s in sr])
        sources = common.get_level_values("source").astype(str).to_numpy()
        if seed_var is not None:  # [per benchmark..., overall]; one benchmark: just the overall
            n_bench = len(set(sources))
            seed_var = None if len(seed_var) != n_bench + 1 else seed_var[-1:] if n_bench == 1 else seed_var
        overall, per = stratified_deltas(
            V, R, sources, paired=paired, n_boot=self.n_boot, level=self.level, seed=self.seed, seed_var=seed_var
        )
        c.delta = overall
        c.by_benchmark = dict(zip(sorted(set(sources)), per, strict=True))
        return c


def _none_trained(label: str, metric: Metric) -> str:
    if metric.kind == "problem":
        return f"no trained run of {label!r} with an evaluation"
    return f"no run of {label!r} logs {metric.key!r} before its judged checkpoint"


def pair_seeds(runs_v: list[Run], runs_r: list[Run]) -> tuple[list[Run], list[Run], bool, str]:
    """(variant runs, reference runs, paired, note): the runs in matching seed order when the
    groups share at least two seeds (or are one run each with the same seed), else all runs
    unpaired. Runs without a known seed, or with a seed twice in a group, are never paired."""

    def by_seed(runs):
        seeds = [r.seed for r in runs]
        if None in seeds or len(set(seeds)) < len(seeds):
            return {}
        return {r.seed: r for r in runs}

    sv, sr = by_seed(runs_v), by_seed(runs_r)
    common = sorted(set(sv) & set(sr))
    single = len(runs_v) == len(runs_r) == 1
    if len(common) >= 2 or (single and common):
        left = [r.name for r in runs_v + runs_r if r.seed not in common]
        note = (
            (
                "paired on seeds " + ", ".join(map(str, common)) + "; left out (seed not in "
                "the other group): " + ", ".join(left)
            )
            if left
            else ""
        )
        return [sv[s] for s in common], [sr[s] for s in common], True, note
    return runs_v, runs_r, False, ""


# --------------------------------------------------------------------------------------------
# the paired-delta table: every label vs base and vs the baseline, per benchmark and overall
# --------------------------------------------------------------------------------------------

PAIRED_COLUMNS = [
    "variant",
    "reference",
    "metric",
    "benchmark",
    "delta",
    "lo",
    "hi",
    "half_width",
    "n_seeds",
    "n_seeds_ref",
    "paired_seeds",
    "n_problems",
    "note",
]


def paired_delta_frame(cmp: Comparer, references=(BASE, "baseline"), metrics=("avg", "pass")) -> pd.DataFrame:
    """Long frame (fractions): one row per (variant, reference, metric, benchmark and 'all')
    for every label with trained runs; comparisons that cannot be made are left out."""
    a = cmp.a
    rows = []
    for ref in references:
        rlab = ref if ref == BASE else cmp.resolve(ref)[0]
        if rlab is None:
            continue
        for lab in a.label_order:
            if lab == rlab or lab in cmp.not_results:
                continue
            for m in metrics:
                c = cmp.compare(lab, rlab, m)
                if c.delta is None:
                    continue
                note = "; ".join(c.notes)
                items = [(b, c.by_benchmark[b]) for b in a.benchmarks if b in c.by_benchmark]
                for bench, d in items + [(ALL, c.delta)]:
                    rows.append(
                        {
                            "variant": lab,
                            "reference": rlab,
                            "metric": c.metric.display(a.K),
                            "benchmark": bench,
                            "delta": d.estimate,
                            "lo": d.lo,
                            "hi": d.hi,
                            "half_width": d.half_width,
                            "n_seeds": d.n_seeds,
                            "n_seeds_ref": d.n_seeds_ref,
                            "paired_seeds": d.paired_seeds,
                            "n_problems": d.n_problems,
                            "note": note,
                        }
                    )
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
