"""dars.stats: paired differences, the hierarchical bootstrap's coverage, and verdict logic.

The coverage tests simulate a hierarchical world close to an RLVR sweep: per-problem true
accuracies from a wide spread (logit-normal), a per-problem treatment effect, a per-seed random
effect on a run's accuracy plus seed-by-problem noise, and binomial sampling of n_val samples
per problem; the true Δ is the population value (over problems and seeds), planted positive,
negative and zero. Coverage must be >= 90 % for the nominal 95 % interval.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from dars.stats import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    NOT_RUN,
    Delta,
    block_residual_variance,
    combine_verdicts,
    paired_delta,
    scalar_delta,
    stratified_deltas,
    unpaired_delta,
    verdict,
)
from dars.student_t import t_quantile

# --------------------------------------------------------------------------------------------
# the t quantile (no scipy)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "df,want", [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (10, 2.2281389), (30, 2.0422725), (1000, 1.9623391)]
)
def test_t_quantile_table_values(df, want):
    assert t_quantile(0.975, df) == pytest.approx(want, abs=2e-7)
    assert t_quantile(0.025, df) == pytest.approx(-want, abs=2e-7)


def test_t_quantile_fractional_df_and_normal_limit():
    # monotone in df between the integer values, normal at infinity
    assert t_quantile(0.975, 2) > t_quantile(0.975, 2.5) > t_quantile(0.975, 3)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert t_quantile(0.5, 4) == 0.0
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


# --------------------------------------------------------------------------------------------
# estimates
# --------------------------------------------------------------------------------------------


def test_planted_constant_delta_is_exact():
    rng = np.random.default_rng(0)
    ref = rng.random((3, 200))
    for d in (0.07, -0.05):
        got = paired_delta(ref + d, ref, n_boot=200)
        assert got.estimate == pytest.approx(d, abs=1e-12)
        assert got.lo == pytest.approx(d, abs=1e-9) and got.hi == pytest.approx(d, abs=1e-9)
        assert got.n_seeds == 3 and got.n_problems == 200 and got.paired_seeds
        assert verdict(got, "greater") == (HOLDS if d > 0 else CONTRADICTED)
    same = paired_delta(ref, ref, n_boot=200)
    assert same.estimate == 0 and same.lo == 0 and same.hi == 0
    assert verdict(same, "greater") == INCONCLUSIVE == verdict(same, "less")


def test_estimates_are_the_plain_means_and_intervals_contain_them():
    rng = np.random.default_rng(1)
    v, r = rng.random((3, 300)), rng.random((3, 300))
    p = paired_delta(v, r, n_boot=300)
    assert p.estimate == pytest.approx((v - r).mean())
    assert p.lo < p.estimate < p.hi and p.half_width == pytest.approx((p.hi - p.lo) / 2)
    u = unpaired_delta(v, r[:2], n_boot=300)
    assert u.estimate == pytest.approx(v.mean() - r[:2].mean())
    assert (u.n_seeds, u.n_seeds_ref, u.paired_seeds) == (3, 2, False)
    # deterministic for a seed, different draws for another
    assert paired_delta(v, r, n_boot=300, seed=5) == paired_delta(v, r, n_boot=300, seed=5)
    assert paired_delta(v, r, n_boot=300, seed=6).lo != paired_delta(v, r, n_boot=300, seed=5).lo


def test_missing_values_are_left_out_not_zero():
    v = np.array([[1.0, 0.5, np.nan, 0.0], [1.0, np.nan, 0.25, 0.0]])
    r = np.array([[0.5, 0.5, 0.5, np.nan], [0.5, 0.5, 0.5, np.nan]])
    p = paired_delta(v, r, n_boot=200)
    cells = [1.0 - 0.5, 0.5 - 0.5, 1.0 - 0.5, 0.25 - 0.5]  # cells defined in both
    assert p.estimate == pytest.approx(np.mean(cells))
    assert p.n_problems == 3  # problem 3 has no reference value at all
    u = unpaired_delta(v, r, n_boot=200)  # problem 3 dropped from both groups
    assert u.estimate == pytest.approx(np.mean([1, 0.5, 1, 0.25]) - 0.5)
    assert u.n_problems == 3
    empty = paired_delta(np.full((2, 3), np.nan), np.zeros((2, 3)), n_boot=50)
    assert math.isnan(empty.estimate) and empty.n_problems == 0
    assert verdict(empty, "greater") == INCONCLUSIVE


def test_strata_give_per_benchmark_and_micro_overall():
    rng = np.random.default_rng(2)
    strata = np.array(["aime"] * 30 + ["math"] * 120)
    v, r = rng.random((3, 150)), rng.random((3, 150))
    overall, per = stratified_deltas(v, r, strata, paired=True, n_boot=300)
    assert [d.n_problems for d in per] == [30, 120]
    assert per[0].estimate == pytest.approx((v - r)[:, :30].mean())
    assert per[1].estimate == pytest.approx((v - r)[:, 30:].mean())
    assert overall.estimate == pytest.approx((v - r).mean())  # micro: every problem the same
    assert per[0].half_width > per[1].half_width > overall.half_width * 0.99


def test_one_seed_is_a_paired_problem_bootstrap():
    rng = np.random.default_rng(3)
    d = rng.normal(0.02, 0.2, size=(1, 400))
    base = rng.random((1, 400))
    got = paired_delta(base + d, base, n_boot=4000, method="percentile", seed=1)
    boots = np.array([d[0, rng.integers(0, 400, 400)].mean() for _ in range(4000)])
    lo, hi = np.percentile(boots, [2.5, 97.5])
    assert got.lo == pytest.approx(lo, abs=0.004) and got.hi == pytest.approx(hi, abs=0.004)
    t = paired_delta(base + d, base, n_boot=4000, seed=1)  # normal interval, P-1 df
    se = d.std(ddof=1) / math.sqrt(400)
    assert t.df == pytest.approx(399)
    assert t.half_width == pytest.approx(t_quantile(0.975, 399) * se, rel=0.06)


def test_shapes_are_checked():
    with pytest.raises(ValueError):
        paired_delta(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        unpaired_delta(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError):
        paired_delta(np.zeros((3, 4)), np.zeros((3, 4)), method="bca")


def test_fast_enough():
    rng = np.random.default_rng(4)
    v, r = rng.random((3, 1000)), rng.random((3, 1000))
    t0 = time.perf_counter()
    paired_delta(v, r, n_boot=2000)
    unpaired_delta(v, r, n_boot=2000)
    assert time.perf_counter() - t0 < 1.0


# --------------------------------------------------------------------------------------------
# per-run (scalar) quantities
# --------------------------------------------------------------------------------------------


def test_scalar_delta_is_the_paired_t_and_welch_interval():
    v, r = np.array([1.0, 2.0, 3.5]), np.array([0.2, 0.9, 1.1])
    p = scalar_delta(v, r, paired=True, n_boot=500)
    d = v - r
    half = t_quantile(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert p.estimate == pytest.approx(d.mean())
    assert (p.lo, p.hi) == pytest.approx((d.mean() - half, d.mean() + half))
    assert p.n_problems == 0 and p.df == pytest.approx(2)
    u = scalar_delta(v, r[:2], paired=False, n_boot=500)
    a, b = v.var(ddof=1) / 3, r[:2].var(ddof=1) / 2
    df = (a + b) ** 2 / (a * a / 2 + b * b / 1)
    assert u.df == pytest.approx(df)
    assert u.half_width == pytest.approx(t_quantile(0.975, df) * math.sqrt(a + b))
    # one seed: no spread over seeds, no interval, never a verdict either way
    one = scalar_delta([5.0], [1.0], paired=True)
    assert one.estimate == 4.0 and math.isnan(one.lo) and verdict(one, "greater") == INCONCLUSIVE
    assert math.isnan(scalar_delta([5.0, 6.0], [1.0], paired=False).lo)


# --------------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------------


def _d(lo, hi):
    return Delta((lo + hi) / 2, lo, hi, 3, 100, True)


def test_verdict_logic():
    assert verdict(_d(0.01, 0.05), "greater") == HOLDS
    assert verdict(_d(0.01, 0.05), "less") == CONTRADICTED
    assert verdict(_d(-0.05, -0.01), "less") == HOLDS
    assert verdict(_d(-0.05, -0.01), "greater") == CONTRADICTED
    assert verdict(_d(-0.01, 0.05), "greater") == INCONCLUSIVE
    assert verdict(_d(-0.01, 0.05), "less") == INCONCLUSIVE
    assert verdict(_d(0.0, 0.05), "greater") == INCONCLUSIVE  # touching 0 is not "entirely"
    assert verdict(_d(float("nan"), float("nan")), "greater") == INCONCLUSIVE
    assert verdict(None, "greater") == NOT_RUN
    with pytest.raises(ValueError):
        verdict(_d(0.1, 0.2), "bigger")


def test_combine_verdicts():
    assert combine_verdicts([HOLDS, HOLDS]) == HOLDS
    assert combine_verdicts([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine_verdicts([HOLDS, CONTRADICTED, INCONCLUSIVE]) == CONTRADICTED
    assert combine_verdicts([HOLDS, NOT_RUN]) == INCONCLUSIVE
    assert combine_verdicts([NOT_RUN, NOT_RUN]) == NOT_RUN
    assert combine_verdicts([]) == NOT_RUN


# --------------------------------------------------------------------------------------------
# coverage of the 95 % interval in a simulated hierarchical world
# --------------------------------------------------------------------------------------------

N_VAL = 16
MU, SPREAD, EFFECT_SD, OMEGA = -0.3, 1.5, 0.4, 0.3  # logit scale


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _world(rng, S, P, shift, tau, ref):
    """Correct-sample counts [S, P] of a variant and a reference (``base``: the untrained model
    on the same problems; ``trained``: runs with their own seed effects)."""
    theta = rng.normal(MU, SPREAD, P)
    eff = rng.normal(shift, EFFECT_SD, P)
    pv = _sig(theta + eff + rng.normal(0, tau, (S, 1)) + rng.normal(0, OMEGA, (S, P)))
    if ref == "base":
        pr = np.broadcast_to(_sig(theta), (S, P))
    else:
        pr = _sig(theta + rng.normal(0, tau, (S, 1)) + rng.normal(0, OMEGA, (S, P)))
    return rng.binomial(N_VAL, pv), rng.binomial(N_VAL, pr)


def _truth(shift, tau, ref, n=1_000_000):
    """Population Δ Avg and Δ Pass@n_val (Monte Carlo over problems and seeds)."""
    if ref == "trained" and shift == 0:
        return 0.0, 0.0  # identical distributions: exactly zero
    rng = np.random.default_rng(123)
    theta = rng.normal(MU, SPREAD, n)
    pv = _sig(theta + rng.normal(shift, EFFECT_SD, n) + rng.normal(0, tau, n) + rng.normal(0, OMEGA, n))
    pr = _sig(theta) if ref == "base" else _sig(theta + rng.normal(0, tau, n) + rng.normal(0, OMEGA, n))
    pass_v, pass_r = 1 - (1 - pv) ** N_VAL, 1 - (1 - pr) ** N_VAL
    return float((pv - pr).mean()), float((pass_v - pass_r).mean())


def _coverage(S, P, shift, tau, ref, paired, reps, method="t", n_boot=200, seed=0):
    truth = _truth(shift, tau, ref)
    rng = np.random.default_rng(seed)
    hits = np.zeros(2)
    est = np.zeros(2)
    fn = paired_delta if paired else unpaired_delta
    for i in range(reps):
        cv, cr = _world(rng, S, P, shift, tau, ref)
        for j, (v, r) in enumerate(((cv / N_VAL, cr / N_VAL), ((cv > 0) * 1.0, (cr > 0) * 1.0))):
            d = fn(v, r, n_boot=n_boot, seed=i, method=method)
            hits[j] += d.lo <= truth[j] <= d.hi
            est[j] += d.estimate
    return hits / reps, est / reps, truth


# (S, seed effect sd on the logit, reference, paired seeds, planted logit shift)
SCENARIOS = [
    (3, 0.15, "base", True, 0.3),  # a trained group vs its own step 0 (C1-like), positive
    (3, 0.15, "trained", False, -0.3),  # two trained groups, seeds not matched, negative
    (3, 0.15, "trained", True, 0.0),  # two trained groups, paired seeds, zero
    (1, 0.0, "base", True, 0.3),  # one run vs its step 0 (the run's final table)
    (1, 0.0, "trained", True, -0.3),
    (1, 0.0, "trained", True, 0.0),
]


@pytest.mark.parametrize("S,tau,ref,paired,shift", SCENARIOS)
def test_interval_covers_the_planted_delta(S, tau, ref, paired, shift):
    cov, mean_est, truth = _coverage(S, 200, shift, tau, ref, paired, reps=300)
    print(
        f"S={S} ref={ref} paired={paired} shift={shift:+.1f}: true Δ avg {truth[0]:+.4f} "
        f"pass {truth[1]:+.4f}; coverage avg {cov[0]:.3f} pass {cov[1]:.3f}"
    )
    assert (cov >= 0.90).all(), cov
    # the estimate is unbiased for the planted Δ (mean over replicates; generous tolerance)
    assert mean_est[0] == pytest.approx(truth[0], abs=0.006)
    assert mean_est[1] == pytest.approx(truth[1], abs=0.006)
    if shift:
        assert np.sign(truth[0]) == np.sign(shift)


def test_plain_percentile_under_covers_with_three_seeds():
    """Why the default is the corrected t interval: with 3 seeds and seed-to-seed variation
    that matters, the percentile interval of the same replicates covers far less than 95 %."""
    args = {"S": 3, "P": 200, "shift": 0.3, "tau": 0.25, "ref": "trained", "paired": True, "reps": 300}
    pct, _, _ = _coverage(method="percentile", **args)
    t, _, _ = _coverage(method="t", **args)
    print(f"S=3 seed-dominated: coverage avg percentile {pct[0]:.3f}, t {t[0]:.3f}")
    assert t[0] >= 0.90 and pct[0] < t[0] - 0.05


# --------------------------------------------------------------------------------------------
# seeds as blocks: the run-to-run variance pooled over a sweep's groups
# --------------------------------------------------------------------------------------------


def test_block_residual_variance_is_the_two_way_anova_residual():
    rng = np.random.default_rng(0)
    group, seed = rng.normal(0, 5, (7, 1)), rng.normal(0, 5, (1, 3))
    noise = rng.normal(0, 1.0, (7, 3))
    var, df = block_residual_variance(group + seed + noise)
    assert df == 12
    # group and seed effects cancel exactly: the same as the residuals of the noise alone
    assert var == pytest.approx(block_residual_variance(noise)[0])
    assert var == pytest.approx(((noise - noise.mean(1, keepdims=True) - noise.mean(0) + noise.mean()) ** 2).sum() / 12)
    assert math.isnan(block_residual_variance(np.ones((1, 3)))[0])
    assert math.isnan(block_residual_variance([[1.0, np.nan], [2.0, 3.0]])[0])


def _sweep(rng, G, S, P, shift, tau, beta):
    """Per-problem Avg [G, S, P] of a sweep: group 1 carries the planted logit shift, every run
    its own seed effect (sd tau, alike in all groups) and each seed a block effect shared by
    the groups (sd beta: the validation draws every group of a seed shares)."""
    theta = rng.normal(MU, SPREAD, P)
    eff = np.zeros((G, 1, P))
    eff[1] = rng.normal(shift, EFFECT_SD, P)
    logit = (
        theta + eff + rng.normal(0, tau, (G, S, 1)) + rng.normal(0, beta, (1, S, 1)) + rng.normal(0, OMEGA, (G, S, P))
    )
    return rng.binomial(N_VAL, _sig(logit)) / N_VAL


@pytest.mark.parametrize("shift", [0.3, 0.0])
def test_pooled_seed_variance_covers_and_is_narrower(shift):
    G, S, P, tau, beta, reps = 7, 3, 200, 0.15, 0.1, 300
    rng = np.random.default_rng(1)
    hits = {"pooled": 0, "own": 0}
    width = {"pooled": 0.0, "own": 0.0}
    if shift:  # population Δ of group 1 vs 0 (Monte Carlo), else exactly 0
        r = np.random.default_rng(9)
        n = 1_000_000
        th, block = r.normal(MU, SPREAD, n), r.normal(0, beta, n)  # the block effect is shared
        truth = float(
            (
                _sig(th + block + r.normal(shift, EFFECT_SD, n) + r.normal(0, tau, n) + r.normal(0, OMEGA, n))
                - _sig(th + block + r.normal(0, tau, n) + r.normal(0, OMEGA, n))
            ).mean()
        )
    else:
        truth = 0.0
    for i in range(reps):
        y = _sweep(rng, G, S, P, shift, tau, beta)
        pooled = block_residual_variance(y.mean(2))
        for how, sv in (("pooled", [pooled]), ("own", None)):
            d = stratified_deltas(y[1], y[0], paired=True, n_boot=200, seed=i, seed_var=sv)[0]
            hits[how] += d.lo <= truth <= d.hi
            width[how] += d.half_width / reps
    cov = {k: v / reps for k, v in hits.items()}
    print(f"shift {shift}: coverage {cov}, mean half-width {width}")
    assert cov["pooled"] >= 0.90 and cov["own"] >= 0.90
    assert width["pooled"] < 0.8 * width["own"]  # 12 degrees of freedom instead of 2
