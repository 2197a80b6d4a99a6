"""Rollout engines: vLLM against Hugging Face ``generate`` on the same prompts, model and sampling
settings (a script, not a test). Run it in the vLLM venv (README: Rollout engines):

    .venv-vllm/bin/python benchmarks/bench_rollout.py                      # the shipped tiny base
    .venv-vllm/bin/python benchmarks/bench_rollout.py --prompts 128 --n 8 --max-new-tokens 64

Both engines are the trainer's own (dars.rollout.hf.HFGenerateEngine, dars.rollout.vllm.VLLMEngine)
on one model in fp32 on this machine's device. Prints generated tokens per second for the first call
(vLLM: engine construction reported apart) and the median of warm calls, the weight-sync time, and
the ratio vLLM / HF. Measured on the 2-core CPU machine (2026-12-02, defaults): HF 3,100 tokens/s,
vLLM 7,100 tokens/s warm (2.3x), after 15.5 s of vLLM engine construction; weight sync 27 ms. The
GPU figure is for you to measure on your GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prompts_for(tok, count: int) -> list[list[int]]:
    """Questions of the tiny preset's synthetic levels, as the trainer encodes them."""
    import random

    from dars.data.synthetic import LEVELS
    from dars.rollout import encode_prompt

    r = random.Random(0)
    names = sorted(LEVELS)
    return [encode_prompt(tok, LEVELS[names[i % len(names)]](r)[0] + "=") for i in range(count)]  # "{question}="


def timed(engine, prompts, counts, params, repeats: int):
    """(first-call seconds, median warm seconds, generated tokens per call)."""
    import torch

    times, tokens = [], 0
    for k in range(1 + repeats):
        torch.manual_seed(k)
        t = time.perf_counter()
        ro = engine.generate(prompts, counts, params)
        times.append(time.perf_counter() - t)
        tokens = sum(ro.lengths)
    return times[0], statistics.median(times[1:]), tokens


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a Hugging Face model folder (default: the shipped tiny base)")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="warm calls after the first")
    ap.add_argument("--hf-micro-batch", type=int, default=512, help="sequences per HF generate call")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dars.model import SHIPPED_BASE
    from dars.rollout import SamplingParams
    from dars.rollout.hf import HFGenerateEngine
    from dars.rollout.vllm import VLLMEngine

    model_dir = args.model or str(SHIPPED_BASE)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = prompts_for(tok, args.prompts)
    counts = [args.n] * len(prompts)
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens)
    max_len = max(map(len, prompts)) + args.max_new_tokens
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model {model_dir} ({n_params / 1e6:.1f}M parameters, fp32) on {device}; {len(prompts)} prompts x {args.n}"
        f" samples, up to {args.max_new_tokens} new tokens; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    hf = HFGenerateEngine(model, tok, device, nullcontext, args.hf_micro_batch)
    hf_first, hf_warm, hf_tokens = timed(hf, prompts, counts, params, args.repeats)

    t = time.perf_counter()
    vllm = VLLMEngine(
        model,
        model_dir,
        max_model_len=max_len,
        max_num_seqs=min(1024, len(prompts) * args.n),
        gpu_memory_utilization=0.3,
        dtype="float32",
        enable_sleep_mode=False,
    )
    t_build = time.perf_counter() - t
    v_first, v_warm, v_tokens = timed(vllm, prompts, counts, params, args.repeats)
    syncs = []
    for _ in range(3):
        t = time.perf_counter()
        vllm.sync_weights()
        syncs.append(time.perf_counter() - t)

    print()
    print("=" * 78)
    print(f"{'engine':<10}{'first call (s)':>16}{'warm call (s)':>16}{'tokens/call':>14}{'warm tok/s':>14}")
    print(f"{'hf':<10}{hf_first:>16.2f}{hf_warm:>16.2f}{hf_tokens:>14,}{hf_tokens / hf_warm:>14,.0f}")
    print(f"{'vllm':<10}{v_first:>16.2f}{v_warm:>16.2f}{v_tokens:>14,}{v_tokens / v_warm:>14,.0f}")
    print("-" * 78)
    print(
        f"vLLM engine construction (once per run): {t_build:.1f}s; weight sync: {statistics.median(syncs) * 1e3:.0f} ms"
    )
    print(f"warm throughput ratio vLLM / HF: {(v_tokens / v_warm) / (hf_tokens / hf_warm):.2f}x")
    print("=" * 78)


if __name__ == "__main__":
    main()
