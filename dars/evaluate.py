"""Validation: n_val samples per problem, per-benchmark Avg@K and unbiased Pass@k."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from dars.data import Problem
from dars.metrics import pass_at_k_array, pass_at_k_curve_ks
from dars.rollout import RolloutEngine, SamplingParams


def summarize(records: list[dict], n_val: int, max_k: int | None = None) -> dict:
    """Flat ``val/<bench>/...`` numbers (docs/run-format.md); ``all`` is problem-weighted (micro,
    the paper's Avg@K column), ``macro`` the mean over benchmarks."""
    ks = pass_at_k_curve_ks(max_k or n_val)
    by_bench: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_bench[r["data_source"]].append(r)
    out: dict[str, float] = {}
    per_bench = {}
    for bench, rows in list(by_bench.items()) + [("all", records)]:  # benchmarks in data order
        n = np.array([len(r["scores"]) for r in rows])
        c = np.array([sum(r["scores"]) for r in rows])
        vals = {f"avg@{n_val}": float(np.mean(c / n)), "n_problems": len(rows)}
        for k in ks:
            vals[f"pass@{k}"] = float(np.nanmean(pass_at_k_array(n, c, k)))
        per_bench[bench] = vals
        out.update({f"val/{bench}/{key}": v for key, v in vals.items()})
    benches = [b for b in per_bench if b != "all"]
    for key in [f"avg@{n_val}"] + [f"pass@{k}" for k in ks]:
        out[f"val/macro/{key}"] = float(np.mean([per_bench[b][key] for b in benches]))
    return out


def run_validation(
    engine: RolloutEngine,
    scorer,
    tokenizer,
    problems: list[Problem],
    prompt_ids: list[list[int]],
    n_val: int,
    params: SamplingParams,
    save_responses: bool = False,
    max_k: int | None = None,
) -> tuple[list[dict], dict]:
    rollouts = engine.generate(prompt_ids, [n_val] * len(problems), params)
    texts = tokenizer.batch_decode(rollouts.response_ids, skip_special_tokens=False)
    golds = [problems[j].answer for j in rollouts.prompt_index]
    scored = scorer.score(texts, golds)
    records = []
    for j, p in enumerate(problems):
        idx = range(j * n_val, (j + 1) * n_val)  # the engine keeps prompt order
        rec = {
            "data_source": p.data_source,
            "id": p.id,
            "prompt": p.prompt,
            "answer": p.answer,
            "scores": [int(scored.rewards[i]) for i in idx],
            "response_lengths": [len(rollouts.response_ids[i]) for i in idx],
            "preds": [scored.extracted[i] for i in idx],
        }
        if save_responses:
            rec["responses"] = [texts[i] for i in idx]
        records.append(rec)
    return records, summarize(records, n_val, max_k)
