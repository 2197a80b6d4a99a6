"""Benchmark the verl path's reward scoring against plain serial math-verify (a script, not a test).

The verl trainer scores each generation call's rows with ``dars.backends.verl.reward.BatchReward``:
verl rows (a ``DataProto`` of token ids) -> one batched decode -> one ``RewardScorer.score`` call ->
``rm_scores``. This script builds such rows for a validation-sized batch (default 1,560 problems x
128 samples, the same synthetic responses as benchmarks/bench_rewards.py), scores them through that
interface, and compares with plain serial math-verify on a random subset of whole problems:

* "plain":      ``verify(parse("$" + gold + "$"), parse(text))`` per item, on the decoded text
                (the baseline of bench_rewards.py);
* "verl naive": what verl's stock per-response reward manager does, serially: ``tokenizer.decode``
                of the row, then the same plain math-verify.

No model is downloaded: the tokenizer is a byte-level BPE (8k vocabulary) trained on part of the
batch, about 3.8 characters per token like an LLM tokenizer on this text; it decodes every row
back to its exact text (checked). Needs verl's CPU tier (``pip install -e ".[verl-cpu]"``).

    .venv/bin/python benchmarks/bench_rewards_verl.py                     # 1,560 x 128
    .venv/bin/python benchmarks/bench_rewards_verl.py --problems 200 --samples 64 --baseline-problems 8
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def train_tokenizer(texts: list[str]):
    """A byte-level BPE (lossless decode) as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, initial_alphabet=alphabet))
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


def verl_rows(tok, responses: list[str], golds: list[str]):
    """verl's generation layout: a one-token prompt, right-padded responses, attention mask, golds."""
    import numpy as np
    import torch
    from verl import DataProto

    eos = tok.eos_token_id
    b, chunk = len(responses), 8192
    parts, lengths = [], []
    for s in range(0, b, chunk):  # a chunk's Python token lists at a time (a whole batch: gigabytes)
        ids = tok(responses[s : s + chunk], add_special_tokens=False)["input_ids"]
        lengths += [len(e) + 1 for e in ids]  # + EOS, as a model stops
        parts.append([np.array(e + [eos], dtype=np.int64) for e in ids])
    width = max(lengths)
    arr = np.full((b, width), tok.pad_token_id, dtype=np.int64)
    i = 0
    for part in parts:
        for e in part:
            arr[i, : len(e)] = e
            i += 1
    del parts
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    responses_t, mask_t = torch.from_numpy(arr), torch.from_numpy(mask)
    prompts = torch.full((b, 1), eos, dtype=torch.long)
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses_t,
            "attention_mask": torch.cat([torch.ones((b, 1), dtype=torch.long), mask_t], dim=1),
        },
        non_tensors={"reward_model": np.array([{"ground_truth": g} for g in golds], dtype=object)},
    ), sum(lengths) / b


def main(argv=None):
    from bench_rewards import make_batch, plain_serial

    from dars.backends.verl.decode import response_texts
    from dars.backends.verl.reward import BatchReward

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=1560)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--baseline-problems", type=int, default=40, help="whole problems scored the plain ways")
    ap.add_argument("--workers", type=int, default=None, help="RewardScorer num_workers (default: one per CPU)")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    responses, golds, pid = make_batch(args.problems, args.samples, seed=args.seed)
    n = len(responses)
    print(f"batch: {args.problems} problems x {args.samples} samples = {n:,} items", flush=True)
    tok = train_tokenizer(random.Random(args.seed).sample(responses, min(3000, n)))
    rows, mean_tokens = verl_rows(tok, responses, golds)
    print(
        f"verl rows built in {time.perf_counter() - t:.0f}s: responses {tuple(rows.batch['responses'].shape)} int64, "
        f"mean {mean_tokens:.0f} tokens ({sum(map(len, responses)) / n / mean_tokens:.1f} chars/token)",
        flush=True,
    )

    reward = BatchReward(tok, "math_verify", timeout_s=args.timeout, num_workers=args.workers)
    t = time.perf_counter()
    reward(rows[:2])  # start the worker pool (once per run in the trainer)
    startup = time.perf_counter() - t

    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    scores = reward(rows)  # the measured call: decode + score + rm_scores, as the trainer makes it
    t_batch = time.perf_counter() - t
    t = time.perf_counter()
    texts = response_texts(rows, tok, table=reward.table)  # the decode part alone, for the breakdown
    t_decode = time.perf_counter() - t
    assert texts == responses, "the decode is not lossless"
    t = time.perf_counter()
    rust_texts = response_texts(rows, tok)  # every row through the tokenizer's batched Rust decode
    t_rust = time.perf_counter() - t
    assert rust_texts == texts, "the byte-table decode differs from the tokenizer's"
    del rust_texts
    assert rows.batch["rm_scores"].sum().item() == scores.sum()

    # ---- baselines on a random subset of whole problems (as bench_rewards.py), after a warm-up
    warm_r, warm_g, _ = make_batch(4, 32, seed=args.seed + 12345)
    plain_serial(warm_r, warm_g)
    chosen = set(
        random.Random(args.seed + 1).sample(range(args.problems), k=min(args.baseline_problems, args.problems))
    )
    idx = [i for i in range(n) if pid[i] in chosen]
    arr = rows.batch["responses"].numpy()
    valid = rows.batch["attention_mask"][:, 1:].sum(-1).tolist()
    t = time.perf_counter()
    naive_texts = [tok.decode(arr[i, : valid[i]].tolist(), skip_special_tokens=True) for i in idx]
    t_naive_decode = time.perf_counter() - t
    verdicts, plain_to, t_plain = plain_serial(naive_texts, [golds[i] for i in idx])
    mism = [i for k, i in enumerate(idx) if not plain_to[k] and verdicts[k] != bool(scores[i])]
    plain_tput = len(idx) / t_plain
    naive_tput = len(idx) / (t_plain + t_naive_decode)
    tput = n / t_batch

    print()
    print("=" * 78)
    print(f"BatchReward (verl rows -> rm_scores), {reward.scorer.num_workers} workers: {t_batch:,.1f}s for {n:,} items")
    print(
        f"   of which the decode: {t_decode:,.1f}s ({n / t_decode:,.0f} rows/s; byte table: "
        f"{'yes' if reward.table is not None else 'no'}); the batched Rust decode alone: {t_rust:,.1f}s "
        f"({t_rust / t_decode:.1f}x the time)"
    )
    print(
        f"plain serial math-verify on {len(idx):,} items: {t_plain:,.1f}s; with verl-naive decode: +{t_naive_decode:.1f}s"
    )
    print(f"plain serial, extrapolated to the full batch: {n / plain_tput:,.0f}s ({n / naive_tput:,.0f}s with decode)")
    print("-" * 78)
    print(f"speed-up over plain serial math-verify:          {tput / plain_tput:,.1f}x")
    print(f"speed-up over verl-naive serial (decode + mv):   {tput / naive_tput:,.1f}x")
    print(
        f"verdict mismatches on the subset: {len(mism)} of {len(idx):,} (excluded {sum(plain_to)} plain-internal timeouts)"
    )
    print(
        f"statuses: { {s: reward.scorer.stats().get(s, 0) for s in ('killed', 'crashed')} } pool events; mean reward {scores.mean():.3f}"
    )
    print(
        f"pool start-up (once per run): {startup:.2f}s; machine: {os.cpu_count()} CPUs, load {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(f"NOTE: baselines measured on {len(chosen)} whole problems and extrapolated.")
    print("=" * 78)
    reward.close()


if __name__ == "__main__":
    main()
