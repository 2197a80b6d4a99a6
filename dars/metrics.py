"""Evaluation and training metrics: unbiased Pass@k and token-level entropy.

Pass@k (Chen et al. 2021): for a problem with n samples of which c are correct,
    pass@k = 1 - C(n-c, k) / C(n, k)
which is exactly 1 when n - c < k. The product form
    1 - prod_{i=n-c+1}^{n} (1 - k / i)
is the same number without huge binomials (stable for n in the thousands).
A benchmark's Pass@k is the mean over its problems.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: analysis/ uses pass@k without paying for torch
    import torch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of the probability that at least one of k samples is correct."""
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def pass_at_k_array(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """:func:`pass_at_k` for many problems at once; NaN where k > n (undefined, not 0).

    Vectorised as exp(sum log(1 - k/i)) over i in (n-c, n], done with a cumulative sum of
    log(1 - k/i) so the cost is O(max n) once plus O(1) per problem.
    """
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("need 0 <= c <= n for every problem")
    out = np.full(n.shape, np.nan, dtype=np.float64)
    defined = n >= k
    if not defined.any():
        return out
    n_max = int(n[defined].max())
    i = np.arange(1, n_max + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_terms = np.where(i > k, np.log1p(-k / i), -np.inf)
    # cum[j] = sum of log_terms[:j]  (log_terms[j-1] is the term for i = j)
    cum = np.concatenate([[0.0], np.cumsum(np.where(np.isinf(log_terms), 0.0, log_terms))])
    nd, cd = n[defined], c[defined]
    certain = nd - cd < k  # fewer wrong samples than k: some correct one is always drawn
    log_prod = cum[nd] - cum[nd - cd]
    out[defined] = np.where(certain, 1.0, 1.0 - np.exp(log_prod))
    return out


def pass_at_k_curve_ks(n: int) -> list[int]:
    """The k values reported for n samples: 1, 2, 4, ... up to n, plus n itself."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last axis, computed stably as
    logsumexp(z) - sum softmax(z) * z."""
    import torch

    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def entropy_means(seq_sums, seq_counts) -> tuple[float, float]:
    """(token mean, sequence mean) of token entropies from per-sequence sums and token counts, so
    micro-batches of different widths combine exactly. Token mean: every response token weighs the
    same (long responses weigh more); sequence mean: every response weighs the same."""
    sums = np.asarray(seq_sums, dtype=np.float64)
    counts = np.asarray(seq_counts, dtype=np.float64)
    token_mean = float(sums.sum() / max(counts.sum(), 1.0))
    has = counts > 0
    seq_mean = float((sums[has] / counts[has]).mean()) if has.any() else 0.0
    return token_mean, seq_mean
