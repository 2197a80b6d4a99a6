"""Synthetic task: deterministic, disjoint splits, correct answers; the warm-start corpus and its
two habits (worked, direct with carries dropped); deterministic batches."""

import random

import pytest

from dars.data import PromptStream
from dars.data.synthetic import (
    LEVELS,
    column_carries,
    format_response,
    in_val_pool,
    sft_examples,
    slipped_answer,
    synthetic_splits,
    worked_response,
)


def test_splits_deterministic_disjoint_and_correct():
    levels = list(LEVELS)
    a = synthetic_splits(levels, 20, 10, seed=3)
    b = synthetic_splits(levels, 20, 10, seed=3)
    assert a == b
    train, val = a
    assert len(train) == 20 * len(levels) and len(val) == 10 * len(levels)
    assert not {p.prompt for p in train} & {p.prompt for p in val}
    assert len({p.prompt for p in train}) == len(train)  # distinct questions
    assert len({p.id for p in train + val}) == len(train) + len(val)
    for p in train + val:
        assert p.prompt.endswith("=")
        assert str(eval(p.prompt[:-1])) == p.answer  # our own arithmetic strings
    assert [p.data_source for p in train[: len(levels)]] == levels  # levels interleaved
    assert synthetic_splits(levels, 20, 10, seed=4)[1] != val


def test_validation_questions_never_reach_the_base_model_or_training():
    levels = ["add21", "sub2", "mul", "add3", "mul3"]
    train, val = synthetic_splits(levels, 200, 60, seed=0)
    assert all(in_val_pool(p.data_source, p.prompt[:-1], 0.2) for p in val)
    assert not any(in_val_pool(p.data_source, p.prompt[:-1], 0.2) for p in train)
    corpus = sft_examples(levels, 3000, seed=0, prompt_template="{question}=", worked_share=0.5)
    assert not {prompt for prompt, _ in corpus} & {p.prompt for p in val}
    # the pool is a fixed fifth of each level's questions, whatever the seed or split sizes
    r = random.Random(1)
    share = sum(in_val_pool("add3", LEVELS["add3"](r)[0], 0.2) for _ in range(20000)) / 20000
    assert 0.18 < share < 0.22


def test_a_split_larger_than_its_pool_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match="lower data.val_per_level"):
        synthetic_splits(["add1"], 5, 50, seed=0)  # add1 has 100 questions, ~20 in its pool
    with pytest.raises(ValueError, match="lower data.train_per_level"):
        synthetic_splits(["mul"], 700, 5, seed=0)  # mul has 720, ~570 on its train side


@pytest.mark.parametrize(
    "question, carries, slipped",
    [
        ("57+8", "10", 55),
        ("57+68", "11", 115),
        ("456+789", "111", 1135),
        ("51+3", "00", 54),
        ("52-18", "10", 46),
        ("18-52", "10", -46),
        ("10-99", "00", -89),
        ("8*54", "34", 402),
        ("7*123", "210", 741),
        ("2*34", "00", 68),
    ],
)
def test_the_written_method_and_its_slip(question, carries, slipped):
    assert column_carries(question) == carries
    assert slipped_answer(question) == slipped
    truth = eval(question)
    assert worked_response(question, str(truth)) == f"c{carries} {format_response(str(truth))}"
    # a slip only matters where some column carries
    assert (slipped == truth) == (set(carries) == {"0"})


def test_corpus_mixes_the_two_habits_and_ignores_level_order():
    levels = ["add21", "mul", "add3"]
    corpus = sft_examples(levels, 4000, seed=0, prompt_template="{question}=", mix={"mul": 0.5}, worked_share=0.6)
    worked = [c.startswith("c") for _, c in corpus]
    assert 0.57 < sum(worked) / len(corpus) < 0.63
    for (prompt, completion), is_worked in zip(corpus, worked):
        q = prompt[:-1]
        answer = eval(q) if is_worked else slipped_answer(q)
        assert completion.endswith(format_response(str(answer)))
    n_mul = sum("*" in p for p, _ in corpus)
    assert 0.15 < n_mul / len(corpus) < 0.25  # weight 0.5 of 2.5
    assert corpus == sft_examples(
        list(reversed(levels)), 4000, seed=0, prompt_template="{question}=", mix={"mul": 0.5}, worked_share=0.6
    )


def test_prompt_stream_is_a_function_of_the_batch_index():
    train, _ = synthetic_splits(["add21", "add2"], 10, 2, seed=0)
    s = PromptStream(train, batch_size=6, shuffle=False, seed=0)
    assert s.batches_per_epoch == 3
    assert s.batch(0) == train[:6] and s.batch(3) == train[:6]  # file order each epoch, drop_last
    assert s.epoch_of(5) == 1
    shuffled = PromptStream(train, batch_size=6, shuffle=True, seed=0)
    assert shuffled.batch(4) == PromptStream(train, 6, True, 0).batch(4)
    assert shuffled.batch(0) != shuffled.batch(3)  # a new permutation per epoch


def test_format_response():
    assert format_response("-12") == "\\boxed{-12}"
