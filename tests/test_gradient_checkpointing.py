"""model.gradient_checkpointing: the same loss and the same gradients as without it (it only trades
memory for recomputation in the backward pass), and the embedded trainer turns it on when asked."""

from __future__ import annotations

import contextlib

import pytest
import torch
from conftest import compose_config
from transformers import AutoModelForCausalLM

from dars.backends.embedded import EmbeddedTrainer
from dars.backends.embedded_update import response_logprobs
from dars.model import SHIPPED_BASE


def _loss_and_grads(model, prompts, responses):
    """The policy-gradient shape of the update's loss: masked mean of response log-probs."""
    model.train()
    model.zero_grad(set_to_none=True)
    logp, _, mask = response_logprobs(model, prompts, responses, 0, torch.device("cpu"), contextlib.nullcontext)
    loss = -(logp * mask).sum() / mask.sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_same_loss_and_gradients_with_and_without_checkpointing():
    model = AutoModelForCausalLM.from_pretrained(SHIPPED_BASE, dtype=torch.float32)
    # uneven prompt and response lengths: padding and masks take part as in a real batch
    prompts = [[1, 22, 23, 16, 24, 25, 34], [1, 29, 16, 28, 34]]
    responses = [[21, 26, 27, 5, 2], [22, 21, 28, 29, 98, 22, 2]]
    plain_loss, plain_grads = _loss_and_grads(model, prompts, responses)
    assert not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_gradient_checkpointing
    ckpt_loss, ckpt_grads = _loss_and_grads(model, prompts, responses)
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=0, atol=1e-6)
    assert plain_grads.keys() == ckpt_grads.keys()
    nonzero = [n for n, g in plain_grads.items() if g.abs().sum() > 0]
    assert len(nonzero) > 0.9 * len(plain_grads)  # the comparison covers (almost) every weight
    for name, g in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], g, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("on", [True, False])
def test_the_embedded_trainer_turns_it_on_when_asked(on, tmp_path):
    cfg = compose_config([f"model.gradient_checkpointing={str(on).lower()}", f"paths.output_dir={tmp_path}"])
    trainer = EmbeddedTrainer(cfg, tmp_path)
    trainer.setup()
    try:
        assert trainer.model.is_gradient_checkpointing is on
    finally:
        trainer.scorer.close()
