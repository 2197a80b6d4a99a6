"""End-to-end runs of the real CLI on the tiny preset (real model, real math-verify, real Hydra)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import FAST, FAST_TRAIN_PROMPTS, LEVELS, ROOT, run_dars

CONTRACT_KEYS = {
    "step",
    "epoch",
    "prompts",
    "rollouts/stage1",
    "rollouts/stage2",
    "rollouts/per_prompt",
    "tokens/generated",
    "acc/stage1",
    "groups/solve_none",
    "groups/solve_all",
    "groups/solve_partial",
    "groups/kept",
    "stage2/saved",
    "entropy/token_mean",
    "entropy/seq_mean",
    "loss/pg",
    "loss/clipfrac",
    "grad_norm",
    "lr",
    "response_length/mean",
    "time/gen1",
    "time/gen2",
    "time/reward",
    "time/update",
    "time/step",
    "optim/steps",
    "optim/total",
}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cache_dir):
    """Two steps of each of the seven paper experiments, as one Hydra multirun."""
    out = tmp_path_factory.mktemp("sweep")
    proc = run_dars(["-m", "experiment=glob(*)", "train.total_steps=2", *FAST], out, cache_dir)
    return out / "sweeps" / "tiny", proc


def test_glob_runs_all_seven_into_named_dirs(sweep):
    root, proc = sweep
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert [n.split("-s0")[0] for n in names] == sorted(
        ["baseline", "breadth_naive", "dars_et", "dars_et_breadth", "dars_hw", "dars_hw_breadth", "depth_naive"]
    )
    # each run ends with its per-benchmark table against its own step 0, and says what it shows
    assert proc.stdout.count("against the base model (step 0)") == 7 and "Pass@4 base" in proc.stdout
    assert proc.stdout.count("overall Avg@4: ") == 7


def test_runs_of_a_sweep_share_one_step0_evaluation_equal_to_a_fresh_one(sweep, tmp_path, cache_dir):
    root, proc = sweep
    step0 = {p.name: (p / "eval/step_0.jsonl").read_text() for p in root.iterdir() if p.is_dir()}
    assert len(set(step0.values())) == 1  # same base model, seed and validation set
    assert proc.stdout.count("identical to an earlier run's in this process") == 6
    # a run of its own computes it afresh: the reused evaluation is the same numbers
    run_dars(["experiment=dars_hw", "train.total_steps=1", *FAST], tmp_path, cache_dir)
    fresh = next((tmp_path / "runs/tiny").iterdir()) / "eval/step_0.jsonl"
    (dars_hw,) = [text for name, text in step0.items() if name.startswith("dars_hw-s0")]  # name + overrides
    assert fresh.read_text() == dars_hw


def test_every_run_follows_the_contract(sweep):
    root, _ = sweep
    for run in root.iterdir():
        if not run.is_dir():
            continue
        assert (run / ".hydra/config.yaml").exists()
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == 2
        rows = read_jsonl(run / "metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2]
        for r in rows:
            assert set(r) >= CONTRACT_KEYS, CONTRACT_KEYS - set(r)
            assert r["rollouts/per_prompt"] == pytest.approx(
                (r["rollouts/stage1"] + r["rollouts/stage2"]) / r["prompts"]
            )
            assert r["groups/solve_none"] + r["groups/solve_all"] + r["groups/solve_partial"] == r["prompts"]
        summary = read_jsonl(run / "eval/summary.jsonl")
        assert summary[-1]["step"] == 2
        problems = read_jsonl(run / "eval/step_2.jsonl")
        assert len(problems) == 5 * 4 and all(len(p["scores"]) == 4 for p in problems)
        mean = sum(sum(p["scores"]) for p in problems) / (4 * len(problems))
        assert summary[-1]["val/all/avg@4"] == pytest.approx(mean)
        assert [p["data_source"] for p in problems][::4] == LEVELS  # grouped, easy to hard


def test_dars_adds_rollouts_and_breadth_takes_fewer_optimiser_steps(sweep):
    root, _ = sweep
    runs = {p.name.split("-s0")[0]: read_jsonl(p / "metrics.jsonl") for p in root.iterdir() if p.is_dir()}
    for name in ("baseline", "depth_naive", "breadth_naive"):
        assert all(r["rollouts/stage2"] == 0 for r in runs[name]), name
    for name in ("dars_et", "dars_hw", "dars_et_breadth", "dars_hw_breadth"):
        for r in runs[name]:
            hard = r["groups/solve_none"] > 0 or r["acc/stage1"] < 0.5
            if hard:
                assert r["rollouts/stage2"] > 0, (name, r)
    # HW spends more extra rollouts than ET on the same prompts (same seed, same first batch)
    assert runs["dars_hw_breadth"][0]["rollouts/stage2"] > runs["dars_et_breadth"][0]["rollouts/stage2"]
    assert runs["depth_naive"][0]["rollouts/stage1"] == 4 * runs["baseline"][0]["rollouts/stage1"]
    # optimiser steps per epoch: baseline 2 per step x 25 steps/epoch; breadth 2 per step x 3 steps/epoch
    per_epoch = lambda rows: rows[0]["optim/steps"] * FAST_TRAIN_PROMPTS // rows[0]["prompts"]
    assert per_epoch(runs["baseline"]) >= 8 * per_epoch(runs["dars_hw_breadth"])


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, cache_dir):
    args = ["experiment=dars_hw", "train.total_steps=5", "train.save_freq=1", "train.test_freq=2", *FAST]
    ref = tmp_path / "ref"
    run_dars(args, ref, cache_dir)
    ref_run = next((ref / "runs/tiny").iterdir())

    out = tmp_path / "killed"
    env = dict(os.environ, DARS_OUTPUT_DIR=str(out), DARS_CACHE_DIR=str(cache_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dars.run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dir = out / "runs/tiny" / ref_run.name
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once step 3 is checkpointed and step 4 may be half-logged
        latest = run_dir / "checkpoints/latest"
        if latest.exists() and latest.read_text().strip() == "step_3":
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"

    resumed = run_dars(args, out, cache_dir)
    assert "resumed from" in resumed.stdout
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    got, want = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(ref_run / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    assert strip(got) == strip(want)
    assert strip(read_jsonl(run_dir / "eval/summary.jsonl")) == strip(read_jsonl(ref_run / "eval/summary.jsonl"))
    assert (run_dir / "eval/step_4.jsonl").read_text() == (ref_run / "eval/step_4.jsonl").read_text()

    again = run_dars(args, out, cache_dir)  # a completed run only reports
    assert "already completed" in again.stdout
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 5


def test_wandb_logs_offline_without_a_key_and_keeps_its_run_id(tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    args = ["experiment=baseline", "train.total_steps=1", "logger=wandb", *FAST]
    run_dars(args, tmp_path, cache_dir)
    run_dir = next((tmp_path / "runs/tiny").iterdir())
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline wandb run written"
    run_id = (run_dir / "wandb_id").read_text().strip()
    assert any(run_id in p.name for p in (run_dir / "wandb").glob("offline-run-*"))
