"""Rollout allocation schedules: how many *extra* rollouts a prompt gets in stage 2.

DARS (arXiv 2508.13755, docs/algorithm.md §3). With binary rewards and the GRPO advantage
A_i = r_i - mean(r), a group of n rollouts at accuracy p carries a total advantage mass of
n * S(p), where S(p) = 2p(1-p) (or 2*sqrt(p(1-p)) when advantages are divided by the std).
That mass peaks at p = 0.5, so plain GRPO gives hard prompts (small p) little weight.
A schedule picks the extra rollouts dn so that (n + dn) * S(p) reaches a target T(p):

    raw(p) = T(p) / S(p) - n
    ET (equal treatment):     T(p) = A_peak              (flat at the peak level)
    HW (hardness weighted):   T(p) = 2 (1 - p) A_peak    (twice the peak as p -> 0)

with A_peak = n * S(0.5). Then, as the official code does:
    p_hat == 0   -> use p = 1 / (2n)   (no correct rollout yet: assume "half a success")
    p_hat >= 0.5 -> 0 extras           (includes prompts already solved every time)
    otherwise    -> min(ceil(raw(p)), n_max - n)

Deviation: ceil is taken with a 1e-9 tolerance, so a raw value that is an integer up to float
rounding (n = 6, HW, p = 1/12: 30.000000004) gives that integer. The paper's configurations
(n = 8 and 16) give the same numbers either way.

A new schedule is one function registered with ``@register("name")`` plus one YAML file in
``conf/schedule/`` that selects it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

ScheduleFn = Callable[[np.ndarray, int, int, bool], np.ndarray]
SCHEDULES: dict[str, ScheduleFn] = {}

# The official code treats accuracies at or below this as "no rollout correct".
ZERO_ACC = 1e-6
CEIL_TOLERANCE = 1e-9


def register(name: str) -> Callable[[ScheduleFn], ScheduleFn]:
    def wrap(fn: ScheduleFn) -> ScheduleFn:
        SCHEDULES[name] = fn
        return fn

    return wrap


def _advantage_mass(p: np.ndarray, use_std: bool) -> np.ndarray:
    """S(p): total |advantage| per rollout for a group at accuracy p."""
    return 2.0 * np.sqrt(p * (1.0 - p)) if use_std else 2.0 * p * (1.0 - p)


def _from_target(acc: np.ndarray, n: int, n_max: int, use_std: bool, target) -> np.ndarray:
    acc = np.asarray(acc, dtype=np.float64)
    p = np.where(acc <= ZERO_ACC, 0.5 / n, acc)
    hard = p < 0.5
    p_safe = np.where(hard, p, 0.25)  # any value in (0, 0.5) keeps the division finite
    a_peak = n * _advantage_mass(np.float64(0.5), use_std)
    raw = target(p_safe, a_peak) / _advantage_mass(p_safe, use_std) - n
    # ceil, but float noise on an exact integer (e.g. 30.000000004) must not add a rollout
    extra = np.minimum(np.ceil(raw - CEIL_TOLERANCE), n_max - n)
    return np.where(hard, np.maximum(extra, 0), 0).astype(np.int64)


@register("et")
def equal_treatment(acc: np.ndarray, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
    return _from_target(acc, n, n_max, use_std, lambda p, a_peak: np.full_like(p, a_peak))


@register("hw")
def hardness_weighted(acc: np.ndarray, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
    return _from_target(acc, n, n_max, use_std, lambda p, a_peak: 2.0 * (1.0 - p) * a_peak)


@register("uniform")
def uniform(acc: np.ndarray, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
    """Plain GRPO: every prompt keeps its n rollouts."""
    return np.zeros(np.shape(acc), dtype=np.int64)


def _table(totals: tuple[int, int, int, int, int]):
    """Pre-August-2025 lookup tables (docs/algorithm.md §3.3 History), stated as total rollouts
    for p_hat = 0, <= 1/8, <= 2/8, <= 3/8, else. Defined for n = 8 (the thresholds are eighths)."""

    def fn(acc: np.ndarray, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
        acc = np.asarray(acc, dtype=np.float64)
        eps = 1e-9
        total = np.select(
            [acc <= ZERO_ACC, acc <= 1 / 8 + eps, acc <= 2 / 8 + eps, acc <= 3 / 8 + eps],
            list(totals[:4]),
            default=totals[4],
        )
        return np.clip(total - n, 0, n_max - n).astype(np.int64)

    return fn


register("et_table")(_table((32, 18, 11, 9, 8)))
register("hw_table")(_table((48, 24, 12, 9, 8)))


def extra_rollouts_batch(
    acc: np.ndarray, n: int, n_max: int, kind: str, use_std: bool = False
) -> np.ndarray:
    """Vectorised :func:`extra_rollouts` over a batch of per-prompt accuracies."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(sorted(SCHEDULES))}")
    if n_max < n:
        raise ValueError(f"n_max ({n_max}) must be >= n ({n})")
    return SCHEDULES[kind](np.asarray(acc, dtype=np.float64), n, n_max, use_std)


def extra_rollouts(acc: float, n: int, n_max: int, kind: str, use_std: bool = False) -> int:
    """Extra stage-2 rollouts for one prompt whose stage-1 accuracy is ``acc`` (out of ``n``).

    >>> [extra_rollouts(c / 8, 8, 32, "et") for c in range(5)]
    [24, 11, 3, 1, 0]
    >>> [extra_rollouts(c / 8, 8, 64, "hw") for c in range(5)]
    [56, 24, 8, 3, 0]
    """
    if not (0.0 <= acc <= 1.0) or math.isnan(acc):
        raise ValueError(f"accuracy must be in [0, 1], got {acc}")
    return int(extra_rollouts_batch(np.array([acc]), n, n_max, kind, use_std)[0])
