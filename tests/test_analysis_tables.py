"""Core results and tables on hand-made run directories with known numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import (
    HAND_EVAL_A,
    HAND_EVAL_B,
    HAND_EVAL_PERFECT,
    PLANTED_N_VAL,
    comb_pass_at_k,
    planted_counts,
    write_base_only_run,
    write_handmade_run,
    write_planted_run,
)

from analysis.core import Options, analyse, parse_checkpoint
from analysis.synthetic import write_sweep
from analysis.tables import cost_table, main_table, per_benchmark_table, to_latex, to_markdown, write_tables

FAST = {"n_boot": 200, "seed": 0}


def _avg(problems, src=None):
    vals = [sum(s) / len(s) for b, _i, s, _p in problems if src in (None, b)]
    return sum(vals) / len(vals)


def _passk(problems, k, src=None):
    vals = [comb_pass_at_k(len(s), sum(s), k) for b, _i, s, _p in problems if src in (None, b)]
    return sum(vals) / len(vals)


@pytest.fixture
def two_runs(tmp_path):
    write_handmade_run(tmp_path, "baseline", evals={2: HAND_EVAL_B, 4: HAND_EVAL_A})
    write_handmade_run(tmp_path, "dars_et", extra_per_step=3)
    return tmp_path


def test_main_table_numbers(two_runs):
    a = analyse([two_runs], Options(**FAST))
    assert a.K == 4 and a.benchmarks == ["aime", "math"]
    assert a.label_order == ["baseline", "dars_et"]
    mt = main_table(a)
    assert list(mt.columns) == ["AIME24", "MATH-500", "Avg@4", "Pass@4"]
    # dars_et judged at its last step (4 -> HAND_EVAL_B), baseline at 4 (HAND_EVAL_A)
    for lab, probs in (("dars_et", HAND_EVAL_B), ("baseline", HAND_EVAL_A)):
        assert mt.loc[lab, "AIME24"] == pytest.approx(_avg(probs, "aime"))
        assert mt.loc[lab, "MATH-500"] == pytest.approx(_avg(probs, "math"))
        assert mt.loc[lab, "Avg@4"] == pytest.approx(_avg(probs))
        assert mt.loc[lab, "Pass@4"] == pytest.approx(_passk(probs, 4))
    assert a.value("dars_et", "macro", "avg") == pytest.approx(
        (_avg(HAND_EVAL_B, "aime") + _avg(HAND_EVAL_B, "math")) / 2
    )
    for k in (1, 2, 3):
        assert a.value("baseline", "all", "pass", k) == pytest.approx(_passk(HAND_EVAL_A, k))
    # maj@4 at HAND_EVAL_B: aime-0 majority "1" is wrong, aime-1 tie 7/5 -> 0.5, math all right
    assert a.value("dars_et", "all", "maj", 4) == pytest.approx((0 + 0.5 + 1 + 1 + 1) / 5)
    # CIs bracket the estimate
    r = a.results[(a.results["label"] == "dars_et") & (a.results["benchmark"] == "all")]
    assert ((r["lo"] <= r["value"] + 1e-12) & (r["value"] <= r["hi"] + 1e-12)).all()


def test_checkpoint_choice(two_runs):
    best = analyse([two_runs], Options(checkpoint="best:aime", **FAST))
    ck = best.checkpoints.set_index("label")["step"]
    assert ck["baseline"] == 2 and ck["dars_et"] == 4  # the HAND_EVAL_B step of each
    assert main_table(best).loc["baseline", "AIME24"] == pytest.approx(_avg(HAND_EVAL_B, "aime"))
    by_name = analyse([two_runs], Options(checkpoint="best:AIME24:pass", **FAST))
    assert by_name.checkpoints.set_index("label")["step"]["baseline"] == 2
    step = analyse([two_runs], Options(checkpoint="step:3", **FAST))
    assert step.checkpoints["step"].tolist() == [2, 2]
    assert "step 3 not evaluated" in step.checkpoints["how"].iloc[0]
    none = analyse([two_runs], Options(checkpoint="step:1", **FAST))
    assert none.checkpoints.empty and not none.has_eval
    with pytest.raises(ValueError):
        parse_checkpoint("best:aime:median")


def test_labels_pool_seeds_and_order(tmp_path):
    write_handmade_run(tmp_path, "dars_et", seed=0, evals={4: HAND_EVAL_A})
    write_handmade_run(tmp_path, "dars_et", seed=1, evals={4: HAND_EVAL_B})
    write_handmade_run(tmp_path, "baseline", seed=0)
    # default: runs that differ only in their seed form one label (mean over the seeds)
    a = analyse([tmp_path], Options(**FAST))
    assert a.label_order == ["baseline", "dars_et"]
    assert a.value("dars_et", "all", "avg") == pytest.approx((_avg(HAND_EVAL_A) + _avg(HAND_EVAL_B)) / 2)
    per_seed = analyse([tmp_path], Options(pool_seeds=False, **FAST))
    assert per_seed.label_order == ["baseline", "dars_et-s0", "dars_et-s1"]
    pooled = analyse([tmp_path], Options(labels={"dars_et": "DARS-ET", "baseline": "GRPO"}, order=["DARS-ET"], **FAST))
    assert pooled.label_order == ["DARS-ET", "GRPO"]
    assert pooled.value("DARS-ET", "all", "avg") == pytest.approx((_avg(HAND_EVAL_A) + _avg(HAND_EVAL_B)) / 2)
    assert int(pooled.results.query("label == 'DARS-ET'")["n_runs"].iloc[0]) == 2
    glob = analyse([tmp_path], Options(labels={"dars_*-s1": "one"}, **FAST))
    assert sorted(glob.label_order) == ["baseline", "dars_et", "one"]
    excl = analyse([tmp_path], Options(exclude=["baseline*"], **FAST))
    assert "baseline" not in excl.label_order


def test_ragged_samples_report_missing_pass_at_k(tmp_path):
    probs = list(HAND_EVAL_B) + [("math", "math-short", [0, 1], ["1", "2"])]
    write_handmade_run(tmp_path, "dars_hw", evals={4: probs})
    a = analyse([tmp_path], Options(**FAST))
    r = a.results.set_index(["benchmark", "metric", "k"])
    row = r.loc[("all", "pass", 4)]
    assert row["n_defined"] == 5 and row["n_problems"] == 6
    assert row["value"] == pytest.approx(_passk(HAND_EVAL_B, 4))  # the short one is missing
    assert r.loc[("all", "pass", 2), "n_defined"] == 6
    assert a.value("dars_hw", "all", "avg") == pytest.approx(_avg(probs))
    run_notes = [n for _l, _p, ns in a.run_notes() for n in ns]
    assert any("fewer than K=4" in n for n in run_notes)
    out = tmp_path / "tables"
    write_tables(a, out)
    md = (out / "main.md").read_text()
    assert "*" in md.splitlines()[2] and "at least 4 samples" in md


def test_unknown_and_excluded_sources(tmp_path):
    probs = list(HAND_EVAL_B) + [("train", "t-0", [1, 1, 1, 1], ["a"] * 4), ("gsm_toy", "g-0", [0, 1, 0, 1], ["a"] * 4)]
    write_handmade_run(tmp_path, "dars_et", evals={4: probs})
    a = analyse([tmp_path], Options(**FAST))
    assert a.benchmarks == ["aime", "math", "gsm_toy"]
    assert a.value("dars_et", "all", "avg") == pytest.approx(_avg([p for p in probs if p[0] != "train"]))
    assert any("gsm_toy" in n for n in a.notes) and any("'train'" in n for n in a.notes)
    keep = analyse([tmp_path], Options(exclude_sources=(), **FAST))
    assert "train" in keep.benchmarks
    assert keep.value("dars_et", "all", "avg") == pytest.approx(_avg(probs))
    # the summary (written with train included) and the per-problem file agree: no mismatch note
    assert not any("summary.jsonl says" in n for _l, _p, ns in keep.run_notes() for n in ns)


def test_cost_table(two_runs):
    a = analyse([two_runs], Options(**FAST))
    ct = cost_table(a)
    e = 3  # dars_et: stage-2 rollouts = 3 * step, 4 prompts x 8 rollouts per step, 4 steps
    s2 = e * (1 + 2 + 3 + 4)
    row = ct.loc["dars_et"]
    assert row["Step"] == 4 and row["Optim. steps"] == 8 and row["Prompts"] == 16
    assert row["Rollouts"] == 128 + s2
    assert row["Roll./prompt S1"] == 8 and row["Roll./prompt S2"] == pytest.approx(s2 / 16)
    assert row["Roll./prompt"] == pytest.approx((128 + s2) / 16)
    tokens = 100 * (128 + s2)
    assert row["Gen. tokens (M)"] == pytest.approx(tokens / 1e6)
    assert row["Pass@4"] == pytest.approx(100 * _passk(HAND_EVAL_B, 4))
    assert row["Pass@4 / M tok"] == pytest.approx(100 * _passk(HAND_EVAL_B, 4) / (tokens / 1e6))
    # costs are counted up to the judged checkpoint
    a2 = analyse([two_runs], Options(checkpoint="step:2", **FAST))
    assert cost_table(a2).loc["dars_et", "Rollouts"] == 64 + e * 3


def test_markdown_and_latex_rendering():
    df = pd.DataFrame(
        {"AIME24": [0.1234, 0.2], "Avg@4": [0.5, 0.5], "Pass@4": [np.nan, 0.9]},
        index=pd.Index(["dars_et", "a&b"], name="label"),
    )
    # by default nothing is bold: a plain maximum says nothing about significance
    assert "**" not in to_markdown(df) and "textbf" not in to_latex(df)
    md = to_markdown(df, bold_best=True)  # the plain maximum as displayed, on request
    lines = md.splitlines()
    assert lines[0] == "| Run | AIME24 | Avg@4 | Pass@4 |"
    assert lines[2] == "| dars_et | 12.3 | **50.0** | – |"
    # ties are all bold; a column with a single value has nothing to beat: not bold
    assert lines[3] == "| a&b | **20.0** | **50.0** | 90.0 |"
    tex = to_latex(df, bold_best=True, caption="Main results", label="tab:x")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "dars\\_et & 12.3 & \\textbf{50.0} & -- \\\\" in tex
    assert "a\\&b & \\textbf{20.0}" in tex
    assert "\\begin{tabular}{lrrr}" in tex and "\\label{tab:x}" in tex
    # a mask bolds exactly its cells (what significant_best gives)
    mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    mask.loc["a&b", "Pass@4"] = True
    assert to_markdown(df, bold_best=mask).splitlines()[2:] == [
        "| dars_et | 12.3 | 50.0 | – |",
        "| a&b | 20.0 | 50.0 | **90.0** |",
    ]
    tex = to_latex(df, bold_best=mask)
    assert tex.count("textbf") == 1 and "\\textbf{90.0}" in tex


def test_write_tables_files(two_runs, tmp_path):
    a = analyse([two_runs], Options(**FAST))
    out = tmp_path / "t"
    written = write_tables(a, out)
    assert set(written) >= {"main", "main_ci", "passk", "pass1", "maj", "cost"}
    for name in (
        "main.md",
        "main.tex",
        "main.csv",
        "cost.csv",
        "passk.tex",
        "results_long.csv",
        "trajectory.csv",
        "training.csv",
    ):
        assert (out / name).stat().st_size > 0
    csv = pd.read_csv(out / "main.csv").set_index("label")
    assert csv.loc["dars_et", "all/avg@4"] == pytest.approx(_avg(HAND_EVAL_B))
    assert csv.loc["dars_et", "all/pass@4/lo"] <= csv.loc["dars_et", "all/pass@4"]
    assert csv.loc["baseline", "step"] == 4
    pk = per_benchmark_table(a, "pass", 4)
    assert list(pk.columns) == ["AIME24", "MATH-500", "Micro", "Macro"]
    assert "[" in (out / "main_ci.md").read_text()
    # every problem has K samples: nothing is flagged as partial (micro or macro)
    table_lines = [ln for ln in (out / "passk.md").read_text().splitlines() if ln.startswith("| ")]
    assert table_lines and not any("*" in ln.replace("**", "") for ln in table_lines)


def test_summary_and_recomputed_trajectories_agree(tmp_path):
    write_sweep(tmp_path, ("baseline", "dars_hw"), steps=10, eval_every=5, n_val=8)
    fast = analyse([tmp_path], Options(**FAST))
    slow = analyse([tmp_path], Options(use_summary=False, **FAST))
    key = ["label", "step", "benchmark", "metric", "k"]
    f = fast.trajectory.sort_values(key).reset_index(drop=True)
    s = slow.trajectory.sort_values(key).reset_index(drop=True)
    assert len(f) == len(s) > 0
    assert (f[key].to_numpy() == s[key].to_numpy()).all()
    np.testing.assert_allclose(f["value"], s["value"], atol=1e-12)
    pd.testing.assert_frame_equal(fast.results, slow.results)


def test_summary_mismatch_is_noted(tmp_path):
    run = write_handmade_run(tmp_path, "dars_et")
    lines = [json.loads(x) for x in (run / "eval" / "summary.jsonl").read_text().splitlines()]
    lines[-1]["val/all/avg@4"] = 0.123
    (run / "eval" / "summary.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    a = analyse([tmp_path], Options(**FAST))
    assert any("summary.jsonl says val/all/avg@4=0.123" in n for _l, _p, ns in a.run_notes() for n in ns)
    assert a.value("dars_et", "all", "avg") == pytest.approx(_avg(HAND_EVAL_B))


# --------------------------------------------------------------------------------------------
# runs that are not complete trained results are listed, never ranked (issue #11)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def with_untrained(tmp_path):
    """Two trained runs, a run killed before training whose (base-model) evaluation is perfect,
    a run killed after 3 steps that was only evaluated at step 0, and a run still running at
    step 4 of 8 whose last validation is perfect too."""
    write_handmade_run(tmp_path, "baseline", evals={2: HAND_EVAL_B, 4: HAND_EVAL_A})
    write_handmade_run(tmp_path, "dars_et", extra_per_step=3)
    write_base_only_run(tmp_path, "dars_hw")
    write_base_only_run(tmp_path, "depth_naive", steps=3, state="killed")
    write_handmade_run(tmp_path, "breadth_naive", state="running", evals={2: HAND_EVAL_A, 4: HAND_EVAL_PERFECT})
    return tmp_path


def test_untrained_and_partial_runs_are_left_out_and_listed(with_untrained, tmp_path):
    a = analyse([with_untrained], Options(**FAST))
    mt = main_table(a)
    assert list(mt.index) == ["baseline", "dars_et"]  # the perfect base and partial runs: out
    assert set(a.results["label"]) == {"baseline", "dars_et"}
    assert set(a.training["label"]) == {"baseline", "dars_et"}  # ... of the figures too
    assert set(a.trajectory["label"]) == {"baseline", "dars_et"}
    assert sorted(a.problems) == sorted(str(with_untrained / f"{e}-s0") for e in ("baseline", "dars_et"))
    ex = {e.name: e for e in a.excluded}
    assert set(ex) == {"dars_hw-s0", "depth_naive-s0", "breadth_naive-s0"}
    assert ex["dars_hw-s0"].kind == "base" and "no training step" in ex["dars_hw-s0"].reason
    assert ex["depth_naive-s0"].kind == "base"
    assert "trained to step 3 but evaluated only at step 0" in ex["depth_naive-s0"].reason
    assert "state killed" in ex["depth_naive-s0"].reason
    part = ex["breadth_naive-s0"]
    assert part.kind == "partial" and part.progress == "step 4 of 8" and part.judged == 4
    assert not any(e.shown_as for e in a.excluded)
    out = tmp_path / "t"
    write_tables(a, out)
    md = (out / "main.md").read_text()
    assert "dars_hw" not in md.split("\n\n")[0] and "breadth_naive" not in md.split("\n\n")[0]
    assert "Left out: 3 run(s) that are not complete trained results (2 not trained, 1 partial" in md
    assert mt["Avg@4"].max() < 1.0  # the perfect (base / half-trained) evaluations are nowhere
    assert "dars_hw" not in pd.read_csv(out / "cost.csv")["label"].tolist()


def test_include_base_and_partial_show_labelled_rows_never_ranked(with_untrained, tmp_path):
    a = analyse([with_untrained], Options(include_base=True, include_partial=True, **FAST))
    mt = main_table(a)
    assert list(mt.index) == ["baseline", "depth_naive (base)", "breadth_naive (partial)", "dars_et", "dars_hw (base)"]
    assert mt.loc["dars_hw (base)", "Avg@4"] == pytest.approx(1.0)
    assert mt.loc["breadth_naive (partial)", "Avg@4"] == pytest.approx(1.0)
    assert {e.shown_as for e in a.excluded} == set(mt.index) - {"baseline", "dars_et"}
    out = tmp_path / "t"
    write_tables(a, out)
    md = (out / "main.md").read_text()
    rows = {ln.split(" | ")[0][2:]: ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "**" not in rows["dars_hw (base)"] and "**" not in rows["breadth_naive (partial)"]
    assert "(base) / (partial) rows are not ranked" in md
    # not compared either: no paired difference and no claim uses them
    from analysis.claims import load_claims, write_claims

    write_claims(a, out, load_claims())
    pdel = pd.read_csv(out / "paired_deltas.csv")
    assert set(pdel["variant"]) <= {"baseline", "dars_et"}
    claims = pd.read_csv(out / "claims.csv")
    assert not claims["variant"].str.contains(r"\(").any()
    assert not claims["reference"].str.contains(r"\(").any()


def test_a_partial_seed_does_not_dilute_its_group(tmp_path):
    for s in (0, 1):
        write_handmade_run(tmp_path, "dars_et", seed=s, evals={4: HAND_EVAL_B})
    write_handmade_run(tmp_path, "dars_et", seed=2, state="failed", evals={2: HAND_EVAL_A})
    a = analyse([tmp_path], Options(**FAST))
    assert a.label_order == ["dars_et"]
    assert a.value("dars_et", "all", "avg") == pytest.approx(_avg(HAND_EVAL_B))
    assert int(a.results["n_runs"].iloc[0]) == 2
    assert any("dars_et: 1 run(s) partially trained left out" in n for n in a.notes)
    shown = analyse([tmp_path], Options(include_partial=True, **FAST))
    assert shown.label_order == ["dars_et", "dars_et (partial)"]
    assert shown.value("dars_et (partial)", "all", "avg") == pytest.approx(_avg(HAND_EVAL_A))


def test_best_checkpoint_is_never_the_base_model(tmp_path):
    # training made it worse: the best evaluation is the base model, which is not a checkpoint
    write_handmade_run(tmp_path, "dars_et", evals={0: HAND_EVAL_PERFECT, 2: HAND_EVAL_A, 4: HAND_EVAL_B})
    a = analyse([tmp_path], Options(checkpoint="best:all", **FAST))
    assert a.checkpoints["step"].tolist() == [4] and not a.excluded
    # ... but step:0 asks for the base model: then the run is not a trained result
    b = analyse([tmp_path], Options(checkpoint="step:0", **FAST))
    assert not b.has_eval and b.excluded[0].kind == "base"


# --------------------------------------------------------------------------------------------
# bold = significantly best (its paired-delta CI against every other row excludes 0)
# --------------------------------------------------------------------------------------------


def _planted(root, plan):
    """plan: experiment -> (shift, offset, extra): 3 seeds each; ``extra`` adds one correct
    sample to those problems of every seed (a small, noise-sized advantage)."""
    for exp, (shift, off, extra) in plan.items():
        for s in (0, 1, 2):
            counts = planted_counts(shift, off, s)
            counts = [min(PLANTED_N_VAL, c + (p in extra)) for p, c in enumerate(counts)]
            write_planted_run(root, exp, s, final_counts=counts)
    return root


def _bold_cells(md: str) -> dict[str, list[str]]:
    """row label -> the columns whose cell is bold, from a Markdown table."""
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        out[cells[0]] = [h for h, c in zip(header[1:], cells[1:], strict=True) if c.startswith("**")]
    return out


def _rule_mask(a, table, columns, cmp):
    """The rule restated: the column's top row is bold iff lo(top - other) > 0 for all others."""
    want = {}
    for col, (metric, bench) in columns.items():
        vals = table[col].dropna()
        top = vals.idxmax()
        los = []
        for other in vals.index.drop(top):
            c = cmp.compare(top, other, metric)
            d = c.delta if bench == "all" else c.by_benchmark[bench]
            los.append(d.lo)
        want[col] = top if min(los) > 0 else None
    return want


def test_bold_only_where_the_ci_excludes_zero(tmp_path):
    from analysis.significance import make_comparer

    # dars_hw: +3 correct samples of 8 on every problem (clearly better); dars_et: one more
    # correct sample on 3 of 30 problems (the highest Avg, but well inside the noise)
    _planted(tmp_path / "runs", {"baseline": (0, 0, ()), "dars_et": (0, 1, (1, 4, 17)), "dars_hw": (3, 0, ())})
    a = analyse([tmp_path / "runs"], Options(**FAST))
    out = tmp_path / "t"
    write_tables(a, out)
    main = _bold_cells((out / "main.md").read_text())
    assert main["dars_hw"] == ["AIME24", "MATH-500", "Avg@8", "Pass@8"]
    assert main["baseline"] == main["dars_et"] == []
    # every bold cell, and only those, is where the paired interval says so
    cmp = make_comparer(a)
    mt = main_table(a)
    cols = {"AIME24": ("avg", "aime"), "MATH-500": ("avg", "math"), "Avg@8": ("avg", "all"), "Pass@8": ("pass", "all")}
    want = _rule_mask(a, mt, cols, cmp)
    assert {c: [r for r, b in main.items() if c in b] for c in cols} == {
        c: [top] if top else [] for c, top in want.items()
    }
    pk = per_benchmark_table(a, "pass", 8)
    want = _rule_mask(a, pk, {"AIME24": ("pass", "aime"), "MATH-500": ("pass", "math"), "Micro": ("pass", "all")}, cmp)
    passk = _bold_cells((out / "passk.md").read_text())
    assert {c: [r for r, b in passk.items() if c in b] for c in want} == {
        c: [top] if top else [] for c, top in want.items()
    }
    assert "Macro" not in passk["dars_hw"]  # no paired interval for a macro mean
    assert "Never bold (no paired interval): Macro" in (out / "passk.md").read_text()
    tex = (out / "main.tex").read_text()
    assert tex.count("\\textbf") == 4 and "CI entirely above 0" in tex.split("\\caption")[1]


def test_noise_is_never_bold(tmp_path):
    _planted(tmp_path / "runs", {"baseline": (0, 0, ()), "dars_et": (0, 1, (1, 4, 17))})
    a = analyse([tmp_path / "runs"], Options(**FAST))
    mt = main_table(a)
    assert mt.loc["dars_et", "Avg@8"] > mt.loc["baseline", "Avg@8"]  # the higher mean...
    out = tmp_path / "t"
    write_tables(a, out)
    md = (out / "main.md").read_text()
    assert not any(_bold_cells(md).values())  # ... is not called best
    assert "no column's best is significantly better than every other row" in md
    from analysis.paired import Comparer

    d = Comparer(a, n_boot=FAST["n_boot"]).compare("dars_et", "baseline", "avg").delta
    assert d.estimate > 0 and d.lo < 0 < d.hi
    # without intervals nothing can be called best
    none = analyse([tmp_path / "runs"], Options(n_boot=0))
    write_tables(none, tmp_path / "t0")
    md0 = (tmp_path / "t0" / "main.md").read_text()
    assert "**" not in md0
    assert "Nothing is bold: no confidence intervals were computed (--bootstrap 0)" in md0
