"""Rewards on the verl path: each generation call's rows scored in one ``RewardScorer.score`` call.

verl 0.9.1 grades a response as soon as it is generated (its "streaming" reward loop): the agent loop
sends it, one item per call, to a ``RewardLoopWorker`` actor, which calls the custom reward function
(``dars.rewards.compute_score``: one item, one grading process). That loses what makes dars.rewards
fast on a batch (docs/rewards.md): identical (answer, gold) pairs graded once, and a pool of
workers that share what they learned about each gold's answers. So the DARS trainer

* turns streaming off: :class:`BatchRewardAgentLoopManager` is verl's ``AgentLoopManager`` given
  no reward workers (``actor_rollout_ref.rollout.agent.agent_loop_manager_class`` in
  conf/dars_ppo.yaml). verl's agent loop then returns the rows unscored, with the prompts'
  non-tensor fields (``reward_model`` holds the gold), as it does for a colocated reward model;
* scores rows itself with :class:`BatchReward`: stage 1 in one call, stage 2 in one call, a
  validation in one call, writing ``rm_scores`` and the extra keys exactly where verl's reward
  managers put them, so everything downstream (advantages, metrics, eval/) reads them unchanged.

``dars.rewards.compute_score`` stays the configured custom reward function, for verl code paths and
callers that grade one item at a time.
"""

from __future__ import annotations

import numpy as np
from verl import DataProto
from verl.experimental.agent_loop import AgentLoopManager
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from dars.backends.verl.decode import ByteLevelTable, response_texts
from dars.rewards import RewardScorer

# the reward's extra keys in non_tensor_batch, as dars.rewards.compute_score(return_dict=True) names them
EXTRA_KEYS = ("acc", "pred")


class BatchRewardAgentLoopManager(AgentLoopManager):
    """verl's agent loop manager without streaming rewards: the DARS trainer scores whole batches."""

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        # None: the agent loop skips its per-response reward call and keeps the prompts' fields
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles=None)


class BatchReward:
    """Scores verl rows against their gold answers (``reward_model.ground_truth``) in one batch.

    One :class:`~dars.rewards.RewardScorer` (its worker pool started on first use, kept for the run)
    per trainer; ``version``, ``timeout_s`` and ``num_workers`` are the run's ``reward`` config."""

    def __init__(self, tokenizer, version: str, timeout_s: float, num_workers: int | None):
        self.tokenizer = tokenizer
        self.table = ByteLevelTable.of(tokenizer)  # None: not byte-level BPE (the tokenizer decodes every row)
        self.scorer = RewardScorer(version, num_workers=num_workers, timeout_s=float(timeout_s))

    def __call__(self, rows: DataProto) -> np.ndarray:
        """Score ``rows`` in place (``rm_scores``: the 0/1 score on each response's last token, and
        the extra keys ``acc`` / ``pred``) and return the scores, shape [len(rows)]."""
        texts = response_texts(rows, self.tokenizer, self.table)
        golds = [str(rm["ground_truth"]) for rm in rows.non_tensor_batch["reward_model"]]
        scored = self.scorer.score(texts, golds)
        rewards = scored.rewards.astype(np.float64)
        # verl's own placement (its reward managers' assemble_rm_scores), so nothing downstream can tell
        rows.batch["rm_scores"] = RewardManagerBase.assemble_rm_scores(rows, rewards.tolist())
        rows.non_tensor_batch["acc"] = rewards
        rows.non_tensor_batch["pred"] = np.array(scored.extracted, dtype=object)
        rows.meta_info["reward_extra_keys"] = list(EXTRA_KEYS)
        return rewards

    def close(self) -> None:
        self.scorer.close()
