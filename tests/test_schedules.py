"""Stage-2 schedules against docs/algorithm.md §3.3 and their closed forms."""

import math

import numpy as np
import pytest

from dars.schedules import SCHEDULES, extra_rollouts, extra_rollouts_batch


def test_golden_n8():
    assert [extra_rollouts(c / 8, 8, 32, "et") for c in range(9)] == [24, 11, 3, 1, 0, 0, 0, 0, 0]
    assert [extra_rollouts(c / 8, 8, 64, "hw") for c in range(9)] == [56, 24, 8, 3, 0, 0, 0, 0, 0]


def test_golden_std_variants():
    assert [extra_rollouts(c / 8, 8, 32, "et", use_std=True) for c in range(5)] == [9, 5, 2, 1, 0]
    assert [extra_rollouts(c / 8, 8, 64, "hw", use_std=True) for c in range(5)] == [23, 14, 6, 3, 0]


def test_golden_llama_n16():
    assert [extra_rollouts(c / 16, 16, 32, "et") for c in range(9)] == [16, 16, 16, 11, 6, 3, 2, 1, 0]
    assert [extra_rollouts(c / 16, 16, 64, "hw") for c in range(9)] == [48, 48, 48, 27, 16, 10, 6, 3, 0]


def test_pre_august_tables():
    assert [extra_rollouts(c / 8, 8, 32, "et_table") for c in range(6)] == [24, 10, 3, 1, 0, 0]
    assert [extra_rollouts(c / 8, 8, 64, "hw_table") for c in range(6)] == [40, 16, 4, 1, 0, 0]


def closed_form(p, n, n_max, kind, use_std):
    """Independent statement of the rule in docs/algorithm.md §3.3 (closed forms)."""
    if p <= 1e-6:
        p = 0.5 / n
    if p >= 0.5:
        return 0
    if not use_std:
        raw = n / (4 * p * (1 - p)) - n if kind == "et" else n / (2 * p) - n
    else:
        raw = n / (2 * math.sqrt(p * (1 - p))) - n if kind == "et" else n * (math.sqrt((1 - p) / p) - 1)
    return min(math.ceil(raw - 1e-9), n_max - n)


@pytest.mark.parametrize("n", [4, 6, 8, 12, 16, 32])
@pytest.mark.parametrize("kind", ["et", "hw"])
@pytest.mark.parametrize("use_std", [False, True])
def test_matches_closed_form_beyond_docs(n, kind, use_std):
    for n_max in (n, n + 1, 2 * n, 4 * n, 8 * n, 1000):
        for c in range(n + 1):
            got = extra_rollouts(c / n, n, n_max, kind, use_std)
            assert got == closed_form(c / n, n, n_max, kind, use_std), (n, n_max, c)
            assert 0 <= got <= n_max - n


@pytest.mark.parametrize("n", [8, 16, 64])
def test_hw_never_below_et_and_monotone(n):
    accs = np.arange(n + 1) / n  # the accuracies n rollouts can produce
    et = extra_rollouts_batch(accs, n, 10_000, "et")
    hw = extra_rollouts_batch(accs, n, 10_000, "hw")
    assert np.all(hw >= et)
    assert np.all(np.diff(et) <= 0) and np.all(np.diff(hw) <= 0)  # harder prompts never get fewer


def test_batch_equals_scalar():
    rng = np.random.default_rng(0)
    accs = rng.integers(0, 9, size=200) / 8
    for kind in SCHEDULES:
        batch = extra_rollouts_batch(accs, 8, 40, kind)
        assert batch.tolist() == [extra_rollouts(a, 8, 40, kind) for a in accs]


def test_uniform_is_zero_and_errors_are_clear():
    assert extra_rollouts(0.0, 8, 64, "uniform") == 0
    with pytest.raises(ValueError, match="unknown schedule"):
        extra_rollouts(0.1, 8, 32, "nope")
    with pytest.raises(ValueError, match="n_max"):
        extra_rollouts(0.1, 8, 4, "et")
    with pytest.raises(ValueError, match="accuracy"):
        extra_rollouts(1.5, 8, 32, "et")
