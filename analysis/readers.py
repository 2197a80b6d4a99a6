"""File readers: tolerant, fast JSONL; per-checkpoint evaluation data from the three formats.

* native ``eval/step_<k>.jsonl`` (docs/run-format.md): one line per problem, ``scores`` list;
* the upstream repository's (github.com/yangzhch6/DARS) ``val_generations/<step>.json``: a JSON
  list, one object per problem with a ``score`` list (docs/algorithm.md §8.1);
* verl's ``trainer.validation_data_dir/<step>.jsonl``: one line per *sample* with ``input``,
  ``output``, ``score`` (+ optional ``data_source``, ``acc``, ``pred``); lines are grouped into
  problems by ``input``.

JSONL is parsed with pyarrow (C++, only the needed columns are materialised) and falls back to
``json`` line by line when pyarrow refuses the file (mixed types, a corrupt line, NaN literals).
A truncated last line (a writer still running, or killed) is skipped with a note.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from analysis.metrics import correct_counts

try:  # optional speed-up for upstream's (large) JSON list dumps
    import orjson as _orjson  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

UNKNOWN_SOURCE = "unknown"
NATIVE_STEP_RE = re.compile(r"^step_(\d+)\.jsonl$")
DUMP_STEP_RE = re.compile(r"^(\d+)\.(json|jsonl)$")


def _loads(b: bytes | str):
    if _orjson is not None:
        return _orjson.loads(b)
    return json.loads(b)


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------


def _coerce(value, typ: pa.DataType):
    if value is None:
        return None
    if pa.types.is_list(typ):
        if not isinstance(value, (list, tuple)):
            return None
        return [_coerce(v, typ.value_type) for v in value]
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if pa.types.is_floating(typ):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if pa.types.is_integer(typ):
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return value


def read_jsonl(path: Path, schema: pa.Schema | None = None) -> tuple[pa.Table | list, list[str]]:
    """Read a JSONL file tolerantly.

    With ``schema``: returns a pyarrow Table with exactly those columns (missing keys -> null,
    other keys ignored). Without: returns a list of dicts. The second value lists notes (skipped
    truncated last line, skipped corrupt lines, empty file).

    Not :func:`dars.runlog.read_jsonl`, which a run and the tools around it use to read records back:
    this one parses big per-problem eval files straight into typed Arrow columns, and says what it
    skipped, for the analysis report's notes."""
    notes: list[str] = []
    path = Path(path)
    data = path.read_bytes()
    if not data or data.isspace():
        notes.append(f"{path.name}: empty file")
        return (pa.table({f.name: pa.array([], f.type) for f in schema}) if schema else []), notes
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        tail = data[cut + 1 :]
        try:
            _loads(tail)
            data = data + b"\n"
        except ValueError:
            data = data[: cut + 1]
            notes.append(f"{path.name}: skipped a truncated last line (file still being written?)")
    if schema is not None and data and not data.isspace():
        try:
            tbl = pj.read_json(
                io.BytesIO(data),
                read_options=pj.ReadOptions(use_threads=False, block_size=1 << 24),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
            return tbl.select([f.name for f in schema]), notes
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass  # fall back to the line-by-line reader below
    records, bad = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    if bad:
        notes.append(f"{path.name}: skipped {bad} unreadable line(s)")
    if schema is None:
        return records, notes
    cols = {f.name: pa.array([_coerce(r.get(f.name), f.type) for r in records], type=f.type) for f in schema}
    return pa.table(cols), notes


def read_records(path: Path) -> tuple[list[dict], list[str]]:
    """All JSON objects of a JSONL file (truncated/corrupt lines skipped with notes)."""
    recs, notes = read_jsonl(path, None)
    return recs, notes  # type: ignore[return-value]


def read_metrics(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """``metrics.jsonl`` as a DataFrame sorted by step (last record wins for a repeated step)."""
    recs, notes = read_records(path)
    if not recs:
        return pd.DataFrame(), notes
    df = pd.DataFrame.from_records(recs)
    if "step" not in df.columns:
        notes.append(f"{Path(path).name}: no 'step' key; ignored")
        return pd.DataFrame(), notes
    df = df[pd.to_numeric(df["step"], errors="coerce").notna()].copy()
    df["step"] = df["step"].astype(np.int64)
    if df["step"].duplicated().any():
        notes.append(f"{Path(path).name}: repeated steps; kept the last record of each")
        df = df.drop_duplicates("step", keep="last")
    for col in df.columns:
        if df[col].dtype == object:
            conv = pd.to_numeric(df[col], errors="coerce")
            if conv.notna().sum() == df[col].notna().sum():
                df[col] = conv
    return df.sort_values("step").reset_index(drop=True), notes


# --------------------------------------------------------------------------------------------
# Evaluation data of one checkpoint
# --------------------------------------------------------------------------------------------


@dataclass
class EvalData:
    """Validation results of one checkpoint: one entry per problem, optional flat samples."""

    step: int
    source: np.ndarray  # data_source per problem (object array of str)
    ids: np.ndarray  # problem id per problem (object array of str)
    n: np.ndarray  # samples per problem
    c: np.ndarray  # correct samples per problem
    # flat per-sample arrays (only when loaded with samples=True and available)
    sample_problem: np.ndarray | None = None
    sample_position: np.ndarray | None = None
    sample_scores: np.ndarray | None = None
    sample_preds: np.ndarray | None = None
    response_length: np.ndarray | None = None  # mean response length per problem
    notes: list[str] = field(default_factory=list)

    @property
    def n_problems(self) -> int:
        return int(self.n.shape[0])

    @property
    def has_preds(self) -> bool:
        return self.sample_preds is not None and len(self.sample_preds) > 0

    def select(self, mask: np.ndarray) -> EvalData:
        """The subset of problems where ``mask`` is true (samples kept consistent)."""
        mask = np.asarray(mask, dtype=bool)
        new = EvalData(
            step=self.step,
            source=self.source[mask],
            ids=self.ids[mask],
            n=self.n[mask],
            c=self.c[mask],
            response_length=None if self.response_length is None else self.response_length[mask],
            notes=list(self.notes),
        )
        if self.sample_problem is not None:
            remap = np.full(mask.shape[0], -1, dtype=np.int64)
            remap[mask] = np.arange(int(mask.sum()))
            keep = mask[self.sample_problem]
            new.sample_problem = remap[self.sample_problem[keep]]
            new.sample_position = self.sample_position[keep]
            new.sample_scores = self.sample_scores[keep]
            new.sample_preds = None if self.sample_preds is None else self.sample_preds[keep]
        return new


def _obj(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _list_parts(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(lengths with null -> 0, flat values) of a list column."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    return lengths.astype(np.int64), arr.flatten()


def _finish(ev: EvalData, nonbinary: bool, path: Path) -> EvalData:
    empty = ev.n == 0
    if empty.any():
        ev.notes.append(f"{path.name}: {int(empty.sum())} problem(s) without samples ignored")
        ev = ev.select(~empty)
    if nonbinary:
        ev.notes.append(f"{path.name}: scores not all 0/1; a sample counts as correct if >= 0.5")
    return ev


def _nonbinary(values: np.ndarray) -> bool:
    v = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    return bool(v.size) and not np.isin(v, (0, 1)).all()


NATIVE_SCHEMA_MIN = pa.schema([("data_source", pa.string()), ("id", pa.string()), ("scores", pa.list_(pa.float64()))])
NATIVE_SCHEMA_FULL = pa.schema(
    list(NATIVE_SCHEMA_MIN) + [("response_lengths", pa.list_(pa.float64())), ("preds", pa.list_(pa.string()))]
)


def read_native_eval(path: Path, step: int, samples: bool = False) -> EvalData:
    """``eval/step_<k>.jsonl`` -> :class:`EvalData` (``samples`` adds preds/lengths)."""
    path = Path(path)
    tbl, notes = read_jsonl(path, NATIVE_SCHEMA_FULL if samples else NATIVE_SCHEMA_MIN)
    lengths, flat = _list_parts(tbl.column("scores"))
    scores = flat.to_numpy(zero_copy_only=False).astype(np.float64)
    scores = np.nan_to_num(scores, nan=0.0)
    src = tbl.column("data_source").to_pylist()
    missing_src = sum(s is None for s in src)
    if missing_src:
        notes.append(f"{path.name}: {missing_src} problem(s) without data_source -> '{UNKNOWN_SOURCE}'")
    ids = tbl.column("id").to_pylist()
    n_rows = len(ids)
    ids = [str(i) if i is not None else f"#{r}" for r, i in enumerate(ids)]
    ev = EvalData(
        step=step,
        source=_obj([s if s is not None else UNKNOWN_SOURCE for s in src]),
        ids=_obj(ids),
        n=lengths,
        c=correct_counts(scores, lengths),
        notes=notes,
    )
    if samples and n_rows:
        ev.sample_problem = np.repeat(np.arange(n_rows), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        ev.sample_position = np.arange(lengths.sum()) - starts
        ev.sample_scores = scores
        plen, pflat = _list_parts(tbl.column("preds"))
        if plen.sum() > 0:
            if not np.array_equal(plen, lengths):
                notes.append(f"{path.name}: 'preds' and 'scores' lengths differ; maj@k skipped")
            else:
                ev.sample_preds = np.asarray(pflat.to_numpy(zero_copy_only=False), dtype=object)
        rlen, rflat = _list_parts(tbl.column("response_lengths"))
        if rlen.sum() > 0:
            rv = rflat.to_numpy(zero_copy_only=False).astype(np.float64)
            cs = np.concatenate([[0.0], np.cumsum(np.nan_to_num(rv))])
            off = np.concatenate([[0], np.cumsum(rlen)])
            with np.errstate(invalid="ignore", divide="ignore"):
                ev.response_length = (cs[off[1:]] - cs[off[:-1]]) / rlen
    return _finish(ev, _nonbinary(scores), path)


def read_upstream_dump(path: Path, step: int, samples: bool = False) -> EvalData:
    """The upstream repository's ``val_generations/<step>.json`` (a JSON list of per-problem objects)."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"{path.name}: empty file")
    try:
        items = _loads(raw)
    except ValueError as e:
        raise ValueError(f"{path.name}: not valid JSON (truncated or still being written?): {e}") from None
    if not isinstance(items, list):
        raise ValueError(f"{path.name}: expected a JSON list of problems")
    return _upstream_from_items(items, path, step, samples)


def _upstream_from_items(items: list, path: Path, step: int, samples: bool) -> EvalData:
    notes: list[str] = []
    src, ids, lens, flat, rl = [], [], [], [], []
    seen: dict[str, int] = {}
    bad = 0
    for it in items:
        sc = it.get("score") if isinstance(it, dict) else None
        if not isinstance(sc, list):
            bad += 1
            continue
        s = it.get("data_source")
        src.append(s if s is not None else UNKNOWN_SOURCE)
        key = str(it.get("input", ""))
        occ = seen.get(key, 0)
        seen[key] = occ + 1
        ids.append(key if occ == 0 else f"{key}#{occ}")
        vals = [float(x) if isinstance(x, (int, float)) else 0.0 for x in sc]
        lens.append(len(vals))
        flat.extend(vals)
        r = it.get("response_length")
        rl.append(float(np.mean(r)) if isinstance(r, list) and r else np.nan)
    if bad:
        notes.append(f"{path.name}: {bad} item(s) without a 'score' list skipped")
    lengths = np.asarray(lens, dtype=np.int64)
    scores = np.asarray(flat, dtype=np.float64)
    ev = EvalData(
        step=step,
        source=_obj(src),
        ids=_obj(ids),
        n=lengths,
        c=correct_counts(scores, lengths),
        response_length=np.asarray(rl, dtype=np.float64),
        notes=notes,
    )
    if samples:
        ev.sample_problem = np.repeat(np.arange(len(lens)), lengths)
        ev.sample_position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ev.sample_scores = scores
    return _finish(ev, _nonbinary(scores), path)


VERL_SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("score", pa.float64()),
        ("acc", pa.float64()),
        ("data_source", pa.string()),
        ("pred", pa.string()),
    ]
)


def read_verl_dump(path: Path, step: int, samples: bool = False) -> EvalData:
    """verl's ``validation_data_dir/<step>.jsonl``: one line per sample, grouped by ``input``.

    Correctness is ``acc`` when the reward function logged it, else ``score`` (>= 0.5)."""
    path = Path(path)
    tbl, notes = read_jsonl(path, VERL_SCHEMA)
    if tbl.num_rows == 0:
        raise ValueError(f"{path.name}: no samples")
    inputs = tbl.column("input").to_pylist()
    if any(i is None for i in inputs):
        notes.append(f"{path.name}: lines without 'input' skipped")
    valid = np.array([i is not None for i in inputs])
    score = tbl.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    acc = tbl.column("acc").to_numpy(zero_copy_only=False).astype(np.float64)
    use_acc = ~np.isnan(acc)
    value = np.where(use_acc, acc, score)
    valid &= ~np.isnan(value)
    codes, uniques = pd.factorize(pd.Series(inputs, dtype=object)[valid], sort=False)
    P = len(uniques)
    value = value[valid]
    n = np.bincount(codes, minlength=P).astype(np.int64)
    correct = value >= 0.5
    c = np.bincount(codes, weights=correct, minlength=P).astype(np.int64)
    src_all = np.asarray(tbl.column("data_source").to_pylist(), dtype=object)[valid]
    first = np.full(P, -1, dtype=np.int64)
    order = np.arange(codes.size)
    first[codes[::-1]] = order[::-1]
    src = [s if s is not None else UNKNOWN_SOURCE for s in src_all[first]]
    if all(s == UNKNOWN_SOURCE for s in src):
        notes.append(f"{path.name}: no data_source field; all problems form one benchmark '{UNKNOWN_SOURCE}'")
    ev = EvalData(step=step, source=_obj(src), ids=_obj([str(u) for u in uniques]), n=n, c=c, notes=notes)
    if samples:
        srt = np.argsort(codes, kind="stable")
        ev.sample_problem = codes[srt].astype(np.int64)
        ev.sample_position = pd.Series(ev.sample_problem).groupby(ev.sample_problem).cumcount().to_numpy()
        ev.sample_scores = correct[srt].astype(np.float64)
        preds = np.asarray(tbl.column("pred").to_pylist(), dtype=object)[valid][srt]
        if any(p is not None for p in preds):
            ev.sample_preds = preds
    return _finish(ev, _nonbinary(value[~use_acc[valid]]) if (~use_acc[valid]).any() else False, path)


def sniff_dump_format(path: Path) -> str:
    """'upstream' for a JSON list (``.json``), 'verl' for per-sample JSONL, 'native' for per-problem
    JSONL with a ``scores`` list; raises ValueError when it cannot tell."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    stripped = head.lstrip()
    if not stripped:
        raise ValueError(f"{path.name}: empty file")
    if stripped[:1] == b"[":
        return "upstream"
    first = stripped.split(b"\n", 1)[0]
    try:
        rec = json.loads(first)
    except ValueError:
        raise ValueError(f"{path.name}: first line is not JSON") from None
    if isinstance(rec, dict):
        if "scores" in rec:
            return "native"
        if isinstance(rec.get("score"), list):
            return "upstream"  # upstream's items written one per line
        if "input" in rec and "score" in rec:
            return "verl"
    raise ValueError(f"{path.name}: unrecognised validation dump format")


def read_eval_file(path: Path, step: int, fmt: str, samples: bool = False) -> EvalData:
    """Dispatch on ``fmt`` ('native', 'upstream', 'verl'); upstream's items may also be one per line."""
    path = Path(path)
    if fmt == "native":
        return read_native_eval(path, step, samples)
    if fmt == "verl":
        return read_verl_dump(path, step, samples)
    if fmt == "upstream":
        if path.suffix == ".jsonl":  # upstream-shaped objects, one per line
            recs, notes = read_records(path)
            ev = _upstream_from_items(recs, path, step, samples)
            ev.notes = notes + ev.notes
            return ev
        return read_upstream_dump(path, step, samples)
    raise ValueError(f"unknown eval format {fmt!r}")
