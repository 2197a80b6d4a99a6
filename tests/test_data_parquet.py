"""verl parquet data: real files (pyarrow), the real char tokenizer, the real prep CLI and dars.run."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FAST, ROOT, run_dars

from dars.data import DataError, Problem, load_splits
from dars.data.parquet import (
    NO_TEMPLATE_CHAT_TEMPLATE,
    REQUIRED_COLUMNS,
    load_verl_problems,
    problems_to_verl_rows,
    render_prompt,
    validate_verl_parquet,
    write_verl_parquet,
)
from dars.data.synthetic import synthetic_splits
from dars.model import build_char_tokenizer
from dars.rollout import encode_prompt

# A real Jinja chat template with role markers, so "template on" and "off" give different text.
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def chat_tok():
    t = build_char_tokenizer()
    t.chat_template = CHAT_TEMPLATE
    return t


def row(i, question="1+1=", answer="2", source="math", **over):
    r = {
        "data_source": source,
        "prompt": [{"role": "system", "content": "S:"}, {"role": "user", "content": question}],
        "ability": "math",
        "reward_model": {"ground_truth": answer, "style": "rule"},
        "extra_info": {"index": 100 + i, "split": "train"},
    }
    r.update(over)
    return r


def write(path, rows, **extra_columns):
    table = pa.Table.from_pylist(rows)
    for name, values in extra_columns.items():
        table = table.append_column(name, pa.array(values))
    pq.write_table(table, path)
    return path


def good_rows(n=4):
    return [row(i, question=f"{i}+{i}=", answer=str(2 * i), source=["math", "aime"][i % 2]) for i in range(n)]


# ------------------------------------------------------------------------------------ loading
def test_good_file_loads_in_order_with_extra_columns_ignored(tmp_path, tok):
    path = write(tmp_path / "train.parquet", good_rows(), target=["x"] * 4)
    probs = load_verl_problems(path, tokenizer=tok, use_template=False)
    assert probs == [Problem(str(100 + i), ["math", "aime"][i % 2], f"S:{i}+{i}=", str(2 * i)) for i in range(4)]
    s = validate_verl_parquet(path)
    assert s["rows"] == 4 and s["invalid_rows"] == 0 and s["data_sources"] == {"math": 2, "aime": 2}


def test_use_template_on_and_off(tmp_path, chat_tok):
    path = write(tmp_path / "t.parquet", good_rows(1))
    off = load_verl_problems(path, tokenizer=chat_tok, use_template=False)[0].prompt
    on = load_verl_problems(path, tokenizer=chat_tok, use_template=True)[0].prompt
    assert off == "S:0+0="
    assert on == "<system>S:\n<user>0+0=\n<assistant>"
    # the no-template text is what the one shared template string renders (the verl backend's path)
    msgs = good_rows(1)[0]["prompt"]
    assert chat_tok.apply_chat_template(msgs, chat_template=NO_TEMPLATE_CHAT_TEMPLATE, tokenize=False) == off
    assert render_prompt(msgs, chat_tok, use_template=True) == on


def test_use_template_without_a_chat_template_says_how_to_fix(tmp_path, tok):
    path = write(tmp_path / "t.parquet", good_rows(1))
    with pytest.raises(DataError, match="use_template=false"):
        load_verl_problems(path, tokenizer=tok, use_template=True)


def test_overlong_prompts_are_filtered_by_token_count(tmp_path, tok, caplog):
    rows = [row(i, question="9" * k) for i, k in enumerate([1, 5, 10, 20])]
    path = write(tmp_path / "t.parquet", rows)
    lengths = [len(encode_prompt(tok, "S:" + "9" * k)) for k in [1, 5, 10, 20]]  # BOS + chars: 4, 8, 13, 23
    assert lengths == [4, 8, 13, 23]
    with caplog.at_level("INFO", logger="dars"):
        kept = load_verl_problems(path, tokenizer=tok, use_template=False, max_prompt_length=13)
    assert [p.id for p in kept] == ["100", "101", "102"]  # 13 tokens is not over the limit
    assert "dropped 1 of 4" in caplog.text
    assert (
        len(load_verl_problems(path, tokenizer=tok, use_template=False, max_prompt_length=13, filter_overlong=False))
        == 4
    )
    with pytest.raises(DataError, match="every prompt is longer"):
        load_verl_problems(path, tokenizer=tok, use_template=False, max_prompt_length=3)


def test_ids_fall_back_to_row_numbers_and_duplicates_are_kept(tmp_path, tok):
    rows = [row(0), row(1), row(2)]
    rows[2]["extra_info"] = {"index": 100, "split": "train"}  # duplicate index
    probs = load_verl_problems(write(tmp_path / "t.parquet", rows), tokenizer=tok, use_template=False)
    assert [p.id for p in probs] == ["row-0", "row-1", "row-2"]
    assert len({p.prompt for p in probs}) == 1  # same prompt three times: all kept, as verl keeps them


def test_numeric_ground_truth_is_converted(tmp_path, tok):
    ints = write(tmp_path / "i.parquet", [row(0, answer=7), row(1, answer=-12)])
    assert [p.answer for p in load_verl_problems(ints, tokenizer=tok, use_template=False)] == ["7", "-12"]
    # a float column (pandas turns int answers with a gap into float64): whole numbers lose the ".0"
    floats = write(tmp_path / "f.parquet", [row(0, answer=7.0), row(1, answer=2.5)])
    assert [p.answer for p in load_verl_problems(floats, tokenizer=tok, use_template=False)] == ["7", "2.5"]
    nan = write(tmp_path / "n.parquet", [row(0, answer=float("nan"))])
    with pytest.raises(DataError, match="ground_truth"):
        load_verl_problems(nan, tokenizer=tok, use_template=False)


# ------------------------------------------------------------------------------------ broken files
def test_missing_file(tmp_path, tok):
    with pytest.raises(DataError) as e:
        load_verl_problems(tmp_path / "nope.parquet", tokenizer=tok, use_template=False)
    assert "nope.parquet" in str(e.value) and "not found" in str(e.value) and "dars.data.prepare" in str(e.value)


def test_garbage_bytes_are_not_parquet(tmp_path, tok):
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"this is not parquet at all\x00\x01" * 10)
    with pytest.raises(DataError, match=r"junk\.parquet: not a readable parquet file"):
        validate_verl_parquet(path)


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "reward_model"} for r in good_rows()]
    with pytest.raises(DataError) as e:
        validate_verl_parquet(write(tmp_path / "t.parquet", rows))
    msg = str(e.value)
    assert "t.parquet" in msg and "'reward_model'" in msg and "missing column" in msg
    assert set(REQUIRED_COLUMNS) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}


def _break_row2(key, value):
    def f(rows):
        rows[2][key] = value

    return f


def _every_row(key, fn):
    def f(rows):
        for r in rows:
            r[key] = fn(r[key])

    return f


@pytest.mark.parametrize(
    "breaker, bad_row, column, what",
    [
        # a whole column of the wrong type (what a pandas export with JSON strings gives): row 0 fails first
        (_every_row("prompt", json.dumps), 0, "prompt", "non-empty list of chat messages, got str"),
        (_every_row("data_source", len), 0, "data_source", "must be a non-empty string, got int"),
        (_break_row2("prompt", []), 2, "prompt", "non-empty list"),
        (_break_row2("prompt", [{"role": "user"}]), 2, "prompt", "message 0 has no string content"),
        (_break_row2("prompt", [{"role": "robot", "content": "x"}]), 2, "prompt", "message 0 has role 'robot'"),
        (
            _break_row2("reward_model", {"ground_truth": "", "style": "rule"}),
            2,
            "reward_model.ground_truth",
            "must be a non-empty string",
        ),
        (
            _break_row2("reward_model", {"ground_truth": None, "style": "rule"}),
            2,
            "reward_model.ground_truth",
            "must be a non-empty string",
        ),
    ],
)
def test_bad_row_names_file_row_index_and_column(tmp_path, tok, breaker, bad_row, column, what):
    rows = good_rows()
    breaker(rows)
    path = write(tmp_path / "bad.parquet", rows)
    with pytest.raises(DataError) as e:
        load_verl_problems(path, tokenizer=tok, use_template=False)
    msg = str(e.value)
    assert str(path) in msg and f"row {bad_row} (extra_info.index={100 + bad_row})" in msg, msg
    assert f"column {column!r}" in msg and what in msg and "Fix:" in msg and "\n" not in msg, msg
    if bad_row == 2:  # asked for: skip invalid rows, and count them
        probs = load_verl_problems(path, tokenizer=tok, use_template=False, allow_invalid_rows=True)
        assert [p.id for p in probs] == ["100", "101", "103"]
        assert validate_verl_parquet(path, allow_invalid_rows=True)["invalid_rows"] == 1
    else:  # every row bad: skipping leaves nothing, which is an error too
        with pytest.raises(DataError, match="no valid rows"):
            load_verl_problems(path, tokenizer=tok, use_template=False, allow_invalid_rows=True)


def test_allow_invalid_rows_logs_the_count(tmp_path, tok, caplog):
    rows = good_rows(5)
    for i in (1, 3):
        rows[i]["reward_model"] = {"ground_truth": " ", "style": "rule"}
    path = write(tmp_path / "t.parquet", rows)
    with pytest.raises(DataError, match="row 1"):
        load_verl_problems(path, tokenizer=tok, use_template=False)
    with caplog.at_level("WARNING", logger="dars"):
        probs = load_verl_problems(path, tokenizer=tok, use_template=False, allow_invalid_rows=True)
    assert [p.id for p in probs] == ["100", "102", "104"]
    assert "skipped 2 invalid row(s) of 5" in caplog.text


# ------------------------------------------------------------------------------------ writing
def test_write_round_trip_is_atomic_and_checked(tmp_path, tok):
    train, _ = synthetic_splits(["add1", "mul"], 3, 2, seed=0)
    path = write_verl_parquet(problems_to_verl_rows(train, split="train"), tmp_path / "d" / "s.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["s.parquet"]  # no temp file left
    back = load_verl_problems(path, tokenizer=tok, use_template=False)
    assert [(p.data_source, p.prompt, p.answer) for p in back] == [(p.data_source, p.prompt, p.answer) for p in train]
    bad = problems_to_verl_rows(train)
    bad[1]["reward_model"]["ground_truth"] = ""
    with pytest.raises(DataError, match="row 1"):
        write_verl_parquet(bad, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    """A data file on a shared directory is readable as any file the user writes (the temporary
    file of the atomic write is 0600 by itself); the prep CLI writes through the same function."""
    import os
    import stat

    from dars.data.prepare import main as prepare_main

    src = tmp_path / "qa.jsonl"
    src.write_text('{"question": "1+1", "answer": "2"}\n')
    old = os.umask(umask)
    try:
        direct = write_verl_parquet(good_rows(3), tmp_path / "direct.parquet")
        assert prepare_main([str(src), str(tmp_path / "cli.parquet")]) == 0
    finally:
        os.umask(old)
    for path in (direct, tmp_path / "cli.parquet"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.parquet", "direct.parquet", "qa.jsonl"]  # no temp


def test_load_splits_dispatches(tmp_path, tok):
    from omegaconf import OmegaConf

    syn = OmegaConf.create(
        {
            "name": "synthetic",
            "levels": ["add1", "mul"],
            "train_per_level": 3,
            "val_per_level": 2,
            "val_pool": 0.2,
            "seed": 0,
            "prompt_template": "{question}=",
        }
    )
    assert load_splits(syn, tok, 16) == synthetic_splits(["add1", "mul"], 3, 2, 0, "{question}=")
    f = write(tmp_path / "t.parquet", good_rows())
    par = OmegaConf.create(
        {
            "name": "parquet",
            "train_file": str(f),
            "val_file": str(f),
            "use_template": False,
            "filter_overlong_prompts": True,
            "allow_invalid_rows": False,
        }
    )
    train, val = load_splits(par, tok, 16)
    assert train == val and [p.prompt for p in train] == [f"S:{i}+{i}=" for i in range(4)]
    with pytest.raises(ValueError, match="synthetic or data=parquet"):
        load_splits(OmegaConf.create({"name": "csv"}), tok, 16)


# ------------------------------------------------------------------------------------ prep CLI
def prep(*args):
    return subprocess.run(
        [sys.executable, "-m", "dars.data.prepare", *map(str, args)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prepare_cli(tmp_path, chat_tok):
    src = tmp_path / "qa.jsonl"
    src.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"question": "1+1", "answer": "2", "bench": "easy"},
                {"question": "2*3", "answer": 6, "bench": "hard"},
                {"question": "5-1", "answer": "4", "bench": "easy"},
            ]
        )
        + "\n"
    )
    out = tmp_path / "out" / "qa.parquet"
    p = prep(
        src,
        out,
        "--data-source-col",
        "bench",
        "--system",
        "Solve.",
        "--instruction",
        r"{question} Put the answer in \boxed{}.",
        "--split",
        "test",
    )
    assert p.returncode == 0, p.stderr
    assert "Wrote 3 rows" in p.stdout and "easy 2, hard 1" in p.stdout and str(out) in p.stdout
    probs = load_verl_problems(out, tokenizer=chat_tok, use_template=True)
    assert probs[1] == Problem("1", "hard", "<system>Solve.\n<user>2*3 Put the answer in \\boxed{}.\n<assistant>", "6")
    assert pq.read_table(out).column("extra_info").to_pylist()[0] == {"index": 0, "split": "test"}

    again = prep(src, out)  # refuses to overwrite ...
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    forced = prep(src, out, "--force", "--data-source", "mixed")  # ... unless forced
    assert forced.returncode == 0 and validate_verl_parquet(out)["data_sources"] == {"mixed": 3}


@pytest.mark.parametrize(
    "content, name, args, expect",
    [
        (None, "missing.jsonl", [], "missing.jsonl: input file not found"),
        (
            '{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": ""}\n',
            "qa.jsonl",
            [],
            "qa.jsonl: row 1, column 'answer': empty answer",
        ),
        ('{"q": "1+1", "answer": "2"}\n', "qa.jsonl", [], "no column 'question'"),
        ("question,answer\n1+1,2\n", "qa.csv", ["--answer-col", "gold"], "no column 'gold'"),
        ("question,answer\n1+1,2\n2+2,\n", "qa.csv", [], "qa.csv: row 1, column 'answer': empty answer"),
        ("question\tanswer\n", "qa.tsv", [], "unknown extension '.tsv'"),
        ("not parquet", "qa.parquet", [], "qa.parquet: could not be read as .parquet"),
        (
            '{"question": "1+1", "answer": "2"}\n',
            "qa.jsonl",
            ["--instruction", "Solve it"],
            "no {question} placeholder",
        ),
    ],
)
def test_prepare_bad_input_exits_2_with_one_line(tmp_path, content, name, args, expect):
    src = tmp_path / name
    if content is not None:
        src.write_text(content)
    out = tmp_path / "out.parquet"
    p = prep(src, out, *args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dars.data.prepare: error: ") and expect in lines[0], p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_prepare_help_documents_every_option():
    p = prep("--help")
    assert p.returncode == 0
    for opt in [
        "--question-col",
        "--answer-col",
        "--data-source",
        "--data-source-col",
        "--instruction",
        "--system",
        "--split",
        "--ability",
        "--force",
    ]:
        assert opt in p.stdout


# ------------------------------------------------------------------------------------ the real CLI
def _tiny_cfg(overrides):
    from hydra import compose, initialize_config_dir

    import dars.config  # noqa: F401  (registers the run-name resolver)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def _read(path, drop=("time/",)):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(drop)} for r in rows]


@pytest.mark.slow
def test_parquet_run_equals_synthetic_run(tmp_path, cache_dir):
    """The synthetic splits written as verl parquet train exactly as the synthetic task does."""
    from dars.model import base_model_key

    common = ["experiment=baseline", "train.total_steps=2", "train.val_before_train=false", *FAST]
    cfg = _tiny_cfg(common)
    d = cfg.data
    train, val = synthetic_splits(list(d.levels), d.train_per_level, d.val_per_level, d.seed, d.prompt_template)
    tf = write_verl_parquet(problems_to_verl_rows(train, split="train"), tmp_path / "data/train.parquet")
    vf = write_verl_parquet(problems_to_verl_rows(val, split="val"), tmp_path / "data/val.parquet")

    run_dars(["data=synthetic", *common], tmp_path / "syn", cache_dir)
    base = cache_dir / "base_models" / base_model_key(cfg)  # the warm-started tiny model the run used
    assert (base / "config.json").exists()
    run_dars(
        [
            "data=parquet",
            f"data.train_file={tf}",
            f"data.val_file={vf}",
            "data.use_template=false",
            f"model.path={base}",
            *common,
        ],
        tmp_path / "par",
        cache_dir,
    )

    (syn,) = (tmp_path / "syn/runs/tiny").iterdir()
    (par,) = (tmp_path / "par/runs/tiny").iterdir()
    got, want = _read(par / "metrics.jsonl"), _read(syn / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2] and got == want
    assert _read(par / "eval/summary.jsonl") == _read(syn / "eval/summary.jsonl")
    strip_id = lambda rows: [{k: v for k, v in r.items() if k != "id"} for r in rows]
    assert strip_id(_read(par / "eval/step_2.jsonl")) == strip_id(_read(syn / "eval/step_2.jsonl"))


def test_broken_data_file_stops_the_run_before_any_work(tmp_path, cache_dir):
    good = write(tmp_path / "val.parquet", good_rows())
    rows = good_rows(10)
    rows[7]["reward_model"] = {"ground_truth": "", "style": "rule"}
    bad = write(tmp_path / "train.parquet", rows)
    args = ["data=parquet", f"data.train_file={bad}", f"data.val_file={good}", *FAST, "model.warm_start.steps=0"]
    p = run_dars(args, tmp_path / "out", cache_dir, check=False)
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("dars: config error: data.train_file:"), p.stderr
    assert str(bad) in err[0] and "row 7" in err[0] and "'reward_model.ground_truth'" in err[0]
    assert not list((tmp_path / "out").rglob("metrics.jsonl"))
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_dir() and p.parent.name == "tiny"]

    missing = run_dars(
        [
            "data=parquet",
            f"data.train_file={tmp_path}/none.parquet",
            f"data.val_file={good}",
            *FAST,
            "model.warm_start.steps=0",
        ],
        tmp_path / "out2",
        cache_dir,
        check=False,
    )
    assert missing.returncode == 2 and "data.train_file" in missing.stderr and "dars.data.prepare" in missing.stderr
    tiny = run_dars(
        ["data=parquet", f"data.train_file={good}", f"data.val_file={good}", *FAST],
        tmp_path / "out3",
        cache_dir,
        check=False,
    )
    assert tiny.returncode == 2 and "model.path" in tiny.stderr
    unknown = run_dars(["data=synthetic", "data.name=csv", *FAST], tmp_path / "out4", cache_dir, check=False)
    assert unknown.returncode == 2 and "data=synthetic or data=parquet" in unknown.stderr
