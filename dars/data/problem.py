"""What every data source yields: one :class:`Problem` per prompt, or a :class:`DataError` that
names what in its input cannot become one.

A module of its own so that the synthetic task (dars/data/synthetic.py), the verl parquet files
(dars/data/parquet.py) and the loader over both (dars/data/__init__.py) share the two types
without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    id: str
    data_source: str  # benchmark / difficulty level
    prompt: str  # text given to the model
    answer: str  # gold answer, parsed by math-verify as "$answer$"


class DataError(ValueError):
    """Data that cannot be used (a file, one of its rows, a split too small for the batch), with one
    message naming where and the fix. ``dars.run`` prints it on one line and exits 2."""
