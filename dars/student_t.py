"""Quantiles of Student's t distribution, without scipy: the regularised incomplete beta function
by continued fraction (modified Lentz), inverted by Newton steps kept inside a bisection bracket.

:mod:`dars.stats` needs one number from it, the ``t`` interval's ``t_{ν, (1+level)/2}``, at
fractional degrees of freedom (Welch-Satterthwaite); the standard library suffices, so the
statistics need nothing beyond numpy.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["t_quantile"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_sf(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with ``df`` (> 0, need not be an integer) degrees of freedom;
    the normal quantile for infinite ``df``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    z = NormalDist().inv_cdf(p)
    if math.isinf(df) or df > 1e7:
        return z
    target = 1.0 - p
    lo, hi = 0.0, max(2.0 * z, 1.0)
    while _t_sf(hi, df) > target:
        lo, hi = hi, 2.0 * hi
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    # Newton from the Cornish-Fisher start, kept inside the bracket (bisection otherwise)
    x = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)
    x = x if lo < x < hi else 0.5 * (lo + hi)
    for _ in range(100):
        f = _t_sf(x, df) - target
        if f > 0:
            lo = x
        else:
            hi = x
        pdf = math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))
        step = x + f / pdf if pdf > 0 else math.nan
        new = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(new - x) <= 1e-12 * max(1.0, x):
            return new
        x = new
    return x
