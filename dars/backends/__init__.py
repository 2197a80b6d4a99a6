"""Backends run one experiment config into one run directory (docs/run-format.md).

The interface is one function per backend module::

    run(cfg: DictConfig, run_dir: Path) -> dict     # returns the final validation summary

``embedded`` is a plain PyTorch loop over Hugging Face models (CPU or one GPU). A verl backend
(multi-GPU, vLLM) plugs in as another module with the same function; both call the algorithm in
:mod:`dars.algorithm` and :mod:`dars.schedules`.
"""

from __future__ import annotations

import importlib

BACKENDS = {"embedded": "dars.backends.embedded"}


def get_backend(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
