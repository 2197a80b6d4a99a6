"""The synthetic task: verifiable arithmetic with graded difficulty (``data=synthetic``).

One level per ``data_source`` (so each level is its own benchmark in evaluation), answers written as
``\\boxed{...}`` and scored by the real math-verify. Generation is a pure function of the seed.

Each level's question space is split once, by a hash of the question, into a *validation pool*
(``val_pool``, 20 % by default) and the rest. Validation problems come only from the pool; the
RL train split and the base model's warm-start corpus (:func:`sft_examples`) come only from the
rest, so no validation question was ever seen by the base model or by RL: a gain on validation is
generalisation.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import numpy as np

from dars.data.problem import Problem


# Each level draws (question, answer) from a random.Random. Easy to hard, roughly in the order a
# small model learns them: more digits, then borrows, then multiplication, then three digits.
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


def _add3(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(100, 999), r.randint(100, 999)
    return f"{a}+{b}", a + b


def _mul3(r: random.Random) -> tuple[str, int]:
    a, b = r.randint(2, 9), r.randint(100, 999)
    return f"{a}*{b}", a * b


def _mix3(r: random.Random) -> tuple[str, int]:
    a, b, c = r.randint(10, 99), r.randint(2, 9), r.randint(2, 9)
    return f"{a}+{b}*{c}", a + b * c


LEVELS: dict[str, Callable[[random.Random], tuple[str, int]]] = {
    "add1": _add1,  # 100 distinct questions
    "add21": _add21,  # 900
    "add2": _add2,  # 8,100
    "sub2": _sub2,  # 8,100 (negative answers too)
    "mul": _mul,  # 720
    "add3": _add3,  # 810,000
    "mul3": _mul3,  # 7,200
    "mix3": _mix3,  # 5,760 (precedence: a+b*c)
}


def in_val_pool(level: str, question: str, val_pool: float) -> bool:
    """Whether a question belongs to its level's validation pool: a fixed hash of the question, so
    the split does not depend on the data seed, the split sizes or the order of drawing."""
    h = int.from_bytes(hashlib.sha256(f"{level}:{question}".encode()).digest()[:8], "little")
    return h < val_pool * 2.0**64


def format_response(answer: str) -> str:
    """The target completion the warm start teaches (the reward only needs the boxed answer)."""
    return f"\\boxed{{{answer}}}"


def _distinct(level: str, count: int, r: random.Random, want_val: bool, val_pool: float, what: str) -> list:
    """``count`` distinct (question, answer) pairs of ``level`` from one side of the pool split."""
    gen, seen = LEVELS[level], {}
    for _ in range(200 * count + 1000):  # generous: the rarest side of a split is val_pool of it
        if len(seen) == count:
            break
        q, a = gen(r)
        if in_val_pool(level, q, val_pool) == want_val:
            seen.setdefault(q, a)
    if len(seen) < count:
        side = f"its validation pool (data.val_pool={val_pool})" if want_val else "its training side"
        raise ValueError(
            f"level {level} has only about {len(seen)} distinct questions in {side}, fewer than the "
            f"{count} asked for by data.{what}; lower data.{what} (or drop the level)"
        )
    return list(seen.items())


def synthetic_splits(
    levels: list[str],
    train_per_level: int,
    val_per_level: int,
    seed: int,
    prompt_template: str = "{question}=",
    val_pool: float = 0.2,
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint train and validation splits of distinct questions: validation from each level's
    validation pool, train from the rest. Train interleaves the levels (level-balanced batches);
    validation keeps them grouped."""
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown synthetic level(s) {unknown}; known: {list(LEVELS)}")
    val: list[Problem] = []
    train_by_level: list[list[Problem]] = []
    for level in levels:
        pairs = _distinct(level, val_per_level, random.Random(f"{seed}-{level}-val"), True, val_pool, "val_per_level")
        val += [
            Problem(f"{level}-val-{i}", level, prompt_template.format(question=q), str(a))
            for i, (q, a) in enumerate(pairs)
        ]
        pairs = _distinct(
            level, train_per_level, random.Random(f"{seed}-{level}-train"), False, val_pool, "train_per_level"
        )
        train_by_level.append(
            [
                Problem(f"{level}-train-{i}", level, prompt_template.format(question=q), str(a))
                for i, (q, a) in enumerate(pairs)
            ]
        )
    train = [p for group in zip(*train_by_level) for p in group]
    return train, val


def synthetic_splits_from_config(d) -> tuple[list[Problem], list[Problem]]:
    """:func:`synthetic_splits` for a ``data=synthetic`` config node."""
    return synthetic_splits(list(d.levels), d.train_per_level, d.val_per_level, d.seed, d.prompt_template, d.val_pool)


# -------------------------------------------------- the warm-start corpus (dars.model.warm_start)
# Each question either worked by the written method (carries first) or answered with its slip.
def _columns(question: str) -> tuple[str, list[tuple[int, int]], int, int]:
    """(op, digit columns most significant first, the two operands) with the larger operand
    first for subtraction, so every level is worked as a column sum, difference or product."""
    if "*" in question:
        a, b = question.split("*")
        return "*", [(int(a), int(d)) for d in b], int(a), int(b)
    op = "+" if "+" in question else "-"
    x, y = (int(v) for v in question.split(op))
    if op == "-":
        x, y = max(x, y), min(x, y)
    width = len(str(max(x, y)))
    return op, [(int(u), int(v)) for u, v in zip(str(x).zfill(width), str(y).zfill(width))], x, y


def column_carries(question: str) -> str:
    """The carries (borrows for subtraction) out of each column, least significant first: the
    scratch work of the written method (57+8: 7+8=15 carries 1, 5+1=6 carries 0 -> "10")."""
    op, cols, _, _ = _columns(question)
    out, carry = [], 0
    for u, v in reversed(cols):
        if op == "+":
            carry = (u + v + carry) // 10
        elif op == "-":
            carry = int(u - v - carry < 0)
        else:
            carry = (u * v + carry) // 10
        out.append(str(carry))
    return "".join(out)


def slipped_answer(question: str) -> int:
    """The answer with the classic slip of written arithmetic: every column computed on its own,
    carries (and borrows) dropped. Addition writes each column's digit sum mod 10 (the leading
    column in full), subtraction takes the smaller digit from the larger in every column (the
    sign of the true difference kept), multiplication by one digit writes each product mod 10
    (the leading one in full). Equal to the true answer when no column carries."""
    op, cols, x, y = _columns(question)
    if op == "*":
        return int(str(cols[0][0] * cols[0][1]) + "".join(str(u * v % 10) for u, v in cols[1:]))
    if op == "+":
        return int(str(sum(cols[0])) + "".join(str((u + v) % 10) for u, v in cols[1:]))
    a, b = (int(v) for v in question.split("-"))
    return (-1 if a < b else 1) * int("".join(str(abs(u - v)) for u, v in cols))


def worked_response(question: str, answer: str) -> str:
    """The careful completion: the column carries first, then the boxed answer
    (``57+8=`` -> ``c10 \\boxed{65}``). Its first token differs from a direct answer's."""
    return f"c{column_carries(question)} {format_response(answer)}"


def sft_examples(
    levels: list[str],
    count: int,
    seed: int,
    prompt_template: str,
    mix: dict[str, float] | None = None,
    worked_share: float = 1.0,
    val_pool: float = 0.2,
) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for the supervised warm start: a *corpus*, drawn with
    replacement from each level's training side (never its validation pool). ``mix`` weighs the
    levels (missing ones weigh 1). A ``worked_share`` of the completions are worked
    (:func:`worked_response`: carries written out, then the right answer); the rest answer
    directly, with the carries dropped (:func:`slipped_answer`). The base model thus learns two
    habits, as a pre-trained model imitates both the worked and the sloppy solutions in its
    corpus, and RL has something real to find: that working pays. docs/sandbox.md says why."""
    r = random.Random(f"{seed}-sft")
    levels = sorted(levels)  # the corpus does not depend on the order the levels are listed in
    weights = np.array([float((mix or {}).get(lv, 1.0)) for lv in levels])
    picks = np.random.default_rng([seed, 7]).choice(len(levels), size=count, p=weights / weights.sum())
    out = []
    for li in picks:
        level = levels[li]
        while True:
            q, a = LEVELS[level](r)
            if not in_val_pool(level, q, val_pool):
                break
        worked = r.random() < worked_share
        completion = worked_response(q, str(a)) if worked else format_response(str(slipped_answer(q)))
        out.append((prompt_template.format(question=q), completion))
    return out
