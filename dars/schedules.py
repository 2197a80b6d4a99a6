"""Rollout allocation schedules: how many *extra* rollouts a prompt gets in stage 2.

DARS (arXiv 2508.13755, docs/algorithm.md §3). With binary rewards and the GRPO advantage
A_i = r_i - mean(r), a group of n rollouts at accuracy p carries a total advantage mass of
n * S(p), where S(p) = 2p(1-p) (or 2*sqrt(p(1-p)) when advantages are divided by the std).
That mass peaks at p = 0.5, so plain GRPO gives hard prompts (small p) little weight.
A schedule picks the extra rollouts dn so that (n + dn) * S(p) reaches a target T(p):

    raw(p) = T(p) / S(p) - n
    ET (equal treatment):     T(p) = A_peak              (flat at the peak level)
    HW (hardness weighted):   T(p) = 2 (1 - p) A_peak    (twice the peak as p -> 0)

with A_peak = n * S(0.5). Then, as upstream (the authors' repository, docs/algorithm.md §1) does:
    p_hat == 0   -> use p = 1 / (2n)   (no correct rollout yet: assume "half a success")
    p_hat >= 0.5 -> 0 extras           (includes prompts already solved every time)
    otherwise    -> min(ceil(raw(p)), n_max - n)

Deviation: ceil is taken with a 1e-9 tolerance, so a raw value that is an integer up to float
rounding (n = 6, HW, p = 1/12: 30.000000004) gives that integer. The paper's configurations
(n = 8 and 16) give the same numbers either way.

A new schedule is one function registered with ``@register("name")`` plus one YAML file in
``conf/schedule/`` that selects it (``schedule: name``, ``n_max: ...``). A schedule defined by a
target mass registers it too (``@register("name", target=T)``, ``T(p, a_peak)``); one defined only
for some settings brings its own rule (``@register("name", check=C)``, ``C(n, n_max)``), which
``dars.config.validate`` asks through :func:`config_problem` before a run starts. The analytic
figures 5 and 6 (:mod:`analysis.analytic`) draw every schedule that has a YAML from the
functions at the end of this module: :func:`advantage_mass`, :func:`target_mass`,
:func:`delivered_mass`, :func:`expected_total_rollouts` and :func:`configured_n_max`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

ScheduleFn = Callable[[np.ndarray, int, int, bool], np.ndarray]
SCHEDULES: dict[str, ScheduleFn] = {}
# T(p, a_peak): the target mass of a schedule defined by one (p < 0.5; see _from_target)
TargetFn = Callable[[np.ndarray, float], np.ndarray]
TARGETS: dict[str, TargetFn] = {}
# C(n, n_max): None where the schedule is defined, else what is wrong, naming the field, its value
# and the fix (a phrase that follows "schedule=<name>"); see config_problem
CheckFn = Callable[[int, int], str | None]
CHECKS: dict[str, CheckFn] = {}

# Upstream treats accuracies at or below this as "no rollout correct".
ZERO_ACC = 1e-6
CEIL_TOLERANCE = 1e-9


def register(
    name: str, target: TargetFn | None = None, check: CheckFn | None = None
) -> Callable[[ScheduleFn], ScheduleFn]:
    """Register a schedule as ``name``; ``target``: its target mass, ``check``: its own rule on
    ``(n, n_max)`` (see :data:`CHECKS`)."""

    def wrap(fn: ScheduleFn) -> ScheduleFn:
        SCHEDULES[name] = fn
        if target is not None:
            TARGETS[name] = target
        if check is not None:
            CHECKS[name] = check
        return fn

    return wrap


def config_problem(kind: str, n: int, n_max: int) -> str | None:
    """Why schedule ``kind`` cannot run at ``rollout.n = n``, ``algorithm.n_max = n_max``, as a
    ``schedule=<kind> ...`` sentence for a config error; None when it can (or has no rule)."""
    check = CHECKS.get(kind)
    problem = check(n, n_max) if check is not None else None
    return None if problem is None else f"schedule={kind} {problem}"


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


def _flat_at_peak(p: np.ndarray, a_peak: float) -> np.ndarray:
    return np.full_like(p, a_peak)


def _twice_peak_at_zero(p: np.ndarray, a_peak: float) -> np.ndarray:
    return 2.0 * (1.0 - p) * a_peak


@register("et", target=_flat_at_peak)
def equal_treatment(acc: np.ndarray, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
    return _from_target(acc, n, n_max, use_std, _flat_at_peak)


@register("hw", target=_twice_peak_at_zero)
def hardness_weighted(acc: np.ndarray, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
    return _from_target(acc, n, n_max, use_std, _twice_peak_at_zero)


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


def _only_n8(n: int, n_max: int) -> str | None:
    """The tables' thresholds are eighths of a stage-1 group of 8."""
    if n == 8:
        return None
    return f"is a lookup table for n=8 only (got rollout.n={n}); set rollout.n=8 or use schedule=et / schedule=hw"


register("et_table", check=_only_n8)(_table((32, 18, 11, 9, 8)))
register("hw_table", check=_only_n8)(_table((48, 24, 12, 9, 8)))


def extra_rollouts_batch(acc: np.ndarray, n: int, n_max: int, kind: str, use_std: bool = False) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# what the analytic figures draw (analysis.analytic): every registered schedule with a YAML
# --------------------------------------------------------------------------------------------

CONF_SCHEDULES = Path(__file__).resolve().parents[1] / "conf" / "schedule"


def advantage_mass(n: int, p, use_std: bool = False) -> np.ndarray:
    """Total |advantage| ``n * S(p)`` of a group of ``n`` binary rollouts at accuracy ``p``."""
    return n * _advantage_mass(np.asarray(p, dtype=np.float64), use_std)


def target_mass(kind: str, n: int, p, use_std: bool = False) -> np.ndarray:
    """The target mass ``T(p)`` of schedule ``kind`` for ``p < 0.5`` (NaN at ``p >= 0.5``, where
    no schedule adds rollouts); ValueError if ``kind`` is not defined by a target."""
    if kind not in TARGETS:
        raise ValueError(f"schedule {kind!r} has no target mass; those with one: {', '.join(TARGETS)}")
    p = np.asarray(p, dtype=np.float64)
    t = TARGETS[kind](p, float(advantage_mass(n, 0.5, use_std)))
    return np.where(p < 0.5, t, np.nan)


def delivered_mass(kind: str, n: int, n_max: int, use_std: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """What the integer schedule delivers at the observable accuracies ``p_hat = c/n`` with
    ``c < n/2``: ``(n + extra) * S(p)``, with ``p = 1/(2n)`` at ``c = 0`` as the schedule takes
    it. Returns (p, mass)."""
    c = np.arange(n)
    c = c[c / n < 0.5]
    p_hat = c / n
    extra = extra_rollouts_batch(p_hat, n, n_max, kind, use_std)
    p = np.where(c == 0, 0.5 / n, p_hat)
    return p, (n + extra) * _advantage_mass(p, use_std)


def expected_total_rollouts(kind: str, q, n: int, n_max: int, use_std: bool = False) -> np.ndarray:
    """E[n + extra(C/n)] with the stage-1 count C ~ Binomial(n, q): the expected total rollouts
    per prompt of true solve rate ``q`` (vectorised over ``q``)."""
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    c = np.arange(n + 1)
    extra = extra_rollouts_batch(c / n, n, n_max, kind, use_std).astype(np.float64)
    comb = np.array([math.comb(n, int(k)) for k in c], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmf = comb[None, :] * q[:, None] ** c[None, :] * (1.0 - q[:, None]) ** (n - c[None, :])
    return pmf @ (n + extra)


def configured_n_max(n: int, conf_dir: Path | None = None) -> dict[str, int]:
    """Registered schedule -> its ``n_max`` at ``rollout.n = n``, as ``conf/schedule/*.yaml``
    sets it (interpolations such as ``${rollout.n}`` resolved), in registration order;
    schedules without a YAML are left out. ``conf_dir``: default :data:`CONF_SCHEDULES`."""
    from omegaconf import OmegaConf

    conf_dir = Path(conf_dir) if conf_dir is not None else CONF_SCHEDULES
    if not conf_dir.is_dir():
        raise FileNotFoundError(f"no schedule configs at {conf_dir}")
    found: dict[str, int] = {}
    for path in sorted(conf_dir.glob("*.yaml")):
        root = OmegaConf.create({"rollout": {"n": n}})
        root.algorithm = OmegaConf.load(path)
        name = str(root.algorithm.get("schedule", path.stem))
        if name in SCHEDULES and name not in found and "n_max" in root.algorithm:
            found[name] = int(root.algorithm.n_max)
    return {name: found[name] for name in SCHEDULES if name in found}
