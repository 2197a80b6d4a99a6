"""The rollout engine and the trainer's log-prob recomputation agree token for token."""

from contextlib import nullcontext

import torch
from omegaconf import OmegaConf

from dars.backends.embedded_update import response_logprobs
from dars.model import build_char_tokenizer, qwen2_from_config
from dars.rollout import SamplingParams, encode_prompt
from dars.rollout.hf import HFGenerateEngine

BUILD = OmegaConf.create(
    dict(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
)


def test_tokenizer_roundtrip_and_boxed_token():
    tok = build_char_tokenizer()
    ids = tok("12+34=\\boxed{46}", add_special_tokens=False).input_ids
    assert len(ids) == len("12+34=") + 1 + len("46}")  # \boxed{ is one token
    assert tok.decode(ids) == "12+34=\\boxed{46}"
    assert encode_prompt(tok, "7+8=")[0] == tok.bos_token_id


def test_engine_logprobs_match_recomputation():
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = qwen2_from_config(BUILD, tok).eval()
    engine = HFGenerateEngine(model, tok, torch.device("cpu"), nullcontext, micro_batch_size=5)
    prompts = [encode_prompt(tok, p) for p in ["1+2=", "13+45=", "9*87="]]
    ro = engine.generate(prompts, [3, 0, 4], SamplingParams(temperature=1.0, max_new_tokens=6))
    assert ro.prompt_index == [0, 0, 0, 2, 2, 2, 2]  # counts respected, prompt order kept
    assert all(1 <= n <= 6 for n in ro.lengths)
    lp, ent, mask = response_logprobs(
        model,
        ro.prompt_ids,
        ro.response_ids,
        tok.pad_token_id,
        torch.device("cpu"),
        nullcontext,
        1.0,
        with_entropy=True,
    )
    for i, sample_lp in enumerate(ro.logprobs):
        n = len(sample_lp)
        assert mask[i].sum().item() == n
        torch.testing.assert_close(lp[i, :n], torch.tensor(sample_lp), rtol=1e-4, atol=1e-4)
    assert (ent[mask.bool()] > 0).all()


def test_same_seed_same_samples():
    tok = build_char_tokenizer()
    torch.manual_seed(1)
    model = qwen2_from_config(BUILD, tok).eval()
    engine = HFGenerateEngine(model, tok, torch.device("cpu"), nullcontext, micro_batch_size=64)
    prompts = [encode_prompt(tok, "12+3=")]
    draws = []
    for _ in range(2):
        torch.manual_seed(123)
        draws.append(engine.generate(prompts, [16], SamplingParams(max_new_tokens=8)).response_ids)
    assert draws[0] == draws[1]
    assert len({tuple(r) for r in draws[0]}) > 1  # it does sample
