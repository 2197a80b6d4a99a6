"""The Hugging Face rollout engine: :class:`dars.rollout.RolloutEngine` with ``model.generate`` on
the training model itself, so the engine always samples from the trainer's current weights."""

from __future__ import annotations

import torch

from dars.rollout import Rollouts, SamplingParams


class HFGenerateEngine:
    """Sampling with ``model.generate`` on the training model, in chunks of ``micro_batch_size``
    sequences. Randomness comes from torch's global generator, which the trainer seeds per step."""

    def __init__(self, model, tokenizer, device: torch.device, autocast_ctx, micro_batch_size: int):
        self.model = model
        self.tok = tokenizer
        self.device = device
        self.autocast_ctx = autocast_ctx
        self.micro_batch_size = micro_batch_size

    def sync_weights(self) -> None:
        pass  # same module as the trainer's

    def sleep(self) -> None:
        pass  # generate keeps no cache between calls

    def wake_up(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], counts: list[int], params: SamplingParams) -> Rollouts:
        flat = [(j, prompt_ids[j]) for j, c in enumerate(counts) for _ in range(c)]
        out = Rollouts()
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(flat), self.micro_batch_size):
                chunk = flat[start : start + self.micro_batch_size]
                self._generate_chunk(chunk, params, out)
        finally:
            self.model.train(was_training)
        return out

    def _generate_chunk(self, chunk, params: SamplingParams, out: Rollouts) -> None:
        pad = self.tok.pad_token_id
        eos = self.tok.eos_token_id
        width = max(len(p) for _, p in chunk)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for _, p in chunk], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for _, p in chunk], device=self.device)
        greedy = params.temperature == 0
        kwargs = (
            dict(do_sample=False)
            if greedy
            else dict(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else 0,
            )
        )
        with self.autocast_ctx():
            gen = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
                return_dict_in_generate=True,
                output_scores=True,
                **kwargs,
            )
        new = gen.sequences[:, width:]
        # scores are the processed logits the sampler drew from (temperature / top-p applied)
        logp = torch.stack(gen.scores, dim=1).float().log_softmax(-1)
        tok_logp = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        new, tok_logp = new.cpu().tolist(), tok_logp.cpu().tolist()
        for (j, p), ids, lps in zip(chunk, new, tok_logp):
            length = ids.index(eos) + 1 if eos in ids else len(ids)
            out.prompt_index.append(j)
            out.prompt_ids.append(p)
            out.response_ids.append(ids[:length])
            out.logprobs.append(lps[:length])
            out.truncated.append(eos not in ids[:length])
