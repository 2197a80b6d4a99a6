"""The prompts of a run: :func:`load_splits` gives the (train, val) :class:`Problem` lists for the
``data`` config group, :class:`PromptStream` the train batches in an order a resumed run repeats.

One module per source: ``data=synthetic`` generates graded arithmetic (dars/data/synthetic.py);
``data=parquet`` reads verl-format files, the same files the verl backend hands to verl
(dars/data/parquet.py, docs/data.md); ``python -m dars.data.prepare`` (dars/data/prepare.py) writes
one from a question/answer table. Nothing in this package imports dars.config: the config checks
import the data they check, never the other way round.
"""

from __future__ import annotations

import numpy as np

from dars.data.parquet import load_verl_problems
from dars.data.problem import DataError, Problem
from dars.data.synthetic import synthetic_splits_from_config

__all__ = ["DataError", "Problem", "PromptStream", "load_splits"]


def load_splits(data_cfg, tokenizer, max_prompt_length: int) -> tuple[list[Problem], list[Problem]]:
    """(train, val) for the ``data`` config group: ``synthetic`` (generated) or ``parquet``
    (verl-format files; prompts rendered with the tokenizer and, when ``filter_overlong_prompts``,
    cut to those of at most ``max_prompt_length`` tokens)."""
    if data_cfg.name == "synthetic":
        return synthetic_splits_from_config(data_cfg)
    if data_cfg.name == "parquet":
        common = dict(
            tokenizer=tokenizer,
            use_template=bool(data_cfg.use_template),
            max_prompt_length=max_prompt_length,
            filter_overlong=bool(data_cfg.filter_overlong_prompts),
            allow_invalid_rows=bool(data_cfg.allow_invalid_rows),
        )
        return (
            load_verl_problems(data_cfg.train_file, split="train", **common),
            load_verl_problems(data_cfg.val_file, split="val", **common),
        )
    raise ValueError(f"data.name={data_cfg.name!r} is unknown; use data=synthetic or data=parquet")


class PromptStream:
    """Deterministic batches over the train split: batch ``b`` is a pure function of ``b``, so a
    resumed run draws exactly what the uninterrupted run drew. ``drop_last`` as the paper's loader."""

    def __init__(self, problems: list[Problem], batch_size: int, shuffle: bool, seed: int):
        if batch_size > len(problems):  # (known only once the length filter has run: not a config check)
            raise DataError(
                f"train.batch_size={batch_size} is larger than the train split ({len(problems)} prompts left after "
                f"the length filter); lower train.batch_size, raise rollout.max_prompt_length or set "
                f"data.filter_overlong_prompts=false"
            )
        self.problems = problems
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.batches_per_epoch = len(problems) // batch_size

    def epoch_of(self, batch_index: int) -> int:
        return batch_index // self.batches_per_epoch

    def batch(self, batch_index: int) -> list[Problem]:
        epoch, pos = divmod(batch_index, self.batches_per_epoch)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.problems))
        else:
            order = np.arange(len(self.problems))
        idx = order[pos * self.batch_size : (pos + 1) * self.batch_size]
        return [self.problems[i] for i in idx]
