"""Rollout engines: turn prompts into sampled responses with their log-probs.

This module is the interface the trainer sees: :class:`RolloutEngine`, its inputs
(:class:`SamplingParams`, token ids from :func:`encode_prompt`) and its output (:class:`Rollouts`).
An engine is one module beside it: :mod:`dars.rollout.hf` samples with Hugging Face ``generate``
on the training model itself (so stage 1 and stage 2 always sample from the same policy
snapshot); :mod:`dars.rollout.vllm` implements the same methods on an in-process vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: off (the paper's setting)
    max_new_tokens: int = 16


@dataclass
class Rollouts:
    """Flat list of samples; ``prompt_index[i]`` says which input prompt sample i answers."""

    prompt_index: list[int] = field(default_factory=list)
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)  # includes EOS when the model stopped
    logprobs: list[list[float]] = field(default_factory=list)  # sampling log-probs, one per response token
    truncated: list[bool] = field(default_factory=list)  # hit max_new_tokens without EOS

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(r) for r in self.response_ids]

    def extend(self, other: Rollouts, index_offset: int = 0) -> None:
        self.prompt_index += [i + index_offset for i in other.prompt_index]
        self.prompt_ids += other.prompt_ids
        self.response_ids += other.response_ids
        self.logprobs += other.logprobs
        self.truncated += other.truncated


class RolloutEngine(Protocol):
    def generate(self, prompt_ids: list[list[int]], counts: list[int], params: SamplingParams) -> Rollouts:
        """Draw ``counts[j]`` independent samples for prompt j (grouped, prompt order kept)."""

    def sync_weights(self) -> None:
        """Make the engine sample from the trainer's current weights (no-op when they share them).
        The trainer calls it whenever its weights changed: after an update that took an optimiser
        step, and after loading a checkpoint. It also ends a :meth:`sleep`."""

    def sleep(self) -> None:
        """Free what sampling holds on the device (vLLM's KV cache) while the trainer updates; the
        next :meth:`sync_weights` or :meth:`wake_up` ends it (no-op when nothing can be freed)."""

    def wake_up(self) -> None:
        """End a :meth:`sleep` without new weights (an update that took no optimiser step)."""


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids for a prompt, with BOS when the tokenizer has one and did not add it itself."""
    ids = tokenizer(text, add_special_tokens=True).input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids
