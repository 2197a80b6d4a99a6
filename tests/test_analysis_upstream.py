"""The upstream repository's analysis_results.py numbers, against a straightforward math.comb implementation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from analysis_fixtures import ROOT  # noqa: F401  (puts the repo on sys.path)

from analysis.upstream import main as upstream_main
from analysis.upstream import upstream_numbers


def reference(items):
    """Independent, literal re-statement of docs/algorithm.md §8.2."""
    acc, cnt = {}, {}
    for it in items:
        s = it["data_source"]
        acc[s] = acc.get(s, 0) + sum(it["score"])
        cnt[s] = cnt.get(s, 0) + len(it["score"])
    per_source = {s: acc[s] / cnt[s] for s in acc}
    micro = sum(sum(it["score"]) for it in items) / sum(len(it["score"]) for it in items)
    macro_vals = [v for s, v in per_source.items() if s != "train"]
    macro = sum(macro_vals) / len(macro_vals)
    passes = {}
    for k in range(16, 129, 16):
        tot = 0.0
        for it in items:
            c = int(sum(it["score"]))
            n = 128
            tot += 1.0 if k > n - c else 1 - math.comb(n - c, k) / math.comb(n, k)
        passes[k] = tot / len(items)
    return per_source, micro, macro, passes


def make_items(seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for src, m, p in (
        ("aime", 6, 0.05),
        ("math", 20, 0.7),
        ("olympiad_bench", 10, 0.3),
        ("train", 8, 0.5),
        ("minerva", 5, 0.002),
    ):
        for i in range(m):
            q = rng.beta(0.5, 0.5) * p * 2
            scores = (rng.random(128) < min(q, 1)).astype(float).tolist()
            items.append(
                {
                    "input": f"{src}-{i}",
                    "output": ["."] * 128,
                    "answer": "1",
                    "score": scores,
                    "response_length": [1] * 128,
                    "data_source": src,
                }
            )
    items[0]["score"] = [0.0] * 128  # never solved
    items[1]["score"] = [0.0] * 127 + [1.0]  # solved once
    return items


def test_upstream_numbers_match_reference():
    items = make_items()
    res = upstream_numbers(items)
    per_source, micro, macro, passes = reference(items)
    assert res["per_source"] == pytest.approx(per_source, abs=1e-15)
    assert res["micro"] == pytest.approx(micro, abs=1e-15)
    assert res["macro"] == pytest.approx(macro, abs=1e-15)
    assert list(res["pass"]) == list(range(16, 129, 16))
    for k in passes:
        assert res["pass"][k] == pytest.approx(passes[k], abs=1e-12)
    # the conventions: macro excludes "train", micro and pass@k include it
    no_train = [it for it in items if it["data_source"] != "train"]
    assert res["macro"] == pytest.approx(reference(no_train)[2], abs=1e-15)
    assert res["micro"] != pytest.approx(reference(no_train)[1], abs=1e-9)
    assert res["pass"][128] == pytest.approx(np.mean([sum(it["score"]) > 0 for it in items]))


def test_upstream_cli_prints_the_upstream_layout(tmp_path, capsys):
    items = make_items(1)
    p = tmp_path / "100.json"
    p.write_text(json.dumps(items))
    assert upstream_main([str(p)]) == 0
    out = capsys.readouterr().out.splitlines()
    per_source, micro, macro, passes = reference(items)
    assert out[0] == f"## Load data: {p}"
    assert out[1] == str(per_source)
    assert out[2].startswith("## Micro Accuracy: ")
    assert float(out[2].split(": ")[1]) == pytest.approx(micro, abs=1e-15)
    assert float(out[3].split(": ")[1]) == pytest.approx(macro, abs=1e-15)
    for line, k in zip(out[4:12], range(16, 129, 16)):
        assert line.startswith(f"##  Pass{k}: ")
        assert float(line.split(": ")[1]) == pytest.approx(passes[k], abs=1e-12)


def test_upstream_cli_on_native_step_file_and_bad_file(tmp_path, capsys):
    items = make_items(2)
    p = tmp_path / "step_5.jsonl"
    with open(p, "w") as f:
        for it in items:
            f.write(
                json.dumps(
                    {"data_source": it["data_source"], "id": it["input"], "scores": [int(s) for s in it["score"]]}
                )
                + "\n"
            )
    assert upstream_main([str(p)]) == 0
    out = capsys.readouterr().out
    assert f"##  Pass128: {reference(items)[3][128]}"[:20] in out
    bad = tmp_path / "9.json"
    bad.write_text("[{")
    assert upstream_main([str(bad)]) == 1
