"""Stage-2 schedules against docs/algorithm.md §3.3 and their closed forms."""

import math

import numpy as np
import pytest

from dars.schedules import (
    CHECKS,
    SCHEDULES,
    TARGETS,
    advantage_mass,
    config_problem,
    configured_n_max,
    delivered_mass,
    expected_total_rollouts,
    extra_rollouts,
    extra_rollouts_batch,
    target_mass,
)


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


def test_advantage_mass_and_targets():
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(advantage_mass(8, p), 8 * 2 * p * (1 - p))
    np.testing.assert_allclose(advantage_mass(8, p, use_std=True), 8 * 2 * np.sqrt(p * (1 - p)))
    assert set(TARGETS) == {"et", "hw"}
    hard = p < 0.5
    np.testing.assert_allclose(target_mass("et", 8, p)[hard], 4.0)
    np.testing.assert_allclose(target_mass("hw", 8, p)[hard], 2 * (1 - p[hard]) * 4.0)
    np.testing.assert_allclose(target_mass("et", 8, p, use_std=True)[hard], 8.0)
    assert np.isnan(target_mass("hw", 8, p)[~hard]).all()
    with pytest.raises(ValueError, match="no target"):
        target_mass("et_table", 8, p)


def test_delivered_mass_is_the_schedule_times_s():
    p, mass = delivered_mass("et", 8, 32)
    np.testing.assert_allclose(p, [1 / 16, 1 / 8, 2 / 8, 3 / 8])
    np.testing.assert_allclose(mass, (8 + np.array([24, 11, 3, 1])) * 2 * p * (1 - p))


def test_expected_total_rollouts_golden():
    """docs/algorithm.md §3.3 table (two decimals)."""
    q = [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]
    want = {
        ("et", 32): [32, 27.15, 23.02, 16.75, 12.70, 8.98, 8.09, 8.00],
        ("hw", 64): [64, 52.28, 42.58, 28.24, 19.11, 10.50, 8.25, 8.00],
        ("et_table", 32): [32, 26.88, 22.64, 16.41, 12.50, 8.95, 8.09, 8.00],
        ("hw_table", 64): [48, 39.22, 31.97, 21.40, 14.91, 9.31, 8.11, 8.00],
        ("uniform", 8): [8] * 8,
    }
    for (kind, n_max), vals in want.items():
        np.testing.assert_allclose(expected_total_rollouts(kind, q, 8, n_max), vals, atol=0.006)


def test_configured_n_max_reads_conf_schedule(tmp_path):
    assert configured_n_max(8) == {"et": 32, "hw": 64, "uniform": 8, "et_table": 32, "hw_table": 64}
    assert configured_n_max(16)["uniform"] == 16  # n_max: ${rollout.n}
    (tmp_path / "et.yaml").write_text("# @package algorithm\nschedule: et\nn_max: 40\n")
    (tmp_path / "other.yaml").write_text("schedule: not_registered\nn_max: 9\n")
    assert configured_n_max(8, tmp_path) == {"et": 40}


# ------------------------------------------------------------------ each schedule's own rule on n, n_max
def test_the_tables_bring_their_n8_rule():
    for kind in ("et_table", "hw_table"):
        assert config_problem(kind, 8, 32) is None
        msg = config_problem(kind, 6, 32)
        # the field, its value and the fix, after the schedule's name
        assert msg == (
            f"schedule={kind} is a lookup table for n=8 only (got rollout.n=6); "
            "set rollout.n=8 or use schedule=et / schedule=hw"
        )
    for kind in SCHEDULES.keys() - CHECKS.keys():  # a schedule without a rule runs at any n
        assert config_problem(kind, 6, 32) is None


def test_validate_asks_the_schedule(monkeypatch):
    """config.validate knows no schedule by name: a new one registers its rule and is refused by it."""
    from conftest import compose_config

    from dars.config import ConfigError, validate

    validate(compose_config(["schedule=et_table"]))  # n = 8: fine
    with pytest.raises(ConfigError, match=r"schedule=hw_table is a lookup table for n=8 only \(got rollout.n=6\)"):
        validate(compose_config(["schedule=hw_table", "rollout.n=6"]))

    monkeypatch.setitem(SCHEDULES, "even_only", SCHEDULES["uniform"])
    monkeypatch.setitem(
        CHECKS, "even_only", lambda n, n_max: None if n % 2 == 0 else f"needs an even rollout.n, got {n}"
    )
    validate(compose_config(["algorithm.schedule=even_only", "rollout.n=6"]))
    with pytest.raises(ConfigError, match="schedule=even_only needs an even rollout.n, got 7"):
        validate(compose_config(["algorithm.schedule=even_only", "rollout.n=7"]))
