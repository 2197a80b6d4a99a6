"""The run's final table: base (step 0) vs final per benchmark, with the paired difference."""

import numpy as np
import pytest

from dars.evaluate import before_after
from dars.metrics import pass_at_k_array
from dars.run import format_before_after, verdict_line


def _records(rng, p, source, n=8):
    return [
        {"id": f"{source}-{i}", "data_source": source, "scores": list(rng.binomial(1, q, n))} for i, q in enumerate(p)
    ]


def test_before_after_is_the_paired_difference_per_benchmark_and_overall():
    rng = np.random.default_rng(0)
    easy, hard = rng.uniform(0.5, 0.9, 60), rng.uniform(0.0, 0.2, 40)
    base = _records(rng, easy, "easy") + _records(rng, hard, "hard")
    final = _records(rng, np.minimum(easy + 0.1, 1), "easy") + _records(rng, hard, "hard")
    rng.shuffle(final)  # matched by id, not by position
    rows = {r["benchmark"]: r for r in before_after(base, final, n_val=8)}
    assert list(rows) == ["easy", "hard", "all"]  # data order, overall last
    by_id = {r["id"]: r for r in base}
    for bench in ("easy", "hard", "all"):
        f = [r for r in final if bench == "all" or r["data_source"] == bench]
        b = [by_id[r["id"]] for r in f]
        avg = lambda recs: np.mean([np.mean(r["scores"]) for r in recs])
        row = rows[bench]
        assert row["avg/base"] == pytest.approx(avg(b)) and row["avg/final"] == pytest.approx(avg(f))
        assert row["avg/delta"] == pytest.approx(avg(f) - avg(b))
        passk = lambda recs: np.mean(
            pass_at_k_array(np.full(len(recs), 8), np.array([sum(r["scores"]) for r in recs]), 8)
        )
        assert row["pass/delta"] == pytest.approx(passk(f) - passk(b))
        assert row["avg/lo"] <= row["avg/delta"] <= row["avg/hi"]
    assert rows["all"]["n_problems"] == 100 and rows["hard"]["n_problems"] == 40
    assert rows["easy"]["avg/lo"] > 0  # a planted +0.1 on 60 problems is resolved
    assert rows["hard"]["avg/lo"] < 0 < rows["hard"]["avg/hi"]  # no change: the CI straddles 0
    text = format_before_after(list(rows.values()), 8)
    assert "Avg@8 base" in text and "overall (micro)" in text
    assert verdict_line(list(rows.values()), 8).endswith("better than its base")


def test_no_common_problems_gives_no_rows():
    rng = np.random.default_rng(1)
    assert before_after(_records(rng, [0.5], "a"), _records(rng, [0.5], "b"), n_val=8) == []
