"""Backends run one experiment config into one run directory (docs/run-format.md).

The interface is one function per backend module::

    run(cfg: DictConfig, run_dir: Path) -> dict     # returns the final validation summary

``embedded`` is a plain PyTorch loop over Hugging Face models (CPU or one GPU); ``verl`` runs verl
0.9.1 + vLLM on GPUs (one node or several). Both call the algorithm in :mod:`dars.algorithm` and
:mod:`dars.schedules`. A backend may also define ``check(cfg)``, run before anything is written,
raising :class:`dars.config.ConfigError` for what it cannot express.
"""

from __future__ import annotations

import importlib

BACKENDS = {"embedded": "dars.backends.embedded", "verl": "dars.backends.verl"}


def get_backend(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
