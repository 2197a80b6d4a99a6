"""A run is a transaction log: SIGKILLed at any instant, the next start of the same command ends
with a run directory equal to an uninterrupted run's (every non-time field), no record twice or
missing. One writer per run directory; a dead run is never reported as running. Real CLI, real
model, real SIGKILLs (tests/kill_driver.py picks the instant by wrapping the real functions)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, ROOT, run_dars

# Six steps with a checkpoint every second one and validations at 0, 2, 4, 6: every kind of
# instant below happens more than once.
ARGS = [
    "experiment=dars_hw",
    "train.total_steps=6",
    "train.save_freq=2",
    "train.test_freq=2",
    "train.val_before_train=true",
    *FAST,
]


def _env(out: Path, cache: Path, **extra) -> dict:
    return dict(os.environ, DARS_OUTPUT_DIR=str(out), DARS_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1", **extra)


def killed_at(point: str, out: Path, cache: Path) -> subprocess.CompletedProcess:
    """Start the run under tests/kill_driver.py and let it SIGKILL itself at ``point`` (``name:n``)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/kill_driver.py"), *ARGS],
        cwd=ROOT,
        env=_env(out, cache, DARS_KILL_AT=point),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == -9, f"{point}: expected a SIGKILL, got {proc.returncode}\n{proc.stderr[-2000:]}"
    return proc


def records(run: Path) -> dict:
    """Every file of the run-format contract, time fields removed."""
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # (a torn line fails here)
    out = {"metrics": strip(read(run / "metrics.jsonl")), "summary": strip(read(run / "eval/summary.jsonl"))}
    for f in sorted((run / "eval").glob("step_*.jsonl")):
        out[f.name] = f.read_text()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("reference")
    run_dars(ARGS, out, cache_dir)
    (run,) = (out / "runs/tiny").iterdir()
    return run


def test_kills_at_every_kind_of_instant_then_resume_equal_an_uninterrupted_run(reference, tmp_path, cache_dir):
    run = tmp_path / "runs/tiny" / reference.name
    # One run directory, killed again and again, each start a little further on:
    chain = [
        "during_validation:1",  # the step-0 validation
        "before_eval_summary:1",  # step_0.jsonl written, its summary line not
        "torn_metrics_line:1",  # step 1, before the first checkpoint
        "after_metrics_append:2",  # step 2 logged, its validation and checkpoint not
        "checkpoint_write:1",  # the step-2 checkpoint half written
        "before_latest_pointer:1",  # step_2/ in place, `latest` not yet updated
        "during_validation:1",  # resumed at 2: the step-4 validation
        "before_eval_summary:1",  # the step-4 validation again, cut before its summary line
        "after_metrics_append:3",  # steps 3, 4, 5 logged (checkpoint at 4), killed after 5
    ]
    for point in chain:
        killed_at(point, tmp_path, cache_dir)
        assert json.loads((run / "status.json").read_text())["state"] == "running"  # what a SIGKILL leaves

    # a killed run is not reported as running: the status command ends at once
    st = subprocess.run(
        [sys.executable, "-m", "dars.sweep_status", str(run.parent), "--watch", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert st.returncode == 1 and "interrupted" in st.stdout, st.stdout + st.stderr

    final = run_dars(ARGS, tmp_path, cache_dir)
    assert "resumed from" in final.stdout + final.stderr
    assert not list((run / "checkpoints").glob(".step_*.tmp"))
    got, want = records(run), records(reference)
    assert [r["step"] for r in got["metrics"]] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in got["summary"]] == [0, 2, 4, 6]
    assert got == want

    again = run_dars(ARGS, tmp_path, cache_dir)  # a completed run only reports, and changes nothing
    assert "already completed" in again.stdout + again.stderr
    assert records(run) == want


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def killed_after_step_5(tmp_path_factory, cache_dir) -> Path:
    """A run SIGKILLed right after logging step 5: checkpoints at 2 and 4 (two kept)."""
    out = tmp_path_factory.mktemp("killed5")
    killed_at("after_metrics_append:5", out, cache_dir)
    (run,) = (out / "runs/tiny").iterdir()
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_2", "step_4"]
    return run


def _copy_of(run: Path, out: Path) -> Path:
    dest = out / "runs/tiny" / run.name
    shutil.copytree(run, dest)
    return dest


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(
    reference, killed_after_step_5, tmp_path, cache_dir
):
    run = _copy_of(killed_after_step_5, tmp_path)
    _truncate(run / "checkpoints/step_4/state.pt")
    proc = run_dars(ARGS, tmp_path, cache_dir)
    log = proc.stdout + proc.stderr
    assert "checkpoints/step_4 cannot be used" in log and "resumed from" in log and "step_2" in log
    assert records(run) == records(reference)


def test_no_valid_checkpoint_starts_from_step_0_and_says_so(reference, killed_after_step_5, tmp_path, cache_dir):
    run = _copy_of(killed_after_step_5, tmp_path)
    for ckpt in (run / "checkpoints").glob("step_*"):
        _truncate(ckpt / "state.pt")
    proc = run_dars(ARGS, tmp_path, cache_dir)
    log = proc.stdout + proc.stderr
    assert "no valid checkpoint" in log and "starting again from step 0" in log and "5 step record(s)" in log
    assert records(run) == records(reference)


def test_two_identical_commands_started_together_one_runs_the_other_exits_naming_the_holder(
    reference, tmp_path, cache_dir
):
    cmd = [sys.executable, "-m", "dars.run", *ARGS]
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=_env(tmp_path, cache_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    t0 = time.time()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        outs.append((p.returncode, out, err, time.time() - t0))
    codes = sorted(o[0] for o in outs)
    assert codes == [0, 3], outs
    (loser,) = [o for o in outs if o[0] == 3]
    (winner,) = [(o, p) for o, p in zip(outs, procs) if o[0] == 0]
    assert f"is in use by pid {winner[1].pid}" in loser[2] and "Traceback" not in loser[2]
    assert loser[2].strip().count("\n") == 0  # one message
    run = tmp_path / "runs/tiny" / reference.name
    assert records(run) == records(reference)  # as if only one had run


def test_a_completed_run_whose_metrics_were_deleted_says_so_and_exits_2(reference, tmp_path, cache_dir):
    run = tmp_path / "runs/tiny" / reference.name
    shutil.copytree(reference, run)
    (run / "metrics.jsonl").unlink()
    proc = run_dars(ARGS, tmp_path, cache_dir, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    msg = proc.stderr.strip().splitlines()[-1]
    assert msg.startswith("dars: run directory error:") and "metrics.jsonl" in msg and "train it afresh" in msg
    assert not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").read_text() == ""
    assert records_without_metrics(run) == records_without_metrics(reference)


def records_without_metrics(run: Path) -> dict:
    return {f.name: f.read_text() for f in sorted((run / "eval").glob("*.jsonl"))}


def test_the_lock_is_seen_across_processes_and_dies_with_its_holder(tmp_path):
    """What status readers rely on: a live holder is seen from another process; once it is
    SIGKILLed the lock is free at once and a "running" status.json reads as interrupted."""
    from dars.runlock import RunBusy, RunLock, is_held, observed_state

    run = tmp_path / "run"
    hold = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from dars.runlock import RunLock; "
        "RunLock(sys.argv[2]).acquire(); print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(ROOT), str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_held(run) and observed_state(run, {"state": "running"}) == "running"
        with pytest.raises(RunBusy, match=f"pid {holder.pid} on "):
            RunLock(run).acquire()
        assert is_held(run)  # probing and failing did not disturb the holder
    finally:
        holder.kill()
        holder.wait()
    assert not is_held(run) and observed_state(run, {"state": "running"}) == "interrupted"
    assert observed_state(run, {"state": "completed"}) == "completed"
    with RunLock(run):  # free again: taken over at once, nothing stale to clean
        assert is_held(run)  # (in-process: answered without touching the lock file)
    assert not is_held(run)
