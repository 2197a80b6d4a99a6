"""Turn a question/answer table into a verl-format parquet file (docs/data.md).

    python -m dars.data.prepare problems.jsonl data/train.parquet --data-source math \\
        --instruction "{question} Let's think step by step and output the final answer within \\boxed{}."

INPUT is .parquet, .jsonl, .json (a list of objects) or .csv with a question and an answer column.
The output is written atomically, checked with the same validator the runs use, and never
overwrites an existing file without --force. Any bad input stops with one line naming the file,
row and column, exit code 2, and no output file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dars.data.parquet import ground_truth_text, validate_verl_parquet, write_verl_parquet
from dars.data.problem import DataError

PROG = "dars.data.prepare"
READERS = (".parquet", ".jsonl", ".json", ".csv")


class PrepError(Exception):
    pass


def read_records(path: Path) -> list[dict]:
    """Rows of the input table as dicts (values as stored: numbers stay numbers)."""
    if not path.is_file():
        raise PrepError(f"{path}: input file not found; check the path")
    ext = path.suffix.lower()
    if ext not in READERS:
        raise PrepError(f"{path}: unknown extension {ext or '(none)'!r}; give a {', '.join(READERS)} file")
    try:
        if ext == ".jsonl":
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise PrepError(
                            f"{path}: line {n} is not valid JSON ({e.msg}); one JSON object per line"
                        ) from None
        elif ext == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise PrepError(
                    f"{path}: expected a JSON list of objects, got a {type(rows).__name__}; "
                    f"use a list (or .jsonl, one object per line)"
                )
        else:
            import pandas as pd

            # CSV: every cell as written (no NaN for empty cells, no "007" -> 7)
            df = pd.read_parquet(path) if ext == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
            rows = df.to_dict(orient="records")
    except PrepError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable file: name it, with what the reader said
        raise PrepError(f"{path}: could not be read as {ext} ({type(e).__name__}: {str(e)[:200]})") from None
    bad = next((k for k, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise PrepError(f"{path}: row {bad} is a {type(rows[bad]).__name__}, not an object with named columns")
    if not rows:
        raise PrepError(f"{path}: no rows")
    return rows


def build_rows(records: list[dict], args, source: Path) -> list[dict]:
    """verl rows: [system] + user(instruction with the question); gold answer as ground_truth."""
    columns = set().union(*(r.keys() for r in records))
    for flag, col in (
        ("--question-col", args.question_col),
        ("--answer-col", args.answer_col),
        ("--data-source-col", args.data_source_col),
    ):
        if col is not None and col not in columns:
            raise PrepError(f"{source}: no column {col!r} (has {sorted(columns)}); pass {flag} with the right name")
    out = []
    for k, r in enumerate(records):
        q = r.get(args.question_col)
        if not isinstance(q, str) or not q.strip():
            raise PrepError(
                f"{source}: row {k}, column {args.question_col!r}: empty or not text ({q!r}); "
                f"fill it in or drop the row"
            )
        answer = ground_truth_text(r.get(args.answer_col))
        if answer is None:
            raise PrepError(
                f"{source}: row {k}, column {args.answer_col!r}: empty answer ({r.get(args.answer_col)!r}); "
                f"every row needs its gold answer: fill it in or drop the row"
            )
        if args.data_source_col:
            ds = r.get(args.data_source_col)
            if not isinstance(ds, str) or not ds:
                raise PrepError(
                    f"{source}: row {k}, column {args.data_source_col!r}: empty data source ({ds!r}); "
                    f"fill it in or use --data-source NAME for all rows"
                )
        else:
            ds = args.data_source or source.stem
        prompt = [{"role": "system", "content": args.system}] if args.system else []
        prompt.append({"role": "user", "content": args.instruction.replace("{question}", q)})
        out.append(
            {
                "data_source": ds,
                "prompt": prompt,
                "ability": args.ability,
                "reward_model": {"ground_truth": answer, "style": "rule"},
                "extra_info": {"index": k, "split": args.split},
            }
        )
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Convert a question/answer table (.parquet/.jsonl/.json/.csv) into verl RL parquet "
        "(data_source, prompt, ability, reward_model, extra_info), the format data=parquet reads.",
        epilog="Example: python -m dars.data.prepare test.jsonl data/math500.parquet --data-source math --split test",
    )
    p.add_argument("input", type=Path, help="question/answer table: .parquet, .jsonl, .json (list of objects) or .csv")
    p.add_argument("output", type=Path, help="verl parquet file to write (.parquet); written atomically")
    p.add_argument("--question-col", default="question", help="column with the question text (default: question)")
    p.add_argument(
        "--answer-col",
        default="answer",
        help="column with the gold answer, becomes reward_model.ground_truth; numbers are written "
        "as text (default: answer)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data-source",
        default=None,
        help="benchmark name for every row (default: the input file's name without extension)",
    )
    src.add_argument(
        "--data-source-col", default=None, help="column holding each row's benchmark name (for mixed validation sets)"
    )
    p.add_argument(
        "--instruction",
        default="{question}",
        help="user message template; {question} is replaced by the question, other braces are kept "
        "as written (default: the question alone)",
    )
    p.add_argument("--system", default=None, help="system message put before every question (default: none)")
    p.add_argument("--split", default="train", help="written to extra_info.split (default: train)")
    p.add_argument("--ability", default="math", help="the ability column (default: math)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if "{question}" not in args.instruction:
            raise PrepError(
                f"--instruction {args.instruction!r} has no {{question}} placeholder; add one where the question goes"
            )
        if args.output.suffix.lower() != ".parquet":
            raise PrepError(f"{args.output}: output must end in .parquet")
        if args.output.exists() and not args.force:
            raise PrepError(f"{args.output} already exists; pass --force to overwrite it")
        rows = build_rows(read_records(args.input), args, args.input)
        write_verl_parquet(rows, args.output)
        try:  # read back through the loader's own checks
            summary = validate_verl_parquet(args.output)
        except DataError:
            args.output.unlink(missing_ok=True)
            raise
    except (PrepError, DataError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    per_source = ", ".join(f"{k} {v}" for k, v in sorted(summary["data_sources"].items()))
    dups = len(rows) - len({json.dumps(r["prompt"]) for r in rows})
    print(
        f"Wrote {summary['rows']} rows to {args.output} (verl RL format, split {args.split!r}, ability "
        f"{args.ability!r}) from {args.input}; per data_source: {per_source}."
        + (f" {dups} duplicate prompt(s) kept." if dups else "")
        + f" Use it with: python -m dars.run data=parquet data.train_file={args.output} (or data.val_file=...)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
