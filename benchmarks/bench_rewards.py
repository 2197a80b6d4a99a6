"""Benchmark dars.rewards against plain serial math-verify (a script, not a test).

Builds a realistic rollout batch (default 1,560 problems x 128 samples; each problem has a few distinct
answers, right ones in several LaTeX spellings such as \\frac{1}{2} / 0.5 / \\dfrac12, embedded in
response text ending in \\boxed{...} or another answer format), scores it with RewardScorer and with
plain serial math-verify (``verify(parse("$" + gold + "$"), parse(response))`` per item) on the same
items, and prints throughput, speed-up, verdict mismatches, and the timing of a pathological set.

The plain version is far too slow for the full batch, so it is measured on a random subset of whole
problems (all their samples, in order, as a serial loop would see them) and extrapolated; the output
says so. Mismatches are counted item for item on that subset, excluding items where the plain version
hit one of its own internal 5 s timeouts.

    .venv/bin/python benchmarks/bench_rewards.py --fraction 0.1
    .venv/bin/python benchmarks/bench_rewards.py --problems 200 --samples 64 --baseline-problems 8
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dars.rewards import RewardScorer

# ------------------------------------------------------------------------------------------------
# a realistic batch

# (gold, [right spellings], [plausible wrong answers])
ANSWER_KINDS = [
    lambda r: _frac(r),
    lambda r: _integer(r),
    lambda r: _sqrt(r),
    lambda r: _pi(r),
    lambda r: _interval(r),
    lambda r: _tuple(r),
    lambda r: _poly(r),
    lambda r: _decimal(r),
    lambda r: _percent(r),
    lambda r: _text(r),
    lambda r: _equation(r),
    lambda r: _set(r),
]


def _frac(r):
    a, b = r.randint(1, 9), r.choice([2, 3, 4, 5, 7, 8])
    while a % b == 0:
        a += 1
    right = [f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\tfrac{{{a}}}{{{b}}}"]
    if len(str(a)) == 1 and len(str(b)) == 1:
        right.append(f"\\dfrac{a}{b}")
    if b in (2, 4, 5, 8):
        right.append(f"{a / b:g}")
    wrong = [f"\\frac{{{a + 1}}}{{{b}}}", f"\\frac{{{b}}}{{{a}}}", f"{a * b}", f"-\\frac{{{a}}}{{{b}}}"]
    return f"\\frac{{{a}}}{{{b}}}", right, wrong


def _integer(r):
    n = r.randint(2, 2000)
    right = [str(n), f"{n}.0", f"{n:,}" if n >= 1000 else str(n), f"\\text{{{n}}}"]
    wrong = [str(n + 1), str(n - 1), str(2 * n), str(n + 10)]
    return str(n), right, wrong


def _sqrt(r):
    a, b = r.choice([2, 3, 5, 6, 7]), r.randint(2, 9)
    right = [f"{b}\\sqrt{{{a}}}", f"\\sqrt{{{a * b * b}}}", f"{b} \\sqrt {a}"]
    wrong = [f"{b + 1}\\sqrt{{{a}}}", f"\\sqrt{{{a * b}}}", f"{b * a}"]
    return f"{b}\\sqrt{{{a}}}", right, wrong


def _pi(r):
    a, b = r.randint(1, 5), r.choice([2, 3, 4, 6])
    right = [f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi", f"{a}\\pi/{b}"]
    wrong = [f"\\frac{{{a}\\pi}}{{{b + 1}}}", f"{a}\\pi", f"\\frac{{\\pi}}{{{b}}}"]
    return f"\\frac{{{a}\\pi}}{{{b}}}", right, wrong


def _interval(r):
    a, b = r.randint(-5, 0), r.randint(1, 9)
    right = [f"({a}, {b}]", f"\\left({a},{b}\\right]", f"({a},{b}]"]
    wrong = [f"[{a}, {b}]", f"({a}, {b})", f"({a}, {b + 1}]"]
    return f"({a},{b}]", right, wrong


def _tuple(r):
    a, b = r.randint(-9, 9), r.randint(-9, 9)
    right = [f"({a}, {b})", f"\\left( {a}, {b} \\right)", f"({a},{b})"]
    wrong = [f"({b}, {a})" if a != b else f"({a}, {b + 1})", f"({a}, {-b - 1})", f"({a + 1}, {b})"]
    return f"({a},{b})", right, wrong


def _poly(r):
    a, b = r.randint(1, 9), r.randint(1, 9)
    right = [f"x^2 + {a + b}x + {a * b}", f"(x+{a})(x+{b})", f"x^{{2}}+{a + b}x+{a * b}"]
    wrong = [f"x^2 + {a + b + 1}x + {a * b}", f"(x-{a})(x+{b})", f"x^2+{a * b}"]
    return f"x^2+{a + b}x+{a * b}", right, wrong


def _decimal(r):
    v = round(r.uniform(0.1, 99.9), 2)
    right = [f"{v}", f"{v:.3f}", f"\\frac{{{round(v * 100)}}}{{100}}"]
    wrong = [f"{v + 0.1:.2f}", f"{v * 10:.1f}", f"{round(v)}"]
    return f"{v}", right, wrong


def _percent(r):
    v = r.randint(5, 95)
    right = [f"{v}\\%", f"{v}", f"{v}%"]
    wrong = [f"{v + 5}\\%", f"{100 - v}\\%" if v != 50 else "45\\%", f"{v / 100:g}"]
    return f"{v}\\%", right, wrong


def _text(r):
    word = r.choice(["Monday", "red", "triangle", "even", "yes", "north"])
    other = r.choice(["Friday", "blue", "square", "odd", "no", "south"])
    right = [f"\\text{{{word}}}", f"\\textbf{{{word}}}", f"\\text{{ {word} }}"]
    wrong = [f"\\text{{{other}}}", f"\\text{{not {word}}}"]
    return f"\\text{{{word}}}", right, wrong


def _equation(r):
    a, b = r.randint(1, 9), r.randint(-9, 9)
    right = [f"y = {a}x {'+' if b >= 0 else '-'} {abs(b)}", f"y={a}x{b:+d}", f"{a}x{b:+d}"]
    wrong = [f"y = {a + 1}x {b:+d}", f"y = {a}x {b + 2:+d}", f"y = -{a}x {b:+d}"]
    return f"y={a}x{b:+d}", right, wrong


def _set(r):
    a, b, c = sorted(r.sample(range(-9, 10), 3))
    right = [f"\\{{{a}, {b}, {c}\\}}", f"{a}, {b}, {c}", f"\\{{{c}, {a}, {b}\\}}", f"{a}, {b}, \\text{{and }} {c}"]
    wrong = [f"\\{{{a}, {b}\\}}", f"\\{{{a}, {b}, {c + 1}\\}}", f"{a}, {c}"]
    return f"\\{{{a},{b},{c}\\}}", right, wrong


_WORDS = [
    "we",
    "the",
    "of",
    "is",
    "to",
    "and",
    "so",
    "that",
    "let",
    "then",
    "consider",
    "note",
    "since",
    "hence",
    "thus",
    "therefore",
    "value",
    "equation",
    "solve",
    "find",
    "compute",
    "substitute",
    "simplify",
    "gives",
    "obtain",
    "check",
    "case",
    "term",
    "factor",
    "root",
    "sum",
    "product",
    "side",
    "both",
    "divide",
    "multiply",
    "number",
    "integer",
    "positive",
    "negative",
    "first",
    "second",
    "next",
]


def _sentence(r) -> str:
    kind = r.random()
    if kind < 0.55:
        return " ".join(r.choice(_WORDS) for _ in range(r.randint(6, 18))).capitalize() + ". "
    if kind < 0.75:
        a, b, c = r.randint(1, 99), r.randint(1, 9), r.randint(1, 99)
        return f"We have ${a}x + {b} = {c}$, so $x = \\frac{{{c - b}}}{{{a}}}$. "
    if kind < 0.88:
        a, b = r.randint(2, 9), r.randint(2, 9)
        return f"\\[\n{a}^2 + {b}^2 = {a * a + b * b}\n\\]\n"
    if kind < 0.95:
        return f"Step {r.randint(1, 9)}: compute $\\sqrt{{{r.randint(2, 99)}}} \\approx {r.uniform(1, 10):.3f}$.\n"
    return f"Wait, let me double check: {r.randint(1, 50)} + {r.randint(1, 50)} is fine.\n"


# (weight, ending): most responses end with a boxed answer (the prompt asks for one), a few use another
# final-answer format, and make_batch adds truncated responses that never reach an answer
_ENDINGS = [
    (30, "Therefore, the final answer is $\\boxed{{{a}}}$."),
    (25, "**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]"),
    (15, "So the answer is \\boxed{{{a}}}."),
    (8, "Thus we get \\(\\boxed{{{a}}}\\)."),
    (8, "We first guessed \\boxed{{{w}}}, but after checking, the answer is $\\boxed{{{a}}}$."),
    (4, "The final answer is ${a}$. I hope it is correct."),
    (4, "Hence the answer is ${a}$."),
    (2, "Hence the answer is {a}."),
]


_ENDING_WEIGHTS = [w for w, _ in _ENDINGS]
_ENDING_TEXTS = [e for _, e in _ENDINGS]


def make_batch(problems: int, samples: int, seed: int = 0, truncated: float = 0.03):
    """(responses, golds, problem index per item); ``truncated``: share of responses with no final answer."""
    r = random.Random(seed)
    responses, golds, pid = [], [], []
    for p in range(problems):
        gold, right, wrong = r.choice(ANSWER_KINDS)(r)
        # a few distinct answers per problem: 1-3 right spellings and 1-4 wrong ones
        cand_right = r.sample(right, k=min(len(right), r.randint(1, 3)))
        cand_wrong = r.sample(wrong, k=min(len(wrong), r.randint(1, 4)))
        acc = r.choice([0.0, 0.05, 0.3, 0.6, 0.9, 1.0])  # per-problem accuracy (some all-wrong / all-right)
        for _ in range(samples):
            u = r.random()
            if u < truncated:  # truncated: ran out of tokens, no final answer
                text = "".join(_sentence(r) for _ in range(r.randint(20, 60)))
            else:
                ans = r.choice(cand_right) if r.random() < acc else r.choice(cand_wrong)
                body = "".join(_sentence(r) for _ in range(r.randint(10, 60)))
                ending = r.choices(_ENDING_TEXTS, weights=_ENDING_WEIGHTS)[0].format(a=ans, w=r.choice(cand_wrong))
                text = body + "\n" + ending
            responses.append(text)
            golds.append(gold)
            pid.append(p)
    return responses, golds, pid


# ------------------------------------------------------------------------------------------------
# pathological inputs


def pathological():
    r = random.Random(7)
    prose = " ".join(r.choice(_WORDS) for _ in range(20000))[:100000]
    return [
        ("long_prose_100k", prose, "42"),
        ("long_prose_100k_boxed", prose + " \\boxed{42}", "42"),
        ("dollars_100k", "$" * 100000, "1"),
        ("open_boxed_100k", "\\boxed{" * 14000, "1"),
        ("nested_frac_200", "\\boxed{" + "\\frac{1}{" * 200 + "2" + "}" * 200 + "}", "1"),
        ("nested_frac_3000", "$" + "\\frac{" * 3000 + "1" + "}{2}" * 3000 + "$", "1"),
        ("tower_2^2^2^100", "\\boxed{2^{2^{2^{100}}}}", "1"),
        ("tower_in_gold", "\\boxed{1}", "2^{2^{2^{100}}}"),
        ("factorial_1e8", "\\boxed{100000000!}", "1"),
        ("power_10^10^10", "\\boxed{10^{10^{10}}}", "10^{10^{10}}"),
        ("malformed_frac", "\\boxed{\\frac{1}{}", "1"),
        ("malformed_mix", "$\\left( \\right$ and \\begin{matrix} 1 & 2 $$ }{}{ \\boxed{", "1"),
        ("malformed_sqrt", "\\boxed{\\sqrt[}{]}", "2"),
        ("surrogates", "\udcff answer \\boxed{1}\ud800", "1"),
        ("non_utf8_bytes", b"\xff\xfe the answer is \\boxed{1} \xc3", "1"),
        ("empty_response", "", "1"),
        ("empty_gold", "\\boxed{1}", ""),
        ("gold_unparseable", "\\boxed{1}", "\\frac{"),
        ("gold_garbage", "\\boxed{1}", "}{)(\\"),
        ("many_bad_envs_10k", "$)$ " * 10000, "1"),
        ("many_numbers_20k", " ".join(str(i) for i in range(20000)), "19999"),
        ("long_poly_300", "\\boxed{" + "+".join(f"x^{{{i}}}" for i in range(300)) + "}", "x"),
        ("symbolic_hard", "\\boxed{\\sin^{2}(x)+\\cos^{2}(x) + \\frac{x^{50}-1}{x-1}}", "\\sum_{k=0}^{49} x^k + 1"),
        (
            "matrix_30x30",
            "\\boxed{\\begin{pmatrix}"
            + "\\\\".join("&".join(str(i * j) for j in range(30)) for i in range(30))
            + "\\end{pmatrix}}",
            "1",
        ),
    ]


# ------------------------------------------------------------------------------------------------
# plain serial math-verify


class _TimeoutCounter(logging.Handler):
    """Counts math-verify's own "Timeout during ..." warnings (its internal 5 s signal timeouts)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record):
        if "Timeout" in record.getMessage():
            self.count += 1


def plain_serial(responses, golds):
    """Plain math-verify, one item after the other; returns (verdicts, plain-timeout flags, seconds)."""
    from math_verify import parse, verify

    handler = _TimeoutCounter()
    mv_logger = logging.getLogger("math_verify")
    mv_logger.addHandler(handler)
    old_level = mv_logger.level
    mv_logger.setLevel(logging.WARNING)
    mv_logger.propagate = False
    verdicts, timed_out = [], []
    t0 = time.perf_counter()
    try:
        for resp, gold in zip(responses, golds):
            before = handler.count
            if isinstance(resp, bytes):
                resp = resp.decode("utf-8", errors="surrogateescape")
            verdicts.append(bool(verify(parse("$" + gold + "$"), parse(resp))))
            timed_out.append(handler.count > before)
    finally:
        mv_logger.removeHandler(handler)
        mv_logger.setLevel(old_level)
        mv_logger.propagate = True
    return verdicts, timed_out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------


def _child_pids() -> set[int]:
    """pids of this process's live child processes (Linux /proc; empty if unavailable)."""
    pids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{os.getpid()}/task"):
            with open(f"/proc/{os.getpid()}/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
    except OSError:
        pass
    return pids


def _workers_cpu(scorer) -> float:
    """CPU seconds used so far by the scorer's live worker processes (Linux /proc; 0 if unavailable)."""
    total = 0.0
    for pid in _child_pids():  # the pool's workers are this process's children (pebble, spawn)
        with contextlib.suppress(OSError, ValueError, IndexError):  # a worker may exit meanwhile
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _row(cols, widths):
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=1560)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--fraction", type=float, default=1.0, help="run this fraction of the problems")
    ap.add_argument("--baseline-problems", type=int, default=40, help="whole problems scored by plain math-verify")
    ap.add_argument("--workers", type=int, default=None, help="RewardScorer num_workers (default: one per CPU)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-item budget of RewardScorer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--truncated",
        type=float,
        default=0.03,
        help="share of responses cut off before a final answer (math-verify then grades whatever "
        "math the prose ends with: unique, expensive items)",
    )
    ap.add_argument("--no-pathological", action="store_true")
    ap.add_argument(
        "--pathological-baseline", action="store_true", help="also run plain math-verify on the pathological set"
    )
    args = ap.parse_args(argv)

    problems = max(1, round(args.problems * args.fraction))
    n_items = problems * args.samples
    print(
        f"batch: {problems} problems x {args.samples} samples = {n_items:,} items "
        f"(fraction {problems / args.problems:.3f} of {args.problems} x {args.samples})",
        flush=True,
    )
    t = time.perf_counter()
    responses, golds, pid = make_batch(problems, args.samples, seed=args.seed, truncated=args.truncated)
    avg_len = sum(map(len, responses)) / len(responses)
    distinct = len(set(zip(golds, responses)))
    print(
        f"built in {time.perf_counter() - t:.1f}s; mean response length {avg_len:,.0f} chars; {distinct:,} distinct (response, gold) pairs",
        flush=True,
    )

    # ---- component
    scorer = RewardScorer("math_verify", num_workers=args.workers, timeout_s=args.timeout)
    t = time.perf_counter()
    scorer.score(["\\boxed{1}"], ["1"])
    startup = time.perf_counter() - t
    load_before = os.getloadavg()[0]
    cpu0, wcpu0 = time.process_time(), _workers_cpu(scorer)
    t = time.perf_counter()
    res = scorer.score(responses, golds)
    t_comp = time.perf_counter() - t
    comp_cpu = (time.process_time() - cpu0) + (_workers_cpu(scorer) - wcpu0)
    comp_stats = scorer.stats()
    comp_tput = n_items / t_comp
    statuses = {s: res.status.count(s) for s in ("ok", "no-answer", "timeout", "error")}
    print(
        f"component: {scorer.num_workers} workers, pool start-up {startup:.2f}s (once per scorer), "
        f"scored in {t_comp:.2f}s; mean reward {res.rewards.mean():.3f}; statuses {statuses}",
        flush=True,
    )

    # ---- plain serial on a subset of whole problems (after warming this process's math-verify/antlr up
    # on other problems, as a long-running serial scorer would be)
    warm_r, warm_g, _ = make_batch(4, 32, seed=args.seed + 12345)
    plain_serial(warm_r, warm_g)
    r = random.Random(args.seed + 1)
    chosen = set(r.sample(range(problems), k=min(args.baseline_problems, problems)))
    idx = [i for i in range(n_items) if pid[i] in chosen]
    cpu0 = time.process_time()
    verdicts, plain_to, t_plain = plain_serial([responses[i] for i in idx], [golds[i] for i in idx])
    plain_cpu = time.process_time() - cpu0
    plain_tput = len(idx) / t_plain
    mism = [
        i
        for k, i in enumerate(idx)
        if not plain_to[k] and res.status[i] != "timeout" and verdicts[k] != bool(res.rewards[i])
    ]
    n_plain_to = sum(plain_to)
    comp_to_subset = sum(1 for i in idx if res.status[i] == "timeout")
    extrap = n_items / plain_tput

    # ---- warm small-batch call (the embedded trainer's case): a few hundred items, warm pool and memos
    small = list(range(min(n_items, 256)))
    t = time.perf_counter()
    scorer.score([responses[i] for i in small], [golds[i] for i in small])
    t_small = time.perf_counter() - t

    print()
    print("=" * 78)
    w = (44, 14, 16)
    print(_row(("", "items/s", "wall time (s)"), w))
    print(_row((f"dars.rewards ({scorer.num_workers} workers, full batch)", f"{comp_tput:,.0f}", f"{t_comp:,.1f}"), w))
    print(_row((f"plain serial math-verify ({len(idx):,} items)", f"{plain_tput:,.1f}", f"{t_plain:,.1f}"), w))
    print(_row(("plain serial, extrapolated to full batch", "", f"{extrap:,.0f}"), w))
    print("-" * 78)
    print(f"speed-up (throughput ratio):              {comp_tput / plain_tput:,.1f}x")
    print(
        f"CPU per item: dars.rewards {comp_cpu / n_items * 1e3:.2f} ms (workers + caller), "
        f"plain {plain_cpu / len(idx) * 1e3:.2f} ms  -> {plain_cpu / len(idx) / (comp_cpu / n_items):.1f}x less CPU"
    )
    print(
        f"math-verify work in the batch: {comp_stats.get('verify_calls', '?')} verify calls and "
        f"{comp_stats.get('convert_calls', '?')} latex/expr conversions for {n_items:,} items "
        f"({comp_stats.get('verdict_hits', '?')} verdict memo hits)"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before the component run, "
        f"{os.getloadavg()[0]:.2f} at the end (other work on the machine slows the 2-worker pool)"
    )
    print(
        f"verdict mismatches on the plain subset:   {len(mism)} of {len(idx):,} "
        f"(excluded: {n_plain_to} plain-internal timeouts, {comp_to_subset} component timeouts)"
    )
    print(f"pool start-up (once per scorer):          {startup:.2f}s")
    print(f"warm call, {len(small)} items:                   {t_small * 1e3:,.0f} ms")
    print(
        "NOTE: the plain baseline was measured on a random subset of whole problems "
        f"({len(chosen)} problems) and extrapolated."
    )
    print("=" * 78, flush=True)
    for i in mism[:10]:
        print("MISMATCH", repr(responses[i][-150:]), "gold", golds[i], "component", res.rewards[i], res.status[i])

    # ---- pathological set
    if not args.no_pathological:
        items = pathological()
        print()
        print(f"pathological set ({len(items)} items), per-item budget {args.timeout}s, {scorer.num_workers} workers")
        t = time.perf_counter()
        whole = scorer.score([x[1] for x in items], [x[2] for x in items])
        t_whole = time.perf_counter() - t
        plain_v = plain_to_p = None
        if args.pathological_baseline:
            plain_v, plain_to_p, _ = plain_serial([x[1] for x in items], [x[2] for x in items])
        w2 = (24, 10, 10, 9, 14)
        print(_row(("item", "wall (s)", "status", "reward", "plain" if plain_v else ""), w2))
        worst = 0.0
        for k, (name, resp, gold) in enumerate(items):
            t = time.perf_counter()
            one = scorer.score([resp], [gold])
            dt = time.perf_counter() - t
            worst = max(worst, dt)
            plain_col = ""
            if plain_v is not None:
                plain_col = ("timeout" if plain_to_p[k] else "") + (" 1" if plain_v[k] else " 0")
            print(_row((name, f"{dt:.2f}", one.status[0], f"{one.rewards[0]:.0f}", plain_col), w2))
            if whole.status[k] != one.status[0] or whole.rewards[k] != one.rewards[0]:
                print(f"   (in the whole-set call: {whole.status[k]} {whole.rewards[k]:.0f})")
        print(
            f"worst case per item (alone): {worst:.2f}s; whole set in one call: {t_whole:.2f}s "
            f"(bound ~ budget x items / workers = {args.timeout * len(items) / scorer.num_workers:.0f}s)"
        )
        print(f"pool events: {scorer.stats()}")
        r2 = scorer.score(["\\boxed{\\frac12}", "\\boxed{3}"], ["0.5", "2"])
        print(f"after the pathological set the pool still scores correctly: {r2.rewards.tolist()} {r2.status}")
    scorer.close()


if __name__ == "__main__":
    main()
