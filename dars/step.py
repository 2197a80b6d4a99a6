"""The DARS step both backends run, and the one record type of ``metrics.jsonl``.

:func:`two_stage_rollout` is the paper's contribution as one function (docs/algorithm.md §2-§3):

    stage 1 (n per prompt) -> score -> difficulty -> schedule -> stage 2 (extras, same weights)
            -> score -> merge into one group per prompt -> group filter

A backend only wires its engine to it: ``sample(stage, counts)`` generates ``counts[j]`` rollouts of
prompt ``j`` in its own row format (Hugging Face token lists, verl ``DataProto``), ``score(rows)``
returns each row's prompt index and 0/1 reward. Advantages and the policy update stay with the
backend (they act on its tensors) but use :mod:`dars.algorithm`.

:class:`StepRecord` is a ``metrics.jsonl`` line (docs/run-format.md): every run-format key is
written here once, and :func:`rollout_fields` fills the part that comes from the rollout, so the two
backends cannot drift apart in what a key means.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from dars import algorithm as algo


@dataclass
class TwoStageRollout:
    """One step's rollouts. Arrays over rollouts R are stage 1 rows, then stage 2 rows."""

    stage1: Any  # the backend's rows of stage 1
    stage2: Any | None  # the backend's rows of stage 2 (None: no prompt needed extras)
    group: np.ndarray  # [R] int: prompt index of each rollout (a prompt's rollouts form its group)
    rewards: np.ndarray  # [R] float: 0/1 reward of each rollout
    acc1: np.ndarray  # [P] float: stage-1 accuracy per prompt (the difficulty estimate)
    extra: np.ndarray  # [P] int: stage-2 rollouts given to each prompt by the schedule
    stats: algo.GroupStats  # merged accuracy, group filter, solve none/all/partial counts
    n: int  # stage-1 rollouts per prompt
    time_gen1: float = 0.0  # seconds
    time_gen2: float = 0.0
    time_reward: float = 0.0

    @property
    def num_prompts(self) -> int:
        return len(self.acc1)


def two_stage_rollout(
    sample: Callable[[int, np.ndarray], Any],
    score: Callable[[Any], tuple[np.ndarray, np.ndarray]],
    num_prompts: int,
    n: int,
    a,
) -> TwoStageRollout:
    """Run both stages for ``num_prompts`` prompts with the algorithm settings ``a`` (``schedule``,
    ``n_max``, ``use_std``, ``filter_groups``, ``upper_threshold``: cfg.algorithm or verl's ``dars``)."""
    t0 = time.perf_counter()
    rows1 = sample(1, np.full(num_prompts, n, dtype=np.int64))
    t_gen1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    group, rewards = score(rows1)
    t_reward = time.perf_counter() - t0
    acc1 = algo.group_accuracy(group, rewards, num_prompts)

    # stage 2: extra rollouts for the hard prompts, from the same weights with the same sampling
    extra = algo.plan_stage2(acc1, n, a.n_max, a.schedule, a.use_std)
    rows2, t_gen2 = None, 0.0
    if extra.sum() > 0:
        t0 = time.perf_counter()
        rows2 = sample(2, extra)
        t_gen2 = time.perf_counter() - t0
        t0 = time.perf_counter()
        group2, rewards2 = score(rows2)
        t_reward += time.perf_counter() - t0
        group, rewards = np.concatenate([group, group2]), np.concatenate([rewards, rewards2])

    stats = algo.filter_groups(group, rewards, num_prompts, acc1, a.filter_groups, a.upper_threshold)
    return TwoStageRollout(rows1, rows2, group, rewards, acc1, extra, stats, n, t_gen1, t_gen2, t_reward)


def _key(name: str, doc: str = ""):
    """A record field written to metrics.jsonl under the run-format key ``name``."""
    return field(default=None, metadata={"key": name, "doc": doc})


@dataclass
class StepRecord:
    """One line of ``metrics.jsonl``: one training step (docs/run-format.md has every key's meaning)."""

    step: int = _key("step", "training step, 1-based")
    epoch: int = _key("epoch", "data epoch of the step's prompts")
    prompts: int = _key("prompts", "prompts drawn (before the filter)")
    rollouts_stage1: int = _key("rollouts/stage1")
    rollouts_stage2: int = _key("rollouts/stage2")
    rollouts_per_prompt: float = _key("rollouts/per_prompt")
    tokens_generated: int = _key("tokens/generated", "response tokens of both stages")
    tokens_trained: int = _key("tokens/trained", "prompt + response tokens of the update batch x ppo_epochs")
    acc_stage1: float = _key("acc/stage1", "mean stage-1 reward (before any filter)")
    groups_solve_none: int = _key("groups/solve_none")
    groups_solve_all: int = _key("groups/solve_all")
    groups_solve_partial: int = _key("groups/solve_partial")
    groups_kept: int = _key("groups/kept")
    stage2_saved: float = _key("stage2/saved")
    entropy_token_mean: float = _key("entropy/token_mean", "nats, over the update batch's response tokens")
    entropy_seq_mean: float = _key("entropy/seq_mean")
    loss_pg: float = _key("loss/pg")
    loss_clipfrac: float = _key("loss/clipfrac")
    loss_kl: float | None = _key("loss/kl", "only when algorithm.kl_coef > 0")
    grad_norm: float = _key("grad_norm", "before clipping, mean over the step's optimiser steps")
    optim_steps: int = _key("optim/steps")
    optim_skipped: int = _key("optim/skipped")
    optim_total: int = _key("optim/total")
    lr: float = _key("lr")
    response_length_mean: float = _key("response_length/mean")
    response_length_clip_ratio: float = _key("response_length/clip_ratio", "share of responses at max length")
    samples_seen: int = _key("samples/seen")
    time_gen1: float = _key("time/gen1")
    time_gen2: float = _key("time/gen2")
    time_reward: float = _key("time/reward")
    time_update: float = _key("time/update")
    time_step: float = _key("time/step")

    def to_json(self) -> dict:
        """The metrics.jsonl object: run-format keys; ``loss/kl`` only when there is a KL term."""
        out = {f.metadata["key"]: getattr(self, f.name) for f in fields(self)}
        if out["loss/kl"] is None:
            del out["loss/kl"]
        return out


RUN_FORMAT_KEYS = {f.name: f.metadata["key"] for f in fields(StepRecord)}  # field name -> metrics.jsonl key
_FIELD_OF_KEY = {k: name for name, k in RUN_FORMAT_KEYS.items()}


def to_keys(part: dict) -> dict:
    """StepRecord field names -> run-format keys (e.g. for a partial record a caller inspects)."""
    return {RUN_FORMAT_KEYS[name]: v for name, v in part.items()}


def from_keys(part: dict) -> dict:
    """Run-format keys -> StepRecord field names (the inverse of :func:`to_keys`)."""
    return {_FIELD_OF_KEY[k]: v for k, v in part.items()}


def rollout_fields(ro: TwoStageRollout, lengths: np.ndarray, max_response_length: int) -> dict:
    """The part of a :class:`StepRecord` the rollout decides (``lengths``: [R] response tokens)."""
    lengths = np.asarray(lengths)
    st = ro.stats
    return dict(
        prompts=ro.num_prompts,
        rollouts_stage1=ro.num_prompts * ro.n,
        rollouts_stage2=int(ro.extra.sum()),
        rollouts_per_prompt=len(ro.group) / ro.num_prompts,
        tokens_generated=int(lengths.sum()),
        acc_stage1=float(ro.acc1.mean()),
        groups_solve_none=st.solve_none,
        groups_solve_all=st.solve_all,
        groups_solve_partial=st.solve_partial,
        groups_kept=int(st.keep.sum()),
        stage2_saved=st.stage2_saved,
        response_length_mean=float(lengths.mean()),
        # one definition for both backends: the response used its whole length budget
        response_length_clip_ratio=float((lengths >= max_response_length).mean()),
        time_gen1=ro.time_gen1,
        time_gen2=ro.time_gen2,
        time_reward=ro.time_reward,
    )
