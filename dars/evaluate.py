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


def before_after(base: list[dict], final: list[dict], n_val: int, k: int | None = None) -> list[dict]:
    """Per benchmark and overall (micro): Avg@n_val and Pass@k at the base (step 0) and at the
    final checkpoint, with the paired difference and its 95 % CI (a problem bootstrap: the same
    problems at both steps; dars.stats). Rows in data order, ``benchmark == "all"`` last."""
    from dars.stats import stratified_deltas

    k = k or n_val
    by_id = {r["id"]: r for r in base}
    final = [r for r in final if r["id"] in by_id]  # the same problems on both sides
    if not final:
        return []
    sources = [r["data_source"] for r in final]
    order = list(dict.fromkeys(sources))

    def per_problem(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        n = np.array([len(r["scores"]) for r in records])
        c = np.array([sum(r["scores"]) for r in records])
        return c / n, pass_at_k_array(n, c, k)

    before = per_problem([by_id[r["id"]] for r in final])
    after = per_problem(final)
    rows: dict[str, dict] = {b: {"benchmark": b, "n_problems": sources.count(b)} for b in order + ["all"]}
    rows["all"]["n_problems"] = len(final)
    codes = np.array([order.index(s) for s in sources])
    for metric, b_vals, a_vals in (("avg", before[0], after[0]), ("pass", before[1], after[1])):
        overall, per_bench = stratified_deltas(a_vals[None], b_vals[None], codes, paired=True)
        deltas = dict(zip(order, per_bench)) if len(order) > 1 else {order[0]: overall}
        deltas["all"] = overall
        for b, row in rows.items():
            mask = np.ones(len(final), bool) if b == "all" else codes == order.index(b)
            d = deltas[b]
            row[f"{metric}/base"] = float(np.nanmean(b_vals[mask]))
            row[f"{metric}/final"] = float(np.nanmean(a_vals[mask]))
            row[f"{metric}/delta"], row[f"{metric}/lo"], row[f"{metric}/hi"] = d.estimate, d.lo, d.hi
    return list(rows.values())
