"""Prompt datasets.

The embedded default is a synthetic, verifiable arithmetic task with graded difficulty: one level
per ``data_source`` (so each level is its own benchmark in evaluation), answers written as
``\\boxed{...}`` and scored by the real math-verify. Generation is a pure function of the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Problem:
    id: str
    data_source: str  # benchmark / difficulty level
    prompt: str  # text given to the model
    answer: str  # gold answer, parsed by math-verify as "$answer$"


# Each level draws (question, answer) from a random.Random. Easy to hard, roughly in the order a
# small model learns them: more digits, then carries/borrows, then two operations.
def _add1(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(0, 9), r.randint(0, 9)
    return f"{a}+{b}", a + b


def _add21(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(10, 99), r.randint(0, 9)
    return f"{a}+{b}", a + b


def _add2(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(10, 99), r.randint(10, 99)
    return f"{a}+{b}", a + b


def _sub2(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(10, 99), r.randint(10, 99)
    return f"{a}-{b}", a - b


def _mul(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(2, 9), r.randint(10, 99)
    return f"{a}*{b}", a * b


def _mix3(r: random.Random) -> tuple[str, int]:
    a, b, c = r.randint(10, 99), r.randint(2, 9), r.randint(2, 9)
    return f"{a}+{b}*{c}", a + b * c


LEVELS: dict[str, Callable[[random.Random], tuple[str, int]]] = {
    "add1": _add1,
    "add21": _add21,
    "add2": _add2,
    "sub2": _sub2,
    "mul": _mul,
    "mix3": _mix3,
}


def format_response(answer: str) -> str:
    """The target completion the warm start teaches (the reward only needs the boxed answer)."""
    return f"\\boxed{{{answer}}}"


def synthetic_splits(
    levels: list[str],
    train_per_level: int,
    val_per_level: int,
    seed: int,
    prompt_template: str = "{question}=",
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint train and validation splits. Train interleaves the levels (level-balanced batches);
    validation keeps them grouped. add1 has only 100 distinct questions, so its train split repeats
    questions (sampling with replacement), while validation questions never appear in train."""
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown synthetic level(s) {unknown}; known: {list(LEVELS)}")
    val: list[Problem] = []
    train_by_level: list[list[Problem]] = []
    for li, level in enumerate(levels):
        gen = LEVELS[level]
        r = random.Random(f"{seed}-{level}-val")
        seen: dict[str, int] = {}
        tries = 0
        while len(seen) < val_per_level and tries < 100 * val_per_level:
            q, a = gen(r)
            seen.setdefault(q, a)
            tries += 1
        val += [
            Problem(f"{level}-val-{i}", level, prompt_template.format(question=q), str(a))
            for i, (q, a) in enumerate(seen.items())
        ]
        r = random.Random(f"{seed}-{level}-train")
        rows = []
        while len(rows) < train_per_level:
            q, a = gen(r)
            if q in seen:
                continue
            rows.append(
                Problem(f"{level}-train-{len(rows)}", level, prompt_template.format(question=q), str(a))
            )
        train_by_level.append(rows)
    train = [p for group in zip(*train_by_level) for p in group]
    return train, val


def sft_examples(levels: list[str], count: int, seed: int, prompt_template: str) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for the supervised warm start, from their own seed stream."""
    r = random.Random(f"{seed}-sft")
    gens = [LEVELS[lv] for lv in levels]
    out = []
    for i in range(count):
        q, a = gens[i % len(gens)](r)
        out.append((prompt_template.format(question=q), format_response(str(a))))
    return out


class PromptStream:
    """Deterministic batches over the train split: batch ``b`` is a pure function of ``b``, so a
    resumed run draws exactly what the uninterrupted run drew. ``drop_last`` as the paper's loader."""

    def __init__(self, problems: list[Problem], batch_size: int, shuffle: bool, seed: int):
        if batch_size > len(problems):
            raise ValueError(
                f"train.batch_size={batch_size} is larger than the train split ({len(problems)} prompts)"
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


def load_splits(data_cfg, tokenizer, max_prompt_length: int) -> tuple[list[Problem], list[Problem]]:
    """(train, val) for the ``data`` config group: ``synthetic`` (generated here) or ``parquet``
    (verl-format files, dars/verl_data.py; prompts rendered with the tokenizer and, when
    ``filter_overlong_prompts``, cut to those of at most ``max_prompt_length`` tokens)."""
    if data_cfg.name == "synthetic":
        return synthetic_splits(
            list(data_cfg.levels), data_cfg.train_per_level, data_cfg.val_per_level, data_cfg.seed,
            data_cfg.prompt_template,
        )
    if data_cfg.name == "parquet":
        from dars.verl_data import load_verl_problems

        common = dict(tokenizer=tokenizer, use_template=bool(data_cfg.use_template),
                      max_prompt_length=max_prompt_length, filter_overlong=bool(data_cfg.filter_overlong_prompts),
                      allow_invalid_rows=bool(data_cfg.allow_invalid_rows))
        return (load_verl_problems(data_cfg.train_file, split="train", **common),
                load_verl_problems(data_cfg.val_file, split="val", **common))
    raise ValueError(f"data.name={data_cfg.name!r} is unknown; use data=synthetic or data=parquet")
