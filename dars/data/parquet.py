"""verl-format parquet prompts (``data=parquet``), read by both backends alike (docs/data.md).

One row per prompt, the columns verl's RLHFDataset reads::

    data_source   str                       benchmark name (one validation table row per value)
    prompt        list[{role, content}]     chat messages, role in system/user/assistant
    ability       str                       e.g. "math"
    reward_model  {ground_truth, style?}    ground_truth: the gold answer, a non-empty string
    extra_info    {index?, split?, ...}     may be empty or null

Extra columns (openr1's ``target``) are ignored. Every row is checked before anything runs: a bad
row raises :class:`DataError` naming the file, row, column and fix, unless the caller explicitly
asks to skip invalid rows. Prompts are rendered to text by one function, :func:`render_prompt`, with
either the tokenizer's chat template or :data:`NO_TEMPLATE_CHAT_TEMPLATE`; the verl backend passes
that same template string to verl as ``custom_chat_template``, so both backends see the same text.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dars.data.problem import DataError, Problem

log = logging.getLogger("dars")

REQUIRED_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
ROLES = ("system", "user", "assistant")

# "No template": the message contents back to back, no role markers, no special tokens (the
# paper's Llama runs). One definition: the verl backend hands this exact string to verl.
NO_TEMPLATE_CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"

PREP_HINT = "python -m dars.data.prepare INPUT OUTPUT converts a question/answer table to this format"


def _where(path, row: int | None = None, index: Any = None, column: str | None = None) -> str:
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}" + (f" (extra_info.index={index!r})" if index is not None else ""))
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


def _data_error(path, what: str, fix: str, row=None, index=None, column=None) -> DataError:
    return DataError(f"{_where(path, row, index, column)}: {what}. Fix: {fix}")


# ---------------------------------------------------------------------------------------- reading
def _read_table_rows(path) -> list[dict]:
    """The required columns of a parquet file as Python dicts (extra columns are not read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory, not a parquet file" if p.is_dir() else "file not found"
        raise _data_error(p, what, f"check the path; {PREP_HINT}")
    try:
        names = pq.read_schema(p).names
    except (pa.ArrowException, OSError) as e:
        raise _data_error(
            p, f"not a readable parquet file ({type(e).__name__}: {e})", f"point at a verl parquet file; {PREP_HINT}"
        ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise _data_error(
            p,
            f"missing column(s) {missing} (has {names})",
            f"a verl RL file needs columns {list(REQUIRED_COLUMNS)}; {PREP_HINT}",
            column=missing[0],
        )
    try:
        return pq.read_table(p, columns=list(REQUIRED_COLUMNS)).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise _data_error(p, f"could not be read ({type(e).__name__}: {e})", f"rewrite the file; {PREP_HINT}") from None


def _index_of(row: dict) -> Any:
    extra = row.get("extra_info")
    return extra.get("index") if isinstance(extra, dict) else None


def ground_truth_text(value: Any) -> str | None:
    """The gold answer as a string, or None when unusable. Numbers are accepted (tables exported from
    pandas often store answers as int64, or as float64 once a column has a gap) and written as text:
    ints with ``str()``, whole floats without the ``.0`` (7.0 -> "7"), other floats with ``str()``.
    Bools, NaN/inf and empty or blank strings are not answers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def check_row(row: dict) -> tuple[str, str, str] | None:
    """None for a valid row, else (column, what is wrong, fix)."""
    ds = row.get("data_source")
    if not isinstance(ds, str) or not ds:
        return (
            "data_source",
            f"must be a non-empty string, got {type(ds).__name__} {ds!r}",
            "store the benchmark name as a string (e.g. 'math')",
        )
    msgs = row.get("prompt")
    fix_prompt = "store prompt as a list of {'role': ..., 'content': str} messages"
    if not isinstance(msgs, list) or not msgs:
        shown = repr(msgs)[:60]
        return ("prompt", f"must be a non-empty list of chat messages, got {type(msgs).__name__} {shown}", fix_prompt)
    for k, m in enumerate(msgs):
        if not isinstance(m, dict):
            return ("prompt", f"message {k} is a {type(m).__name__}, not a {{role, content}} dict", fix_prompt)
        if m.get("role") not in ROLES:
            return ("prompt", f"message {k} has role {m.get('role')!r}; must be one of {list(ROLES)}", fix_prompt)
        if not isinstance(m.get("content"), str):
            return ("prompt", f"message {k} has no string content (got {m.get('content')!r})", fix_prompt)
    if not any(m["content"] for m in msgs):
        return ("prompt", "every message has empty content", "drop the row or give it a question")
    if not isinstance(row.get("ability"), str):
        return ("ability", f"must be a string, got {type(row.get('ability')).__name__}", "store e.g. 'math'")
    rm = row.get("reward_model")
    if not isinstance(rm, dict):
        return (
            "reward_model",
            f"must be a struct with ground_truth, got {type(rm).__name__}",
            "store {'ground_truth': ANSWER, 'style': 'rule'}",
        )
    if ground_truth_text(rm.get("ground_truth")) is None:
        return (
            "reward_model.ground_truth",
            f"must be a non-empty string, got {rm.get('ground_truth')!r}",
            "give every row its gold answer, or drop the row",
        )
    extra = row.get("extra_info")
    if extra is not None and not isinstance(extra, dict):
        return (
            "extra_info",
            f"must be a struct (or null), got {type(extra).__name__}",
            "store e.g. {'index': 0, 'split': 'train'}",
        )
    return None


def _valid_rows(rows: list[dict], path, allow_invalid_rows: bool) -> list[tuple[int, dict]]:
    """(row number, row) of every valid row. The first invalid row raises, unless skipping was
    asked for: nothing runs on half-valid data by accident."""
    out, bad = [], []
    for i, row in enumerate(rows):
        problem = check_row(row)
        if problem is None:
            out.append((i, row))
            continue
        column, what, fix = problem
        if not allow_invalid_rows:
            raise _data_error(
                path,
                what,
                fix + " (or set data.allow_invalid_rows=true to skip invalid rows)",
                row=i,
                index=_index_of(row),
                column=column,
            )
        bad.append(i)
    if bad:
        log.warning(
            "%s: skipped %d invalid row(s) of %d (allow_invalid_rows); first: row %d", path, len(bad), len(rows), bad[0]
        )
    if not out:
        raise _data_error(path, f"no valid rows (of {len(rows)})", f"check the file; {PREP_HINT}")
    return out


def validate_verl_parquet(
    path, *, allow_invalid_rows: bool = False, tokenizer=None, use_template: bool = False
) -> dict:
    """Check every row (no tokenizer needed) and summarise: rows, valid/invalid, per data_source.
    With a ``tokenizer`` also ``prompt_tokens``: each valid prompt's length as the loader counts it
    (only worth it for a cheap tokenizer, such as the tiny model's)."""
    rows = _read_table_rows(path)
    valid = _valid_rows(rows, path, allow_invalid_rows)
    summary = {
        "path": str(path),
        "rows": len(rows),
        "valid_rows": len(valid),
        "invalid_rows": len(rows) - len(valid),
        "data_sources": dict(Counter(r["data_source"] for _, r in valid)),
    }
    if tokenizer is not None:
        texts = [render_prompt(r["prompt"], tokenizer, use_template) for _, r in valid]
        summary["prompt_tokens"] = prompt_token_counts(tokenizer, texts)
    return summary


# ---------------------------------------------------------------------------------------- prompts
def render_prompt(messages: list[dict], tokenizer, use_template: bool) -> str:
    """Prompt text as the model sees it: the tokenizer's chat template (with the generation prompt)
    or, without a template, the plain concatenation of the contents (:data:`NO_TEMPLATE_CHAT_TEMPLATE`,
    rendered by the same tokenizer call verl makes with ``custom_chat_template``)."""
    template = None if use_template else NO_TEMPLATE_CHAT_TEMPLATE
    if use_template and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            f"data.use_template=true but the tokenizer ({getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__}) "
            f"has no chat template. Fix: set data.use_template=false (plain concatenation, as the Llama runs) "
            f"or use a checkpoint whose tokenizer has one"
        )
    return tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False)


def prompt_token_counts(tokenizer, texts: list[str]) -> list[int]:
    """Tokens per prompt as the embedded backend encodes them (``rollout.encode_prompt``: with BOS
    when the tokenizer has one), batched. verl counts the template's tokens, which differs by at most
    that BOS, only for tokenizers whose template does not write it."""
    if not texts:
        return []
    bos = tokenizer.bos_token_id
    ids = tokenizer(texts, add_special_tokens=True).input_ids
    return [len(x) + (1 if bos is not None and (not x or x[0] != bos) else 0) for x in ids]


# ---------------------------------------------------------------------------------------- loading
def load_verl_problems(
    path,
    *,
    tokenizer,
    use_template: bool,
    max_prompt_length: int | None = None,
    filter_overlong: bool = True,
    allow_invalid_rows: bool = False,
    split: str = "train",
) -> list[Problem]:
    """The file's rows as :class:`~dars.data.Problem` s, in file order.

    - invalid rows raise :class:`DataError` (``allow_invalid_rows``: skipped, and counted in a warning);
    - prompts longer than ``max_prompt_length`` tokens are dropped when ``filter_overlong`` (as verl's
      ``filter_overlong_prompts``; counted in the log), otherwise kept (the backend cuts them);
    - duplicate prompts are kept, as verl keeps them (one row = one prompt draw); their count is logged;
    - ids are ``extra_info.index`` when every valid row has one and they are unique, else ``row-<n>``.
    """
    rows = _valid_rows(_read_table_rows(path), path, allow_invalid_rows)
    texts = [render_prompt(r["prompt"], tokenizer, use_template) for _, r in rows]

    indices = [_index_of(r) for _, r in rows]
    if all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in indices) and len(set(indices)) == len(
        indices
    ):
        ids = [str(x) for x in indices]
    else:
        ids = [f"row-{i}" for i, _ in rows]
    problems = [
        Problem(pid, r["data_source"], text, ground_truth_text(r["reward_model"]["ground_truth"]))
        for pid, (_, r), text in zip(ids, rows, texts)
    ]
    dups = len(texts) - len(set(texts))
    if dups:
        log.info("%s: %d duplicate prompt(s) kept (each row is one prompt, as in verl)", path, dups)

    if max_prompt_length is not None and filter_overlong:
        lengths = prompt_token_counts(tokenizer, texts)
        kept = [p for p, n in zip(problems, lengths) if n <= max_prompt_length]
        if len(kept) < len(problems):
            log.info(
                "%s: dropped %d of %d %s prompt(s) longer than max_prompt_length=%d tokens",
                path,
                len(problems) - len(kept),
                len(problems),
                split,
                max_prompt_length,
            )
        if not kept:
            raise _data_error(
                path,
                f"every prompt is longer than max_prompt_length={max_prompt_length} tokens",
                "raise rollout.max_prompt_length (scale.max_prompt_length) or set data.filter_overlong_prompts=false",
            )
        problems = kept
    log.info(
        "%s split: %d prompts from %s %s", split, len(problems), path, dict(Counter(p.data_source for p in problems))
    )
    return problems


# ---------------------------------------------------------------------------------------- writing
def problems_to_verl_rows(problems: Iterable[Problem], *, ability: str = "math", split: str = "train") -> list[dict]:
    """verl rows for prompts that are plain text (e.g. the synthetic task): one user message each."""
    return [
        {
            "data_source": p.data_source,
            "prompt": [{"role": "user", "content": p.prompt}],
            "ability": ability,
            "reward_model": {"ground_truth": p.answer, "style": "rule"},
            "extra_info": {"index": i, "split": split},
        }
        for i, p in enumerate(problems)
    ]


def _umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_verl_parquet(rows: list[dict], path) -> Path:
    """Check every row, then write a parquet file atomically (temporary file in the same folder,
    then ``os.replace``): a crash never leaves a half-written data file under the final name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if not rows:
        raise _data_error(path, "no rows to write", "give at least one problem")
    _valid_rows(rows, f"{path} (rows to write)", allow_invalid_rows=False)
    rows = [
        {
            **r,
            "reward_model": {**r["reward_model"], "ground_truth": ground_truth_text(r["reward_model"]["ground_truth"])},
        }
        for r in rows
    ]
    table = pa.Table.from_pylist(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        # mkstemp makes the file 0600; a data file is shared like any other (0644 under umask 022)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
