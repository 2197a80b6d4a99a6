"""Differences between two groups of runs, with confidence intervals, and claim verdicts.

Pure numpy (and the standard library; the t quantile is :mod:`dars.student_t`); used by
``analysis/`` (claims and paired-delta tables) and by a run's own final table (final checkpoint
vs its step-0 evaluation).

Data layout
-----------
A *group* is the runs of one configuration that differ only in their seed. For per-problem
metrics a group is a float array ``[S, P]``: row ``s`` is seed ``s``, column ``j`` problem ``j``
(the per-problem Avg@K ``c/n``, or the unbiased Pass@k estimate). Both groups of a comparison
hold the same problems in the same columns. For per-run metrics (mean entropy, rollouts per
prompt) a group is an array ``[S]``.

Estimate
--------
Δ = mean(variant) − mean(reference), each mean over seeds and problems. **Missing values**
(NaN, e.g. Pass@k of a problem with fewer than k samples) are left out, never read as 0 or 1:
in a paired comparison a cell (seed, problem) counts only when both groups have it, and the
estimate is the mean over the counted cells; in an unpaired one each group averages over its own
defined cells, and problems that one group lacks entirely are dropped from both.

Interval
--------
Replicates come from a two-level (hierarchical) bootstrap: each replicate draws seeds with
replacement, then problems with replacement (optionally within strata, e.g. benchmarks, whose
sizes are fixed by design). Problems are drawn once per replicate for both groups, so they stay
paired; seeds are drawn once for both groups when they are paired (row ``s`` of both is the
same seed), else independently per group.

With the 2-5 seeds RLVR sweeps can afford, the plain percentile interval of those replicates
under-covers badly when seed-to-seed variation matters (tests/test_stats.py measures about 80 %
for a nominal 95 % at S = 3): resampling S seeds sees only ``(S-1)/S`` of their variance, and
the spread of 3 values is itself very uncertain. The default interval (``method="t"``) fixes
both in the classical way:

* ``se² = var(replicates) + Σ_groups v_seed/(S-1)``, where ``v_seed`` is the exact seed-level
  bootstrap variance of the group mean; this lifts the seed part from ``(S-1)/S`` to the
  unbiased variance of a mean of S values (the problem part is left as the bootstrap sees it);
* ``Δ ± t_ν · se`` with Welch-Satterthwaite degrees of freedom ``ν`` combining the seed part
  (``S-1`` degrees of freedom per group) and the problem part (``P-1``): with seed variation
  dominating this is the t interval over seeds (t₂ = 4.30 for 3 seeds), with negligible seed
  variation (or one seed) it is the problem bootstrap's normal interval.

**Seeds as blocks (pooled seed variance).** A sweep runs every variant with the same seeds, a
randomised complete block design: run (g, s) = μ_g + β_s + ε_gs. With 3 seeds a comparison's
own seed variance has 2 degrees of freedom (t₂ = 4.30), although every group of the sweep
measured the same run-to-run noise ε. :func:`block_residual_variance` pools it: the residual
mean square of the additive two-way model over all G groups that share the seeds, with
(G−1)(S−1) degrees of freedom (12 for 7 groups x 3 seeds, t₁₂ = 2.18). Passing it as
``seed_var`` replaces the comparison's own seed part by σ²_ε·(2/S) (paired seeds; seed effects
β_s cancel) or σ²_ε·(1/S_v + 1/S_r) (unpaired), with those degrees of freedom; the problem part
stays the bootstrap's. The assumption is the usual one of the pooled t test: the groups' run-to-
run noise is alike. tests/test_stats.py measures the coverage when it holds.

With one seed (S = 1) it reduces to a paired problem bootstrap; seed-to-seed variation cannot
be estimated then and is not in the interval. Per-run metrics have no problems: their interval
is the t (Welch) interval over seeds and needs at least 2 seeds in every group (else NaN).

Verdicts
--------
:func:`verdict` says whether an interval lies entirely on a claim's side of 0 (``holds``),
entirely on the other side (``contradicted``) or neither (``inconclusive``); ``not run`` when
the comparison could not be made. Nothing here knows which way any claim is expected to go.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dars.student_t import t_quantile

__all__ = [
    "block_residual_variance",
    "CONTRADICTED",
    "DIRECTIONS",
    "HOLDS",
    "INCONCLUSIVE",
    "METHODS",
    "NOT_RUN",
    "Delta",
    "combine_verdicts",
    "paired_delta",
    "scalar_delta",
    "stratified_deltas",
    "unpaired_delta",
    "verdict",
]

HOLDS = "holds"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
DIRECTIONS = ("greater", "less")
METHODS = ("t", "percentile")


@dataclass(frozen=True)
class Delta:
    """A difference variant − reference with its confidence interval ``[lo, hi]``.

    ``n_seeds`` / ``n_seeds_ref``: seeds of the variant / reference group that entered (equal
    when ``paired_seeds``); ``n_problems``: problems that entered (0 for per-run metrics);
    ``se`` and ``df``: standard error and degrees of freedom of the ``t`` interval."""

    estimate: float
    lo: float
    hi: float
    n_seeds: int
    n_problems: int
    paired_seeds: bool
    n_seeds_ref: int = 0
    se: float = math.nan
    df: float = math.nan
    method: str = "t"
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


# --------------------------------------------------------------------------------------------
# seeds as blocks: the sweep's pooled run-to-run variance
# --------------------------------------------------------------------------------------------


def block_residual_variance(table) -> tuple[float, float]:
    """(σ²_ε, degrees of freedom) of a randomised complete block design: ``table[g, s]`` is one
    value per group g and seed s (every group run with the same seeds). Fits the additive
    model μ + group + seed and returns the residual mean square SS_ε / ((G−1)(S−1)); NaN (and
    0 degrees of freedom) when the table is smaller than 2 x 2 or has a missing cell."""
    y = np.asarray(table, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < 2 or not np.isfinite(y).all():
        return math.nan, 0.0
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df = (y.shape[0] - 1) * (y.shape[1] - 1)
    return float((resid**2).sum() / df), float(df)


# --------------------------------------------------------------------------------------------
# the bootstrap engine
# --------------------------------------------------------------------------------------------


def _draw_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """[n_boot, n] float: how often each of n items is drawn in each replicate (n draws)."""
    draws = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape [seeds, problems], got {x.shape}")
    return x


def _check(n_boot: int, level: float, method: str) -> None:
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class _Arm:
    """One group's term of Δ (sign +1 or −1): its values with missing cells zeroed, the mask of
    defined cells, and the seeds that have any defined cell."""

    def __init__(self, x: np.ndarray, sign: float):
        defined = np.isfinite(x)
        keep = defined.any(axis=1)
        self.x = np.where(defined, x, 0.0)[keep]
        self.m = defined[keep].astype(np.float64)
        self.sign = sign
        self.S = int(keep.sum())


def _interval(est, reps, seed_terms, n_problems, level, method, problem_level, pooled=None):
    """(lo, hi, se, df) from replicates and the per-group seed terms [(v_seed, S), ...];
    ``pooled = (variance of Δ's seed part, its degrees of freedom)`` replaces those terms' seed
    part (seeds as blocks, see the module docstring)."""
    if not np.isfinite(est):
        return math.nan, math.nan, math.nan, math.nan
    good = reps[np.isfinite(reps)]
    if good.size < max(2, reps.size // 2):
        return math.nan, math.nan, math.nan, math.nan
    if method == "percentile":
        lo, hi = np.percentile(good, [50 * (1 - level), 50 * (1 + level)])
        return float(lo), float(hi), float(good.std(ddof=1)), math.nan
    if pooled is not None:
        seed_parts = [pooled]
    elif not problem_level and any(S < 2 for _v, S in seed_terms):
        return math.nan, math.nan, math.nan, math.nan  # per-run metric: no spread estimable
    else:
        seed_parts = [(v * S / (S - 1), S - 1) for v, S in seed_terms if S >= 2]
    a = sum(p for p, _ in seed_parts)
    if problem_level:
        # the replicates' variance is the bootstrap's seed part (sum of v_seed) plus its
        # problem part b; the seed part is then replaced by the corrected (or pooled) one
        b = max(float(good.var(ddof=1)) - sum(v for v, S in seed_terms if S >= 2), 0.0)
        var = a + b
    else:  # no problems: the exact t / Welch variance, no Monte Carlo noise
        var, b = a, 0.0
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        return float(est), float(est), 0.0, math.inf
    denom = sum(p * p / d for p, d in seed_parts)
    if b > 0:
        denom += b * b / max(n_problems - 1, 1)
    df = (a + b) ** 2 / denom if denom > 0 else math.inf
    half = t_quantile(0.5 * (1 + level), df) * se
    return float(est - half), float(est + half), se, float(df)


def _engine(
    arms: list[_Arm],
    strata: np.ndarray,
    n_strata: int,
    paired: bool,
    n_boot: int,
    level: float,
    seed: int,
    method: str,
    problem_level: bool,
    seed_var=None,
) -> tuple[Delta, list[Delta]]:
    """Δ overall and per stratum from one set of bootstrap draws. ``seed_var``: pooled
    (σ²_ε, df) per stratum and then overall (a list of n_strata + 1, or of 1 with one stratum;
    None entries keep the comparison's own seed variance)."""
    rng = np.random.default_rng(seed)
    # seeds first (one arm holding the paired differences, or one draw per unpaired group),
    # then problems within each stratum, one draw shared by every arm and seed
    W = [_draw_counts(rng, n_boot, arm.S) if arm.S else np.zeros((n_boot, 0)) for arm in arms]
    groups = [np.flatnonzero(strata == g) for g in range(n_strata)]
    tot = [[np.zeros(n_boot), np.zeros(n_boot)] for _ in arms]  # per arm: replicate num, den
    out: list[Delta] = []
    full_cols: list[np.ndarray] = []
    pooled_list = list(seed_var) if seed_var is not None else []
    # one stratum: the overall is that stratum (no second pass)
    for pos, cols in enumerate([*groups, None] if n_strata != 1 else groups):
        if cols is None:  # overall: the sum over strata (micro: every problem weighs the same)
            cols = np.concatenate(full_cols) if full_cols else np.zeros(0, dtype=np.int64)
            reps_num = tot
        else:
            ok = np.ones(cols.size, dtype=bool)
            for arm in arms:  # a problem one group lacks entirely is dropped from both
                ok &= arm.m[:, cols].any(axis=0)
            cols = cols[ok]
            full_cols.append(cols)
            U = _draw_counts(rng, n_boot, cols.size) if (problem_level and cols.size) else np.ones((n_boot, cols.size))
            reps_num = []
            for i, arm in enumerate(arms):
                num = (W[i] * (U @ arm.x[:, cols].T)).sum(1)
                den = (W[i] * (U @ arm.m[:, cols].T)).sum(1)
                tot[i][0] += num
                tot[i][1] += den
                reps_num.append([num, den])
        est = 0.0
        reps = np.zeros(n_boot)
        seed_terms = []
        for arm, (num, den) in zip(arms, reps_num, strict=True):
            n_s, c_s = arm.x[:, cols].sum(1), arm.m[:, cols].sum(1)
            C = c_s.sum()
            mean = n_s.sum() / C if C > 0 else math.nan
            est += arm.sign * mean
            with np.errstate(invalid="ignore", divide="ignore"):
                reps = reps + arm.sign * (num / den)
            # exact seed-level bootstrap variance of the ratio mean (linearised; exact without
            # missing cells): sum_s (n_s - mean c_s)^2 / C^2
            S_eff = int((c_s > 0).sum())
            v_seed = float(((n_s - mean * c_s) ** 2).sum() / C**2) if C > 0 else math.nan
            seed_terms.append((v_seed, S_eff))
        pooled = pooled_list[pos] if pos < len(pooled_list) else None
        if pooled is not None and np.isfinite(pooled[0]) and pooled[1] > 0:
            # Var of Δ's seed part under the block model: σ²·(2/S) paired, σ²·Σ 1/S unpaired
            scale = 2.0 / seed_terms[0][1] if paired else sum(1.0 / S for _v, S in seed_terms)
            pooled = (pooled[0] * scale, pooled[1])
        else:
            pooled = None
        lo, hi, se, df = _interval(est, reps, seed_terms, cols.size, level, method, problem_level, pooled)
        S_v = seed_terms[0][1]
        S_r = seed_terms[-1][1]
        out.append(
            Delta(float(est), lo, hi, S_v, int(cols.size) if problem_level else 0, paired, S_r, se, df, method, level)
        )
    return (out[0], out) if n_strata == 1 else (out[-1], out[:-1])


def _strata(strata, P: int) -> tuple[np.ndarray, int]:
    if strata is None:
        return np.zeros(P, dtype=np.int64), 1
    codes = np.asarray(strata)
    if codes.shape != (P,):
        raise ValueError(f"strata must have one entry per problem ({P}), got {codes.shape}")
    _, codes = np.unique(codes, return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1 if P else 0


def stratified_deltas(
    variant,
    reference,
    strata=None,
    *,
    paired: bool,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "t",
    seed_var=None,
) -> tuple[Delta, list[Delta]]:
    """Δ overall and within each stratum (e.g. benchmark), from one set of bootstrap draws.

    ``variant`` [Sv, P] and ``reference`` [Sr, P] (Sv = Sr when ``paired``); ``strata``: one
    label per problem (problems are resampled within their stratum; the per-stratum list follows
    the sorted distinct labels). Overall = every problem weighs the same (micro).
    ``seed_var``: the sweep's pooled run-to-run variance (:func:`block_residual_variance`) as
    ``[(σ², df) per stratum in that order..., (σ², df) overall]`` (one entry without strata);
    None keeps each comparison's own seed variance."""
    _check(n_boot, level, method)
    v, r = _as_2d(variant, "variant"), _as_2d(reference, "reference")
    if v.shape[1] != r.shape[1]:
        raise ValueError(f"variant and reference disagree on the problems: {v.shape} vs {r.shape}")
    codes, G = _strata(strata, v.shape[1])
    if paired:
        if v.shape != r.shape:
            raise ValueError(f"paired seeds need equal shapes, got {v.shape} and {r.shape}")
        arms = [_Arm(v - r, 1.0)]  # NaN where either is missing
    else:
        arms = [_Arm(v, 1.0), _Arm(r, -1.0)]
    return _engine(arms, codes, G, paired, n_boot, level, seed, method, problem_level=True, seed_var=seed_var)


def paired_delta(
    variant, reference, *, strata=None, n_boot: int = 2000, level: float = 0.95, seed: int = 0, method: str = "t"
) -> Delta:
    """Δ of two groups on the same problems with paired seeds (row s of both = seed s).

    Both arrays are [S, P]. Each bootstrap replicate draws seeds, then problems (within
    ``strata`` when given), the same draws for both groups. With S = 1 this is a paired
    problem bootstrap (a run's final checkpoint against its own step 0)."""
    return stratified_deltas(
        variant, reference, strata, paired=True, n_boot=n_boot, level=level, seed=seed, method=method
    )[0]


def unpaired_delta(
    variant, reference, *, strata=None, n_boot: int = 2000, level: float = 0.95, seed: int = 0, method: str = "t"
) -> Delta:
    """Δ of two groups on the same problems whose seeds do not match: [Sv, P] and [Sr, P].
    Each group's seeds are resampled independently, problems jointly."""
    return stratified_deltas(
        variant, reference, strata, paired=False, n_boot=n_boot, level=level, seed=seed, method=method
    )[0]


def scalar_delta(
    variant: Sequence[float],
    reference: Sequence[float],
    *,
    paired: bool,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "t",
    seed_var: tuple[float, float] | None = None,
) -> Delta:
    """Δ of a per-run quantity (one value per seed: [Sv] and [Sr]; equal lengths and the same
    seed order when ``paired``). The bootstrap resamples seeds only; the ``t`` interval is the
    paired t / Welch interval and needs >= 2 seeds per group (else lo = hi = NaN)."""
    _check(n_boot, level, method)
    v = np.asarray(variant, dtype=np.float64).reshape(-1, 1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1, 1)
    if paired:
        if v.shape != r.shape:
            raise ValueError(f"paired seeds need equal lengths, got {len(v)} and {len(r)}")
        arms = [_Arm(v - r, 1.0)]
    else:
        arms = [_Arm(v, 1.0), _Arm(r, -1.0)]
    return _engine(
        arms,
        np.zeros(1, dtype=np.int64),
        1,
        paired,
        n_boot,
        level,
        seed,
        method,
        problem_level=False,
        seed_var=[seed_var] if seed_var is not None else None,
    )[0]


# --------------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------------


def verdict(delta: Delta | None, direction: str) -> str:
    """``holds`` when the whole interval is on the claimed side of 0 (``greater``: lo > 0,
    ``less``: hi < 0), ``contradicted`` when it is wholly on the other side, ``inconclusive``
    otherwise (including no interval); ``not run`` when there is no comparison (None)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if delta is None:
        return NOT_RUN
    lo, hi = delta.lo, delta.hi
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    above, below = lo > 0, hi < 0
    if direction == "greater":
        return HOLDS if above else CONTRADICTED if below else INCONCLUSIVE
    return HOLDS if below else CONTRADICTED if above else INCONCLUSIVE


def combine_verdicts(verdicts: Iterable[str]) -> str:
    """One verdict for a claim made of several comparisons (all must hold): ``contradicted``
    if any is, ``holds`` if all are, ``not run`` if none was run, else ``inconclusive``."""
    vs = list(verdicts)
    if not vs or all(v == NOT_RUN for v in vs):
        return NOT_RUN
    if CONTRADICTED in vs:
        return CONTRADICTED
    if all(v == HOLDS for v in vs):
        return HOLDS
    return INCONCLUSIVE
