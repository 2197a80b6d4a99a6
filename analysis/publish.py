"""Writing a report without ever destroying the previous one.

Two rules (issue #11): a command that has nothing to write (the inputs hold no runs: a mistyped
path, an empty folder) says so, exits 2 and touches nothing in ``--out``; and a report is
written into a hidden staging folder inside ``--out`` and moved into place only once complete,
so a crash part-way leaves the previous report as it was (and no half-written ``index.md``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NO_RUNS = 2  # exit status: the inputs hold no runs (nothing was written)
WHAT_IS_A_RUN = (
    "a run directory holds metrics.jsonl, eval/ or status.json; a dump folder "
    "val_generations/<step>.json or <step>.jsonl files"
)


def missing_paths(dirs) -> list[str]:
    return [str(d) for d in dirs if not Path(d).exists()]


def refuse_missing_inputs(dirs, out: Path | None) -> bool:
    """Print the one message for input paths that do not exist and return True (the caller exits
    with :data:`NO_RUNS` before reading or writing anything); False when every path exists."""
    missing = missing_paths(dirs)
    if missing:
        print(no_runs_message(missing, out, header="error: input path(s) not found:"), file=sys.stderr)
    return bool(missing)


def no_runs_message(dirs, out: Path | None, notes=(), header: str = "error: no runs to analyse:") -> str:
    """One message for inputs that hold no runs (or do not exist): each path and what is wrong
    with it, the fix, and that ``--out`` was left as it was."""
    lines = [header]
    for d in dirs:
        p = Path(d)
        why = (
            "does not exist"
            if not p.exists()
            else "is empty"
            if p.is_dir() and not any(p.iterdir())
            else "holds no run directory"
        )
        lines.append(f"  {d}: {why}")
    lines += [f"  note: {n}" for n in notes if "does not exist" not in n and "no run directories found" not in n]
    lines.append(
        f"Fix: check the spelling, and pass the sweep or run directory itself (e.g. "
        f"outputs/sweeps/<sweep> or outputs/runs/<preset>/<run>); {WHAT_IS_A_RUN}."
    )
    if out is not None:
        lines.append(f"Nothing was written: {out} was left as it was.")
    return "\n".join(lines)


def roots_without_runs(dirs, run_paths) -> list[str]:
    """The given directories below which none of ``run_paths`` lies (a likely typo when other
    directories do hold runs)."""
    found = [Path(p).resolve() for p in run_paths]
    out = []
    for d in dirs:
        root = Path(d).resolve()
        root = root.parent if root.is_file() else root
        if not any(p == root or root in p.parents for p in found):
            out.append(str(d))
    return out


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh hidden folder inside ``out`` to write the report into; on a clean exit of the
    ``with`` block its entries replace those of ``out`` (:func:`publish`), on an exception it is
    removed and ``out`` is untouched. Hidden, so run discovery never enters it (an ``--out``
    inside a sweep directory stays safe)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield tmp
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def publish(tmp: Path, out: Path) -> None:
    """Move every entry of ``tmp`` into ``out``. A file replaces its namesake atomically
    (``os.replace``); a folder replaces its namesake by two renames (old aside, new in), so
    ``out/tables`` is always either the old or the new folder, never a mixture. ``index.md`` goes
    last: it never points at files that are not there yet. Entries of ``out`` that the new report
    does not have (a user's own files, figures when ``--no-figures``) are left alone."""
    entries = sorted(tmp.iterdir(), key=lambda p: (p.name == "index.md", p.name))
    for src in entries:
        dst = out / src.name
        if src.is_dir() and dst.exists():
            aside = out / f".old-{src.name}-{uuid.uuid4().hex[:8]}"
            os.replace(dst, aside)
            os.replace(src, dst)
            _remove(aside)
        else:
            if dst.is_dir() and not dst.is_symlink():
                _remove(dst)  # a file where a folder was (never in our own reports)
            os.replace(src, dst)
