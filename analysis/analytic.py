"""Closed-form curves behind figures 5 and 6 (no runs needed), from :mod:`dars.schedules`.

* Cumulative advantage of a group of ``n`` binary rollouts at accuracy ``p`` (docs/algorithm.md
  §3.2): GRPO without std ``n * 2p(1-p)``, with std ``n * 2 sqrt(p(1-p))``
  (:func:`dars.schedules.advantage_mass`); the target mass of each schedule defined by one (ET
  flat at the peak ``A_peak = n * S(0.5)`` for ``p < 0.5``, HW ``2 (1-p) A_peak``) and what its
  integer counts deliver.
* Expected total rollouts per prompt for a prompt of true solve rate ``q``: the stage-1 count
  ``C ~ Binomial(n, q)``, then ``n + extra(C/n)``
  (:func:`dars.schedules.expected_total_rollouts`).

The figures draw every registered schedule that has a ``conf/schedule/*.yaml``
(:func:`schedules`), at the ``n_max`` that file sets: a new schedule reaches them without a
change here.
"""

from __future__ import annotations

import numpy as np

from dars import schedules as _s


def schedules(n: int, n_max: dict[str, int] | None = None) -> dict[str, int]:
    """Schedule -> n_max for the figures: the configured ones (registration order), with
    ``n_max`` overriding their caps."""
    out = _s.configured_n_max(n)
    out.update({k: v for k, v in (n_max or {}).items() if k in out})
    return out


def has_target(kind: str) -> bool:
    """Whether ``kind`` is defined by a target mass (figure 5 draws the target and its dots)."""
    return kind in _s.TARGETS


def advantage_mass(p: np.ndarray, n: int, use_std: bool) -> np.ndarray:
    """Total |advantage| of a group of ``n`` rollouts at accuracy ``p``: ``n * S(p)``."""
    return _s.advantage_mass(n, p, use_std)


def peak(n: int, use_std: bool) -> float:
    return float(_s.advantage_mass(n, 0.5, use_std))


def target(p: np.ndarray, n: int, kind: str, use_std: bool) -> np.ndarray:
    """The schedule's target mass ``T(p)`` for ``p < 0.5`` (NaN at ``p >= 0.5``, where DARS adds
    nothing and the group keeps its GRPO mass)."""
    return _s.target_mass(kind, n, p, use_std)


def achieved_mass(n: int, n_max: int, kind: str, use_std: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the integer schedule delivers at ``p_hat = c/n`` (c < n/2); returns (p, mass)."""
    return _s.delivered_mass(kind, n, n_max, use_std)


def expected_rollouts(q, n: int, n_max: int, kind: str, use_std: bool = False) -> np.ndarray:
    """E[n + extra(C/n)] with C ~ Binomial(n, q), for every q (vectorised)."""
    return _s.expected_total_rollouts(kind, q, n, n_max, use_std)
