"""Status of a sweep run through a submitit launcher (Slurm or submitit_local).

    python -m dars.sweep_status outputs/sweeps/tiny            # table + failures with their stderr tail
    python -m dars.sweep_status outputs/sweeps/tiny --json     # one JSON object per run
    python -m dars.sweep_status outputs/sweeps/tiny --watch 30 # refresh every 30 s until nothing is left to run

Works during and after a sweep. It reads submitit's job folders ``<sweep_dir>/.submitit/<job_id>/``
(submission pickle = which overrides, logs, result pickle), each run directory's ``status.json``,
``metrics.jsonl`` and ``eval/summary.jsonl`` (docs/run-format.md), and ``sacct`` when it is available
(Slurm state, elapsed time, requeues). A run submitted again later (a new sweep over the same directory)
is shown with its newest job. Exit status: 0 when every run completed, 1 when one failed, 3 while
some are still pending or running.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from dars.runlock import observed_state
from dars.runlog import read_jsonl

STATES = ("completed", "failed", "interrupted", "requeued", "running", "pending", "cancelled", "timeout", "unknown")
_TS = re.compile(r"submitit \w+ \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\) - (.*)")


@dataclass
class JobInfo:
    """One run of the sweep (one array task)."""

    num: int | None = None  # Hydra's job number (position in the sweep)
    job_id: str = ""  # Slurm job id, <array>_<task> (or the local pid for submitit_local)
    overrides: list[str] = field(default_factory=list)
    run_name: str = ""
    run_dir: str = ""
    state: str = "pending"
    slurm_state: str = ""  # from sacct, when available
    attempts: int = 0  # job starts seen (more than 1 = requeued / resumed)
    start: str = ""
    runtime_s: float | None = None
    step: int | None = None
    total_steps: int | None = None
    metrics: dict = field(default_factory=dict)  # headline: val/all/avg@K, val/all/pass@1, val/all/pass@K
    error: str = ""
    log_out: str = ""
    log_err: str = ""
    stderr_tail: str = ""


def _job_key(job_id: str) -> tuple:
    parts = re.split(r"[_.]", job_id)
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _last_record(path: Path) -> dict:
    """The last complete record of a JSONL file ({} when none); a running job's half-written last line is not one."""
    try:
        records = read_jsonl(path)
    except (OSError, UnicodeDecodeError):  # unreadable, or garbage bytes where text should be
        return {}
    return records[-1] if records else {}


def _tail(path: Path, n: int = 15) -> str:
    """Last n lines of a log, with progress-bar carriage returns folded away."""
    try:
        data = path.read_bytes()[-200_000:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.split("\r")[-1].rstrip() for ln in data.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    return "\n".join(lines[-n:])


def _hydra_job(run_dir: Path) -> tuple[str, int | None]:
    """(job id, job number) from the run's .hydra/hydra.yaml (``hydra.job.id`` / ``hydra.job.num``);
    ("", None) when the file is missing, unreadable or cut off (a job that is just starting): the run is
    then listed on its own, without the overrides of the job that started it."""
    try:
        # BaseLoader: every value a string, as written (YAML 1.1 types would read an unquoted 123_0 as 1230)
        doc = yaml.load((run_dir / ".hydra" / "hydra.yaml").read_text(), Loader=yaml.BaseLoader)
    except (OSError, yaml.YAMLError):
        return "", None
    hydra = doc.get("hydra") if isinstance(doc, dict) else None
    job = hydra.get("job") if isinstance(hydra, dict) else None
    if not isinstance(job, dict):  # cut off before (or inside) its job: section
        return "", None
    job_id, num = job.get("id"), job.get("num")
    return (
        job_id if isinstance(job_id, str) else "",
        int(num) if isinstance(num, str) and num.isdigit() else None,  # "???" outside a multirun
    )


def _load_submission(pkl: Path):
    """(overrides, job_num) from submitit's <id>_submitted.pkl (a DelayedSubmission of Hydra's launcher)."""
    try:
        with open(pkl, "rb") as f:
            sub = pickle.load(f)
        args = sub.args
        return list(args[0]), int(args[2])
    except Exception:  # noqa: BLE001 - unreadable / other launcher: shown without overrides
        return [], None


def _load_result(pkl: Path):
    try:
        with open(pkl, "rb") as f:
            kind, value = pickle.load(f)
    except Exception:  # noqa: BLE001 - still being written
        return None, ""
    if kind != "success":
        return "failed", str(value)
    # Hydra's launcher catches the run's exception and returns it inside a JobReturn, so the
    # submitit job (and Slurm) count as successful: look inside
    status = getattr(getattr(value, "status", None), "name", "COMPLETED")
    if status == "FAILED":
        err = getattr(value, "_return_value", None)
        return "failed", f"{type(err).__name__}: {err}" if err is not None else "failed"
    return "completed", ""


def sacct_states(job_ids: list[str]) -> dict[str, dict]:
    """{job_id: {"state", "elapsed_s", "records"}} from sacct (empty when sacct is missing or disabled)."""
    if not job_ids or not shutil.which("sacct"):
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        proc = subprocess.run(
            ["sacct", "-X", "-D", "-P", "-n", "-o", "JobID,State,ElapsedRaw,Start", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    out: dict[str, dict] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 4:
            continue
        jid, state, elapsed, start = parts[:4]
        rec = out.setdefault(jid, {"records": 0, "elapsed_s": 0.0, "states": []})
        rec["records"] += 1
        rec["states"].append(state.split()[0])
        rec["state"] = state.split()[0]  # -D lists attempts oldest first
        rec["elapsed_s"] += float(elapsed or 0)
        rec.setdefault("start", start)
    return out


def _from_slurm_state(s: str) -> str:
    s = s.upper()
    if s.startswith("COMPLETED"):
        return "completed"
    if s in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"):
        return "failed"
    if s.startswith("CANCELLED"):
        return "cancelled"
    if s == "TIMEOUT":
        return "timeout"
    if s in ("REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED", "RESIZING"):
        return "requeued"
    if s in ("RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "SUSPENDED"):
        return "running"
    if s == "PENDING":
        return "pending"
    return "unknown"


def collect(sweep_dir: str | Path, use_sacct: bool = True) -> list[JobInfo]:
    """One JobInfo per run of the sweep, newest submission of each run."""
    sweep = Path(sweep_dir)
    sub_root = sweep / ".submitit"
    jobs: dict[str, JobInfo] = {}  # by job id
    if sub_root.is_dir():
        for d in sorted(sub_root.iterdir(), key=lambda p: _job_key(p.name)):
            pkl = d / f"{d.name}_submitted.pkl"
            if not d.is_dir() or not pkl.exists():
                continue
            overrides, num = _load_submission(pkl)
            ji = JobInfo(num=num, job_id=d.name, overrides=overrides)
            ji.log_out = str(d / f"{d.name}_0_log.out")
            ji.log_err = str(d / f"{d.name}_0_log.err")
            jobs[d.name] = ji

    # run directories: map each to its job through .hydra/hydra.yaml (job.id), else by job number
    by_num = {}
    for ji in sorted(jobs.values(), key=lambda j: _job_key(j.job_id)):
        by_num[ji.num] = ji  # newest submission of a job number wins the number lookup
    run_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) if sweep.is_dir() else []
    for rd in run_dirs:
        if not ((rd / ".hydra").is_dir() or (rd / "status.json").exists()):
            continue
        job_id, num = _hydra_job(rd)
        ji = jobs.get(job_id) or (by_num.get(num) if not job_id else None)
        if ji is None or ji.run_dir:  # started by another launcher, or the job is unknown here
            ji = JobInfo(num=num, job_id=job_id)
            jobs[f"dir:{rd.name}"] = ji
        ji.run_dir, ji.run_name = str(rd), rd.name

    # a job without a run directory is either still pending or was superseded by a newer submission
    # of the same overrides (the sweep was launched again; the run dir now names the newer job)
    result = []
    for ji in sorted(jobs.values(), key=lambda j: _job_key(j.job_id)):
        if not ji.run_dir and any(
            o.overrides == ji.overrides and _job_key(o.job_id) > _job_key(ji.job_id) for o in jobs.values()
        ):
            continue
        result.append(ji)

    # sacct only for Slurm sweeps (submitit_local's job ids are process ids); Slurm folders hold the sbatch script
    on_slurm = sub_root.is_dir() and (
        any(sub_root.glob(".submission_file_*")) or any(sub_root.glob("*/*_submission.sh"))
    )
    acct = {}
    if use_sacct and on_slurm:
        acct = sacct_states([j.job_id for j in result if re.fullmatch(r"\d+(_\d+)?", j.job_id)])
    now = time.time()
    for ji in result:
        _fill(ji, acct.get(ji.job_id), now, local=not on_slurm)
    result.sort(key=lambda j: (_job_key(j.job_id), j.num if j.num is not None else 1 << 30, j.run_name))
    return result


def _local_job_gone(job_id: str) -> bool:
    """A submitit_local job id is its process id (no sacct to ask): gone when that process is."""
    if not job_id.isdigit():
        return False
    try:
        os.kill(int(job_id), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return False


def _fill(ji: JobInfo, acct: dict | None, now: float, local: bool = False) -> None:
    out, err = Path(ji.log_out) if ji.log_out else None, Path(ji.log_err) if ji.log_err else None
    starts = []
    if out and out.exists():
        try:
            text = out.read_text(errors="replace")
        except OSError:
            text = ""
        for m in _TS.finditer(text):
            if m.group(2).startswith("Starting with JobEnvironment"):
                starts.append(m.group(1))
    ji.attempts = len(starts)
    ji.start = starts[0] if starts else ""

    status = _read_json(Path(ji.run_dir) / "status.json") if ji.run_dir else {}
    if ji.run_dir:
        ji.step = status.get("step")
        ji.total_steps = status.get("total_steps")
        last = _last_record(Path(ji.run_dir) / "metrics.jsonl")
        if last.get("step") is not None and (ji.step is None or last["step"] > ji.step):
            ji.step = last["step"]
        summ = _last_record(Path(ji.run_dir) / "eval" / "summary.jsonl")
        if summ:
            k = summ.get("n_val")
            for key in (f"val/all/avg@{k}", "val/all/pass@1", f"val/all/pass@{k}"):
                if key in summ:
                    ji.metrics[key] = summ[key]
            ji.metrics["eval_step"] = summ.get("step")
        if status.get("error"):
            ji.error = status["error"]

    # state: the result pickle is final; then sacct; then the run's own status.json; then logs
    res_state, res_err = (None, "")
    if out is not None:
        res = out.parent / f"{ji.job_id}_0_result.pkl"
        if res.exists():
            res_state, res_err = _load_result(res)
    slurm = acct.get("state", "") if acct else ""
    ji.slurm_state = slurm
    if res_state and slurm and _from_slurm_state(slurm) in ("pending", "running", "requeued"):
        res_state, res_err = None, ""  # a result from before a requeue: the job is going again
    if res_state:
        ji.state = res_state
        if res_err and not ji.error:
            lines = [ln for ln in res_err.strip().splitlines() if ln.strip()]
            ji.error = lines[-1] if len(lines) > 1 and lines[0].startswith("Traceback") else " ".join(lines)[:500]
    elif slurm:
        ji.state = _from_slurm_state(slurm)
    elif status.get("state") in ("running", "completed", "failed", "killed"):
        # "running" only while the run's owner still holds its lock; a SIGKILLed or out-of-disk run is not
        state = observed_state(Path(ji.run_dir), status)
        ji.state = {"killed": "failed"}.get(state, state)
    elif starts and not (local and _local_job_gone(ji.job_id)):
        ji.state = "running"
    elif starts:
        ji.state = "interrupted"
    else:
        ji.state = "pending"
    if ji.state == "pending" and acct and "REQUEUED" in acct.get("states", []):
        ji.state = "requeued"  # waiting to start again; resumes from its checkpoint
    if acct:
        started = sum(st != "PENDING" for st in acct.get("states", []))
        ji.attempts = max(ji.attempts, started + (ji.state == "running" and started == 0))
        if acct.get("elapsed_s"):
            ji.runtime_s = acct["elapsed_s"]
    if ji.runtime_s is None and ji.start:
        t0 = datetime.strptime(ji.start, "%Y-%m-%d %H:%M:%S").timestamp()
        t1 = now
        if res_state and out is not None:
            t1 = (out.parent / f"{ji.job_id}_0_result.pkl").stat().st_mtime
        ji.runtime_s = max(0.0, t1 - t0)
    if ji.state in ("failed", "cancelled", "timeout", "interrupted") and err is not None:
        ji.stderr_tail = _tail(err) or (_tail(out) if out is not None else "")


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_table(jobs: list[JobInfo], sweep_dir: str | Path) -> str:
    ks = sorted(
        {k for j in jobs for k in j.metrics if k.startswith("val/")},
        key=lambda k: ("avg@" not in k, "pass@1" not in k, k),
    )
    head = ["#", "run", "state", "job", "tries", "runtime", "step"] + [k.replace("val/all/", "") for k in ks]
    rows = []
    for j in jobs:
        step = "-" if j.step is None else f"{j.step}/{j.total_steps}" if j.total_steps else str(j.step)
        name = j.run_name or " ".join(o for o in j.overrides if not o.startswith(("hydra.",)))[:60] or "?"
        state = j.state + ("*" if j.attempts > 1 else "")
        rows.append(
            [
                str(j.num if j.num is not None else "-"),
                name,
                state,
                j.job_id or "-",
                str(j.attempts),
                _fmt_time(j.runtime_s),
                step,
            ]
            + [f"{100 * j.metrics[k]:.1f}" if k in j.metrics else "-" for k in ks]
        )
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = [
        f"sweep {sweep_dir}: "
        + ", ".join(f"{sum(j.state == s for j in jobs)} {s}" for s in STATES if any(j.state == s for j in jobs))
    ]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("-" * len(lines[-1]))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if any(j.attempts > 1 for j in jobs):
        lines.append("* started more than once (requeued after a time limit / preemption; resumed from its checkpoint)")
    if ks:
        lines.append("metrics: final validation, overall (micro), in %")
    logs = [j for j in jobs if j.log_out]
    if logs:
        lines.append(f"logs: {Path(logs[0].log_out).parent.parent}/<job>/<job>_0_log.{{out,err}}")
    if any(j.state == "interrupted" for j in jobs):
        lines.append(
            "interrupted: its process ended without recording an end (SIGKILL, full disk, lost node); "
            "the same command resumes it"
        )
    for j in jobs:
        if j.state in ("failed", "cancelled", "timeout"):
            lines.append("")
            lines.append(f"== {j.state}: #{j.num} {j.run_name or ' '.join(j.overrides)} (job {j.job_id})")
            if j.error:
                lines.append(f"   error: {j.error}")
            lines.append(f"   logs: {j.log_err} (and .out)")
            lines += ["   | " + ln for ln in j.stderr_tail.splitlines()]
    return "\n".join(lines)


def exit_code(jobs: list[JobInfo]) -> int:
    if any(j.state in ("failed", "cancelled", "timeout", "interrupted") for j in jobs):
        return 1
    if any(j.state not in ("completed",) for j in jobs) or not jobs:
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dars.sweep_status", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", help="the sweep directory (hydra.sweep.dir), e.g. outputs/sweeps/tiny")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    p.add_argument("--no-sacct", action="store_true", help="do not call sacct (files only)")
    p.add_argument("--watch", type=float, default=0, metavar="SEC", help="refresh every SEC seconds until done")
    a = p.parse_args(argv)
    if not Path(a.sweep_dir).is_dir():
        print(f"dars.sweep_status: no such sweep directory: {a.sweep_dir}", file=sys.stderr)
        return 2
    while True:
        jobs = collect(a.sweep_dir, use_sacct=not a.no_sacct)
        if a.json:
            for j in jobs:
                print(json.dumps(asdict(j)))
        else:
            print(format_table(jobs, a.sweep_dir))
        code = exit_code(jobs)
        if not a.watch or code != 3:
            return code
        sys.stdout.flush()
        time.sleep(a.watch)
        print()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`
        sys.exit(0)
