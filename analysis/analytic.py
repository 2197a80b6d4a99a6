"""Closed-form curves behind figures 5 and 6 (no runs needed).

* Cumulative advantage of a group of ``n`` binary rollouts at accuracy ``p`` (docs/algorithm.md
  §3.2): GRPO without std ``n * 2p(1-p)``, with std ``n * 2 sqrt(p(1-p))``. The DARS targets:
  ET flat at the peak ``A_peak = n * S(0.5)`` for ``p < 0.5``; HW ``2 (1-p) A_peak``.
* Expected total rollouts per prompt for a prompt of true solve rate ``q``: the stage-1 count
  ``C ~ Binomial(n, q)``, then ``n + extra(C/n)`` from :func:`dars.schedules.extra_rollouts_batch`.
"""

from __future__ import annotations

import math

import numpy as np

from dars.schedules import extra_rollouts_batch


def advantage_mass(p: np.ndarray, n: int, use_std: bool) -> np.ndarray:
    """Total |advantage| of a group of ``n`` rollouts at accuracy ``p``: ``n * S(p)``."""
    p = np.asarray(p, dtype=np.float64)
    s = 2.0 * np.sqrt(p * (1.0 - p)) if use_std else 2.0 * p * (1.0 - p)
    return n * s


def peak(n: int, use_std: bool) -> float:
    return float(advantage_mass(np.float64(0.5), n, use_std))


def target(p: np.ndarray, n: int, kind: str, use_std: bool) -> np.ndarray:
    """The schedule's target mass ``T(p)`` for ``p < 0.5`` (NaN at ``p >= 0.5``, where DARS adds
    nothing and the group keeps its GRPO mass)."""
    p = np.asarray(p, dtype=np.float64)
    a = peak(n, use_std)
    if kind == "et":
        t = np.full_like(p, a)
    elif kind == "hw":
        t = 2.0 * (1.0 - p) * a
    else:
        raise ValueError(f"unknown target {kind!r}: et or hw")
    return np.where(p < 0.5, t, np.nan)


def achieved_mass(n: int, n_max: int, kind: str, use_std: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the integer schedule delivers at the observable accuracies ``p_hat = c/n`` (c < n/2):
    ``(n + extra) * S(p)``, with ``p = 1/(2n)`` substituted at ``c = 0`` as the schedule does.
    Returns (p, mass)."""
    c = np.arange(n)
    c = c[c / n < 0.5]
    p_hat = c / n
    extra = extra_rollouts_batch(p_hat, n, n_max, kind, use_std)
    p = np.where(c == 0, 0.5 / n, p_hat)
    s = advantage_mass(p, 1, use_std)
    return p, (n + extra) * s


def expected_rollouts(q, n: int, n_max: int, kind: str, use_std: bool = False) -> np.ndarray:
    """E[n + extra(C/n)] with C ~ Binomial(n, q), for every q (vectorised)."""
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    c = np.arange(n + 1)
    extra = extra_rollouts_batch(c / n, n, n_max, kind, use_std).astype(np.float64)
    comb = np.array([math.comb(n, int(k)) for k in c], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmf = comb[None, :] * q[:, None] ** c[None, :] * (1.0 - q[:, None]) ** (n - c[None, :])
    return pmf @ (n + extra)
