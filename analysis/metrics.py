"""Pure, vectorised evaluation metrics (no file I/O).

Conventions (see docs/analysis.md):

* A *problem* has ``n`` samples of which ``c`` are correct. Problems may have different ``n``.
* **Unbiased Pass@k** per problem (Chen et al. 2021): ``1 - C(n-c, k) / C(n, k)``, from
  :func:`dars.metrics.pass_at_k_array`; it is **NaN (missing) when k > n**, never 0 or 1.
* **Avg@n** per problem is ``c / n`` (the mean sample score; equal to Pass@1).
* A benchmark's value is the mean over its problems (missing problems skipped and counted in
  ``n_defined``). **Micro** = mean over all problems of all benchmarks (every problem weighs the
  same; the paper's Avg@128 / Pass@128 columns). **Macro** = mean of the benchmark means.
* **Bootstrap CI**: percentile bootstrap over problems, resampled with replacement *within each
  benchmark* (stratified; benchmark sizes are fixed by design), seeded; the micro and macro
  replicates are built from the same per-benchmark resamples.
* **maj@k**: majority vote over ``k`` samples; the estimate for ``k < n`` is the mean over the
  ``floor(n/k)`` disjoint consecutive blocks of ``k`` samples (each block is an iid draw of ``k``
  samples, so the estimate is unbiased). Empty predictions do not vote; a tie between answers
  gives the mean correctness of the tied answers; a block where nobody answered scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dars.metrics import pass_at_k_array

__all__ = [
    "pass_at_k_matrix",
    "avg_per_problem",
    "summarize",
    "bootstrap_ci",
    "maj_at_k",
    "correct_counts",
    "factorize_answers",
]


def correct_counts(scores: np.ndarray, lengths: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Correct samples per problem from a flat score array and per-problem sample counts.

    A sample counts as correct when its score is >= ``threshold`` (0/1 rewards are unchanged;
    a -1/+1 reward also works)."""
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    ok = np.concatenate([[0], np.cumsum(scores >= threshold, dtype=np.int64)])
    off = np.concatenate([[0], np.cumsum(lengths)])
    return ok[off[1:]] - ok[off[:-1]]


def pass_at_k_matrix(n: np.ndarray, c: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Per-problem unbiased Pass@k, shape ``(problems, len(ks))``; NaN where ``k > n``."""
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    out = np.full((n.shape[0], len(ks)), np.nan)
    for j, k in enumerate(ks):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        out[:, j] = pass_at_k_array(n, c, int(k))
    return out


def avg_per_problem(n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Mean sample score per problem, ``c / n`` (NaN for a problem without samples)."""
    n = np.asarray(n, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, c / np.where(n > 0, n, 1.0), np.nan)


def _as_2d(values: np.ndarray) -> tuple[np.ndarray, bool]:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return values[:, None], True
    return values, False


def summarize(values: np.ndarray, groups: np.ndarray, n_groups: int | None = None) -> dict:
    """Benchmark means, micro and macro of per-problem ``values`` (shape ``(P,)`` or ``(P, M)``).

    ``groups`` holds each problem's benchmark index ``0..G-1``. NaN entries (Pass@k with k > n)
    are skipped and reported through ``n_defined``. Returns a dict with ``per_group`` (G, M),
    ``n_defined`` (G, M), ``n_problems`` (G,), ``micro`` (M,), ``micro_defined`` (M,) and
    ``macro`` (M,) (1-D inputs give 1-D/scalar outputs)."""
    v, squeeze = _as_2d(values)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape[0] != v.shape[0]:
        raise ValueError("groups and values disagree on the number of problems")
    G = int(n_groups if n_groups is not None else (groups.max() + 1 if groups.size else 0))
    defined = ~np.isnan(v)
    sums = np.zeros((G, v.shape[1]))
    cnts = np.zeros((G, v.shape[1]))
    np.add.at(sums, groups, np.where(defined, v, 0.0))
    np.add.at(cnts, groups, defined.astype(np.float64))
    n_problems = np.bincount(groups, minlength=G)[:G]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = sums / cnts
        micro = sums.sum(0) / cnts.sum(0)
    macro = per_group.mean(0) if G else np.full(v.shape[1], np.nan)
    out = {
        "per_group": per_group,
        "n_defined": cnts.astype(np.int64),
        "n_problems": n_problems,
        "micro": micro,
        "micro_defined": cnts.sum(0).astype(np.int64),
        "macro": macro,
    }
    if squeeze:
        out = {
            "per_group": per_group[:, 0],
            "n_defined": out["n_defined"][:, 0],
            "n_problems": n_problems,
            "micro": float(micro[0]),
            "micro_defined": int(out["micro_defined"][0]),
            "macro": float(macro[0]),
        }
    return out


def _percentiles(reps: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of ``reps`` (B, M); NaN columns give NaN."""
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    lo = np.full(reps.shape[1], np.nan)
    hi = np.full(reps.shape[1], np.nan)
    finite = np.isfinite(reps).all(0)
    if finite.any():
        lo[finite], hi[finite] = np.percentile(reps[:, finite], [lo_q, hi_q], axis=0)
    return lo, hi


def bootstrap_ci(
    values: np.ndarray,
    groups: np.ndarray,
    n_groups: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Percentile bootstrap CIs over problems, stratified by benchmark.

    Each replicate resamples, for every benchmark, as many problems as it has, with replacement
    (done as a matrix of draw counts times the value matrix, so the cost is one matrix product
    per benchmark). Benchmark replicate = weighted mean; micro replicate = pooled weighted mean;
    macro replicate = mean of the benchmark replicates. Identical inputs and ``seed`` give
    identical intervals. Returns ``group_lo``/``group_hi`` (G, M), ``micro_lo``/``micro_hi``
    (M,), ``macro_lo``/``macro_hi`` (M,) (squeezed like :func:`summarize`)."""
    if not (0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    v, squeeze = _as_2d(values)
    groups = np.asarray(groups, dtype=np.int64)
    G = int(n_groups if n_groups is not None else (groups.max() + 1 if groups.size else 0))
    M = v.shape[1]
    rng = np.random.default_rng(seed)
    tot_s = np.zeros((n_boot, M))
    tot_c = np.zeros((n_boot, M))
    group_reps = np.full((G, n_boot, M), np.nan)
    for g in range(G):
        idx = np.flatnonzero(groups == g)
        if idx.size == 0:
            continue
        vg = v[idx]
        dg = ~np.isnan(vg)
        # resample counts: row b holds how often each problem was drawn in replicate b
        draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
        draws += (np.arange(n_boot) * idx.size)[:, None]
        w = np.bincount(draws.ravel(), minlength=n_boot * idx.size).reshape(n_boot, idx.size)
        w = w.astype(np.float64)
        s = w @ np.where(dg, vg, 0.0)
        cnt = w @ dg.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            group_reps[g] = s / cnt
        tot_s += s
        tot_c += cnt
    with np.errstate(invalid="ignore", divide="ignore"):
        micro_reps = tot_s / tot_c
    macro_reps = group_reps.mean(0) if G else np.full((n_boot, M), np.nan)
    glo = np.full((G, M), np.nan)
    ghi = np.full((G, M), np.nan)
    for g in range(G):
        glo[g], ghi[g] = _percentiles(group_reps[g], level)
    mlo, mhi = _percentiles(micro_reps, level)
    alo, ahi = _percentiles(macro_reps, level)
    out = {"group_lo": glo, "group_hi": ghi, "micro_lo": mlo, "micro_hi": mhi, "macro_lo": alo, "macro_hi": ahi}
    if squeeze:
        out = {key: (val[:, 0] if val.ndim == 2 else float(val[0])) for key, val in out.items()}
    return out


def factorize_answers(preds: Sequence[str]) -> np.ndarray:
    """Integer code per sample for its (stripped) answer; -1 for no answer ("" or None)."""
    ser = pd.Series(np.asarray(preds, dtype=object), dtype=object).fillna("").astype(str).str.strip()
    codes, _ = pd.factorize(ser.to_numpy(dtype=object), sort=False)
    codes = codes.astype(np.int64)
    codes[(ser == "").to_numpy()] = -1
    return codes


def maj_at_k(
    problem: np.ndarray,
    position: np.ndarray,
    preds: Sequence[str] | np.ndarray,
    scores: np.ndarray,
    n: np.ndarray,
    k: int,
    threshold: float = 0.5,
) -> np.ndarray:
    """Majority-vote accuracy per problem from flat per-sample arrays; NaN where ``k > n``.

    ``problem[i]`` is sample i's problem index, ``position[i]`` its index within the problem
    (0..n-1), ``preds[i]`` its extracted answer ("" or None = no answer; or an integer array
    from :func:`factorize_answers`, -1 = no answer) and ``scores[i]`` its reward. ``n`` is the
    per-problem sample count. Pure numpy (one sort per call)."""
    n = np.asarray(n, dtype=np.int64)
    P = n.shape[0]
    out = np.full(P, np.nan)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_blocks = n // k
    has = n_blocks > 0
    out[has] = 0.0
    if not has.any() or len(preds) == 0:
        return out
    codes = np.asarray(preds)
    if codes.dtype.kind not in "iu":
        codes = factorize_answers(preds)
    problem = np.asarray(problem, dtype=np.int64)
    block = np.asarray(position, dtype=np.int64) // k
    voted = (block < n_blocks[problem]) & (codes >= 0)
    if not voted.any():
        return out
    correct = (np.asarray(scores, dtype=np.float64)[voted] >= threshold).astype(np.float64)
    n_ans = int(codes.max()) + 1
    max_blocks = int(n_blocks.max())
    pb = problem[voted] * max_blocks + block[voted]  # (problem, block) id
    key = pb * n_ans + codes[voted]  # (problem, block, answer) id
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    ans_score = np.bincount(inv, weights=correct, minlength=uniq.size) / cnt
    grp = uniq // n_ans  # sorted, so groups are contiguous
    starts = np.flatnonzero(np.concatenate([[True], grp[1:] != grp[:-1]]))
    top = np.repeat(np.maximum.reduceat(cnt, starts), np.diff(np.append(starts, grp.size)))
    win = cnt == top
    gid = np.cumsum(np.concatenate([[True], grp[1:] != grp[:-1]])) - 1  # group index per key
    credit = np.bincount(gid[win], weights=ans_score[win]) / np.bincount(gid[win])
    block_problem = grp[starts] // max_blocks
    per_problem = np.bincount(block_problem, weights=credit, minlength=P)
    out[has] = per_problem[has] / n_blocks[has]
    return out
