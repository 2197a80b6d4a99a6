"""Pass@k against exact combinatorics; entropy against torch.distributions."""

import math

import numpy as np
import pytest
import torch

from dars.metrics import entropy_from_logits, entropy_means, pass_at_k, pass_at_k_array, pass_at_k_curve_ks


def exact(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 128, 200])
def test_pass_at_k_equals_combinatorics(n):
    for c in range(n + 1):
        for k in range(1, n + 1, max(1, n // 17)):
            assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), abs=1e-12)


def test_pass_at_k_known_values():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0  # verl's biased best@4 gives ~0.68 here
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert pass_at_k(128, 3, 128) == 1.0


def test_array_matches_scalar_and_marks_missing():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 300, size=500)
    c = (rng.random(500) * (n + 1)).astype(int).clip(0, n)
    for k in (1, 2, 7, 64, 128):
        got = pass_at_k_array(n, c, k)
        want = [pass_at_k(a, b, k) if a >= k else np.nan for a, b in zip(n, c)]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        assert np.isnan(got[n < k]).all()


def test_errors():
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 6)


def test_curve_ks():
    assert pass_at_k_curve_ks(16) == [1, 2, 4, 8, 16]
    assert pass_at_k_curve_ks(12) == [1, 2, 4, 8, 12]
    assert pass_at_k_curve_ks(1) == [1]


def test_entropy_matches_categorical():
    logits = torch.randn(3, 5, 50) * 3
    want = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(entropy_from_logits(logits), want, rtol=1e-5, atol=1e-5)
    assert entropy_from_logits(torch.zeros(7)).item() == pytest.approx(math.log(7))


def test_entropy_means_differ_with_lengths():
    # sequence A: 4 tokens of entropy 1; sequence B: 1 token of entropy 3
    token_mean, seq_mean = entropy_means([4.0, 3.0], [4, 1])
    assert token_mean == pytest.approx(7 / 5)
    assert seq_mean == pytest.approx(2.0)
    # split over two micro-batches, the numbers are the same
    assert entropy_means([4.0] + [3.0], [4] + [1]) == (token_mean, seq_mean)
