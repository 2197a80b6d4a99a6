"""The commands end to end on hand-made run directories (good and bad), and interoperability."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from analysis_fixtures import HAND_EVAL_A, HAND_EVAL_B, ROOT, write_base_only_run, write_handmade_run

from analysis import figures as figures_cli
from analysis import regenerate, runs, tables, upstream
from analysis.synthetic import to_upstream_dumps, to_verl_dumps, write_run
from dars.runlock import RunLock


@pytest.fixture(scope="module")
def messy_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    write_handmade_run(root, "baseline")
    write_handmade_run(root, "dars_et", extra_per_step=4)
    # in progress: truncated metrics line, a validation still being written
    hw = write_handmade_run(root, "dars_hw", state="running", extra_per_step=8)
    RunLock(hw).acquire()  # its writer is alive: "running" is believed only while the run's lock is held
    with open(hw / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "prompts": 4, "rollouts/st')
    with open(hw / "eval" / "step_6.jsonl", "w") as f:
        f.write(json.dumps({"data_source": "aime", "id": "aime-0", "scores": [1, 1, 1, 1]}) + "\n")
    # failed before any evaluation
    write_handmade_run(root, "dars_hw_breadth", state="failed", evals={})
    # only the config so far
    (root / "depth_naive-s0" / ".hydra").mkdir(parents=True)
    (root / "depth_naive-s0" / ".hydra" / "config.yaml").write_text("experiment_name: depth_naive\n")
    # status written, metrics file still empty
    bn = root / "breadth_naive-s0"
    bn.mkdir()
    (bn / "status.json").write_text(
        json.dumps({"state": "running", "step": 0, "total_steps": 9, "experiment": "breadth_naive", "seed": 0})
    )
    (bn / "metrics.jsonl").write_text("")
    RunLock(bn).acquire()
    # unknown data source and an empty (unreadable) step file listed in the summary
    probs = list(HAND_EVAL_B) + [("toy_arith", "t-1", [1, 0, 0, 0], ["1", "2", "3", "4"])]
    eb = write_handmade_run(root, "dars_et_breadth", evals={2: HAND_EVAL_A, 4: probs})
    (eb / "eval" / "step_2.jsonl").write_text("")
    return root


@pytest.fixture(scope="module")
def regenerated(messy_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = regenerate.main(
            [
                str(messy_sweep),
                "--out",
                str(out),
                "--bootstrap",
                "200",
                "--formats",
                "png",
                "--dpi",
                "60",
                "--label",
                "dars_et=DARS-ET",
            ]
        )
    return rc, buf.getvalue(), out


def test_regenerate_end_to_end(regenerated, messy_sweep):
    rc, text, out = regenerated
    assert rc == 0
    # the main table is printed
    assert "| Run | AIME24 | MATH-500 | toy_arith | Avg@4 | Pass@4 |" in text
    assert "| DARS-ET |" in text and "| baseline |" in text
    # the run in progress and the failed one are not results: listed with their step, not ranked
    assert "| dars_hw |" not in text and "| dars_hw_breadth |" not in text
    assert "Not trained / excluded runs (2)" in text
    hw, hwb = messy_sweep / "dars_hw-s0", messy_sweep / "dars_hw_breadth-s0"
    assert f"{hw}: partial: step 4 of 8 (state running); judged at step 4" in text
    assert f"{hwb}: partial: step 4 of 8 (state failed, error: boom); no evaluation" in text
    # what was skipped, and why
    assert "Skipped 2 run(s)" in text
    assert "depth_naive-s0: nothing written yet" in text
    assert "breadth_naive-s0: nothing written yet" in text and "state: running" in text
    assert "in progress (step 4/8)" in text
    assert "skipped a truncated last line" in text
    assert "eval at step 6 still being written" in text
    assert "run failed: boom" in text
    assert "step_2.jsonl: empty file" in text and "eval at step 2 has no problems" in text
    assert "toy_arith" in text
    # files
    for name in ("main.md", "main.tex", "main.csv", "cost.md", "cost.csv", "passk.md", "maj.md"):
        assert (out / "tables" / name).stat().st_size > 0
    for n in range(1, 8):
        assert list((out / "figures").glob(f"fig{n}_*.png"))
    index = (out / "index.md").read_text()
    assert "![fig1_entropy](figures/fig1_entropy.png)" in index
    assert "![fig6_expected_rollouts](figures/fig6_expected_rollouts.png)" in index
    assert "| Run | AIME24 |" in index and "## Cost" in index and "Skipped 2 run(s)" in index
    assert "## Not trained / excluded runs" in index
    assert f"| `{hw}` | dars_hw | partial | step 4 of 8 |" in index
    assert f"| `{hwb}` | dars_hw_breadth | partial | step 4 of 8 |" in index
    main = pd.read_csv(out / "tables" / "main.csv").set_index("label")
    assert sorted(main.index) == ["DARS-ET", "baseline", "dars_et_breadth"]
    assert main.loc["dars_et_breadth", "step"] == 4
    assert "dars_hw" not in set(pd.read_csv(out / "tables" / "cost.csv")["label"])
    assert "dars_hw" not in set(pd.read_csv(out / "tables" / "paired_deltas.csv")["variant"])
    assert "dars_hw" not in set(pd.read_csv(out / "tables" / "training.csv")["label"])


def test_include_partial_shows_the_run_in_progress(messy_sweep, tmp_path, capsys):
    out = tmp_path / "o"
    assert (
        regenerate.main(
            [
                str(messy_sweep),
                "--out",
                str(out),
                "--bootstrap",
                "100",
                "--formats",
                "png",
                "--dpi",
                "40",
                "--include-partial",
            ]
        )
        == 0
    )
    for n in range(1, 8):  # the shown rows are drawn like any other label
        assert list((out / "figures").glob(f"fig{n}_*.png"))
    main = pd.read_csv(out / "tables" / "main.csv").set_index("label")
    assert main.loc["dars_hw (partial)", "step"] == 4  # its last complete validation
    cost = pd.read_csv(out / "tables" / "cost.csv").set_index("label")
    assert cost.loc["dars_hw_breadth (partial)", "rollouts"] == 4 * 8 * 4  # training cost only
    assert pd.isna(cost.loc["dars_hw_breadth (partial)", "pass_K"])
    text = capsys.readouterr().out
    assert "shown as 'dars_hw (partial)'" in text and "no evaluation yet" in text


def _tree(root):
    """Every path below ``root`` with its bytes (to check a report is left exactly as it was)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def old_report(tmp_path):
    write_handmade_run(tmp_path / "runs", "baseline")
    write_handmade_run(tmp_path / "runs", "dars_hw", extra_per_step=2)
    out = tmp_path / "report"
    assert (
        regenerate.main([str(tmp_path / "runs"), "--out", str(out), "--bootstrap", "50", "--no-figures", "--quiet"])
        == 0
    )
    (out / "my_notes.txt").write_text("mine")
    assert "| dars_hw |" in (out / "index.md").read_text()
    return out, _tree(out)


def test_no_runs_exits_2_and_leaves_the_report_alone(old_report, tmp_path, capsys):
    out, before = old_report
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "README").write_text("no runs here")
    cases = {
        "mistyped": ([str(tmp_path / "rnus")], "rnus: does not exist"),
        "empty folder": ([str(tmp_path / "empty")], "empty: is empty"),
        "no run below": ([str(tmp_path / "plain")], "plain: holds no run directory"),
        "one of two mistyped": ([str(tmp_path / "runs"), str(tmp_path / "rnus")], "rnus: does not exist"),
    }
    for what, (dirs, why) in cases.items():
        for mod, argv in ((regenerate, ["--no-figures"]), (tables, [])):
            assert mod.main(dirs + ["--out", str(out)] + argv) == 2, what
            err = capsys.readouterr().err
            assert why in err and "Fix:" in err, (what, err)
            assert f"Nothing was written: {out} was left as it was" in err
            assert _tree(out) == before, what  # byte for byte, nothing added or removed


def test_nothing_analysable_exits_1_and_leaves_the_report_alone(old_report, tmp_path, capsys):
    out, before = old_report
    only = tmp_path / "only" / "x-s0" / ".hydra"
    only.mkdir(parents=True)
    (only / "config.yaml").write_text("experiment_name: x\n")
    assert regenerate.main([str(tmp_path / "only"), "--out", str(out), "--no-figures"]) == 1
    # every run found is not a trained result: listed, and the fix named
    write_base_only_run(tmp_path / "killed", "dars_et")
    assert regenerate.main([str(tmp_path / "killed"), "--out", str(out), "--no-figures"]) == 1
    cap = capsys.readouterr()
    assert "nothing could be analysed" in cap.err and "--include-base" in cap.err
    assert "x-s0: nothing written yet" in cap.out
    assert f"{tmp_path / 'killed' / 'dars_et-s0'}: not trained" in cap.out
    assert tables.main([str(tmp_path / "only"), "--out", str(out)]) == 1
    assert _tree(out) == before
    assert runs.main([str(tmp_path / "empty_no")]) == 1


def test_a_crash_midway_leaves_the_old_report(old_report, monkeypatch):
    out, before = old_report
    runs_dir = out.parent / "runs"
    write_handmade_run(runs_dir, "dars_et", extra_per_step=1)  # something new to write

    def crash(a, path, *args, **kw):  # a real figure is written, then the process dies
        figures_cli.write_figures(a, path, [5], ("png",), dpi=40)
        raise KeyboardInterrupt("killed while drawing")

    monkeypatch.setattr(regenerate, "write_figures", crash)
    with pytest.raises(KeyboardInterrupt):
        regenerate.main([str(runs_dir), "--out", str(out), "--bootstrap", "50"])
    assert _tree(out) == before  # no half-written index.md, no staging folder left behind
    monkeypatch.undo()
    assert (
        regenerate.main(
            [
                str(runs_dir),
                "--out",
                str(out),
                "--bootstrap",
                "50",
                "--quiet",
                "--formats",
                "png",
                "--dpi",
                "40",
                "--only",
                "5",
            ]
        )
        == 0
    )
    after = _tree(out)
    assert "| dars_et |" in (out / "index.md").read_text()
    assert after["my_notes.txt"] == b"mine"  # what is not the report's is left alone
    assert not [p for p in after if p.startswith(".")]
    assert sorted(p for p in after if p.startswith("figures/")) == ["figures/fig5_advantage.png"]


def test_regenerate_untrained_run_listed_not_ranked(tmp_path, capsys):
    write_handmade_run(tmp_path / "runs", "baseline")
    killed = write_base_only_run(tmp_path / "runs", "dars_hw")  # a perfect base model
    out = tmp_path / "o"
    assert regenerate.main([str(tmp_path / "runs"), "--out", str(out), "--bootstrap", "50", "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "| dars_hw |" not in text and "Not trained / excluded runs (1)" in text
    assert f"{killed}: not trained: no training step" in text
    claims = pd.read_csv(out / "tables" / "claims.csv")
    assert set(claims.loc[claims["variant"] == "dars_hw", "verdict"]) == {"not run"}
    index = (out / "index.md").read_text()
    assert f"| `{killed}` | dars_hw | not trained | step 0 of ? |" in index
    assert "| dars_hw" not in (out / "tables" / "main.md").read_text()
    assert (
        regenerate.main(
            [str(tmp_path / "runs"), "--out", str(out), "--bootstrap", "50", "--no-figures", "--include-base"]
        )
        == 0
    )
    main = (out / "tables" / "main.md").read_text()
    row = next(ln for ln in main.splitlines() if ln.startswith("| dars_hw (base) |"))
    assert "100.0" in row and "**" not in row  # shown, labelled, never the best
    assert "| dars_hw (base) |" in (out / "index.md").read_text()


@pytest.mark.parametrize("mod", [regenerate, tables, figures_cli, upstream, runs])
def test_help_text_on_every_option(mod, capsys):
    parser = mod.build_parser()
    for action in parser._actions:
        assert action.help and len(action.help) > 8, f"{action.dest} has no help text"
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m analysis.")
    if mod in (regenerate, tables, figures_cli):
        for opt in (
            "--label",
            "--checkpoint",
            "--k",
            "--bootstrap",
            "--bootstrap-seed",
            "--ci",
            "--pool-seeds",
            "--exclude-sources",
            "--labels",
            "--out",
        ):
            assert opt in text
    if mod in (regenerate, figures_cli):
        for opt in ("--only", "--formats", "--x-axis", "--smooth", "--dpi"):
            assert opt in text


def test_figures_without_runs_draws_the_analytic_ones(tmp_path, capsys):
    assert figures_cli.main(["--out", str(tmp_path), "--formats", "png", "--dpi", "50"]) == 0
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["fig5_advantage.png", "fig6_expected_rollouts.png"]


def test_labels_file_and_checkpoint_option(tmp_path, capsys):
    write_handmade_run(tmp_path / "runs", "baseline", evals={2: HAND_EVAL_B, 4: HAND_EVAL_A})
    lab = tmp_path / "labels.yaml"
    lab.write_text("baseline: 'GRPO (ours)'\n")
    assert (
        tables.main(
            [
                str(tmp_path / "runs"),
                "--out",
                str(tmp_path / "o"),
                "--labels",
                str(lab),
                "--checkpoint",
                "best:all",
                "--bootstrap",
                "0",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| GRPO (ours) |" in text and "step 2 (best avg on Overall)" in text
    main = pd.read_csv(tmp_path / "o" / "tables" / "main.csv")
    assert pd.isna(main.loc[0, "all/avg@4/lo"])  # --bootstrap 0: no CIs
    with pytest.raises(SystemExit):
        tables.main([str(tmp_path / "runs"), "--out", str(tmp_path / "o"), "--checkpoint", "worst"])


def test_dumps_give_the_same_tables_as_native(tmp_path):
    native = write_run(tmp_path / "native", "dars_et", steps=10, eval_every=5, n_val=8)
    to_upstream_dumps(native, tmp_path / "upstream" / "dars_et")
    to_verl_dumps(native, tmp_path / "verl" / "dars_et" / "val_dumps")
    outs = {}
    for kind in ("native", "upstream", "verl"):
        rc = tables.main([str(tmp_path / kind), "--out", str(tmp_path / f"o_{kind}"), "--bootstrap", "100"])
        assert rc == 0
        df = pd.read_csv(tmp_path / f"o_{kind}" / "tables" / "main.csv")
        outs[kind] = df.drop(columns=["experiment"]).set_index("label")
        assert list(outs[kind].index) == ["dars_et"]
    nat = outs["native"]
    for kind in ("upstream", "verl"):
        cols = [c for c in nat.columns if c in outs[kind].columns]
        assert len(cols) == len(nat.columns)
        pd.testing.assert_frame_equal(outs[kind][cols], nat[cols], check_dtype=False)
    # upstream dumps have no preds: maj@k only where answers are stored (native and verl)
    assert (tmp_path / "o_verl" / "tables" / "maj.md").exists()
    assert not (tmp_path / "o_upstream" / "tables" / "maj.md").exists()


def test_python_m_regenerate_subprocess(tmp_path):
    write_handmade_run(tmp_path / "runs", "baseline")
    write_handmade_run(tmp_path / "runs", "dars_hw", extra_per_step=2)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.regenerate",
            str(tmp_path / "runs"),
            "--out",
            str(tmp_path / "out"),
            "--no-figures",
            "--bootstrap",
            "100",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "| dars_hw |" in r.stdout and "analysis + tables" in r.stdout
    assert (tmp_path / "out" / "index.md").exists()
