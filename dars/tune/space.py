"""The search space: Hydra sweep overrides (``choice``, ``range``, ``interval``, ``tag(log, ...)``,
``a,b,c``) parsed by Hydra's own override parser into Optuna distributions, and a sampled value
written back as an override value."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def override_to_distribution(override: Any):
    """One parsed Hydra sweep override -> an Optuna distribution.

    choice(a,b,..) / a,b,..        -> CategoricalDistribution
    range(start,stop[,step])       -> IntDistribution (ints, stop exclusive) or FloatDistribution(step)
    interval(lo,hi) / int(...)     -> FloatDistribution / IntDistribution (both ends included)
    tag(log, interval(...))        -> the same with log=True
    """
    import optuna.distributions as od
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        choices = [v for v in value.list]
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ValueError(f"{key}: choice values must be scalars, got {c!r}")
        return od.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        if value.shuffle:
            log.warning("%s: shuffle() has no meaning for an Optuna search space; ignored", key)
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            if step <= 0 or stop <= start:
                raise ValueError(f"{key}: range({start},{stop},{step}) must increase")
            last = start + ((stop - 1 - start) // step) * step
            return od.IntDistribution(start, last, step=step)
        n = int(math.ceil((stop - start) / step))
        return od.FloatDistribution(float(start), float(start + (n - 1) * step), step=float(step))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in (value.tags or set())
        if isinstance(value.start, int) and isinstance(value.end, int):
            return od.IntDistribution(value.start, value.end, log=log_scale)
        return od.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{key}: sweep type {type(value).__name__} is not supported by the dars_optuna sweeper")


def parse_search_space(overrides: Sequence[Any]) -> tuple[dict[str, Any], list[str]]:
    """Parsed Hydra overrides -> ({key: distribution} for sweeps, ["key=value", ...] fixed overrides)."""
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for ov in overrides:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            space[key] = override_to_distribution(ov)
        else:
            fixed.append(f"{key}={ov.get_value_element_as_str()}")
    return space, fixed


def parse_search_space_strings(lines: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """``["algorithm.n_max=choice(32,64)", ...]`` -> parse_search_space (no config loader needed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return parse_search_space(OverridesParser.create().parse_overrides(list(lines)))


def format_value(v: Any) -> str:
    """An Optuna parameter value as a Hydra override value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)
