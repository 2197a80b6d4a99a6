"""Slurm: the launcher configs against a REAL single-node cluster (slurm/test_cluster.sh), the sweep
status table on it (dars.sweep_status; its cluster-free tests are in test_sweep_status.py) and the
multi-node Ray plumbing (dry run).

The cluster tests need root and Debian's apt (or Slurm already installed); otherwise they skip.
A cluster that was already up is reused and left running; one started here is stopped at the end.
About 4-5 minutes on 2 cores (7 + 2 + 1 tiny runs, two at a time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST, ROOT, environment_skip, run_dars

SCRIPT = ROOT / "slurm" / "test_cluster.sh"
RAY = ROOT / "slurm" / "ray_cluster.sh"
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# every field set on the command line, as a user would without a site profile
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.array_parallelism=2",
    "hydra.launcher.timeout_min=20",
]


def _sh(*args, timeout=300, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def slurm_cluster():
    # A machine that cannot run a real Slurm (no root, no apt, an install that fails) skips with the
    # reason; under CI (DARS_STRICT_TESTS) each of these is a failure instead.
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        environment_skip("needs the slurm extra: pip install -e '.[slurm]'")
    if os.geteuid() != 0:
        environment_skip("the Slurm test cluster needs root")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        environment_skip("neither Slurm nor apt-get is available to install it")
    was_up = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        if not shutil.which("slurmctld"):  # the install itself failed
            environment_skip(f"could not install Slurm: {proc.stderr.strip().splitlines()[-1:]}")
        raise AssertionError(f"test_cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}")
    yield
    if not was_up:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=300)


def _status(sweep: Path) -> tuple[int, list[dict], str]:
    js = subprocess.run(
        [sys.executable, "-m", "dars.sweep_status", str(sweep), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    table = subprocess.run(
        [sys.executable, "-m", "dars.sweep_status", str(sweep)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    return js.returncode, [json.loads(ln) for ln in js.stdout.splitlines() if ln.strip()], table.stdout


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def test_cluster_script_is_idempotent(slurm_cluster):
    t = time.time()
    _sh("bash", str(SCRIPT), "start")  # already up: leaves every daemon alone
    assert time.time() - t < 30
    st = _sh("bash", str(SCRIPT), "status")
    for daemon in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"):
        assert f"{daemon}" in st.stdout and "DOWN" not in st.stdout, st.stdout
    assert "debug" in st.stdout
    assert _sh("sacct", "-n", "-X", "-P", "-o", "JobID").returncode == 0  # accounting is on (submitit needs it)


@pytest.mark.slow
def test_failing_run_is_reported_while_the_other_finishes(slurm_cluster, tmp_path, cache_dir):
    # a folder with a checkpoint's file names passes the config check, but its files are empty: the
    # run fails at model load, inside the job
    bad = tmp_path / "not-a-checkpoint"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"")
    (bad / "tokenizer.json").write_text("{}")
    out = tmp_path / "out"
    proc = run_dars(
        ["-m", "experiment=baseline", f"model.path=null,{bad}", "train.total_steps=2", *FAST, *LAUNCHER],
        out,
        cache_dir,
        timeout=600,
        check=False,
    )
    assert proc.returncode != 0  # Hydra's launcher re-raises the failure when collecting
    sweep = out / "sweeps" / "tiny"
    code, jobs, table = _status(sweep)
    assert code == 1, table
    by_state = {j["state"]: j for j in jobs}
    assert sorted(by_state) == ["completed", "failed"], table
    ok, bad_job = by_state["completed"], by_state["failed"]
    assert ok["step"] == 2 and "val/all/pass@1" in ok["metrics"]
    assert json.loads((Path(ok["run_dir"]) / "status.json").read_text())["state"] == "completed"
    assert bad_job["error"] and bad_job["job_id"].split("_")[0] == ok["job_id"].split("_")[0]  # same array
    assert "== failed" in table and bad_job["log_err"] in table


@pytest.mark.slow
def test_glob_sweep_runs_as_one_job_array(slurm_cluster, tmp_path, cache_dir):
    out = tmp_path / "out"
    t = time.time()
    run_dars(["-m", "experiment=glob(*)", "train.total_steps=2", *FAST, *LAUNCHER], out, cache_dir, timeout=900)
    elapsed = time.time() - t
    sweep = out / "sweeps" / "tiny"
    code, jobs, table = _status(sweep)
    assert code == 0, table
    assert len(jobs) == len(EXPERIMENTS) == 7
    assert sorted(j["run_name"].split("-s0")[0] for j in jobs) == EXPERIMENTS
    arrays = {j["job_id"].split("_")[0] for j in jobs}
    assert len(arrays) == 1, f"not one job array: {sorted(j['job_id'] for j in jobs)}"
    assert sorted(int(j["job_id"].split("_")[1]) for j in jobs) == list(range(7))
    for j in jobs:
        rd = Path(j["run_dir"])
        assert j["state"] == "completed" and j["step"] == 2, table
        assert _steps(rd) == [1, 2]
        assert (rd / "eval" / "summary.jsonl").exists() and (rd / "results.txt").exists()
        assert Path(j["log_out"]).exists()
    # sacct (what submitit polls) agrees: 7 array tasks of one job, all COMPLETED
    acct = _sh("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", arrays.pop()).stdout.split()
    assert len(acct) == 7 and all(a.endswith("|COMPLETED") for a in acct), acct
    print(f"\n{table}\n(7 runs in {elapsed:.0f}s)")


@pytest.mark.slow
def test_requeued_run_resumes_with_intact_metrics(slurm_cluster, tmp_path, cache_dir):
    out = tmp_path / "out"
    total = 48  # enough steps left after the requeue: the job keeps running ~KillWait (5 s) before it is killed
    env = dict(os.environ, DARS_OUTPUT_DIR=str(out), DARS_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    args = [
        "-m",
        "experiment=baseline",
        f"train.total_steps={total}",
        "train.save_freq=2",
        "train.test_freq=100",
        *FAST,
        *LAUNCHER,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dars.run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sweep = out / "sweeps" / "tiny"
    try:
        deadline = time.time() + 300
        latest = None
        while time.time() < deadline and proc.poll() is None:
            found = list(sweep.glob("*/checkpoints/latest")) if sweep.exists() else []
            if found:
                latest = found[0]
                break
            time.sleep(0.2)
        assert latest is not None, "no checkpoint appeared"
        job_id = next(d.name for d in (sweep / ".submitit").iterdir() if d.name[0].isdigit())
        from dars.sweep_status import collect

        live = collect(sweep)  # the status table works during the sweep
        for _ in range(50):  # sacct may trail the job's start by a moment
            if [j.state for j in live] == ["running"]:
                break
            time.sleep(0.2)
            live = collect(sweep)
        assert [(j.job_id, j.state) for j in live] == [(job_id, "running")], live
        rq = _sh("scontrol", "requeue", job_id, check=False)
        assert rq.returncode == 0, f"requeue failed (did the run finish first?): {rq.stderr}"
        # Slurm holds a requeued job ~2 min (credential lifetime) before it may start again: release it now
        for _ in range(50):
            if "PENDING" in _sh("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout:
                break
            time.sleep(0.2)
        assert collect(sweep)[0].state in ("requeued", "running"), collect(sweep)
        _sh("scontrol", "update", f"JobId={job_id}", "StartTime=now", check=False)
        stdout, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-3000:]
    run_dir = latest.parent.parent
    log = Path(collect(sweep)[0].log_out).read_text()
    assert log.count("Starting with JobEnvironment") == 2 and "resumed from" in log, log[-3000:]
    assert _steps(run_dir) == list(range(1, total + 1))  # no gap, no duplicate after the resume
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    code, jobs, table = _status(sweep)
    assert code == 0 and len(jobs) == 1, table
    assert jobs[0]["attempts"] == 2 and jobs[0]["step"] == total, table  # started twice, finished once
    states = _sh("sacct", "-n", "-X", "-D", "-P", "-o", "State", "-j", job_id).stdout.split()
    assert states[0] == "REQUEUED" and states[-1] == "COMPLETED", states


# --- no cluster needed ------------------------------------------------------------------------------------


def test_launcher_configs_compose():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name, target in [
            ("local", "BasicLauncher"),
            ("slurm", "SlurmLauncher"),
            ("slurm_example", "SlurmLauncher"),
            ("slurm_testcluster", "SlurmLauncher"),
            ("submitit_local", "LocalLauncher"),
        ]:
            cfg = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
            assert cfg.hydra.launcher._target_.endswith(target), name
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=4",
                "hydra.launcher.account=abc",
                "+hydra.launcher.additional_parameters.reservation=r1",
            ],
            return_hydra_config=True,
        )
        ln = cfg.hydra.launcher
        assert (ln.partition, ln.gpus_per_node, ln.account, ln.max_num_timeout) == ("gpu", 4, "abc", 3)
        assert ln.additional_parameters.reservation == "r1"
        ex = compose("config", overrides=["hydra/launcher=slurm_example"], return_hydra_config=True).hydra.launcher
        assert ex.partition == "gpu" and ex.max_num_timeout == 5 and any("module load" in s for s in ex.setup)


@pytest.mark.parametrize("rank", [0, 1])
def test_ray_cluster_dry_run(rank):
    env = dict(
        os.environ,
        SLURM_JOB_NODELIST="gpu[01-02]",
        SLURM_NNODES="2",
        SLURM_NODEID=str(rank),
        SLURM_JOB_ID="77",
        SLURM_CPUS_PER_TASK="16",
        SLURM_GPUS_ON_NODE="8",
        RAY_HEAD_IP="10.0.0.1",
        RAY_CLUSTER_DRY_RUN="1",
    )
    if not shutil.which("scontrol"):
        env["SLURM_JOB_NODELIST"] = "gpu01,gpu02"
    p = subprocess.run(
        ["bash", str(RAY), "--", "python", "-m", "dars.run", "backend=verl"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    assert f"rank {rank}/2" in p.stderr and "head gpu01 (10.0.0.1:6379)" in p.stderr
    common = "--num-cpus=16 --num-gpus=8 --temp-dir=/tmp/ray-77"
    if rank == 0:
        assert f"ray start --head --node-ip-address=10.0.0.1 --port=6379 {common}" in p.stdout
        assert "wait until 2 nodes are alive" in p.stdout
        assert "env RAY_ADDRESS=10.0.0.1:6379 python -m dars.run backend=verl" in p.stdout
    else:
        assert f"ray start --address=10.0.0.1:6379 {common} --disable-usage-stats --block" in p.stdout
        assert "dars.run" not in p.stdout
