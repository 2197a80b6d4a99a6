"""Pure metric functions: pass@k, micro/macro, bootstrap CIs, maj@k."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from analysis_fixtures import comb_pass_at_k

from analysis.metrics import avg_per_problem, bootstrap_ci, correct_counts, maj_at_k, pass_at_k_matrix, summarize

# ------------------------------------------------------------------------------------------
# pass@k
# ------------------------------------------------------------------------------------------

GOLDEN = [
    # (n, c, k, exact value as a fraction of integers)
    (4, 1, 1, 1 / 4),
    (4, 1, 2, 1 - math.comb(3, 2) / math.comb(4, 2)),  # 0.5
    (4, 2, 3, 1.0),  # n - c < k
    (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),  # 11/12
    (128, 1, 64, 0.5),
    (128, 0, 128, 0.0),
    (128, 5, 16, 1 - math.comb(123, 16) / math.comb(128, 16)),
    (200, 1, 1, 1 / 200),
    (200, 1, 100, 0.5),
    (200, 7, 50, 1 - math.comb(193, 50) / math.comb(200, 50)),
    (200, 100, 10, 1 - math.comb(100, 10) / math.comb(200, 10)),
    (200, 199, 2, 1.0),
    (200, 0, 200, 0.0),
]


@pytest.mark.parametrize("n,c,k,want", GOLDEN)
def test_pass_at_k_golden(n, c, k, want):
    got = pass_at_k_matrix(np.array([n]), np.array([c]), [k])[0, 0]
    assert got == pytest.approx(want, abs=1e-12)
    assert got == pytest.approx(comb_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_matrix_all_k_against_math_comb_n200():
    rng = np.random.default_rng(3)
    n = np.full(40, 200)
    c = rng.integers(0, 201, size=40)
    ks = list(range(1, 201, 7)) + [200]
    got = pass_at_k_matrix(n, c, ks)
    want = np.array([[comb_pass_at_k(200, int(ci), k) for k in ks] for ci in c])
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_pass_at_k_missing_when_k_exceeds_n():
    n = np.array([4, 8, 2])
    c = np.array([1, 0, 2])
    got = pass_at_k_matrix(n, c, [1, 3, 8])
    assert np.isnan(got[2, 1]) and np.isnan(got[0, 2]) and np.isnan(got[2, 2])
    assert got[1, 2] == 0.0  # k == n, nothing correct
    assert got[2, 0] == 1.0
    assert got[0, 1] == pytest.approx(comb_pass_at_k(4, 1, 3))


def test_avg_and_pass1_agree_and_correct_counts():
    scores = np.array([1, 0, 1, 1, 0, 0, 1.0])
    lengths = np.array([3, 0, 4])
    c = correct_counts(scores, lengths)
    assert c.tolist() == [2, 0, 2]
    n = np.array([3, 5, 4])
    np.testing.assert_allclose(avg_per_problem(n, c), [2 / 3, 0, 1 / 2])
    np.testing.assert_allclose(pass_at_k_matrix(n, c, [1])[:, 0], avg_per_problem(n, c))
    # -1/+1 rewards threshold the same way
    assert correct_counts(np.array([-1.0, 1.0, 1.0]), np.array([3])).tolist() == [2]


# ------------------------------------------------------------------------------------------
# micro vs macro
# ------------------------------------------------------------------------------------------


def test_micro_vs_macro_hand_made():
    # benchmark 0: 1 problem at 1.0; benchmark 1: 3 problems at 0, 0, 0.5
    v = np.array([1.0, 0.0, 0.0, 0.5])
    g = np.array([0, 1, 1, 1])
    s = summarize(v, g, 2)
    np.testing.assert_allclose(s["per_group"], [1.0, 1 / 6])
    assert s["micro"] == pytest.approx(1.5 / 4)  # every problem weighs the same
    assert s["macro"] == pytest.approx((1.0 + 1 / 6) / 2)  # every benchmark weighs the same
    assert s["n_problems"].tolist() == [1, 3]


def test_summarize_skips_missing_and_counts_defined():
    v = np.array([[0.5, np.nan], [1.0, 1.0], [0.0, 0.0]])
    g = np.array([0, 0, 1])
    s = summarize(v, g, 2)
    np.testing.assert_allclose(s["per_group"][:, 1], [1.0, 0.0])
    assert s["n_defined"][:, 1].tolist() == [1, 1]
    assert s["micro_defined"].tolist() == [3, 2]
    assert s["micro"][1] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------


def _data(m_per_group, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(len(m_per_group)), m_per_group)
    v = rng.random(g.size)
    return v, g


def test_bootstrap_contains_point_estimate_and_is_seeded():
    v, g = _data([40, 120, 80])
    s = summarize(v, g, 3)
    ci = bootstrap_ci(v, g, 3, n_boot=500, seed=7)
    assert np.all(ci["group_lo"] <= s["per_group"]) and np.all(s["per_group"] <= ci["group_hi"])
    assert ci["micro_lo"] <= s["micro"] <= ci["micro_hi"]
    assert ci["macro_lo"] <= s["macro"] <= ci["macro_hi"]
    assert ci["micro_lo"] < ci["micro_hi"]
    again = bootstrap_ci(v, g, 3, n_boot=500, seed=7)
    for key in ci:
        np.testing.assert_array_equal(np.asarray(ci[key]), np.asarray(again[key]))
    other = bootstrap_ci(v, g, 3, n_boot=500, seed=8)
    assert other["micro_lo"] != ci["micro_lo"] or other["micro_hi"] != ci["micro_hi"]


def test_bootstrap_narrows_with_more_problems():
    small_v, small_g = _data([30])
    big_v, big_g = _data([1200])
    w_small = np.subtract(*reversed([bootstrap_ci(small_v, small_g, 1, 400, 0)[k] for k in ("micro_lo", "micro_hi")]))
    w_big = np.subtract(*reversed([bootstrap_ci(big_v, big_g, 1, 400, 0)[k] for k in ("micro_lo", "micro_hi")]))
    assert w_big < w_small / 3  # ~ sqrt(40) narrower


def test_bootstrap_interval_has_nominal_coverage_roughly():
    # 60 datasets of Bernoulli(0.3) problems: the 90% interval should cover 0.3 most times
    covered = 0
    for s in range(60):
        rng = np.random.default_rng(100 + s)
        v = (rng.random(200) < 0.3).astype(float)
        ci = bootstrap_ci(v, np.zeros(200, int), 1, n_boot=300, seed=s, level=0.9)
        covered += ci["micro_lo"] <= 0.3 <= ci["micro_hi"]
    assert 44 <= covered <= 60  # nominal 54 of 60


def test_bootstrap_matrix_columns_and_missing_values():
    v = np.column_stack([np.linspace(0, 1, 50), np.r_[np.full(10, np.nan), np.linspace(0, 1, 40)]])
    g = np.zeros(50, int)
    ci = bootstrap_ci(v, g, 1, n_boot=200, seed=0)
    assert ci["micro_lo"].shape == (2,)
    assert np.all(np.isfinite(ci["micro_lo"])) and np.all(ci["micro_lo"] < ci["micro_hi"])


# ------------------------------------------------------------------------------------------
# maj@k
# ------------------------------------------------------------------------------------------


def _flat(problems):
    prob, pos, preds, scores, n = [], [], [], [], []
    for i, (ps, ss) in enumerate(problems):
        n.append(len(ps))
        for j, (p, s) in enumerate(zip(ps, ss)):
            prob.append(i)
            pos.append(j)
            preds.append(p)
            scores.append(s)
    return np.array(prob), np.array(pos), np.array(preds, dtype=object), np.array(scores, float), np.array(n)


def test_maj_at_k_hand_made():
    problems = [
        (["4", "4", "5", ""], [1, 1, 0, 0]),  # majority correct
        (["5", "5", "4", "6"], [0, 0, 1, 0]),  # majority wrong
        (["4", "5", "", ""], [1, 0, 0, 0]),  # tie -> half credit
        (["", "", "", ""], [0, 0, 0, 0]),  # nobody answered
        (["1", "1"], [1, 1]),  # n=2 < k=4 -> missing
    ]
    got = maj_at_k(*_flat(problems), k=4)
    np.testing.assert_allclose(got[:4], [1.0, 0.0, 0.5, 0.0])
    assert np.isnan(got[4])
    # k=2: blocks [0:2], [2:4]
    got2 = maj_at_k(*_flat(problems), k=2)
    np.testing.assert_allclose(got2, [(1 + 0) / 2, (0 + 0.5) / 2, (0.5 + 0) / 2, 0.0, 1.0])


def test_maj_at_k_matches_counter_reference():
    rng = np.random.default_rng(5)
    problems = []
    for _ in range(60):
        m = int(rng.integers(1, 12))
        preds = [str(rng.choice(["a", "b", "c", ""])) for _ in range(m)]
        problems.append((preds, [1.0 if p == "a" else 0.0 for p in preds]))
    for k in (1, 2, 3, 8):
        got = maj_at_k(*_flat(problems), k=k)
        for i, (ps, _ss) in enumerate(problems):
            nb = len(ps) // k
            if nb == 0:
                assert np.isnan(got[i])
                continue
            tot = 0.0
            for b in range(nb):
                votes = Counter(p for p in ps[b * k : (b + 1) * k] if p)
                if votes:
                    top = max(votes.values())
                    winners = [a for a, cnt in votes.items() if cnt == top]
                    tot += sum(a == "a" for a in winners) / len(winners)
            assert got[i] == pytest.approx(tot / nb)
