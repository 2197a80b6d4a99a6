"""Known experiment and benchmark names: canonical order and display names."""

from __future__ import annotations

import re

# The seven experiments of the paper, in the order the tables and legends use.
EXPERIMENTS = ("baseline", "depth_naive", "breadth_naive", "dars_et", "dars_hw", "dars_et_breadth", "dars_hw_breadth")

EXPERIMENT_DISPLAY = {
    "baseline": "GRPO baseline",
    "depth_naive": "Depth-Naive",
    "breadth_naive": "Breadth-Naive",
    "dars_et": "DARS-ET",
    "dars_hw": "DARS-HW",
    "dars_et_breadth": "DARS-ET-Breadth",
    "dars_hw_breadth": "DARS-HW-Breadth",
}

# data_source -> (display name, aliases). The paper's five benchmarks (LUFFY naming), in the
# column order of the README table.
BENCHMARKS = {
    "aime": ("AIME24", ("aime24", "aime_24", "aime2024", "aime_2024")),
    "math": ("MATH-500", ("math500", "math_500", "math-500", "math_500_test")),
    "olympiad_bench": ("Olympiad", ("olympiadbench", "olympiad", "olympiad-bench")),
    "amc": ("AMC", ("amc23", "amc2023", "amc_23")),
    "minerva": ("Minerva", ("minerva_math", "minervamath")),
}

# Data sources never counted in the overall (micro/macro) numbers of the tables by default.
EXCLUDED_SOURCES = ("train",)

ALL = "all"  # micro over problems
MACRO = "macro"  # mean over benchmarks

_ALIAS = {}
for _key, (_disp, _aliases) in BENCHMARKS.items():
    for _a in (_key, *_aliases):
        _ALIAS[_a.lower()] = _key


def canonical_benchmark(source: str) -> str | None:
    """The paper benchmark a data_source name refers to, or None if it is not one of them."""
    return _ALIAS.get(str(source).lower())


def is_known_benchmark(source: str) -> bool:
    return canonical_benchmark(source) is not None


def benchmark_display(source: str) -> str:
    if source == ALL:
        return "Overall"
    if source == MACRO:
        return "Macro"
    key = canonical_benchmark(source)
    return BENCHMARKS[key][0] if key else str(source)


def benchmark_order(sources) -> list[str]:
    """Sort data sources: the paper's five in README order, then the others in the order they
    first appear (data order: e.g. the synthetic levels from easy to hard)."""
    keys = list(BENCHMARKS)
    first_seen = {s: i for i, s in enumerate(dict.fromkeys(sources))}

    def rank(s):
        key = canonical_benchmark(s)
        return (0, keys.index(key), 0) if key else (1, 0, first_seen[s])

    return sorted(first_seen, key=rank)


def experiment_rank(name: str) -> tuple:
    return (EXPERIMENTS.index(name), "") if name in EXPERIMENTS else (len(EXPERIMENTS), str(name))


def normalise_experiment(name: str) -> str:
    """Map a directory-ish name onto one of the seven experiments when it is exactly one of them
    up to case and separators (``DARS-ET`` -> ``dars_et``); otherwise return it unchanged."""
    norm = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    return norm if norm in EXPERIMENTS else str(name)
