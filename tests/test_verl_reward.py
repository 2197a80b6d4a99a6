"""Batched rewards on the verl path (issue #13, item 4): the DARS trainer scores each generation call's
rows in one ``RewardScorer.score`` call instead of verl's one-response-at-a-time reward loop.

Real parts: verl's ``DataProto``, verl's own ``NaiveRewardManager`` (the per-response path it
replaces) calling ``dars.rewards.compute_score``, real math-verify, the char tokenizer of the tiny
model. The agent loop itself needs Ray and vLLM, so its manager is only constructed, not started.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_verl

require_verl()

from omegaconf import OmegaConf
from verl import DataProto

from dars.backends.verl.decode import MODEL, ByteLevelTable, response_texts
from dars.backends.verl.reward import BatchReward, BatchRewardAgentLoopManager
from dars.model import build_char_tokenizer
from dars.rewards import compute_score

# (response, gold): right in several spellings, wrong, no answer, truncated, empty, a special token
CASES = [
    ("so the answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("thus $x = 0.5$", "\\frac{1}{2}"),
    ("\\boxed{3}", "4"),
    ("I do not know", "7"),
    ("the sum is \\boxed{12", "12"),
    ("", "3"),
    ("\\boxed{-17}", "-17"),
    ("first 5, then 6, finally 42", "42"),
    ("it is 9 . I am sure", "9"),  # " ." is what a tokenizer's clean-up rewrites
]


def verl_rows(tok, cases, response_len=48, prompt_len=3) -> DataProto:
    """Rows in verl's generation layout: left-padded prompts, right-padded responses."""
    b = len(cases)
    responses = torch.full((b, response_len), tok.pad_token_id, dtype=torch.long)
    for i, (text, _) in enumerate(cases):
        ids = tok.encode(text, add_special_tokens=False)
        if i == 1:
            ids = ids + [tok.eos_token_id]  # a special token inside the valid span is skipped when decoding
        responses[i, : len(ids)] = torch.tensor(ids)
    valid = (
        torch.arange(response_len)[None, :]
        < torch.tensor([len(tok.encode(t, add_special_tokens=False)) + (i == 1) for i, (t, _) in enumerate(cases)])[
            :, None
        ]
    ).long()
    prompts = torch.full((b, prompt_len), 7, dtype=torch.long)
    attention_mask = torch.cat([torch.ones((b, prompt_len), dtype=torch.long), valid], dim=1)
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "response_mask": valid,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention_mask,
        },
        non_tensors={
            "data_source": np.array(["synthetic"] * b, dtype=object),
            "reward_model": np.array([{"ground_truth": g, "style": "rule"} for _, g in cases], dtype=object),
            "extra_info": np.array([{"index": i} for i in range(b)], dtype=object),
        },
    )


@pytest.mark.parametrize("tokenizer", ["char", "byte-level BPE"])
def test_batch_reward_equals_verls_own_per_response_reward_manager(tokenizer):
    """The same rows through verl's NaiveRewardManager + compute_score (what verl would do) and
    through BatchReward: the same scores on the same token, the same acc and pred. The byte-level
    tokenizer is decoded through the byte table (decode.py), the char one by the tokenizer."""
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    tok = build_char_tokenizer() if tokenizer == "char" else byte_level_tokenizer()
    rows = verl_rows(tok, CASES)
    manager = NaiveRewardManager(OmegaConf.create({}), tok, lambda **kw: compute_score(**kw, return_dict=True))

    async def one_by_one():
        return [await manager.run_single(rows[i : i + 1]) for i in range(len(rows))]

    singles = manager.loop.run_until_complete(one_by_one())  # verl's own event loop
    verl_scores = NaiveRewardManager.assemble_rm_scores(rows, [s["reward_score"] for s in singles])

    reward = BatchReward(tok, "math_verify", timeout_s=5.0, num_workers=1)
    assert (reward.table is None) == (tokenizer == "char")
    try:
        got = reward(rows)
    finally:
        reward.close()
    assert got.tolist() == [s["reward_score"] for s in singles]
    assert got.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # not all one verdict: the test can fail
    torch.testing.assert_close(rows.batch["rm_scores"], verl_scores)
    assert rows.non_tensor_batch["acc"].tolist() == [s["reward_extra_info"]["acc"] for s in singles]
    assert rows.non_tensor_batch["pred"].tolist() == [s["reward_extra_info"]["pred"] for s in singles]
    assert rows.meta_info["reward_extra_keys"] == ["acc", "pred"]


def test_response_texts_decode_only_the_valid_tokens():
    tok = build_char_tokenizer()
    rows = verl_rows(tok, CASES)
    texts = response_texts(rows, tok)
    assert texts == [t for t, _ in CASES]  # padding and the trailing EOS dropped
    assert response_texts(rows, tok, chunk=2) == texts  # decoded a few rows at a time: the same
    # the batched Rust decode is the tokenizer's own decode, row by row, also with its clean-up on
    n = rows.batch["attention_mask"][:, -rows.batch["responses"].shape[-1] :].sum(-1).tolist()
    for clean in (False, True):
        tok.clean_up_tokenization_spaces = clean
        assert ("it is 9. I am sure" in response_texts(rows, tok)) == clean
        assert response_texts(rows, tok) == [
            tok.decode(rows.batch["responses"][i, :k].tolist(), skip_special_tokens=True) for i, k in enumerate(n)
        ]


def byte_level_tokenizer():
    """A byte-level BPE like an LLM's (GPT-2 / Qwen family): special and non-special added tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    texts = [t for t, _ in CASES] + ["déjà vu, 中文 ½ 🙂 it is 9 . done", "x = \\frac{1}{2} , so  y ?"] * 3
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<|im_end|>")
    tok.add_tokens(["<tool>", " é "])  # non-special added tokens (one not byte-level text)
    return tok


def test_the_byte_table_decode_equals_the_tokenizers_own_decode():
    """Rows of random token ids (bytes that are not valid UTF-8, added tokens in the middle, stop
    tokens at the end, empty rows) decode exactly as ``tokenizer.decode(skip_special_tokens=True)``,
    with and without clean-up; rows the table cannot do exactly go to the Rust decode."""
    tok = byte_level_tokenizer()
    table = ByteLevelTable.of(tok)
    assert table is not None and ByteLevelTable.of(build_char_tokenizer()) is None  # Fuse decoder: no table
    rng = np.random.default_rng(0)
    size, eos = len(tok), tok.eos_token_id
    model_ids = np.flatnonzero(table.kind == MODEL)
    rows_ids = []
    for i in range(300):
        k = int(rng.integers(0, 40))
        pool = model_ids if i % 3 else np.arange(size)  # every third row may hold any id, added ones too
        ids = rng.choice(pool, size=k).tolist() + [eos] * int(rng.integers(0, 3))
        rows_ids.append(ids)
    rows_ids += [[], [eos], tok.encode("déjà vu 🙂", add_special_tokens=False)[:-1]]  # a cut UTF-8 sequence
    width = max(map(len, rows_ids)) + 2
    responses = torch.full((len(rows_ids), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows_ids), 1 + width), dtype=torch.long)
    mask[:, 0] = 1
    for r, ids in enumerate(rows_ids):
        responses[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[r, 1 : 1 + len(ids)] = 1
    rows = DataProto.from_dict(tensors={"responses": responses, "attention_mask": mask})
    for clean in (False, True):
        tok.clean_up_tokenization_spaces = clean
        want = [tok.decode(ids, skip_special_tokens=True) for ids in rows_ids]
        assert any("\ufffd" in w for w in want) and any("<tool>" in w for w in want)  # the hard cases are there
        assert response_texts(rows, tok, table=table, chunk=64) == want
        assert response_texts(rows, tok) == want  # the Rust decode for every row
    # which rows the table decodes: a table with every model token's bytes wrong changes exactly the
    # rows of model tokens (stop tokens at the end only); the others went to the Rust decode
    kinds = table.kind
    wrong = ByteLevelTable(np.where(kinds == MODEL, "#", "").astype(object), kinds)
    got = response_texts(rows, tok, table=wrong)
    for ids, g, w in zip(rows_ids, got, want):
        body = ids[: len(ids) - next((k for k, t in enumerate(reversed(ids)) if kinds[t] != 1), len(ids))]
        by_table = all(kinds[t] == 0 for t in body)
        assert (g != w) == (by_table and any(kinds[t] == 0 for t in body)), (ids, g, w)
    assert sum(g != w for g, w in zip(got, want)) > 150


def test_the_trainer_scores_each_stage_and_a_validation_in_one_call():
    from test_verl_trainer import bare_trainer, prompt_batch

    t = bare_trainer({})
    calls = []
    score = t.reward.scorer.score
    t.reward.scorer.score = lambda responses, golds: calls.append(len(responses)) or score(responses, golds)
    merged, m = t.dars_rollout(prompt_batch())
    assert calls == [40, 36]  # stage 1 (5 prompts x 8), stage 2 (the ET extras), one call each
    assert m["rollouts/stage1"] == 40 and m["rollouts/stage2"] == 36
    # the scores the trainer learns from are the graded text: right rows are the gold "1"
    texts = response_texts(merged, t.tokenizer)
    assert [float(x.strip() == "1") for x in texts] == merged.batch["rm_scores"].sum(-1).tolist()


def test_the_agent_loop_manager_gets_no_reward_workers():
    """verl's init_workers hands its reward-loop actors to the manager for streaming rewards;
    ours drops them, so verl's agent loop returns the rows unscored (scored by the trainer)."""
    cfg = OmegaConf.create({"actor_rollout_ref": {"rollout": {"agent": {}}, "model": {}}})
    manager = BatchRewardAgentLoopManager(cfg, llm_client=None, reward_loop_worker_handles=["an actor"])
    assert manager.reward_loop_worker_handles is None


@pytest.mark.parametrize("version", ["boxed_exact", "think"])
def test_batch_reward_uses_the_runs_reward_version(version):
    tok = build_char_tokenizer()
    rows = verl_rows(tok, [("\\boxed{0.5}", "\\frac{1}{2}"), ("\\boxed{4}", "4")])
    reward = BatchReward(tok, version, timeout_s=5.0, num_workers=0)
    # boxed_exact: string match of the boxed content; think: no </think>, no answer
    assert reward(rows).tolist() == ([0.0, 1.0] if version == "boxed_exact" else [0.0, 0.0])
