"""The embedded backend's policy update: one training step's kept rollouts in, optimiser steps on
the policy out (docs/algorithm.md §5).

    old log-probs (and the entropy metric) under the weights that sampled
    -> the full batch, or mini-batches of whole groups in prompt order
    -> ppo_epochs passes, one optimiser step per (mini-)batch, its gradient accumulated over
       micro-batches packed to the token budget

The loss and its per-sequence weights are :mod:`dars.algorithm`; the trainer
(:mod:`dars.backends.embedded`) owns the model, the optimiser and the run, and keeps its rollout
engine in step with the weights this changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dars import algorithm as algo
from dars.metrics import entropy_from_logits, entropy_means
from dars.rollout import Rollouts


def _stack_rows(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Right-pad 1-D per-sequence tensors to ``width`` and stack them (padding is masked out)."""
    return torch.stack([torch.nn.functional.pad(r, (0, width - r.shape[0])) for r in rows])


def response_logprobs(model, prompts, responses, pad_id, device, autocast_ctx, temperature=1.0, with_entropy=False):
    """Log-probs (and entropy) of each response token under ``model``. Rows are right-padded so
    every response starts at column 0: returns [B, R] log-probs, [B, R] entropy (or None) and the
    [B, R] response mask. Logits are divided by the sampling temperature, as the sampler saw them."""
    seqs = [p + r for p, r in zip(prompts, responses)]
    p_len = torch.tensor([len(p) for p in prompts], device=device)
    r_len = torch.tensor([len(r) for r in responses], device=device)
    width, r_max = max(map(len, seqs)), int(r_len.max())
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], device=device)
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    with autocast_ctx():
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
    cols = torch.arange(r_max, device=device)
    pos = (p_len[:, None] - 1 + cols[None, :]).clamp(max=width - 1)  # logits at t predict token t+1
    logits = logits.gather(1, pos[..., None].expand(-1, -1, logits.shape[-1])).float() / temperature
    targets = ids.gather(1, (pos + 1).clamp(max=width - 1))
    logprob = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    mask = (cols[None, :] < r_len[:, None]).float()
    return logprob, (entropy_from_logits(logits) if with_entropy else None), mask


class PolicyUpdater:
    """The update of one training step, with what it acts on: ``model`` and ``optimizer`` (stepped
    in place), the frozen ``ref_model`` of the KL penalty (None: no penalty), the run's ``cfg``
    (``train``, ``algorithm``, ``rollout``) and how to run the model (``pad_id``, ``device``,
    ``autocast_ctx``)."""

    def __init__(self, cfg, model, optimizer, ref_model, pad_id: int, device: torch.device, autocast_ctx):
        self.cfg = cfg
        self.model = model
        self.optimizer = optimizer
        self.ref_model = ref_model
        self.pad_id = pad_id
        self.device = device
        self.autocast_ctx = autocast_ctx

    def update(self, ro: Rollouts, adv: np.ndarray, group: np.ndarray, kept: list[int]) -> dict:
        """Every optimiser step of one training step on the rollouts ``kept`` (indices into ``ro``,
        whole groups in prompt order; ``group`` gives each rollout's prompt, ``adv`` its
        advantage). Returns the update's fields of :class:`dars.step.StepRecord`; ``optim_steps``
        is how many steps changed the weights (a non-finite gradient skips one)."""
        t = self.cfg.train
        # Old log-probs (and the entropy we report) come from the policy that sampled, before any
        # step. In full-batch mode the first epoch's forward passes run on exactly those weights
        # (its one optimiser step comes after all of them), so they provide the old log-probs and
        # a separate pass is skipped: the same numbers, a third less compute per update.
        fused = t.update_mode == "full_batch"
        old_lp, ref_lp, ent_sums, ent_counts = {}, {}, [], []
        with torch.no_grad():
            for micro in self._micro_batches(ro, kept):
                if not fused:
                    lp, ent, mask = self._forward(self.model, ro, micro, with_entropy=True)
                    self._record_old(ro, micro, lp, ent, mask, old_lp, ent_sums, ent_counts)
                if self.ref_model is not None:
                    rlp, _, _ = self._forward(self.ref_model, ro, micro, with_entropy=False)
                    for row, i in enumerate(micro):
                        ref_lp[i] = rlp[row, : len(ro.response_ids[i])]

        if t.update_mode == "full_batch":
            minibatches = [kept]
        else:  # ppo_mini_batch_size prompts per optimiser step
            groups = list(dict.fromkeys(group[i] for i in kept))
            chunks = [set(groups[k : k + t.ppo_mini_batch_size]) for k in range(0, len(groups), t.ppo_mini_batch_size)]
            minibatches = [[i for i in kept if group[i] in c] for c in chunks]

        pg, clipped, tokens, kl, norms, skipped = [], 0.0, 0.0, 0.0, [], 0
        for epoch in range(t.ppo_epochs):
            for mb in minibatches:
                old = (old_lp, ent_sums, ent_counts) if fused and epoch == 0 else None
                out = self._optimizer_step(ro, adv, mb, old_lp, ref_lp, record_old=old)
                pg.append(out["pg"])
                clipped += out["clipped"]
                tokens += out["tokens"]
                kl += out["kl"]
                if math.isfinite(out["grad_norm"]):
                    norms.append(out["grad_norm"])
                else:
                    skipped += 1
        ent_token_mean, ent_seq_mean = entropy_means(ent_sums, ent_counts)
        return dict(
            entropy_token_mean=ent_token_mean,
            entropy_seq_mean=ent_seq_mean,
            loss_pg=float(np.mean(pg)),
            loss_clipfrac=clipped / max(tokens, 1),
            loss_kl=kl / max(tokens, 1) if self.ref_model is not None else None,
            grad_norm=float(np.mean(norms)) if norms else float("nan"),
            optim_steps=len(pg) - skipped,
            optim_skipped=skipped,
            # prompt + response tokens of the update batch, once per PPO epoch (throughput = this / time/update)
            tokens_trained=int(sum(len(ro.prompt_ids[i]) + len(ro.response_ids[i]) for i in kept)) * t.ppo_epochs,
        )

    @staticmethod
    def _record_old(ro, micro, lp, ent, mask, old_lp, ent_sums, ent_counts) -> None:
        """Keep one micro-batch's log-probs as the old ones, and its entropy for the metrics."""
        ent_sums += (ent * mask).sum(-1).tolist()
        ent_counts += mask.sum(-1).tolist()
        for row, i in enumerate(micro):
            old_lp[i] = lp[row, : len(ro.response_ids[i])].detach()

    def _optimizer_step(self, ro, adv, idx, old_lp, ref_lp, record_old=None) -> dict:
        """One optimiser step over ``idx``; ``record_old=(old_lp, ent_sums, ent_counts)`` first
        stores each micro-batch's log-probs as the old ones (weights are still the sampler's)."""
        cfg, a = self.cfg, self.cfg.algorithm
        lengths = np.array([len(ro.response_ids[i]) for i in idx])
        weights = algo.token_weights(lengths, a.loss_agg_mode, cfg.rollout.max_response_length)
        weight_of = dict(zip(idx, weights))
        per_token = 1.0 / max(lengths.sum(), 1)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        pg = clipped = tokens = kl = 0.0
        need_entropy = a.entropy_coeff > 0 or record_old is not None
        for micro in self._micro_batches(ro, idx):
            lp, ent, mask = self._forward(self.model, ro, micro, with_entropy=need_entropy)
            if record_old is not None:
                with torch.no_grad():
                    self._record_old(ro, micro, lp, ent, mask, *record_old)
            width = lp.shape[1]
            terms = algo.ppo_loss(
                lp,
                _stack_rows([old_lp[i] for i in micro], width),
                torch.tensor([adv[i] for i in micro], dtype=lp.dtype, device=lp.device),
                mask,
                torch.tensor([weight_of[i] for i in micro], dtype=lp.dtype, device=lp.device),
                a.clip_ratio_low,
                a.clip_ratio_high,
                entropy=ent if a.entropy_coeff > 0 else None,
                entropy_coeff=a.entropy_coeff,
                entropy_weight=per_token,
                ref_logprob=_stack_rows([ref_lp[i] for i in micro], width) if ref_lp else None,
                kl_coef=a.kl_coef,
            )
            terms.loss.backward()
            pg += terms.pg_sum.item()
            clipped += terms.clipped_tokens.item()
            tokens += terms.tokens.item()
            kl += terms.kl_sum.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip).item()
        if math.isfinite(grad_norm):
            self.optimizer.step()
        else:  # as the official code: a non-finite gradient skips the step instead of poisoning Adam
            self.optimizer.zero_grad(set_to_none=True)
        return {"pg": pg, "clipped": clipped, "tokens": tokens, "kl": kl, "grad_norm": grad_norm}

    def _micro_batches(self, ro: Rollouts, idx: list[int]) -> list[list[int]]:
        """Micro-batches whose padded size stays within the token budget, packed in length order
        (less padding; the gradient sum does not depend on how samples are split)."""
        budget = self.cfg.train.max_tokens_per_micro_batch
        out, cur, widest = [], [], 0
        for i in sorted(idx, key=lambda i: (len(ro.prompt_ids[i]) + len(ro.response_ids[i]), i)):
            w = len(ro.prompt_ids[i]) + len(ro.response_ids[i])
            if cur and max(widest, w) * (len(cur) + 1) > budget:
                out.append(cur)
                cur, widest = [], 0
            cur.append(i)
            widest = max(widest, w)
        if cur:
            out.append(cur)
        return out

    def _forward(self, model, ro: Rollouts, micro: list[int], with_entropy: bool):
        return response_logprobs(
            model,
            [ro.prompt_ids[i] for i in micro],
            [ro.response_ids[i] for i in micro],
            self.pad_id,
            self.device,
            self.autocast_ctx,
            self.cfg.rollout.temperature,
            with_entropy,
        )
