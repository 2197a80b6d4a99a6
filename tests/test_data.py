"""Synthetic task: deterministic, disjoint splits, correct answers; deterministic batches."""

from dars.data import LEVELS, PromptStream, format_response, synthetic_splits


def test_splits_deterministic_disjoint_and_correct():
    levels = list(LEVELS)
    a = synthetic_splits(levels, 20, 10, seed=3)
    b = synthetic_splits(levels, 20, 10, seed=3)
    assert a == b
    train, val = a
    assert len(train) == 20 * len(levels) and len(val) == 10 * len(levels)
    assert not {p.prompt for p in train} & {p.prompt for p in val}
    assert len({p.id for p in train + val}) == len(train) + len(val)
    for p in train + val:
        assert p.prompt.endswith("=")
        assert str(eval(p.prompt[:-1])) == p.answer  # noqa: S307 - our own arithmetic strings
    assert [p.data_source for p in train[: len(levels)]] == levels  # levels interleaved
    assert synthetic_splits(levels, 20, 10, seed=4)[1] != val


def test_prompt_stream_is_a_function_of_the_batch_index():
    train, _ = synthetic_splits(["add1", "add2"], 10, 2, seed=0)
    s = PromptStream(train, batch_size=6, shuffle=False, seed=0)
    assert s.batches_per_epoch == 3
    assert s.batch(0) == train[:6] and s.batch(3) == train[:6]  # file order each epoch, drop_last
    assert s.epoch_of(5) == 1
    shuffled = PromptStream(train, batch_size=6, shuffle=True, seed=0)
    assert shuffled.batch(4) == PromptStream(train, 6, True, 0).batch(4)
    assert shuffled.batch(0) != shuffled.batch(3)  # a new permutation per epoch


def test_format_response():
    assert format_response("-12") == "\\boxed{-12}"
