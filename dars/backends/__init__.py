"""Backends run one experiment config into one run directory (docs/run-format.md).

A backend is one module implementing :class:`Backend`::

    check(cfg: DictConfig) -> None                  # before anything is written; ConfigError for what it cannot run
    run(cfg: DictConfig, run_dir: Path) -> dict     # returns the final validation summary

``embedded`` is a plain PyTorch loop over Hugging Face models (CPU or one GPU); ``verl`` runs verl
0.9.1 + vLLM on GPUs (one node or several). Both call the algorithm in :mod:`dars.algorithm` and
:mod:`dars.schedules` through the one step in :mod:`dars.step`. ``dars.run`` owns the rest of the
lifecycle: config checks, the run's lock, exit codes and the final table.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, cast

from omegaconf import DictConfig


class Backend(Protocol):
    def check(self, cfg: DictConfig) -> None: ...

    def run(self, cfg: DictConfig, run_dir: Path) -> dict: ...


BACKENDS = {"embedded": "dars.backends.embedded", "verl": "dars.backends.verl"}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return cast(Backend, importlib.import_module(BACKENDS[name]))
