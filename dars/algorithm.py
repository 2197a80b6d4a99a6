"""The DARS training step, engine-agnostic (docs/algorithm.md §2-§5).

    stage 1   n rollouts per prompt                        -> p_hat per prompt
    stage 2   extra_rollouts(p_hat) more for hard prompts  (same policy snapshot, same sampling)
    merge     extras join their prompt's group (same group id); p recomputed over the merged group
    filter    drop groups that are all-wrong or all-right (0 < p < upper_threshold), no refill
    advantage A_i = r_i - mean(group)   [optionally / (std + eps)], broadcast over the response
    loss      clipped PPO per token, aggregated with Dr. GRPO's constant normaliser
              (seq-mean-token-sum-norm): sum_t loss_t / max_response_length, averaged over
              sequences; minus entropy bonus

Everything here is a pure function of arrays/tensors, so the embedded loop and the verl trainer
share one implementation. Schedules live in :mod:`dars.schedules`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dars.schedules import extra_rollouts_batch

log = logging.getLogger("dars")

# ---------------------------------------------------------------- stage 2 planning and merging


def group_accuracy(group: np.ndarray, rewards: np.ndarray, num_groups: int) -> np.ndarray:
    """Mean reward of each group (NaN for a group with no rollouts)."""
    sums = np.bincount(group, weights=rewards, minlength=num_groups)
    counts = np.bincount(group, minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def plan_stage2(stage1_acc: np.ndarray, n: int, n_max: int, schedule: str, use_std: bool) -> np.ndarray:
    """Extra rollouts per prompt. A thin alias kept here so the whole step reads in one file."""
    return extra_rollouts_batch(stage1_acc, n, n_max, schedule, use_std)


@dataclass
class GroupStats:
    acc: np.ndarray  # merged accuracy per prompt
    keep: np.ndarray  # bool per prompt: survives the filter
    solve_none: int
    solve_all: int
    solve_partial: int
    stage2_saved: float  # fraction of stage-1 all-wrong prompts rescued by stage 2


def filter_groups(
    group: np.ndarray,
    rewards: np.ndarray,
    num_groups: int,
    stage1_acc: np.ndarray,
    enabled: bool,
    upper_threshold: float = 1.0,
) -> GroupStats:
    """Keep a group iff 0 < p < upper_threshold over its merged rollouts (DAPO-style, no refill).
    With ``enabled=False`` every group is kept (plain GRPO: zero-advantage groups still count in
    the loss normaliser)."""
    acc = group_accuracy(group, rewards, num_groups)
    keep = (acc > 0) & (acc < upper_threshold) if enabled else np.ones(num_groups, dtype=bool)
    none0 = stage1_acc <= 0
    saved = float((acc[none0] > 0).mean()) if none0.any() else 0.0
    return GroupStats(
        acc=acc,
        keep=keep,
        solve_none=int((acc <= 0).sum()),
        solve_all=int((acc >= 1).sum()),
        solve_partial=int(((acc > 0) & (acc < 1)).sum()),
        stage2_saved=saved,
    )


# ---------------------------------------------------------------- advantages


def group_advantages(group: np.ndarray, rewards: np.ndarray, use_std: bool = False, eps: float = 1e-6) -> np.ndarray:
    """GRPO outcome advantage per rollout, for groups of any (unequal) size.

    use_std=False (the paper): A = r - mean(group).
    use_std=True:              A = (r - mean) / (std + eps), std unbiased (n-1) as torch.std.
    A group of one rollout gets advantage 0 (its mean is its own score)."""
    group = np.asarray(group)
    rewards = np.asarray(rewards, dtype=np.float64)
    num_groups = int(group.max()) + 1 if len(group) else 0
    counts = np.bincount(group, minlength=num_groups)
    mean = np.bincount(group, weights=rewards, minlength=num_groups) / np.maximum(counts, 1)
    adv = rewards - mean[group]
    if use_std:
        sq = np.bincount(group, weights=(rewards - mean[group]) ** 2, minlength=num_groups)
        std = np.sqrt(sq / np.maximum(counts - 1, 1))
        adv = adv / (std[group] + eps)
    adv[counts[group] <= 1] = 0.0
    return adv


# ---------------------------------------------------------------- policy loss

# verl 0.9.1's names (verl.trainer.ppo.core_algos.agg_loss), for the same aggregations
LOSS_AGG_MODES = ("seq-mean-token-sum-norm", "token-mean", "seq-mean-token-mean")
# older spellings still accepted (configs in the wild use them), each with a one-time warning
LOSS_AGG_ALIASES = {"dars": "seq-mean-token-sum-norm"}
_ALIASES_WARNED: set[str] = set()


def resolve_loss_agg_mode(mode: str) -> str:
    """The loss_agg_mode ``mode`` names: itself, or the mode an old alias stands for (warned once
    per process and alias). Unknown names pass through for the caller to reject."""
    if mode not in LOSS_AGG_ALIASES:
        return mode
    new = LOSS_AGG_ALIASES[mode]
    if mode not in _ALIASES_WARNED:
        _ALIASES_WARNED.add(mode)
        log.warning(
            "algorithm.loss_agg_mode=%s is the old name of %s (the same loss); set loss_agg_mode=%s", mode, new, new
        )
    return new


def token_weights(lengths: np.ndarray, mode: str, max_response_length: int) -> np.ndarray:
    """Per-sequence weight w_i such that  loss = sum_i w_i * sum_t loss_it  over one optimiser
    step's batch. Computing weights for the whole batch up front makes gradient accumulation over
    micro-batches exact: each micro-batch just adds its own weighted sum.

    seq-mean-token-sum-norm  sum_t / L_max, mean over sequences  -> w_i = 1 / (N * L_max)
    token-mean               mean over every token of the batch  -> w_i = 1 / sum_j len_j
    seq-mean-token-mean      mean over sequences of token means  -> w_i = 1 / (N * len_i)

    The first is Dr. GRPO's constant normaliser (docs/algorithm.md §5.3); ``mode`` may also be
    an alias of :data:`LOSS_AGG_ALIASES`.
    """
    mode = resolve_loss_agg_mode(mode)
    lengths = np.asarray(lengths, dtype=np.float64)
    n = len(lengths)
    if mode == "seq-mean-token-sum-norm":
        return np.full(n, 1.0 / (n * max_response_length))
    if mode == "token-mean":
        return np.full(n, 1.0 / max(lengths.sum(), 1.0))
    if mode == "seq-mean-token-mean":
        return 1.0 / (n * np.maximum(lengths, 1.0))
    raise ValueError(f"unknown loss_agg_mode {mode!r}; choose one of {LOSS_AGG_MODES}")


@dataclass
class LossTerms:
    loss: torch.Tensor  # what to backpropagate (already weighted for accumulation)
    pg_sum: torch.Tensor  # weighted PPO term (same weights), for logging
    clipped_tokens: torch.Tensor
    tokens: torch.Tensor
    kl_sum: torch.Tensor


def ppo_loss(
    logprob: torch.Tensor,  # [B, T] current policy, response tokens
    old_logprob: torch.Tensor,  # [B, T] policy that sampled (recomputed before the update)
    advantages: torch.Tensor,  # [B]
    mask: torch.Tensor,  # [B, T] 1 on response tokens
    seq_weight: torch.Tensor,  # [B] from token_weights()
    clip_low: float,
    clip_high: float,
    entropy: torch.Tensor | None = None,  # [B, T], with entropy_coeff > 0
    entropy_coeff: float = 0.0,
    entropy_weight: float = 0.0,  # 1 / tokens in the optimiser step (token-mean bonus)
    ref_logprob: torch.Tensor | None = None,  # [B, T], with kl_coef > 0
    kl_coef: float = 0.0,
) -> LossTerms:
    """Clipped PPO: l = max(-A*rho, -A*clip(rho, 1-eps_low, 1+eps_high)), rho = exp(logp - old)."""
    mask = mask.to(logprob.dtype)
    adv = advantages[:, None]
    ratio = torch.exp(logprob - old_logprob)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    pg_sum = (per_token * mask).sum(-1).mul(seq_weight).sum()
    loss = pg_sum
    if entropy is not None and entropy_coeff:
        loss = loss - entropy_coeff * entropy_weight * (entropy * mask).sum()
    kl_sum = logprob.new_zeros(())
    if ref_logprob is not None and kl_coef:
        # k3 estimator ("low_var_kl"): exp(ref - logp) - (ref - logp) - 1 >= 0
        d = ref_logprob - logprob
        kl = torch.exp(d) - d - 1.0
        kl_sum = (kl * mask).sum()
        loss = loss + kl_coef * entropy_weight * kl_sum
    return LossTerms(
        loss=loss,
        pg_sum=pg_sum.detach(),
        clipped_tokens=((clipped > unclipped).to(mask.dtype) * mask).sum().detach(),
        tokens=mask.sum().detach(),
        kl_sum=kl_sum.detach(),
    )
