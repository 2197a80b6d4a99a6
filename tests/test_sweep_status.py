"""The sweep status reader (dars.sweep_status) on sweep directories written here: no cluster, no
runs. Against a real Slurm it is tested in test_slurm.py."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from conftest import ROOT

from dars.sweep_status import collect, exit_code, format_table, main


def _job(sweep: Path, job_id: str, overrides: list[str], num: int) -> None:
    """submitit's job folder: the submission pickle holds Hydra's launch arguments (overrides, ..., job number)."""
    d = sweep / ".submitit" / job_id
    d.mkdir(parents=True)
    with open(d / f"{job_id}_submitted.pkl", "wb") as f:
        pickle.dump(SimpleNamespace(args=(overrides, None, num)), f)


def _run(sweep: Path, name: str, hydra_yaml: str, steps: int, torn: bool = False) -> Path:
    rd = sweep / name
    (rd / ".hydra").mkdir(parents=True)
    (rd / "eval").mkdir()
    (rd / ".hydra" / "hydra.yaml").write_text(hydra_yaml)
    (rd / "status.json").write_text(json.dumps({"state": "completed", "step": steps, "total_steps": steps}))
    lines = "".join(json.dumps({"step": s}) + "\n" for s in range(1, steps + 1))
    (rd / "metrics.jsonl").write_text(lines + ('{"step": 9' if torn else ""))
    summary = {"step": steps, "n_val": 4, "val/all/pass@1": 0.5, "val/all/avg@4": 0.25}
    (rd / "eval" / "summary.jsonl").write_text(json.dumps(summary) + "\n" + ('{"step": 9, "val/' if torn else ""))
    return rd


def test_status_of_missing_and_empty_sweeps(tmp_path):
    assert main([str(tmp_path / "nope")]) == 2
    jobs = collect(tmp_path, use_sacct=False)
    assert jobs == [] and exit_code(jobs) == 3
    assert "sweep" in format_table(jobs, tmp_path)


def test_runs_are_matched_to_their_jobs_through_hydra_yaml(tmp_path):
    _job(tmp_path, "123_0", ["experiment=baseline"], 0)
    _job(tmp_path, "123_1", ["experiment=dars_et"], 1)
    # OmegaConf quotes the id; unquoted, YAML 1.1 would read 123_1 as the int 1231
    _run(tmp_path, "baseline-s0", "hydra:\n  job:\n    name: run\n    id: '123_0'\n    num: 0\n", steps=2)
    _run(tmp_path, "dars_et-s0", "hydra:\n  job_logging: {}\n  job:\n    id: 123_1\n    num: 1\n", 3, torn=True)
    jobs = collect(tmp_path, use_sacct=False)
    assert [(j.job_id, j.num, j.run_name, j.overrides) for j in jobs] == [
        ("123_0", 0, "baseline-s0", ["experiment=baseline"]),
        ("123_1", 1, "dars_et-s0", ["experiment=dars_et"]),
    ]
    # a torn last line (the job was killed while writing it) is not the last record
    assert jobs[1].step == 3 and jobs[1].metrics == {"val/all/avg@4": 0.25, "val/all/pass@1": 0.5, "eval_step": 3}
    assert [j.state for j in jobs] == ["completed", "completed"] and exit_code(jobs) == 0


def test_a_run_whose_hydra_yaml_is_cut_off_is_listed_without_overrides(tmp_path):
    _job(tmp_path, "124_0", ["experiment=baseline"], 0)
    _run(tmp_path, "cut-in-a-value", "hydra:\n  run:\n    dir: x\n  job:\n    name: run\n    id: '12", steps=1)
    _run(tmp_path, "cut-before-job", "hydra:\n  run:\n    dir: x\n", steps=1)
    _run(tmp_path, "not-yaml", "hydra: [\x00\n", steps=1)
    _run(tmp_path, "empty", "", steps=1)
    jobs = collect(tmp_path, use_sacct=False)
    runs = {j.run_name: j for j in jobs if j.run_name}
    assert sorted(runs) == ["cut-before-job", "cut-in-a-value", "empty", "not-yaml"]
    assert all((j.job_id, j.num, j.overrides, j.state) == ("", None, [], "completed") for j in runs.values())
    (pending,) = [j for j in jobs if not j.run_name]  # the job that started one of them, not matched
    assert (pending.job_id, pending.overrides, pending.state) == ("124_0", ["experiment=baseline"], "pending")
    table = format_table(jobs, tmp_path)
    assert "4 completed, 1 pending" in table and "experiment=baseline" in table


def test_the_command_prints_the_table_and_one_json_object_per_run(tmp_path):
    _job(tmp_path, "125_0", ["experiment=baseline"], 0)
    _run(tmp_path, "baseline-s0", "hydra:\n  job:\n    id: '125_0'\n    num: 0\n", steps=2)
    cmd = [sys.executable, "-m", "dars.sweep_status", str(tmp_path)]
    table = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "1 completed" in table.stdout and "baseline-s0" in table.stdout, table.stderr
    js = subprocess.run([*cmd, "--json", "--no-sacct"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    (job,) = [json.loads(ln) for ln in js.stdout.splitlines()]
    assert (job["job_id"], job["state"], job["step"]) == ("125_0", "completed", 2)
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "dars.sweep_status: no such sweep directory" in missing.stderr
