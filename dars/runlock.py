"""One writer per run directory, and a run state that never says "running" for a dead run.

A run holds an OS lock on ``<run_dir>/.lock`` for its whole life. POSIX record locks
(``fcntl.lockf``) are used because they are the kind shared file systems implement across nodes
(NFS through its lock manager, Lustre/GPFS with locking enabled), so two Slurm jobs on two nodes
see each other's lock. The kernel (or the NFS server, once the dead client's lease expires) drops
the lock when its process dies, however it dies: SIGKILL, out of memory, node lost. So:

- a second start of the same run finds the lock taken, names the holder (pid, host, Slurm job,
  start time, read from the lock file) and exits without touching the directory;
- a lock left by a dead process is simply free again: there is nothing stale to clean up;
- a reader (``python -m dars.sweep_status``, ``analysis``) that finds ``status.json`` saying
  ``running`` while nobody holds the lock reports the run as ``interrupted``.

POSIX locks belong to the process and are released when the process closes *any* descriptor of
the file, so this process never opens the lock file of a run it holds (``_HELD`` short-circuits).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"
# Lock files this process holds, by resolved run directory -> open file object.
_HELD: dict[Path, object] = {}


class RunBusy(RuntimeError):
    """Another live process holds the run directory."""


def _slurm_job() -> str | None:
    """This process's Slurm job as ``<array job>_<task>`` or ``<job>`` (None outside Slurm). A
    requeued job keeps its id, which is how a restart recognises its own dead predecessor."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def owner_record() -> dict:
    """Who this process is: written into the lock file and into ``status.json``."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "slurm_job": _slurm_job(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
    }


def _try_lock(f, shared: bool) -> bool:
    try:
        fcntl.lockf(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    job = f", Slurm job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('started')}"


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for the block (see the module doc).

    ``wait_for_own_job_s``: when the holder is this very Slurm job (a requeued job whose previous
    run died on a node the file server has not yet written off), wait up to this long for the
    server to release the dead node's lock instead of failing at once."""

    def __init__(self, run_dir: Path, wait_for_own_job_s: float = 300.0):
        self.run_dir = Path(run_dir).resolve()
        self.path = self.run_dir / LOCK_NAME
        self.wait_for_own_job_s = wait_for_own_job_s
        self._file = None

    def acquire(self) -> RunLock:
        if self.run_dir in _HELD:
            raise RunBusy(f"{self.run_dir} is already held by this process")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 (held open for the run's life); "a+" never truncates a holder's name
        deadline, waited_own = time.monotonic() + 1.0, False
        while not _try_lock(f, shared=False):
            holder = _holder(self.path)
            mine = _slurm_job()
            if mine and holder.get("slurm_job") == mine and not waited_own:
                # our own job's previous incarnation: dead for sure (Slurm runs one at a time)
                deadline, waited_own = time.monotonic() + self.wait_for_own_job_s, True
            if time.monotonic() > deadline:  # (the first second absorbs a reader's brief probe)
                f.close()
                raise RunBusy(
                    f"run directory {self.run_dir} is in use by {describe(holder)}. Wait for that "
                    f"run to finish (or stop it), then run the same command again to resume."
                )
            time.sleep(0.05)
        f.seek(0)
        f.truncate()
        f.write(json.dumps(owner_record()) + "\n")
        f.flush()
        os.fsync(f.fileno())
        self._file = f
        _HELD[self.run_dir] = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        _HELD.pop(self.run_dir, None)
        try:
            self._file.seek(0)
            self._file.truncate()  # an empty lock file: nobody is named as holder any more
        except OSError:
            pass  # (a full disk must not keep the lock from being released)
        self._file.close()  # closing drops the lock
        self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(run_dir: Path) -> bool:
    """True while a live process holds ``run_dir``'s lock (checked without disturbing it)."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _HELD:
        return True
    path = run_dir / LOCK_NAME
    if not path.exists():
        return False
    try:
        with open(path) as f:  # a shared probe conflicts only with a writer's exclusive lock
            if _try_lock(f, shared=True):
                fcntl.lockf(f, fcntl.LOCK_UN)
                return False
            return True
    except OSError:
        return False  # unreadable: cannot be a live run of ours


def observed_state(run_dir: Path, status: dict) -> str | None:
    """The run's state as a reader should report it: ``status.json``'s, except that a run whose
    file says ``running`` but whose lock nobody holds is ``interrupted`` (killed, out of disk, lost
    node: its process ended without recording an end). Re-running the same command resumes it."""
    state = status.get("state")
    if state == "running" and not is_held(run_dir):
        return "interrupted"
    return state
