"""Tests of dars.rewards: verdicts (against plain math-verify), reward versions, time budget, recovery."""

from __future__ import annotations

import os
import random
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dars import rewards as R
from dars.rewards import REWARD_VERSIONS, BatchScores, RewardScorer, compute_score, reference_verdict, score_batch

# Items that keep sympy busy far longer than any budget used here (plain math-verify only stops them
# with its own 5 s signal timeout).
SLOW = ["\\boxed{2^{2^{2^{100}}}}", "\\boxed{100000000!}"]
SLOW_GOLD = "1"


@pytest.fixture(scope="module")
def scorer():
    # generous budget: these tests are about verdicts, and the machine may be busy
    with RewardScorer("math_verify", num_workers=2, timeout_s=30.0) as s:
        yield s


def _ok(res: BatchScores, n: int) -> None:
    assert isinstance(res, BatchScores)
    assert res.rewards.dtype == np.float32 and res.rewards.shape == (n,)
    assert len(res.status) == n and len(res.extracted) == n
    assert set(res.status) <= {"ok", "no-answer", "timeout", "error"}
    assert set(np.unique(res.rewards).tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------------------------------------
# verdicts


def test_equivalent_forms(scorer):
    cases = [
        ("So the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("So the answer is $\\boxed{0.5}$.", "\\frac{1}{2}"),
        ("The answer is \\boxed{\\dfrac12}.", "\\frac{1}{2}"),
        ("The answer is \\boxed{\\frac{1}{2}}.", "0.5"),
        ("We find that the result is 0.5", "\\frac12"),
        ("\\boxed{42}", "42"),
        ("42", "42"),
        ("The answer is \\boxed{42}", "\\boxed{42}"),
        ("Thus \\boxed{x^2 + 2x + 1}", "(x+1)^2"),
        ("**Final Answer**\n\\[\n\\boxed{\\frac{\\sqrt{3}}{2}}\n\\]", "\\frac{\\sqrt3}{2}"),
    ]
    res = scorer.score([c[0] for c in cases], [c[1] for c in cases])
    _ok(res, len(cases))
    assert res.rewards.tolist() == [1.0] * len(cases), list(zip(cases, res.status))
    assert res.status == ["ok"] * len(cases)
    assert all(reference_verdict(r, g) for r, g in cases)  # plain math-verify agrees
    # extracted answers are what math-verify extracted (normalised): usable for majority voting
    assert res.extracted[0] == res.extracted[1] == res.extracted[2] == "\\frac{1}{2}"
    assert res.extracted[5] == "42"


def test_wrong_and_missing_answers(scorer):
    responses = ["\\boxed{41}", "The answer is $\\boxed{\\frac{1}{3}}$", "I have no idea.", "", "\\boxed{x+1}"]
    golds = ["42", "0.5", "42", "42", "x-1"]
    res = scorer.score(responses, golds)
    _ok(res, 5)
    assert res.rewards.tolist() == [0.0] * 5
    assert res.status == ["ok", "ok", "no-answer", "no-answer", "ok"]
    assert res.extracted[0] == "41" and res.extracted[2] == "" and res.extracted[3] == ""


def test_verdicts_identical_to_plain_math_verify(scorer):
    """Item for item equality with verify(parse("$" + gold + "$"), parse(response)) on a varied corpus."""
    rng = random.Random(1)
    answers = [
        "\\frac{1}{2}",
        "0.5",
        "\\dfrac12",
        "1/2",
        "42",
        "42.0",
        "x^2+1",
        "\\sqrt{2}",
        "(1,2)",
        "[0, 1)",
        "\\{1,2,3\\}",
        "x=3",
        "3, 4",
        "2\\pi",
        "10\\%",
        "\\text{yes}",
        "-7",
        "1,000",
        "\\infty",
        "y = 2x + 1",
        "\\frac{1}{3}",
        "0.333333",
        "5 cm",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        "e^{i\\pi}",
        "A",
    ]
    golds = [
        "\\frac{1}{2}",
        "42",
        "x^2+1",
        "(1,2)",
        "\\{1,2,3\\}",
        "3",
        "2\\pi",
        "10\\%",
        "\\text{yes}",
        "-7",
        "1000",
        "\\frac13",
        "5",
        "2x+1",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
    ]
    fill = [
        "Let's compute. ",
        "We have $x^2 + 3x + 2 = 0$ so $(x+1)(x+2)=0$. ",
        "Thus \\[ a = \\frac{b}{c} \\] holds. ",
        "The answer: maybe 12. ",
        "Step 2: $3 \\times 4 = 12$.\n",
        "\\(\\boxed{7}\\) was a guess. ",
        "$$s = 1$$\n",
        "1, 2 and 3 ",
        "100% sure. ",
        "Final answer ſoon. ",
    ]
    templates = [
        "{f}Therefore the answer is $\\boxed{{{a}}}$.",
        "{f}\\boxed{{{a}}}",
        "{f}The final answer is ${a}$. I hope it is correct.",
        "{f}**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]",
        "{f}So we get {a}.",
        "{f}Answer: {a}",
        "{f}",
        "{f}$\\boxed{{{a}}}$ and $\\boxed{{{b}}}$",
        "{f}\\boxed{{{a}}}, \\boxed{{{b}}}",
        "\\boxed{{{a}",
        "{f}\\boxed {{{a}}} \\boxed{{x",
    ]
    responses, gs = [], []
    for _ in range(160):
        f = "".join(rng.choice(fill) for _ in range(rng.randint(0, 4)))
        responses.append(rng.choice(templates).format(f=f, a=rng.choice(answers), b=rng.choice(answers)))
        gs.append(rng.choice(golds))
    res = scorer.score(responses, gs)
    _ok(res, len(responses))
    plain = [reference_verdict(r, g) for r, g in zip(responses, gs)]
    assert 0 < sum(plain) < len(plain)  # the corpus has both verdicts
    mismatches = [(r, g) for r, g, p, v in zip(responses, gs, plain, res.rewards) if p != bool(v)]
    assert mismatches == []


def test_extraction_replica_equals_parse():
    """_Grader.extract returns exactly parse()'s output (same sympy objects, structurally)."""
    from math_verify import parse
    from sympy import Basic, srepr

    g = R._Grader(cache_size=1000)
    texts = [
        "The answer is $\\boxed{\\frac{1}{2}}$.",
        "\\boxed{1}, \\boxed{2}",
        "so 3/4 of it",
        "$10\\%$",
        "Answer: 7 apples",
        "The final answer is $x^2$. I hope it is correct.",
        "\\[ \\boxed{(0, 1]} \\]",
        "nothing",
        "$)$ $)$",
        "\\boxed{\\frac{1}{}",
        "\\boxed{\\text{Monday}}",
        "$$ a $$ \\boxed{2} $$",
        "\\(\\boxed{3}\\) and \\(\\boxed{4}\\)",
        "x = 1, y = 2",
        "1,234.5",
        "the answer is $y=2x+1$",
        "$\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$",
        "\\boxed{\\sqrt[3]{2}}",
        "final answer iſ $5$",
    ]
    for _ in range(2):  # second pass: answers come from the memos
        for t in texts:
            ref = parse(t)
            got = g.parse(t)
            assert len(got) == len(ref), t
            for a, b in zip(ref, got):
                assert type(a) is type(b), t
                if isinstance(a, Basic):
                    assert srepr(a) == srepr(b), t
                else:
                    assert a == b, t


def test_two_stage_antlr_parse_equals_latex2sympy():
    from math_verify.parser import parse_latex_cached
    from sympy import srepr

    strings = [
        "\\frac{1}{2}",
        "x^2+2x+1",
        "y = 2x + 1",
        "(0, 1]",
        "\\{1, 2\\}",
        "\\sqrt[3]{x}",
        "\\sin^{2}(x)+\\cos^2 x",
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        "a = b = 3",
        "1,000",
        "f(x) = x",
        "\\frac{1}{",
        ")(",
        "\\int_0^1 x dx",
        "x \\in [0, 1)",
        "3 \\le x < 5",
        "\\text{yes}",
        "2\\pi r",
        "10!",
        "\\binom{5}{2}",
        "e^{i\\pi}",
        "\\log_2 8",
    ]
    for s in strings:
        try:
            ref = ("ok", srepr(parse_latex_cached.__wrapped__(s)))
        except Exception as e:  # noqa: BLE001  (whatever either side raises is compared)
            ref = ("exc", type(e).__name__)
        try:
            got = ("ok", srepr(R._latex_to_sympy(s)))
        except Exception as e:  # noqa: BLE001
            got = ("exc", type(e).__name__)
        assert got == ref, s


def test_boxed_scan_start_keeps_every_match():
    """finditer from _boxed_env_scan_start finds exactly the matches of a scan from 0 (random fuzz)."""
    R._regex_groups()
    (pattern,) = R._BOXED_ENV_PATTERNS
    toks = [
        "$$",
        "$",
        "\\[",
        "\\]",
        "\\(",
        "\\)",
        "\n",
        " [",
        "]",
        "[",
        "\\boxed{",
        "}",
        "{",
        "x",
        "1",
        " ",
        "and",
        ",",
        "\\$",
        "\\",
        "%",
        "\\boxed {",
    ]
    rng = random.Random(0)
    for _ in range(20000):
        t = "".join(rng.choice(toks) for _ in range(rng.randint(1, 30)))
        s0 = R._boxed_env_scan_start(t)
        full = [(m.span(), m.groupdict()) for m in pattern.finditer(t)]
        assert [(m.span(), m.groupdict()) for m in pattern.finditer(t, s0)] == full, t


def test_literal_prefilters_keep_every_match():
    """Each "answer" / \\boxed pattern: no match in a text without its literal, and (answer patterns)
    finditer from the literal's first occurrence finds exactly the matches of a scan from 0; the ASCII
    fast search agrees with the IGNORECASE regex, also where Unicode folding matters (random fuzz)."""
    from dars.rewards.parse import _literal_at, _prefilter_of

    patterns = [p for _, group in R._regex_groups() for p, _, _ in group if _prefilter_of(p) is not None]
    assert sum(_prefilter_of(p).anchored for p in patterns) >= 6 and any(
        not _prefilter_of(p).anchored for p in patterns
    )
    toks = ["Final Answer", " is", ": ", "ANSWER", "answer", "anſwer", "FINAL ANSWER IS", "The final answer is ",
            "$", "$$", "\\boxed{", "}", "7", "-2", "x = ", "\\frac{1}{2}", "\n", " ", "=", "**", "50%", "é", "\u212a", "fınal answer", "FİNAL ANSWER"]  # fmt: skip
    rng = random.Random(1)
    checked = 0
    for _ in range(4000):
        t = "".join(rng.choice(toks) for _ in range(rng.randint(1, 14)))
        for pattern in patterns:
            prefilter = _prefilter_of(pattern)
            at = _literal_at(prefilter, t, [])
            literal, search, anchored = prefilter
            if search is None:
                assert at == t.find(literal), t
            else:
                want = search.search(t)
                assert at == (want.start() if want else -1), t
            full = [(m.span(), m.groupdict()) for m in pattern.finditer(t)]
            if at < 0:
                assert full == [], (pattern.pattern[:40], t)
            elif anchored:
                assert [(m.span(), m.groupdict()) for m in pattern.finditer(t, at)] == full, (pattern.pattern[:40], t)
                checked += bool(full) and at > 0
    assert checked > 100  # matches after a skipped prefix were compared


def test_repeated_answers_are_verified_once():
    g = R._Grader(cache_size=1000)
    for i in range(50):
        text = f"Some reasoning number {i}. So the answer is $\\boxed{{\\frac{{1}}{{{2 + i % 2}}}}}$."
        g.grade(text, "\\frac{1}{2}")
    assert g.stats["items"] == 50
    assert g.stats["verify_calls"] == 2  # two distinct answers
    assert g.stats["verdict_hits"] == 48


# ------------------------------------------------------------------------------------------------
# reward versions


def test_think_version():
    responses = [
        "<think>maybe \\boxed{3}</think> The answer is \\boxed{4}",
        "<think>maybe \\boxed{4}</think> The answer is \\boxed{3}",
        "no think tag, but \\boxed{4}",
        "<think>a</think> draft \\boxed{3} </think> final \\boxed{4}",
    ]
    res = score_batch(responses, ["4"] * 4, version="think", num_workers=0)
    assert res.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert res.status == ["ok", "ok", "no-answer", "ok"]
    assert res.extracted[0] == "4" and res.extracted[2] == ""


def test_no_code_version():
    responses = [
        "Let me check:\n```python\nprint(1/2)\n```\nSo \\boxed{\\frac12}",
        "Let me check:\n'''python\nprint(1/2)\n'''\nSo \\boxed{\\frac12}",
        "Check:\n```Python\nx=1\n```\n\\boxed{0.5}",
        "No code here, so \\boxed{\\frac12}",
        "A ```bash block``` is fine: \\boxed{0.5}",
    ]
    res = score_batch(responses, ["0.5"] * 5, version="no_code", num_workers=0)
    assert res.rewards.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    # the same responses under math_verify are all right
    assert score_batch(responses, ["0.5"] * 5, num_workers=0).rewards.tolist() == [1.0] * 5


def test_boxed_exact_version():
    responses = [
        "\\boxed{\\frac{1}{2}}",
        "\\boxed{ \\frac{1}{2} }",
        "\\boxed{0.5}",  # equivalent, but not the same string
        "first \\boxed{1} then \\boxed{\\frac{1}{2}}",
        "\\boxed{\\frac{1}{2}} then \\boxed{1}",
        "\\boxed{\\frac{1}{2}",  # unbalanced: no answer
        "no box: \\frac{1}{2}",
    ]
    res = score_batch(responses, ["\\frac{1}{2} "] * len(responses), version="boxed_exact", num_workers=0)
    assert res.rewards.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert res.status[5:] == ["no-answer", "no-answer"]
    assert res.extracted[0] == "\\frac{1}{2}" and res.extracted[2] == "0.5"
    assert R.last_boxed_content("a \\boxed{\\frac{a}{b}} b") == "\\frac{a}{b}"


def test_versions_and_arguments_are_validated():
    assert REWARD_VERSIONS == ("math_verify", "think", "no_code", "boxed_exact")
    with pytest.raises(ValueError, match="unknown reward version"):
        RewardScorer("math-verify")
    with pytest.raises(ValueError):
        RewardScorer(num_workers=-1)
    with RewardScorer(num_workers=0) as s:
        with pytest.raises(ValueError, match="2 responses but 1 golds"):
            s.score(["a", "b"], ["a"])
        assert s.score([], []).rewards.shape == (0,)


# ------------------------------------------------------------------------------------------------
# time budget, recovery, robustness


def test_timeout_kills_worker_and_pool_recovers():
    budget = 2.0
    with RewardScorer(num_workers=2, timeout_s=budget) as s:
        s.score(["\\boxed{1}"], ["1"])  # start the pool
        responses = SLOW + ["\\boxed{3}", "The answer is $\\frac{1}{2}$", "\\boxed{5}"]
        golds = [SLOW_GOLD, SLOW_GOLD, "3", "0.5", "4"]
        t = time.monotonic()
        res = s.score(responses, golds)
        elapsed = time.monotonic() - t
        _ok(res, 5)
        assert res.status[:2] == ["timeout", "timeout"]
        assert res.rewards.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
        assert res.status[2:] == ["ok", "ok", "ok"]
        # each slow item killed its worker (once in their shared chunk, then once each alone)
        killed = s.stats()["killed"]
        assert killed >= 2
        # bounded: ~ 2 x budget x slow items / workers (chunk, then alone), plus restarts
        assert elapsed < 2 * budget * len(SLOW) / 2 + 15
        # the pool recovered: the replaced workers score correctly (and again time out a stuck item)
        res2 = s.score(["\\boxed{\\dfrac12}", "\\boxed{7}", SLOW[0]], ["0.5", "8", SLOW_GOLD])
        assert res2.rewards.tolist() == [1.0, 0.0, 0.0]
        assert res2.status == ["ok", "ok", "timeout"]
        assert s.stats()["killed"] == killed + 1  # a one-item task: killed once


def test_pathological_inputs_never_raise():
    rng = random.Random(3)
    prose = " ".join(rng.choice(["the", "of", "x", "is", "and", "sum"]) for _ in range(25000))[:100000]
    items = [
        (prose, "42"),
        (prose + " \\boxed{42}", "42"),
        ("$" * 100000, "1"),
        ("\\boxed{" * 14000, "1"),
        ("$" + "\\frac{" * 3000 + "1" + "}{2}" * 3000 + "$", "1"),
        ("\\boxed{\\frac{1}{}", "1"),
        ("$\\left( \\right$ and \\begin{matrix} 1 & 2 $$ }{}{ \\boxed{", "1"),
        ("\udcff answer \\boxed{1}\ud800", "1"),
        (b"\xff\xfe the answer is \\boxed{1} \xc3", "1"),
        (None, "1"),
        ("", "1"),
        ("\\boxed{1}", ""),
        ("\\boxed{1}", "\\frac{"),
        ("\\boxed{1}", "}{)(\\"),
        ("\\boxed{2}", 2),
        (SLOW[0], SLOW_GOLD),
    ]
    budget = 2.0
    with RewardScorer(num_workers=2, timeout_s=budget) as s:
        t = time.monotonic()
        res = s.score([x[0] for x in items], [x[1] for x in items])
        elapsed = time.monotonic() - t
        _ok(res, len(items))
        assert res.rewards[1] == 1.0  # 100k characters of prose, then the answer
        assert res.rewards[7] == 1.0 and res.rewards[8] == 1.0  # surrogates / non-UTF-8 bytes
        assert res.rewards[14] == 1.0  # a non-str gold is converted
        assert res.status[9] == res.status[10] == "no-answer"  # None / empty response
        # golds that parse to nothing are errors ("\\frac{" still yields a fallback string, like in parse)
        assert res.status[11] == res.status[13] == "error" and res.status[12] == "ok"
        assert res.status[-1] == "timeout"
        assert sum(res.rewards) == 4
        assert elapsed < budget * len(items) / 2 + 15


def test_in_process_mode_with_budget():
    import signal

    before = signal.getsignal(signal.SIGALRM)
    with RewardScorer(num_workers=0, timeout_s=3.0) as s:
        res = s.score(["\\boxed{\\frac{1}{2}}", SLOW[0], "\\boxed{3}"], ["0.5", SLOW_GOLD, "3"])
        assert s.in_process and s.stats()["items"] == 3
        assert res.rewards.tolist() == [1.0, 0.0, 1.0]
        assert res.status == ["ok", "timeout", "ok"]  # SIGALRM in the main thread
        assert signal.getsignal(signal.SIGALRM) is before  # the caller's handler is restored
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_non_main_thread(scorer):
    out = {}

    def work():
        try:
            out["pool"] = scorer.score(["\\boxed{\\dfrac12}", "\\boxed{2}"], ["0.5", "3"])
            with RewardScorer(num_workers=0) as s:  # in-process off the main thread: no signals used
                out["inproc"] = s.score(["\\boxed{\\dfrac12}", "\\boxed{2}"], ["0.5", "3"])
            with RewardScorer(num_workers=1, timeout_s=3.0) as s:  # a budget without signals
                out["slow"] = s.score([SLOW[1], "\\boxed{4}"], [SLOW_GOLD, "4"])
            out["cs"] = compute_score("openr1", "so \\boxed{\\frac{2}{4}}", "0.5")
        except BaseException as e:  # noqa: BLE001  (surfaced by the assertions below)
            out["error"] = repr(e)

    th = threading.Thread(target=work)
    th.start()
    th.join(120)
    assert "error" not in out, out.get("error")
    assert out["pool"].rewards.tolist() == [1.0, 0.0]
    assert out["inproc"].rewards.tolist() == [1.0, 0.0]
    assert out["slow"].status == ["timeout", "ok"] and out["slow"].rewards.tolist() == [0.0, 1.0]
    assert out["cs"] == 1.0


def test_compute_score():
    v = compute_score("openr1", "Thus $\\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}")
    assert isinstance(v, float) and v == 1.0
    assert compute_score("openr1", "Thus $\\boxed{3}$.", "\\frac{1}{2}") == 0.0
    assert compute_score("openr1", "", "1") == 0.0
    think = {"reward_version": "think"}
    assert compute_score("openr1", "\\boxed{2}", "2", extra_info=think) == 0.0
    assert compute_score("openr1", "<think>hmm</think>\\boxed{2}", "2", extra_info=think) == 1.0


def test_dedup_fan_out_and_score_batch():
    responses = ["The answer is \\boxed{7}."] * 40 + ["\\boxed{8}"] * 40
    res = score_batch(responses, ["7"] * 80, num_workers=1)
    assert res.rewards.tolist() == [1.0] * 40 + [0.0] * 40
    assert set(res.extracted[:40]) == {"7"} and set(res.extracted[40:]) == {"8"}


def _worker_pid(scorer) -> int:
    """pid of the (single) worker of a pool-mode scorer, asked through pebble itself."""
    return scorer._pool.pebble.schedule(os.getpid).result(timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_close_stops_workers():
    s = RewardScorer(num_workers=1)
    s.score(["\\boxed{1}"], ["1"])
    pid = _worker_pid(s)
    assert pid != os.getpid() and _alive(pid)
    s.close()
    assert not _alive(pid)  # exited (and reaped)
    # a closed scorer can be used again (the pool is started afresh)
    assert s.score(["\\boxed{1}"], ["1"]).rewards.tolist() == [1.0]
    s.close()


def test_shared_cache_survives_worker_replacement():
    responses = [f"Attempt {i}: so the answer is $\\boxed{{{'0.5' if i % 3 else '2/3'}}}$." for i in range(30)]
    golds = ["0.5"] * 30  # (not the gold of the workers' warm-up item)
    with RewardScorer(num_workers=1, timeout_s=2.0) as s:
        first = s.score(responses, golds)
        assert first.rewards.tolist() == [0.0 if i % 3 == 0 else 1.0 for i in range(30)]
        st = s.stats()
        assert st["items"] == 30 and st["verify_calls"] == 2 and st["verdict_hits"] == 28
        assert s.score([SLOW[0]], [SLOW_GOLD]).status == ["timeout"]  # the worker is killed and replaced
        assert s.stats()["killed"] == 1
        again = s.score(responses, golds)  # a fresh worker: the verdicts come from the pool's shared cache
        assert again.rewards.tolist() == first.rewards.tolist()
        assert s.stats()["verify_calls"] == 2


# Worker-side stand-ins for fault injection: pebble pickles functions by name, and spawned workers
# import this module (its directory is on the sys.path they inherit), so a monkeypatch of
# dars.rewards.pool in the caller reaches the workers through these.


def _broken_init(*args):
    raise RuntimeError("this worker cannot start")


def _crashing_chunk(gold, items, hints, slice_s):
    from dars.rewards import pool

    if any("CRASH" in text for _, text in items):
        os._exit(7)  # the worker dies mid-task, like a segfault or the OOM killer
    return pool._score_chunk(gold, items, hints, slice_s)


def test_falls_back_in_process_when_workers_cannot_start(monkeypatch, caplog):
    from dars.rewards import pool

    monkeypatch.setattr(pool, "_init_worker", _broken_init)  # every worker dies at start-up
    with RewardScorer(num_workers=2, timeout_s=5.0) as s:
        t = time.monotonic()
        res = s.score(["\\boxed{\\dfrac12}", "\\boxed{3}"], ["0.5", "2"])
        assert res.rewards.tolist() == [1.0, 0.0]
        assert s.in_process
        assert "scoring in-process" in caplog.text
        assert time.monotonic() - t < 60


def test_crashing_item_scores_zero_and_never_hangs(monkeypatch):
    from dars.rewards import pool

    monkeypatch.setattr(pool, "_score_chunk", _crashing_chunk)
    responses = ["\\boxed{1}", "CRASH \\boxed{1}", "\\boxed{\\frac{2}{2}}", "\\boxed{2}", "CRASH again"]
    with RewardScorer(num_workers=2, timeout_s=5.0) as s:
        t = time.monotonic()
        res = s.score(responses, ["1"] * 5)
        assert time.monotonic() - t < 60
        assert res.status == ["ok", "error", "ok", "ok", "error"]
        assert res.rewards.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
        # the chunk died once, then each marked item twice alone (one retry): all workers replaced
        assert s.stats()["crashed"] >= 3
        assert s.score(["\\boxed{\\dfrac12}"], ["0.5"]).rewards.tolist() == [1.0]


def test_dead_worker_is_replaced():
    import signal

    with RewardScorer(num_workers=1, timeout_s=10.0) as s:
        assert s.score(["\\boxed{1}"], ["1"]).rewards.tolist() == [1.0]
        pid = _worker_pid(s)
        os.kill(pid, signal.SIGKILL)  # an idle worker dies (e.g. the OOM killer)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:  # until pebble has reaped it
            time.sleep(0.05)
        res = s.score(["\\boxed{\\frac{2}{4}}", "\\boxed{5}"], ["0.5", "6"])
        assert res.rewards.tolist() == [1.0, 0.0] and res.status == ["ok", "ok"]
        assert s.stats()["crashed"] == 1
        assert _worker_pid(s) != pid


def test_plain_parse_fallback_path_agrees():
    """With another math-verify version the grader calls parse() itself: same verdicts, no replica."""
    fast, plain = R._Grader(cache_size=100), R._Grader(cache_size=100, fast=False)
    items = [
        ("The answer is $\\boxed{\\frac{1}{2}}$.", "0.5"),
        ("so 3", "4"),
        ("", "1"),
        ("\\boxed{x^2}", "x^2"),
        ("\\boxed{1}", ""),
        ("Answer: $(0, 1]$", "(0,1]"),
        ("$$\\boxed{2}, \\boxed{3}$$", "\\{2,3\\}"),
    ]
    for text, gold in items:
        expected = reference_verdict(text, gold)
        assert plain.grade(text, gold)[0] == fast.grade(text, gold)[0] == int(expected), (text, gold)
    assert plain.stats["verdict_hits"] == 0  # no replica, no verdict memo
