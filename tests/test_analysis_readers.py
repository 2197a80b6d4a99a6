"""File readers and run discovery: tolerant JSONL, the three eval formats, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_fixtures import HAND_EVAL_A, write_handmade_run

from analysis.readers import (
    NATIVE_SCHEMA_MIN,
    read_eval_file,
    read_jsonl,
    read_metrics,
    read_native_eval,
    read_upstream_dump,
    read_verl_dump,
    sniff_dump_format,
)
from analysis.runs import discover
from dars.runlock import RunLock


def _write_native(path, problems):
    with open(path, "w") as f:
        f.writelines(
            json.dumps(
                {
                    "data_source": src,
                    "id": pid,
                    "prompt": "p",
                    "answer": "a",
                    "scores": scores,
                    "response_lengths": [5] * len(scores),
                    "preds": preds,
                }
            )
            + "\n"
            for src, pid, scores, preds in problems
        )


def test_truncated_last_line_is_skipped_with_note(tmp_path):
    p = tmp_path / "step_3.jsonl"
    _write_native(p, HAND_EVAL_A)
    p.write_bytes(p.read_bytes() + b'{"data_source": "aime", "id": "aime-9", "sco')
    ev = read_native_eval(p, 3)
    assert ev.n_problems == len(HAND_EVAL_A)
    assert any("truncated last line" in n for n in ev.notes)
    # a complete last object without its newline is kept
    q = tmp_path / "step_4.jsonl"
    _write_native(q, HAND_EVAL_A)
    q.write_bytes(q.read_bytes().rstrip(b"\n"))
    ev = read_native_eval(q, 4)
    assert ev.n_problems == len(HAND_EVAL_A) and not ev.notes


def test_corrupt_middle_line_falls_back_and_keeps_the_rest(tmp_path):
    p = tmp_path / "step_1.jsonl"
    _write_native(p, HAND_EVAL_A)
    lines = p.read_text().splitlines()
    lines.insert(2, "{not json")
    p.write_text("\n".join(lines) + "\n")
    ev = read_native_eval(p, 1, samples=True)
    assert ev.n_problems == len(HAND_EVAL_A)
    assert ev.c.tolist() == [sum(s) for _, _, s, _ in HAND_EVAL_A]
    assert any("unreadable line" in n for n in ev.notes)
    assert ev.has_preds


def test_mixed_types_use_the_fallback(tmp_path):
    p = tmp_path / "step_1.jsonl"
    p.write_text(
        '{"data_source": "math", "id": 7, "scores": [true, false, true]}\n'
        '{"data_source": "math", "id": "x", "scores": [1.0, 1.0]}\n'
    )
    ev = read_native_eval(p, 1)
    assert ev.ids.tolist() == ["7", "x"]
    assert ev.n.tolist() == [3, 2] and ev.c.tolist() == [2, 2]


def test_empty_file_and_empty_problems(tmp_path):
    p = tmp_path / "step_1.jsonl"
    p.write_text("")
    tbl, notes = read_jsonl(p, NATIVE_SCHEMA_MIN)
    assert tbl.num_rows == 0 and notes and "empty" in notes[0]
    q = tmp_path / "step_2.jsonl"
    q.write_text(
        '{"data_source": "math", "id": "a", "scores": []}\n{"data_source": "math", "id": "b", "scores": [1]}\n'
    )
    ev = read_native_eval(q, 2)
    assert ev.ids.tolist() == ["b"]
    assert any("without samples" in n for n in ev.notes)


def test_metrics_reader_tolerates_nan_truncation_and_repeats(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text(
        '{"step": 1, "loss/pg": NaN, "acc/stage1": 0.5}\n'
        '{"step": 2, "acc/stage1": 0.6}\n'
        '{"step": 2, "acc/stage1": 0.7}\n'
        '{"step": 3, "acc/st'
    )
    df, notes = read_metrics(p)
    assert df["step"].tolist() == [1, 2]
    assert df["acc/stage1"].tolist() == [0.5, 0.7]
    assert np.isnan(df["loss/pg"].iloc[0])
    assert any("truncated" in n for n in notes) and any("repeated" in n for n in notes)


def test_upstream_dump_round_trip(tmp_path):
    items = [
        {
            "input": "q1",
            "output": ["a", "b", "c", "d"],
            "answer": "1",
            "score": [1.0, 0.0, 0.0, 1.0],
            "response_length": [3, 4, 5, 6],
            "data_source": "aime",
        },
        {
            "input": "q2",
            "output": ["a", "b", "c", "d"],
            "answer": "2",
            "score": [0.0, 0.0, 0.0, 0.0],
            "response_length": [3, 3, 3, 3],
            "data_source": "math",
        },
        {
            "input": "q2",
            "output": ["x", "y"],
            "answer": "2",  # duplicated prompt, fewer samples
            "score": [1.0, 1.0],
            "response_length": [1, 1],
            "data_source": "math",
        },
    ]
    p = tmp_path / "40.json"
    p.write_text(json.dumps(items))
    assert sniff_dump_format(p) == "upstream"
    ev = read_upstream_dump(p, 40, samples=True)
    assert ev.step == 40
    assert ev.source.tolist() == ["aime", "math", "math"]
    assert ev.n.tolist() == [4, 4, 2] and ev.c.tolist() == [2, 0, 2]
    assert ev.ids.tolist() == ["q1", "q2", "q2#1"]
    np.testing.assert_allclose(ev.response_length, [4.5, 3.0, 1.0])
    assert ev.sample_scores.tolist() == [1, 0, 0, 1, 0, 0, 0, 0, 1, 1]


def test_truncated_upstream_dump_raises_a_clear_error(tmp_path):
    p = tmp_path / "10.json"
    p.write_text('[{"input": "q", "score": [1, 0]}, {"inp')
    with pytest.raises(ValueError, match="truncated"):
        read_upstream_dump(p, 10)


def test_verl_dump_groups_samples_by_input(tmp_path):
    lines = []
    for j in range(3):  # interleaved problems, as a repeated batch gives
        lines.append(
            {
                "input": "P1",
                "output": "o",
                "gts": "1",
                "score": float(j == 0),
                "step": 5,
                "data_source": "amc",
                "pred": "1" if j == 0 else "2",
            }
        )
        lines.append(
            {"input": "P2", "output": "o", "gts": "3", "score": 1.0, "step": 5, "data_source": "minerva", "pred": "3"}
        )
    lines.append({"input": "P3", "output": "o", "gts": "3", "score": -1.0, "acc": True, "step": 5})
    p = tmp_path / "5.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert sniff_dump_format(p) == "verl"
    ev = read_verl_dump(p, 5, samples=True)
    assert ev.ids.tolist() == ["P1", "P2", "P3"]
    assert ev.n.tolist() == [3, 3, 1]
    assert ev.c.tolist() == [1, 3, 1]  # acc wins over score when logged
    assert ev.source.tolist() == ["amc", "minerva", "unknown"]
    assert ev.sample_position[ev.sample_problem == 0].tolist() == [0, 1, 2]
    assert ev.sample_preds[ev.sample_problem == 0].tolist() == ["1", "2", "2"]


def test_read_eval_file_dispatch_and_sniff_errors(tmp_path):
    p = tmp_path / "step_2.jsonl"
    _write_native(p, HAND_EVAL_A)
    assert sniff_dump_format(p) == "native"
    assert read_eval_file(p, 2, "native").n_problems == 5
    bad = tmp_path / "3.jsonl"
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(ValueError, match="unrecognised"):
        sniff_dump_format(bad)


def test_discover_finds_native_runs_sweeps_and_dumps(tmp_path):
    sweep = tmp_path / "sweeps" / "s1"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("x: 1\n")
    write_handmade_run(sweep, "baseline")
    write_handmade_run(sweep, "dars_et")
    only_hydra = sweep / "dars_hw-s0" / ".hydra"
    only_hydra.mkdir(parents=True)
    (only_hydra / "config.yaml").write_text("experiment_name: dars_hw\nseed: 0\n")
    upstream_run = tmp_path / "copied" / "DARS-ET"
    (upstream_run / "val_generations").mkdir(parents=True)
    (upstream_run / "val_generations" / "7.json").write_text(
        json.dumps([{"input": "q", "score": [1, 0], "data_source": "math"}])
    )
    verl = tmp_path / "copied" / "verl_run" / "validation"
    verl.mkdir(parents=True)
    (verl / "3.jsonl").write_text(json.dumps({"input": "q", "output": "o", "score": 1.0}) + "\n")
    runs, notes = discover([tmp_path, sweep])  # overlapping roots: no duplicates
    names = sorted(r.name for r in runs)
    assert names == ["DARS-ET", "baseline-s0", "dars_et-s0", "dars_hw-s0", "verl_run"]
    by = {r.name: r for r in runs}
    assert by["DARS-ET"].kind == "dump" and by["DARS-ET"].experiment == "dars_et"
    assert by["verl_run"].kind == "dump" and by["verl_run"].eval_steps == [3]
    assert by["baseline-s0"].eval_steps == [2, 4] and by["baseline-s0"].n_val == 4
    assert by["dars_hw-s0"].eval_steps == [] and by["dars_hw-s0"].metrics_path is None
    assert not notes
    missing, notes = discover([tmp_path / "nope"])
    assert missing == [] and "does not exist" in notes[0]


def test_eval_without_summary_line_while_running_is_skipped(tmp_path):
    run = write_handmade_run(tmp_path, "dars_et", state="running")
    _write_native(run / "eval" / "step_6.jsonl", HAND_EVAL_A)  # summary line not written yet
    with RunLock(run):  # the writer is alive
        (r,), _ = discover([tmp_path])
        assert r.state == "running" and r.eval_steps == [2, 4]
    assert any("still being written" in n for n in r.notes)
    # the writer died there (SIGKILL): the run is interrupted, and the file its resume drops is skipped too
    (r,), _ = discover([tmp_path])
    assert r.state == "interrupted" and r.eval_steps == [2, 4]


def test_which_runs_are_complete_trained_results(tmp_path):
    """status.json's state and total_steps (else train.total_steps of the config) decide."""
    from analysis.exclusions import classify

    def run_with(name, status=None, steps=4, total_cfg=None, evals=(2, 4)):
        run = write_handmade_run(tmp_path, "dars_et", steps=steps, name=name, evals={s: HAND_EVAL_A for s in evals})
        if total_cfg is not None:
            cfg = run / ".hydra" / "config.yaml"
            cfg.write_text(cfg.read_text().replace("train:\n", f"train:\n  total_steps: {total_cfg}\n"))
        if status is None:
            (run / "status.json").unlink()
        else:
            (run / "status.json").write_text(json.dumps(status))
        return run

    run_with("done", {"state": "completed", "step": 3, "total_steps": 8})  # epochs ran out
    run_with("at_total", {"state": "failed", "step": 4, "total_steps": 4, "error": "disk"})
    lock = RunLock(run_with("running", {"state": "running", "step": 4, "total_steps": 8})).acquire()  # alive
    run_with("dead", {"state": "running", "step": 4, "total_steps": 8})  # its process was SIGKILLed
    run_with("interrupted", {"state": "interrupted", "step": 4})  # no total known: "of ?"
    run_with("copied_back", None, total_cfg=10)  # no status.json; the config says 10 steps
    run_with("no_status", None)  # nothing says it is unfinished
    run_with("killed_early", {"state": "killed", "step": 1, "total_steps": 8}, steps=1, evals=(0,))
    found, _ = discover([tmp_path])
    by = {r.name: r for r in found}
    got = {name: classify(r, max(r.eval_steps)) for name, r in by.items()}
    assert got["done"] == ("trained", "") and got["at_total"] == ("trained", "")
    assert got["no_status"] == ("trained", "")
    assert got["running"] == ("partial", "step 4 of 8 (state running); judged at step 4")
    assert got["dead"] == ("partial", "step 4 of 8 (state interrupted); judged at step 4")
    assert got["interrupted"][0] == "partial" and got["interrupted"][1].startswith("step 4 of ?")
    assert got["copied_back"] == ("partial", "step 4 of 10 (state unknown); judged at step 4")
    kind, why = got["killed_early"]
    assert kind == "base" and why.startswith("trained to step 1 but evaluated only at step 0")
    # no evaluation at all: a partial run is still partial, a complete one a training-only run
    assert classify(by["running"], None)[1].endswith("no evaluation")
    assert classify(by["done"], None) == ("trained", "")
    lock.release()
