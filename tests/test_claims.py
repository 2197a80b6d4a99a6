"""Claims and paired differences on synthetic seed groups with planted effects.

Every verdict asserted here is of a *planted* comparison on synthetic runs (a claims file
written by the test); the shipped claims C1-C8 are only checked to load, to reference known
metrics and to produce one row each - never for their verdict.
"""

from __future__ import annotations

import contextlib
import io
import math

import pandas as pd
import pytest
from analysis_fixtures import PLANTED_N_VAL, planted_counts, planted_mean_delta, planted_problems, write_planted_run

from analysis import regenerate
from analysis.claims import load_claims, parse_claims, write_claims
from analysis.core import Options, analyse
from analysis.names import EXPERIMENTS
from analysis.paired import BASE, Comparer, pair_seeds, parse_metric
from analysis.runs import Run
from dars.stats import CONTRADICTED, HOLDS, INCONCLUSIVE, NOT_RUN

# experiment -> (count shift, jitter offset, entropy level, rollouts per prompt, seeds)
PLAN = {
    "baseline": (2, 0, 1.0, 8.0, (0, 1, 2)),
    "depth_naive": (2, 1, 1.0, 32.0, (0, 1, 2)),  # same accuracy as the baseline (Δ = 0)
    "breadth_naive": (3, 2, 1.5, 8.0, (0, 1, 2)),  # higher
    "dars_et": (1, 1, 1.1, 14.0, (0, 1, 2)),  # lower
    "dars_hw": (2, 2, 1.2, 20.0, (0, 1, 2)),
    "dars_et_breadth": (3, 0, 1.6, 14.0, (3, 4, 5)),  # seeds the baseline does not have
    "dars_hw_breadth": (3, 1, 1.6, 20.0, (0, 1, 2)),
}

PLANTED = """
claims:
  - id: POS
    text: planted positive
    variant: breadth_naive
    reference: baseline
    metric: [avg, pass]
    direction: greater
  - id: NEG
    text: planted negative
    variant: dars_et
    reference: baseline
    metric: avg
    direction: greater
  - id: ZERO
    text: planted zero
    variant: depth_naive
    reference: baseline
    metric: avg
    direction: greater
  - id: BASE
    text: planted gain over the base model
    variant: baseline
    reference: base
    metric: avg
    direction: greater
  - id: RUN
    text: planted per-run quantities
    comparisons:
      - {variant: breadth_naive, reference: baseline, metric: entropy_second_half,
         direction: greater}
      - {variant: dars_et, reference: depth_naive, metric: rollouts_per_prompt, direction: less}
  - id: GONE
    text: a group that is not in the sweep
    variant: no_such_experiment
    reference: baseline
    metric: avg
    direction: greater
"""


def _sweep(root, plan=PLAN, killed=True):
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for exp, (shift, off, ent, rpp, seeds) in plan.items():
        for s in seeds:
            write_planted_run(root, exp, s, shift, off, ent, rpp)
    if killed:  # killed before training: only the base model's evaluation
        write_planted_run(root, "dars_hw", 3, trained=False)
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return _sweep(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def analysis(sweep):
    return analyse([sweep], Options(n_boot=300))


@pytest.fixture(scope="module")
def judged(analysis, tmp_path_factory):
    out = tmp_path_factory.mktemp("claims")
    path = out / "planted.yaml"
    path.write_text(PLANTED)
    claims = load_claims([path], paper=True)
    written = write_claims(analysis, out, claims)
    return out, written, pd.read_csv(out / "claims.csv")


def _counts(exp):
    shift, off, _e, _r, seeds = PLAN[exp]
    return [planted_counts(shift, off, s) for s in seeds]


BASE_COUNTS = [[c for _s, _i, c in planted_problems()]] * 3


# --------------------------------------------------------------------------------------------
# the claims file
# --------------------------------------------------------------------------------------------


def test_shipped_claims_load_and_reference_known_metrics():
    claims = load_claims()
    assert [c.id for c in claims] == [f"C{i}" for i in range(1, 9)]
    for c in claims:
        assert c.text and c.checks
        for ch in c.checks:
            parse_metric(ch.metric)  # raises on an unknown metric
            assert ch.direction in ("greater", "less")
            assert ch.variant in EXPERIMENTS
            assert ch.reference in EXPERIMENTS or ch.reference == BASE
    by_id = {c.id: c for c in claims}
    assert len(by_id["C6"].checks) == 4  # two variants x two metrics
    assert {ch.metric for ch in by_id["C7"].checks} == {"entropy_second_half"}
    assert {ch.metric for ch in by_id["C8"].checks} == {"rollouts_per_prompt"}


def test_user_claims_extend_and_replace(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "claims:\n"
        "  - {id: C1, text: replaced, variant: dars_hw, reference: base, metric: pass@2,"
        " direction: greater}\n"
        "  - {id: X1, text: mine, variant: a, reference: b, metric: 'mean:acc/stage1',"
        " direction: less}\n"
    )
    claims = load_claims([f])
    ids = [c.id for c in claims]
    assert ids[0] == "C1" and ids[-1] == "X1" and len(ids) == 9
    assert claims[0].text == "replaced" and claims[0].checks[0].metric == "pass@2"
    assert [c.id for c in load_claims([f], paper=False)] == ["C1", "X1"]


@pytest.mark.parametrize(
    "body,msg",
    [
        ("- {id: A, variant: x, reference: y, metric: median, direction: greater}", "unknown metric"),
        ("- {id: A, variant: x, reference: y, metric: avg, direction: up}", "direction must be"),
        ("- {id: A, variant: x, reference: y, metrics: avg, direction: less}", "unknown key"),
        ("- {variant: x, reference: y, metric: avg, direction: less}", "missing 'id'"),
        ("- {id: A, reference: y, metric: avg, direction: less}", "missing 'variant'"),
    ],
)
def test_bad_claims_are_reported(body, msg):
    import yaml

    with pytest.raises(ValueError, match=msg) as e:
        parse_claims(yaml.safe_load(body), "f.yaml")
    assert "f.yaml" in str(e.value)


# --------------------------------------------------------------------------------------------
# planted effects: estimate and verdict
# --------------------------------------------------------------------------------------------


def _row(table, claim, metric_prefix="Avg"):
    sub = table[(table["claim"] == claim) & table["metric"].str.startswith(metric_prefix)]
    assert len(sub) == 1, sub
    return sub.iloc[0]


def test_planted_estimates_and_verdicts(judged):
    _out, _w, t = judged
    pos = _row(t, "POS")
    assert pos["delta"] == pytest.approx(planted_mean_delta(_counts("breadth_naive"), _counts("baseline")))
    assert pos["verdict"] == HOLDS and pos["lo"] > 0 and pos["unit"] == "fraction"
    pos_pass = _row(t, "POS", "Pass")
    assert pos_pass["delta"] == pytest.approx(
        planted_mean_delta(_counts("breadth_naive"), _counts("baseline"), k=PLANTED_N_VAL)
    )
    neg = _row(t, "NEG")
    assert neg["delta"] == pytest.approx(planted_mean_delta(_counts("dars_et"), _counts("baseline")))
    assert neg["delta"] < 0 and neg["verdict"] == CONTRADICTED
    zero = _row(t, "ZERO")
    assert zero["delta"] == pytest.approx(0.0, abs=1e-12)
    assert zero["lo"] < 0 < zero["hi"] and zero["verdict"] == INCONCLUSIVE
    assert zero["half_width"] == pytest.approx((zero["hi"] - zero["lo"]) / 2)
    base = _row(t, "BASE")
    assert base["delta"] == pytest.approx(planted_mean_delta(_counts("baseline"), BASE_COUNTS))
    assert base["reference"] == BASE and base["verdict"] == HOLDS and bool(base["paired_seeds"])
    run = t[t["claim"] == "RUN"].set_index("variant")
    assert run.loc["breadth_naive", "delta"] == pytest.approx(0.5)
    assert run.loc["breadth_naive", "unit"] == "nats"
    assert run.loc["breadth_naive", "n_problems"] == 0
    assert run.loc["dars_et", "delta"] == pytest.approx(14.0 - 32.0)
    assert set(run["verdict"]) == {HOLDS}
    gone = t[t["claim"] == "GONE"].iloc[0]
    assert gone["verdict"] == NOT_RUN and "no runs of 'no_such_experiment'" in gone["note"]
    assert math.isnan(gone["delta"])


def test_shipped_claims_give_one_row_per_comparison(judged):
    _out, _w, t = judged
    counts = t[t["claim"].str.fullmatch(r"C\d")].groupby("claim").size().to_dict()
    assert counts == {"C1": 1, "C2": 1, "C3": 2, "C4": 1, "C5": 1, "C6": 4, "C7": 3, "C8": 2}
    assert set(t["verdict"]) <= {HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_RUN}


def test_killed_run_is_left_out_and_said_so(judged, analysis):
    out, _w, t = judged
    c3 = t[(t["claim"] == "C3") & (t["variant"] == "dars_hw")].iloc[0]
    assert c3["n_seeds"] == 3  # not 4: dars_hw-s3 only has its step-0 evaluation
    assert "dars_hw-s3: judged at step 0" in (out / "claims.md").read_text()
    # nor does it dilute the label's pooled main-table numbers
    want = sum(sum(row) for row in _counts("dars_hw")) / (3 * 30 * PLANTED_N_VAL)
    assert analysis.value("dars_hw", "all", "avg") == pytest.approx(want)
    assert any("dars_hw: 1 run(s) judged at step 0" in n for n in analysis.notes)
    # ... nor its figures (figure 3's steps every seed has; figure 4's band over seeds)
    from analysis.figures import run_passk_curves, trajectory_points

    pts = trajectory_points(analysis, "dars_hw")
    assert pts["step"].tolist() == [0, 6] and set(pts["n_runs"]) == {3}
    assert run_passk_curves(analysis, "dars_hw", "all").shape == (3, PLANTED_N_VAL)


def test_paired_and_unpaired_seed_groups(analysis):
    cmp = Comparer(analysis, n_boot=300)
    paired = cmp.compare("breadth_naive", "baseline", "avg").delta
    assert paired.paired_seeds and paired.n_seeds == paired.n_seeds_ref == 3
    unpaired = cmp.compare("dars_et_breadth", "baseline", "avg")
    d = unpaired.delta
    assert not d.paired_seeds and (d.n_seeds, d.n_seeds_ref) == (3, 3)
    assert d.estimate == pytest.approx(planted_mean_delta(_counts("dars_et_breadth"), _counts("baseline")))
    # per benchmark and overall from the same comparison
    assert set(unpaired.by_benchmark) == {"aime", "math"}
    assert unpaired.by_benchmark["aime"].n_problems == 9 and d.n_problems == 30


def _run(name, seed):
    from pathlib import Path

    return Run(path=Path("/x") / name, kind="native", name=name, experiment=name, seed=seed)


def test_pair_seeds_rule():
    a = [_run("a", s) for s in (0, 1, 2)]
    v, r, paired, note = pair_seeds(a, [_run("b", s) for s in (2, 0)])
    assert paired and [x.seed for x in v] == [0, 2] == [x.seed for x in r]
    assert "left out" in note and "a" in note
    assert not pair_seeds(a, [_run("b", s) for s in (0, 7, 8)])[2]  # one common seed: unpaired
    assert not pair_seeds(a, [_run("b", 0), _run("c", 0)])[2]  # a seed twice: not seeds
    assert not pair_seeds(a, [_run("b", None), _run("c", 1)])[2]
    assert pair_seeds([_run("a", 4)], [_run("b", 4)])[2]  # one run each, same seed


def test_base_is_each_runs_own_step0(tmp_path):
    """Seeds whose base evaluations differ a lot, each trained run exactly 2 samples per
    problem better than its own step 0: Δ = 2/n with no spread at all, which pairing with any
    other seed's step 0 (or a pooled base) could not give."""
    for seed, shift in ((0, 0), (1, 1), (2, -1)):
        base = [min(6, max(0, c + shift)) for _s, _i, c in planted_problems()]
        write_planted_run(tmp_path, "baseline", seed, base_counts=base, final_counts=[b + 2 for b in base])
    a = analyse([tmp_path], Options(n_boot=200))
    d = Comparer(a, n_boot=200).compare("baseline", BASE, "avg").delta
    assert d.estimate == pytest.approx(2 / PLANTED_N_VAL)
    assert d.lo == pytest.approx(2 / PLANTED_N_VAL) and d.hi == pytest.approx(2 / PLANTED_N_VAL)
    assert d.paired_seeds and d.n_seeds == 3


def test_missing_groups_are_not_run_rows(tmp_path):
    plan = {k: v for k, v in PLAN.items() if k not in ("depth_naive", "dars_hw_breadth")}
    a = analyse([_sweep(tmp_path, plan, killed=False)], Options(n_boot=100))
    out = tmp_path / "t"
    write_claims(a, out, load_claims())
    t = pd.read_csv(out / "claims.csv")
    c2 = t[t["claim"] == "C2"].iloc[0]
    assert c2["verdict"] == NOT_RUN and "no runs of 'depth_naive'" in c2["note"]
    assert (t[t["claim"] == "C8"]["verdict"] == NOT_RUN).all()
    summary = pd.read_csv(out / "claims_summary.csv").set_index("claim")
    assert summary.loc["C2", "verdict"] == NOT_RUN
    assert "not run" in (out / "claims.md").read_text()


def test_without_step0_the_base_comparison_is_not_run(tmp_path):
    from analysis_fixtures import HAND_EVAL_B, write_handmade_run

    write_handmade_run(tmp_path, "baseline", evals={4: HAND_EVAL_B})
    a = analyse([tmp_path], Options(n_boot=100))
    c = Comparer(a, n_boot=100).compare("baseline", BASE, "avg")
    assert c.delta is None and "no step-0" in c.reason


def test_one_seed_per_run_metric_is_inconclusive(tmp_path):
    plan = {k: (*PLAN[k][:4], (0,)) for k in ("baseline", "breadth_naive")}
    a = analyse([_sweep(tmp_path, plan, killed=False)], Options(n_boot=100))
    claims = parse_claims(
        {
            "claims": [
                {
                    "id": "E",
                    "variant": "breadth_naive",
                    "reference": "baseline",
                    "metric": "entropy_second_half",
                    "direction": "greater",
                }
            ]
        }
    )
    write_claims(a, tmp_path / "t", claims)
    row = pd.read_csv(tmp_path / "t" / "claims.csv").iloc[0]
    assert row["delta"] == pytest.approx(0.5) and row["verdict"] == INCONCLUSIVE
    assert ">= 2 seeds" in row["note"]


def test_per_seed_labels_make_experiment_names_ambiguous(sweep):
    a = analyse([sweep], Options(n_boot=100, pool_seeds=False))
    c = Comparer(a, n_boot=100).compare("baseline", BASE, "avg")
    assert c.delta is None and "several labels of experiment 'baseline'" in c.reason
    one = Comparer(a, n_boot=100).compare("baseline-s0", BASE, "avg").delta
    assert one.n_seeds == 1  # a single run against its own step 0


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def test_regenerate_writes_prints_and_embeds_claims(sweep, tmp_path):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = regenerate.main([str(sweep), "--out", str(tmp_path), "--no-figures", "--bootstrap", "200"])
    assert rc == 0
    text = buf.getvalue()
    tables = tmp_path / "tables"
    md = (tables / "claims.md").read_text()
    csv = pd.read_csv(tables / "claims.csv")
    assert sorted(set(csv["claim"])) == [f"C{i}" for i in range(1, 9)]
    for cid in [f"C{i}" for i in range(1, 9)]:
        assert f"| {cid} |" in md and f"| {cid} |" in text
    # printed after the main table, and first in index.md
    assert text.index("| Run | AIME24") < text.index("| Claim | Comparison |")
    index = (tmp_path / "index.md").read_text()
    assert index.index("## Claims") < index.index("## Runs") < index.index("## Main table")
    pd_csv = pd.read_csv(tables / "paired_deltas.csv")
    assert {"aime", "math", "all"} <= set(pd_csv["benchmark"])
    assert {"base", "baseline"} == set(pd_csv["reference"])
    assert "## Paired differences" in index
    # only the user's claims
    f = tmp_path / "mine.yaml"
    f.write_text(PLANTED)
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            regenerate.main(
                [
                    str(sweep),
                    "--out",
                    str(tmp_path / "o2"),
                    "--no-figures",
                    "--bootstrap",
                    "100",
                    "--claims",
                    str(f),
                    "--no-paper-claims",
                ]
            )
            == 0
        )
    ids = set(pd.read_csv(tmp_path / "o2" / "tables" / "claims.csv")["claim"])
    assert ids == {"POS", "NEG", "ZERO", "BASE", "RUN", "GONE"}
