"""Rule-based 0/1 rewards with math-verify: exact, fast on large batches, never hanging.

Verdict semantics (the DARS paper's official code; see docs/rewards.md)::

    gold  = math_verify.parse("$" + ground_truth + "$")
    pred  = math_verify.parse(response)              # default extraction config
    reward = 1.0 if math_verify.verify(gold, pred) else 0.0

Reward versions (config name -> paper version):

* ``"math_verify"`` (2, default): the whole response is graded as above.
* ``"think"`` (1): only the text after the last ``</think>`` is graded; no ``</think>`` -> 0 (``no-answer``).
* ``"no_code"`` (3): a response containing a python code block (```` ```python ```` or ``'''python``,
  case-insensitive, as in the official code) is wrong; otherwise as ``math_verify``.
* ``"boxed_exact"`` (4): the content of the last ``\\boxed{...}`` (balanced braces) must equal the gold
  string, both stripped of surrounding whitespace. No math-verify involved.

Speed (see docs/rewards.md): the expensive parts of math-verify are latex2sympy (converting an
extracted answer) and sympy (``verify`` of a wrong answer runs ``simplify`` / ``solve``). With 128 samples
per problem most answers repeat, so :class:`_Grader` runs math-verify's own extraction step (the regex
search that decides *which* string ``parse`` converts) on every response, replicating ``parse`` line for
line, and memoises everything after it, keyed by exactly what that step found: the conversion outcome
of each candidate and the verdict per (gold, extracted answer). Objects handed to ``verify`` are the
ones ``parse`` would return, so verdicts are identical to plain serial math-verify (the tests and
benchmarks/bench_rewards.py check this item for item). Three exact accelerations on top: literal
prefilters and a safe scan start for math-verify's regexes, and ANTLR's two-stage (SLL, then LL) parse
for latex2sympy. Work runs in a persistent pool of worker processes (one per CPU) sharing a verdict
cache; each item has a hard time budget: a worker stuck on an item is killed and replaced, and the item
scores 0 with status ``timeout``.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import logging
import math
import mmap
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from multiprocessing.connection import Connection, wait as _mp_wait
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

REWARD_VERSIONS = ("math_verify", "think", "no_code", "boxed_exact")

STATUSES = ("ok", "no-answer", "timeout", "error")
_OK, _NO_ANSWER, _TIMEOUT, _ERROR = range(4)

# math-verify versions whose ``parse`` control flow _Grader.extract replicates (checked at run time;
# any other version falls back to calling math_verify.parse itself per item: exact but slower).
_REPLICATED_MATH_VERIFY = ("0.9.0",)

_MAX_EXTRACTED_CHARS = 1000  # BatchScores.extracted is cut to this length
_MAX_KEY_CHARS = 4096  # memo entries whose key is longer than this are not stored (bounded memory)
_THINK_END = "</think>"
_BOXED_RE = re.compile(r"\\boxed\s*\{")


# ----------------------------------------------------------------------------------------------
# public result type


@dataclass
class BatchScores:
    rewards: np.ndarray  # float32, shape (N,), 0.0 or 1.0
    status: list[str]  # per item: "ok" | "no-answer" | "timeout" | "error"
    extracted: list[str]  # per item: the extracted predicted answer ("" if none), for majority voting

    def __len__(self) -> int:
        return len(self.status)

    def count(self, status: str) -> int:
        """Number of items with the given status."""
        return sum(1 for s in self.status if s == status)


# ----------------------------------------------------------------------------------------------
# small helpers


class _LRU:
    """A bounded least-recently-used mapping (OrderedDict based; not thread-safe)."""

    __slots__ = ("maxsize", "data")

    def __init__(self, maxsize: int):
        self.maxsize = max(0, int(maxsize))
        self.data: OrderedDict = OrderedDict()

    def get(self, key, default=None):
        try:
            value = self.data[key]
        except KeyError:
            return default
        self.data.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        if self.maxsize <= 0:
            return
        self.data[key] = value
        self.data.move_to_end(key)
        if len(self.data) > self.maxsize:
            self.data.popitem(last=False)

    def __len__(self) -> int:
        return len(self.data)


_MISS = object()


def _as_text(x: Any) -> str:
    """Coerce a response / gold to str (None -> "", bytes decoded with surrogateescape)."""
    if isinstance(x, str):
        return x
    if x is None:
        return ""
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", errors="surrogateescape")
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    return str(x)


def last_boxed_content(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (balanced braces), or None.

    "Last" is the last occurrence of ``\\boxed{``; if its braces never close (a truncated response)
    there is no answer.
    """
    last = None
    for last in _BOXED_RE.finditer(text):
        pass
    if last is None:
        return None
    depth = 1
    start = last.end()
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _has_python_block(text: str) -> bool:
    low = text.lower()
    return "```python" in low or "'''python" in low


def _prepare(version: str, response: str, gold: str):
    """Version-specific pre-processing (pure string work, done in the calling process).

    Returns ("grade", text) when ``text`` must be graded with math-verify against ``gold``, or
    ("final", reward, status_code, extracted) when the verdict is already known.
    """
    if version == "math_verify":
        return ("grade", response)
    if version == "think":
        idx = response.rfind(_THINK_END)
        if idx < 0:
            return ("final", 0, _NO_ANSWER, "")
        return ("grade", response[idx + len(_THINK_END) :])
    if version == "no_code":
        if _has_python_block(response):
            return ("final", 0, _OK, "")
        return ("grade", response)
    if version == "boxed_exact":
        content = last_boxed_content(response)
        if content is None:
            return ("final", 0, _NO_ANSWER, "")
        content = content.strip()
        return ("final", int(content == gold.strip()), _OK, content[:_MAX_EXTRACTED_CHARS])
    raise ValueError(f"unknown reward version {version!r}; expected one of {REWARD_VERSIONS}")


def reference_verdict(response: str, gold: str) -> bool:
    """Plain serial math-verify, exactly as the paper's code: the ground truth for tests/benchmarks.

    Uses math-verify's own (signal based) timeouts, so call it from the main thread only.
    """
    from math_verify import parse, verify

    return bool(verify(parse("$" + gold + "$"), parse(response)))


# ----------------------------------------------------------------------------------------------
# the exact, memoised math-verify grader (runs in workers, or in-process)


def _math_verify_version() -> str:
    try:
        return importlib.metadata.version("math-verify")
    except Exception:
        return "unknown"


def _quiet_math_verify() -> None:
    """We pass timeouts of None on purpose (the pool enforces the budget); silence the one-off warning."""
    import math_verify.grader as _g
    import math_verify.parser as _p

    _g.TIMEOUT_WARNING_SHOWN = True
    _p.TIMEOUT_WARNING_SHOWN = True


_REGEX_GROUPS = None
_BOXED_ENV_PATTERNS: set = set()


def _regex_groups():
    """The extraction regexes of ``parse``'s default config, grouped by priority exactly as parse does."""
    global _REGEX_GROUPS
    if _REGEX_GROUPS is None:
        from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig, get_extraction_regexes

        target_res = get_extraction_regexes([LatexExtractionConfig(), ExprExtractionConfig()])
        all_patterns = [
            (pattern, target_type, priority)
            for target_patterns, target_type in target_res
            for pattern, priority in target_patterns
        ]
        sorted_patterns = sorted(all_patterns, key=lambda x: x[2])
        _BOXED_ENV_PATTERNS.update(p for p, _, _ in all_patterns if _is_boxed_env_pattern(p))
        _REGEX_GROUPS = [(gr, list(val)) for gr, val in groupby(sorted_patterns, key=lambda x: x[2])]
    return _REGEX_GROUPS


_LATEX_PLANS: dict = {}


def _latex_group_plan(pattern):
    """Names of the first_latex* / next{i}_latex* groups of a pattern, in groupdict order."""
    plan = _LATEX_PLANS.get(pattern)
    if plan is None:
        names = list(pattern.groupindex)
        slots = [[n for n in names if n.startswith("first_latex")]]
        slots += [[n for n in names if n.startswith(f"next{i}_latex")] for i in range(1, 6)]
        plan = _LATEX_PLANS[pattern] = (slots, frozenset(n for n in names if n.endswith("_percent")))
    return plan


# Literal prefilters. Every match of math-verify's "answer" patterns contains the (case-insensitive)
# literal the pattern starts with, and every match of its two \boxed patterns contains "\boxed{". A
# pattern cannot match a text without its literal, so skipping it there changes nothing. The literal
# is searched with the same case folding as the pattern's (?i:...) group (Unicode: "ſ" ~ "s", ...).
_ANSWER_PREFIXES = (
    ("(?i:final answer is)", "final answer is"),
    ("(?i:final answer.{0,100}?)", "final answer"),
    ("(?i:answer)", "answer"),
)
_BOXED_SRC = "\\\\boxed{"  # how the literal \boxed{ is written inside math-verify's regex sources
_PREFILTER_OF: dict = {}


def _prefilter_of(pattern):
    """A compiled literal every match of ``pattern`` contains, or None."""
    try:
        return _PREFILTER_OF[pattern]
    except KeyError:
        pass
    found = None
    src = pattern.pattern
    for prefix, literal in _ANSWER_PREFIXES:
        if src.startswith(prefix):
            found = re.compile(re.escape(literal), re.IGNORECASE)
            break
    else:
        if _BOXED_SRC in src:
            found = re.compile(re.escape("\\boxed{"))
    _PREFILTER_OF[pattern] = found
    return found



def _is_boxed_env_pattern(pattern) -> bool:
    """math-verify's "latex environment containing \boxed{...}" pattern (priority 50)."""
    src = pattern.pattern
    return _BOXED_SRC in src and not src.startswith("(?P<first_latexBoxed>") and "first_latexDisplayDollar" in src


def _boxed_env_scan_start(text: str) -> int:
    r"""A position before which the boxed-environment pattern cannot start a match.

    Every match of that pattern is ``opener content \boxed{...} content closer`` where the opener is one of
    ``$$``, ``\[``, ``$``, ``\(`` or ``<whitespace>[`` and the content between the opener and the *first*
    ``\boxed{`` of the text (at q) is, per alternative, free of: ``$$`` (display dollar), ``\]`` (display
    bracket) and newlines (the three inline forms; ``<whitespace>`` may be the newline itself). So a match
    cannot start before the last ``$$`` before q, before the first ``\[`` that follows the last ``\]``
    before q, or before the last newline before q. Scanning with ``finditer(text, start)`` from the
    earliest of those (less a margin) yields exactly the matches of ``finditer(text)``: none can start
    earlier, and look-behind assertions still see the characters before ``start``.
    """
    q = text.find("\\boxed{")
    if q <= 0:
        return 0
    starts = [max(0, text.rfind("\n", 0, q) - 1)]
    b = text.rfind("$$", 0, q)
    if b >= 0:
        starts.append(b - 1)
    c = text.rfind("\\]", 0, q)
    p = text.find("\\[", max(0, c - 1), q)
    if p >= 0:
        starts.append(p)
    return max(0, min(starts) - 2)


class _ExtractionFailed(Exception):
    """``parse`` would have swallowed an exception here and returned []."""


_SLL_CONVERTER = None


def _sll_converter_class():
    """latex2sympy's converter with ANTLR's SLL prediction mode (see _latex_to_sympy)."""
    global _SLL_CONVERTER
    if _SLL_CONVERTER is None:
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

        class _SLLLatex2Sympy(_Latex2Sympy):
            def create_parser(self, latex_str):
                parser = super().create_parser(latex_str)
                parser._interp.predictionMode = PredictionMode.SLL
                return parser

        _SLL_CONVERTER = _SLLLatex2Sympy
    return _SLL_CONVERTER


def _latex2sympy_two_stage(latex_str: str, is_real: bool):
    """== ``latex2sympy(latex_str, is_real=is_real, convert_degrees=False, normalization_config=None)``.

    ANTLR's two-stage parsing: first with SLL prediction (5-6x faster on this grammar), then, only if
    that raises, with the default LL prediction exactly as latex2sympy does. ANTLR documents that an
    SLL parse either returns the same parse tree as LL or reports a syntax error (latex2sympy's error
    listener raises on any syntax error), so the result is the same object latex2sympy builds; any
    exception is reproduced by the LL retry.
    """
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, _Latex2Sympy

    try:
        return _sll_converter_class()(None, is_real, False, config=ConversionConfig()).parse(latex_str)
    except Exception:
        return _Latex2Sympy(None, is_real, False, config=ConversionConfig()).parse(latex_str)


def _latex_to_sympy(latex: str):
    """== ``math_verify.parser.parse_latex_cached(latex)`` with the two-stage ANTLR parse."""
    from math_verify.grader import should_treat_as_complex
    from math_verify.parser import get_last_eq

    try:
        return _latex2sympy_two_stage(latex, not should_treat_as_complex(latex))
    except Exception as e:
        last_eq_latex = get_last_eq(latex)
        if last_eq_latex != latex:
            return _latex2sympy_two_stage(last_eq_latex, not should_treat_as_complex(last_eq_latex))
        else:
            raise e


class _Grader:
    """math-verify grading with memoisation that cannot change a verdict.

    ``extract`` is a line-for-line replica of ``math_verify.parse(text)`` (default extraction config,
    fallback_mode="first_match", extraction_mode="any_match") whose pure sub-steps are memoised:

    * latex normalisation of an extracted string (a pure string -> string function);
    * the *outcome* of converting one regex match (did it give an object, and its fallback string),
      keyed by exactly the values ``extract_latex`` / ``extract_expr`` read from the match (for latex:
      the normalised strings and percent flags); this decides which match wins, as in ``parse``;
    * the converted sympy object of a match (same key), needed only when a verdict is not memoised.

    ``parse``'s output is ``[object of the winning match] + [first fallback string]``, so its identity is
    ``pred_key`` = (key of the winning match, first fallback string), and ``verify(gold, pred)`` is a
    function of the gold string and ``pred_key``: that keys the verdict memo. Outcome and verdict
    entries are small and can be shared between processes (see _Pool), objects stay local.
    """

    def __init__(self, cache_size: int = 1_000_000, fast: bool | None = None):
        from math_verify import parse, verify  # noqa: F401  (import once, early)
        from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig, extract_expr, extract_match

        self._LatexCfg, self._ExprCfg = LatexExtractionConfig, ExprExtractionConfig
        self._extract_expr, self._extract_match_mv = extract_expr, extract_match
        _quiet_math_verify()
        if fast is None:
            fast = _math_verify_version() in _REPLICATED_MATH_VERIFY
        self.fast = bool(fast)
        small = min(cache_size, 200_000)
        self.gold_memo = _LRU(min(cache_size, 100_000))
        self.norm_memo = _LRU(small)
        self.outcome_memo = _LRU(small)
        self.object_memo = _LRU(small)
        self.verdict_memo = _LRU(cache_size)
        self.learned: list | None = None  # when a list, new outcome / verdict entries are appended
        self.stats = {"items": 0, "verify_calls": 0, "verdict_hits": 0, "convert_calls": 0}

    # -- shared entries ---------------------------------------------------------------------------
    def absorb(self, gold: str, outcomes, verdicts) -> None:
        """Take outcome / verdict entries learned elsewhere (by another worker) for this gold."""
        for key, out in outcomes:
            self.outcome_memo.put(key, out)
        for pred_key, verdict in verdicts:
            self.verdict_memo.put((gold, pred_key), verdict)

    # -- gold ---------------------------------------------------------------------------------
    def parse_gold(self, gold: str) -> list:
        """== ``math_verify.parse("$" + gold + "$")`` (through the same exact replica as responses)."""
        hit = self.gold_memo.get(gold, _MISS)
        if hit is _MISS:
            try:
                _, _, winner, fb0, _ = self.extract("$" + gold + "$")
                hit = self.materialize(winner, fb0)
            except Exception:
                hit = []  # parse returns [] when extraction raises
            self.gold_memo.put(gold, hit)
        return hit

    # -- prediction -----------------------------------------------------------------------------
    def _normalize(self, latex: str, boxed_last: bool, config) -> str:
        from latex2sympy2_extended.latex2sympy2 import normalize_latex

        key = (latex, boxed_last)
        cacheable = len(latex) <= _MAX_KEY_CHARS
        if cacheable:
            hit = self.norm_memo.get(key, _MISS)
            if hit is not _MISS:
                return hit
        out = normalize_latex(latex, config=config)
        if cacheable:
            self.norm_memo.put(key, out)
        return out

    def _latex_parts(self, match, latex_config) -> tuple:
        # == math_verify.parser.extract_latex up to (and including) normalisation. ``groupdict()``
        # iterates ``pattern.groupindex`` in order, so scanning the precomputed name lists of the pattern
        # picks the same groups as extract_latex's ``next(... for name, val in groupdict().items() ...)``.
        from dataclasses import replace

        slots, percent_names = _latex_group_plan(match.re)
        parts = []
        for names in slots:
            for name in names:
                latex = match.group(name)
                if latex:
                    break
            else:
                continue
            name_without_prefix = name.split("_")[0]
            group_name = name.split("_")[1] if len(name.split("_")) > 1 else None
            pct_name = f"{name_without_prefix}_percent"
            is_percentage = True if (pct_name in percent_names and match.group(pct_name)) else False
            config = latex_config.normalization_config
            boxed_last = group_name == "latexBoxed"
            if boxed_last:
                config = replace(config, boxed="last")
            parts.append((self._normalize(latex, boxed_last, config), is_percentage))
        return tuple(parts)

    @staticmethod
    def _latex_from_parts(parts: tuple):
        # == math_verify.parser.extract_latex after normalisation (parse_latex_cached -> _latex_to_sympy)
        from latex2sympy2_extended.latex2sympy2 import convert_to_pct
        from latex2sympy2_extended.sets import FiniteSet

        latex_exprs = []
        latex_strs = []
        for normalized_latex, is_percentage in parts:
            latex_strs.append(normalized_latex)
            try:
                parsed_latex = _latex_to_sympy(normalized_latex)
                if is_percentage:
                    parsed_latex = convert_to_pct(parsed_latex)
                latex_exprs.append(parsed_latex)
            except Exception:
                latex_exprs.append(None)
        if not latex_exprs:
            return None, ""
        if len(latex_exprs) > 1 and all(expr is not None for expr in latex_exprs):
            all_elements = []
            for expr in latex_exprs:
                if isinstance(expr, FiniteSet):
                    all_elements.extend(expr.args)
                else:
                    all_elements.append(expr)
            return FiniteSet(*all_elements), " and ".join(latex_strs)
        return latex_exprs[0], latex_strs[0]

    def _match_key(self, match, target_type):
        """(memo key, key size in characters) of a regex match; key None for an unknown target type."""
        if isinstance(target_type, self._LatexCfg):
            parts = self._latex_parts(match, target_type)
            return ("L", parts), sum(len(p[0]) for p in parts)
        if isinstance(target_type, self._ExprCfg):
            items = tuple(match.groupdict().items())
            return ("E", items), sum(len(v) for _, v in items if v)
        return None, _MAX_KEY_CHARS + 1

    def _convert(self, key, size, match, target_type, local: dict):
        """(object or None, fallback string) of a match, or None where the conversion raises."""
        cacheable = size <= _MAX_KEY_CHARS
        hit = _MISS
        if cacheable:
            hit = self.object_memo.get(key, _MISS)
        elif id(match) in local:
            hit = local[id(match)]
        if hit is _MISS:
            self.stats["convert_calls"] += 1
            try:
                if key is None:
                    hit = self._extract_match_mv(match, target_type)
                elif key[0] == "L":
                    hit = self._latex_from_parts(key[1])
                else:
                    hit = self._extract_expr(match)
            except Exception:
                hit = None  # parse would let this propagate and return []
            if cacheable:
                self.object_memo.put(key, hit)
            else:
                local[id(match)] = hit
        return hit

    def _outcome(self, key, size, match, target_type, local: dict):
        """(converted to an object?, fallback string) of a match; raises where parse returns []."""
        cacheable = size <= _MAX_KEY_CHARS
        out = self.outcome_memo.get(key, _MISS) if cacheable else _MISS
        if out is _MISS:
            full = self._convert(key, size, match, target_type, local)
            out = None if full is None else (full[0] is not None, full[1])
            if cacheable:
                self.outcome_memo.put(key, out)
                if self.learned is not None:
                    self.learned.append(("o", key, out))
        if out is None:
            raise _ExtractionFailed()
        return out

    def extract(self, text: str):
        """Replica of ``parse(text)``: (pred_key, key size, winner, first fallback, extracted string).

        ``winner`` is (key, size, match, target type, local) of the match parse takes its object from,
        or None; ``materialize(winner, fb0)`` is then exactly ``parse(text)``'s output. Raises
        _ExtractionFailed where ``parse`` would swallow an exception and return [].
        """
        if not self.fast:
            from math_verify import parse

            preds = parse(text, parsing_timeout=None, raise_on_error=True)
            strs = [p for p in preds if isinstance(p, str)]
            return None, _MAX_KEY_CHARS + 1, ("plain", preds), None, (strs[0] if strs else (str(preds[0]) if preds else ""))
        literal_found: dict = {}
        local: dict = {}

        def may_match(pattern) -> bool:
            lit = _prefilter_of(pattern)
            if lit is None:
                return True
            hit = literal_found.get(lit)
            if hit is None:
                hit = literal_found[lit] = lit.search(text) is not None
            return hit

        def scan_start(pattern) -> int:
            if pattern in _BOXED_ENV_PATTERNS:
                return _boxed_env_scan_start(text)
            return 0

        try:
            # == math_verify.parser.extract_target_from_pred(text, regexes, "first_match", "any_match")
            fallbacks = []
            winner = None
            for _, patterns_group in _regex_groups():
                matches_with_pos = (
                    (match, match.start(), match.end(), target_type)
                    for pattern, target_type, _ in patterns_group
                    if may_match(pattern)
                    for match in pattern.finditer(text, scan_start(pattern))
                )
                matches_with_pos = sorted(matches_with_pos, key=lambda x: (x[2], -x[1]), reverse=True)
                for match, _, _, target_type in matches_with_pos:
                    key, size = self._match_key(match, target_type)
                    ok, str_fallback = self._outcome(key, size, match, target_type, local)
                    if str_fallback:
                        fallbacks.append(str_fallback)
                    if ok:
                        winner = (key, size, match, target_type, local, str_fallback)
                        break
                if winner is not None:
                    break
        except _ExtractionFailed:
            raise
        except Exception as e:  # parse: `except Exception: return []`
            raise _ExtractionFailed() from e
        fb0 = fallbacks[0] if fallbacks else None
        pred_key = (winner[0] if winner is not None else None, fb0)
        size = (winner[1] if winner is not None else 0) + (len(fb0) if fb0 else 0)
        extracted = winner[5] if winner is not None else (fb0 or "")
        return pred_key, size, winner, fb0, extracted

    def materialize(self, winner, fb0) -> list:
        """``parse``'s output list from ``extract``'s winner and first fallback string."""
        if winner is not None and winner[0] == "plain":
            return winner[1]
        preds = []
        if winner is not None:
            key, size, match, target_type, local, _ = winner
            full = self._convert(key, size, match, target_type, local)
            if full is None or full[0] is None:  # cannot happen (the outcome said it converts); be safe
                raise _ExtractionFailed()
            preds.append(full[0])
        if fb0 is not None:
            preds.append(fb0)
        return preds

    def parse(self, text: str) -> list:
        """Exactly ``math_verify.parse(text)`` (default config), through the memos."""
        try:
            _, _, winner, fb0, _ = self.extract(text)
            return self.materialize(winner, fb0)
        except Exception:
            return []

    # -- verdict --------------------------------------------------------------------------------
    def grade(self, text: str, gold: str) -> tuple[int, int, str]:
        """(reward 0/1, status code, extracted) for one response text against one gold string."""
        from math_verify import verify

        self.stats["items"] += 1
        try:
            pred_key, size, winner, fb0, extracted = self.extract(text)
        except Exception:
            return 0, _ERROR, ""
        extracted = (extracted or "")[:_MAX_EXTRACTED_CHARS]
        gold_parsed = self.parse_gold(gold)
        if not gold_parsed:
            return 0, _ERROR, extracted
        if winner is None and fb0 is None:
            return 0, _NO_ANSWER, ""
        vkey = None
        if pred_key is not None and size + len(gold) <= _MAX_KEY_CHARS:
            vkey = (gold, pred_key)
            hit = self.verdict_memo.get(vkey, _MISS)
            if hit is not _MISS:
                self.stats["verdict_hits"] += 1
                return int(hit), _OK, extracted
        try:
            preds = self.materialize(winner, fb0)
        except Exception:
            return 0, _ERROR, ""
        if not preds:
            return 0, _NO_ANSWER, ""
        self.stats["verify_calls"] += 1
        verdict = bool(verify(gold_parsed, preds, timeout_seconds=None))
        if vkey is not None:
            self.verdict_memo.put(vkey, verdict)
            if self.learned is not None:
                self.learned.append(("v", pred_key, verdict))
        return int(verdict), _OK, extracted

    def warmup(self) -> None:
        """Load the antlr parser and compile the regexes (so a fresh worker's first item is not slow)."""
        try:
            self.grade("The answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}")
        except Exception:
            pass


# ----------------------------------------------------------------------------------------------
# in-process time budget (best effort: main thread only, Python code only)


class _ItemTimeout(BaseException):
    """Raised by SIGALRM in in-process mode. BaseException so math-verify's `except Exception` can't eat it."""


class _Deadline:
    """SIGALRM-based per-item budget; a no-op outside the main thread (signals can't be used there).

    The handler raises only while armed, and disarming happens before the timer and the caller's
    handler are restored, so a late alarm can neither escape nor leave our handler installed.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = False
        self.active = (
            seconds is not None
            and seconds > 0
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )

    def _handler(self, signum, frame):
        if self.armed:
            self.armed = False
            raise _ItemTimeout()

    def __enter__(self):
        if self.active:
            self.old_handler = signal.signal(signal.SIGALRM, self._handler)
            self.t0 = time.monotonic()
            self.armed = True
            self.old_timer = signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.active:
            try:
                self.armed = False
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, self.old_handler)
                if self.old_timer[0] > 0:  # re-arm a timer the caller had set, minus the time we used
                    left = max(1e-3, self.old_timer[0] - (time.monotonic() - self.t0))
                    signal.setitimer(signal.ITIMER_REAL, left, self.old_timer[1])
        return False


# ----------------------------------------------------------------------------------------------
# worker process

# Shared state of a worker (one page, doubles): [task id, position of the item in flight (-1 = parsing
# the gold), start time of that item (time.monotonic, system-wide on Linux; 0 = nothing in flight), pid].
_FLUSH_S = 0.2  # a worker sends the results it has at least this often


def _set_pdeathsig() -> None:
    """Ask the kernel to SIGKILL this worker when the thread that started it dies (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _worker_entry(argv: list[str]) -> None:
    """Main loop of a worker process (started by _Pool._spawn through subprocess)."""
    fd, shm_fd, parent_pid, cache_size, fast = (int(a) for a in argv[:5])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    _set_pdeathsig()
    if os.getppid() != parent_pid:  # parent already gone
        os._exit(0)
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    conn = Connection(fd)
    mm = mmap.mmap(shm_fd, mmap.PAGESIZE)
    state = memoryview(mm).cast("d")
    grader = _Grader(cache_size, fast=bool(fast))
    grader.warmup()
    state[3] = float(os.getpid())
    conn.send(("ready", os.getpid(), grader.fast))
    clock = time.monotonic
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        task_id, gold, items, hints = msg
        state[0] = float(task_id)
        state[1] = -1.0
        state[2] = clock()
        if hints:
            grader.absorb(gold, *hints)
        grader.learned = []
        base = dict(grader.stats)
        results = []
        try:
            grader.parse_gold(gold)
        except Exception:
            pass
        last_flush = clock()
        for pos, text in items:
            state[1] = float(pos)
            state[2] = clock()
            try:
                res = grader.grade(text, gold)
            except Exception:
                res = (0, _ERROR, "")
            results.append((pos, res[0], res[1], res[2]))
            now = clock()
            if now - last_flush > _FLUSH_S:
                state[2] = 0.0  # no item in flight while we write to the pipe
                conn.send(("res", task_id, results, False, grader.learned, None))
                results = []
                grader.learned = []
                last_flush = clock()
        state[2] = 0.0
        delta = {k: v - base.get(k, 0) for k, v in grader.stats.items()}
        conn.send(("res", task_id, results, True, grader.learned, delta))
        grader.learned = None
    os._exit(0)


_WORKER_CODE = (
    "import sys, importlib.util\n"
    "spec = importlib.util.spec_from_file_location('_dars_rewards_worker', sys.argv[1])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = mod\n"
    "spec.loader.exec_module(mod)\n"
    "mod._worker_entry(sys.argv[2:])\n"
)


# ----------------------------------------------------------------------------------------------
# the pool


class _PoolUnavailable(RuntimeError):
    pass


class _Task:
    __slots__ = ("id", "gold", "items", "pending")

    def __init__(self, task_id: int, gold: str, items: list):
        self.id = task_id
        self.gold = gold
        self.items = items  # [(pos, text)]
        self.pending = {pos for pos, _ in items}


class _Worker:
    __slots__ = ("proc", "conn", "mm", "view", "state", "ready", "task", "spawned_at", "fast")

    def __init__(self, proc, conn, mm):
        self.proc = proc
        self.conn = conn
        self.mm = mm
        self.view = memoryview(mm)
        self.state = self.view.cast("d")
        self.ready = False
        self.task: _Task | None = None
        self.spawned_at = time.monotonic()
        self.fast = None

    def in_flight(self):
        """(task_id, position, start) of the item being scored, or None when idle."""
        s = self.state
        for _ in range(3):
            a = (s[0], s[1], s[2])
            b = (s[0], s[1], s[2])
            if a == b:
                return None if a[2] <= 0 else (int(a[0]), int(a[1]), a[2])
        return None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:
            pass

    def close_handles(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass
        try:
            self.state.release()
            self.view.release()
            self.mm.close()
        except Exception:
            pass


def _default_num_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except Exception:
        n = os.cpu_count() or 1
    return max(1, n)


class _SharedCache:
    """The pool's memory of outcome / verdict entries, per gold, merged from every worker.

    A task for a gold carries the entries known for that gold, so any worker (also a fresh one after
    a kill) scores a repeated answer without converting or verifying it again. Bounded: at most
    ``max_entries`` entries in all (least recently used golds are dropped), _PER_GOLD per gold.
    """

    _PER_GOLD = 512

    def __init__(self, max_entries: int):
        self.max_entries = max(0, int(max_entries))
        self.golds: OrderedDict = OrderedDict()  # gold -> (outcomes dict, verdicts dict)
        self.size = 0

    def hints(self, gold: str):
        entry = self.golds.get(gold)
        if entry is None:
            return None
        self.golds.move_to_end(gold)
        return (list(entry[0].items()), list(entry[1].items()))

    def learn(self, gold: str, learned: list) -> None:
        if self.max_entries <= 0:
            return
        entry = self.golds.get(gold)
        if entry is None:
            entry = self.golds[gold] = ({}, {})
        self.golds.move_to_end(gold)
        for kind, key, value in learned:
            d = entry[0] if kind == "o" else entry[1]
            if key not in d and len(d) < self._PER_GOLD:
                d[key] = value
                self.size += 1
        while self.size > self.max_entries and len(self.golds) > 1:
            _, (o, v) = self.golds.popitem(last=False)
            self.size -= len(o) + len(v)


class _Pool:
    """Persistent worker processes with per-item deadlines; stuck workers are killed and replaced."""

    STARTUP_TIMEOUT_S = 120.0
    MAX_START_FAILURES = 3

    def __init__(self, num_workers: int, cache_size: int, timeout_s: float, fast: bool | None):
        self.num_workers = num_workers
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self.fast = fast
        self.pid = os.getpid()
        self.workers: list[_Worker] = []
        # All worker processes are created from this one long-lived thread: PR_SET_PDEATHSIG fires when
        # the *thread* that forked a child exits, so this keeps workers alive exactly as long as the pool.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dars-rewards-spawn")
        self._next_task_id = 0
        self.start_failures = 0
        self.ever_ready = False
        self.bad_golds = _LRU(10_000)  # gold strings whose parse timed out / crashed
        self.affinity = _LRU(200_000)  # gold -> worker slot that last scored it
        self.shared = _SharedCache(cache_size)  # outcome / verdict entries per gold, from all workers
        self.retries: dict = {}
        self.stats = {"killed": 0, "crashed": 0, "spawned": 0}

    # -- process management -----------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        if hasattr(os, "memfd_create"):
            shm_fd = os.memfd_create("dars-rewards-state")
        else:  # pragma: no cover - non-Linux
            import tempfile

            shm_fd = os.dup(tempfile.TemporaryFile().fileno())
        os.ftruncate(shm_fd, mmap.PAGESIZE)
        mm = mmap.mmap(shm_fd, mmap.PAGESIZE)
        fast = -1 if self.fast is None else int(self.fast)
        if fast == -1:
            fast = int(_math_verify_version() in _REPLICATED_MATH_VERIFY)
        args = [
            sys.executable,
            "-c",
            _WORKER_CODE,
            os.path.abspath(__file__),
            str(child_sock.fileno()),
            str(shm_fd),
            str(os.getpid()),
            str(int(self.cache_size)),
            str(fast),
        ]
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"

        def launch():
            return subprocess.Popen(
                args,
                pass_fds=(child_sock.fileno(), shm_fd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )

        try:
            proc = self._spawner.submit(launch).result()
        finally:
            child_sock.close()
            os.close(shm_fd)
        self.stats["spawned"] += 1
        return _Worker(proc, Connection(parent_sock.detach()), mm)

    def ensure_workers(self) -> None:
        self.workers = [w for w in self.workers if w is not None]
        while len(self.workers) < self.num_workers:
            self.workers.append(self._spawn())

    def _replace(self, w: _Worker, kill: bool = True) -> None:
        if kill:
            w.kill()
        w.close_handles()
        idx = self.workers.index(w)
        self.workers[idx] = self._spawn()

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except Exception:
                pass
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except Exception:
                w.kill()
            w.close_handles()
        self.workers = []
        try:
            self._spawner.shutdown(wait=False)
        except Exception:
            pass

    # -- scoring ----------------------------------------------------------------------------------
    def run(self, work: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
        """Grade [(text, gold)] -> [(reward, status code, extracted)], each item under the time budget."""
        n = len(work)
        out: list = [None] * n
        if n == 0:
            return out
        self.retries = {}  # crash counts, per item of this call
        for w in list(self.workers):
            if w.task is not None:  # left over from a call that was interrupted (e.g. KeyboardInterrupt)
                w.task = None
                self._replace(w)
        self.ensure_workers()
        # group by gold (each task parses its gold once and shares the worker's memos), then chunk
        by_gold: dict[str, list[int]] = {}
        for pos, (_, gold) in enumerate(work):
            by_gold.setdefault(gold, []).append(pos)
        chunk = max(8, min(256, math.ceil(n / (self.num_workers * 4))))
        queue: deque[_Task] = deque()
        for gold, positions in by_gold.items():
            for s in range(0, len(positions), chunk):
                queue.append(self._new_task(gold, [(p, work[p][0]) for p in positions[s : s + chunk]]))
        remaining = [n]

        def resolve(pos: int, res) -> None:
            if out[pos] is None:
                out[pos] = res
                remaining[0] -= 1

        while remaining[0] > 0:
            now = time.monotonic()
            # 1. hand tasks to idle workers
            for slot, w in enumerate(list(self.workers)):
                while w.ready and w.task is None and queue:
                    task = self._pick(queue, slot)
                    if self.bad_golds.get(task.gold) is not None:
                        code = self.bad_golds.get(task.gold)
                        for pos in task.pending:
                            resolve(pos, (0, code, ""))
                        continue
                    try:
                        items = [(p, t) for p, t in task.items if p in task.pending]
                        w.conn.send((task.id, task.gold, items, self.shared.hints(task.gold)))
                        w.task = task
                        self.affinity.put(task.gold, slot)
                    except (OSError, ValueError):
                        queue.appendleft(task)
                        self._on_death(w, queue, resolve)
                        break
            if remaining[0] == 0:
                break
            # 2. wait for results (or for the nearest deadline)
            wait_s = 0.5
            for w in self.workers:
                if w.task is not None:
                    fl = w.in_flight()
                    if fl is not None:
                        wait_s = min(wait_s, fl[2] + self.timeout_s - now)
            wait_s = max(0.005, wait_s)
            by_conn = {w.conn: w for w in self.workers}
            try:
                ready = _mp_wait(list(by_conn), timeout=wait_s)
            except OSError:
                ready = []
            for conn in ready:
                w = by_conn[conn]
                self._drain(w, queue, resolve)
            # 3. deadlines: kill and replace a worker stuck on one item; also startup deadlines
            now = time.monotonic()
            for w in list(self.workers):
                if not w.ready:
                    if now - w.spawned_at > self.STARTUP_TIMEOUT_S:
                        self._on_death(w, queue, resolve, startup=True)
                    continue
                if w.task is None:
                    continue
                fl = w.in_flight()
                if fl is None or fl[0] != w.task.id or now - fl[2] <= self.timeout_s:
                    continue
                self._on_timeout(w, fl[1], queue, resolve)
        return out

    def _pick(self, queue: deque, slot: int) -> _Task:
        """Next task for the worker in ``slot``: prefer a gold it has seen (its memos hold that gold's
        parsed form and verdicts) or a gold no worker has seen; otherwise steal the oldest task."""
        for i, task in enumerate(queue):
            if i >= 512:
                break
            owner = self.affinity.get(task.gold)
            if owner is None or owner == slot:
                del queue[i]
                return task
        return queue.popleft()

    def _new_task(self, gold: str, items: list) -> _Task:
        self._next_task_id += 1
        return _Task(self._next_task_id, gold, items)

    def _drain(self, w: _Worker, queue, resolve) -> None:
        """Read every complete message a worker has sent; handle its death on EOF."""
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                kind = msg[0]
                if kind == "ready":
                    w.ready = True
                    w.fast = msg[2]
                    self.ever_ready = True
                    self.start_failures = 0
                elif kind == "res":
                    _, task_id, results, done, learned, counts = msg
                    task = w.task
                    if task is None or task.id != task_id:
                        continue
                    if counts:
                        for k, v in counts.items():
                            self.stats[k] = self.stats.get(k, 0) + v
                    if learned:
                        self.shared.learn(task.gold, learned)
                    for pos, reward, status, extracted in results:
                        task.pending.discard(pos)
                        resolve(pos, (reward, status, extracted))
                    if done:
                        w.task = None
        except (EOFError, OSError, ValueError):
            self._on_death(w, queue, resolve, startup=not w.ready)

    def _salvage(self, w: _Worker, resolve) -> None:
        """After a worker was killed: keep the results it managed to send (complete messages only)."""
        task = w.task
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "res" and task is not None and msg[1] == task.id:
                    if msg[4]:
                        self.shared.learn(task.gold, msg[4])
                    for pos, reward, status, extracted in msg[2]:
                        task.pending.discard(pos)
                        resolve(pos, (reward, status, extracted))
        except Exception:
            pass

    def _requeue_rest(self, task: _Task, queue) -> None:
        if task.pending:
            rest = [(p, t) for p, t in task.items if p in task.pending]
            queue.appendleft(self._new_task(task.gold, rest))

    def _on_timeout(self, w: _Worker, pos: int, queue, resolve) -> None:
        task = w.task
        w.kill()
        self.stats["killed"] += 1
        self._salvage(w, resolve)
        if pos < 0:  # the gold itself does not parse within the budget: every item of it times out
            self.bad_golds.put(task.gold, _TIMEOUT)
            for p in list(task.pending):
                resolve(p, (0, _TIMEOUT, ""))
            task.pending.clear()
        else:
            task.pending.discard(pos)
            resolve(pos, (0, _TIMEOUT, ""))
            self._requeue_rest(task, queue)
        w.task = None
        self._replace(w, kill=False)

    def _on_death(self, w: _Worker, queue, resolve, startup: bool = False) -> None:
        """A worker exited unexpectedly (crash, OOM kill, ...): blame the item in flight after a retry."""
        if w not in self.workers:
            return
        fl = w.in_flight() if not startup else None
        w.kill()
        self._salvage(w, resolve)
        task = w.task
        w.task = None
        if startup:
            self.start_failures += 1  # consecutive: reset when a worker comes up
            if self.start_failures >= self.MAX_START_FAILURES:
                raise _PoolUnavailable(f"reward worker processes fail to start ({self.start_failures} in a row)")
        else:
            self.stats["crashed"] += 1
        if task is not None:
            if fl is not None and fl[0] == task.id:
                key = ("gold", task.gold) if fl[1] < 0 else (task.gold, fl[1])
                self.retries[key] = self.retries.get(key, 0) + 1
                if self.retries[key] >= 2:  # crashed twice on the same thing: give up on it
                    if fl[1] < 0:
                        self.bad_golds.put(task.gold, _ERROR)
                        for p in list(task.pending):
                            resolve(p, (0, _ERROR, ""))
                        task.pending.clear()
                    else:
                        task.pending.discard(fl[1])
                        resolve(fl[1], (0, _ERROR, ""))
            self._requeue_rest(task, queue)
        self._replace(w, kill=False)


# ----------------------------------------------------------------------------------------------
# public API

_LIVE_SCORERS: "weakref.WeakSet[RewardScorer]" = weakref.WeakSet()


class RewardScorer:
    """Scores batches of responses against gold answers; see the module docstring and docs/rewards.md.

    Args:
        version: one of REWARD_VERSIONS.
        num_workers: worker processes; None -> one per CPU available to this process; 0 -> score
            in-process (no pool; the time budget is then best effort: enforced with SIGALRM in the main
            thread only, and it cannot interrupt a long C-level regex or integer operation).
        timeout_s: time budget per item (an item over budget scores 0 with status "timeout").
        cache_size: entries kept in the verdict memo of each worker and in the pool's shared cache
            (per-gold verdicts and conversion outcomes, handed to whichever worker gets that gold next,
            so a repeated answer is verified once per pool, not once per worker); the memos of
            converted objects / normalised strings are bounded by min(cache_size, 200_000).

    The pool is started on first use (~1 s) and kept alive across calls: a call with a warm pool pays
    no start-up, only IPC (a few ms; ~40 ms for 256 already-seen answers on 2 cores). Small batches go
    to the pool as well, because only a separate process can be killed when an item gets stuck; use
    ``num_workers=0`` to score in-process. ``score`` is thread-safe (calls are serialised).
    """

    def __init__(
        self,
        version: str = "math_verify",
        num_workers: int | None = None,
        timeout_s: float = 5.0,
        cache_size: int = 1_000_000,
    ):
        if version not in REWARD_VERSIONS:
            raise ValueError(f"unknown reward version {version!r}; expected one of {REWARD_VERSIONS}")
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
            raise ValueError(f"num_workers must be None or an int >= 0, got {num_workers!r}")
        if not (timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.version = version
        self.num_workers = _default_num_workers() if num_workers is None else num_workers
        self.timeout_s = float(timeout_s)
        self.cache_size = int(cache_size)
        self._pool: _Pool | None = None
        self._grader: _Grader | None = None
        self._lock = threading.RLock()
        self._in_process = self.num_workers == 0
        _LIVE_SCORERS.add(self)

    # -- context manager / lifetime ---------------------------------------------------------------
    def __enter__(self) -> "RewardScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None and pool.pid == os.getpid():
                pool.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def in_process(self) -> bool:
        """True when items are graded in the calling process (num_workers=0 or no pool possible)."""
        return self._in_process

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, responses: Sequence[str], golds: Sequence[str]) -> BatchScores:
        if isinstance(responses, (str, bytes)) or isinstance(golds, (str, bytes)):
            raise TypeError("score() takes sequences of responses and golds; use compute_score for one item")
        n = len(responses)
        if len(golds) != n:
            raise ValueError(f"got {n} responses but {len(golds)} golds")
        rewards = np.zeros(n, dtype=np.float32)
        status = ["ok"] * n
        extracted = [""] * n
        work: list[tuple[str, str]] = []
        work_index: dict[tuple[str, str], int] = {}
        owners: list[list[int]] = []
        for i in range(n):
            try:
                resp = _as_text(responses[i])
                gold = _as_text(golds[i])
                prep = _prepare(self.version, resp, gold)
            except Exception:
                status[i] = "error"
                continue
            if prep[0] == "final":
                rewards[i] = prep[1]
                status[i] = STATUSES[prep[2]]
                extracted[i] = prep[3]
                continue
            key = (prep[1], gold)
            j = work_index.get(key)
            if j is None:  # identical (text, gold) pairs are graded once
                j = work_index[key] = len(work)
                work.append(key)
                owners.append([])
            owners[j].append(i)
        if work:
            results = self._grade_many(work)
            for j, res in enumerate(results):
                if res is None:
                    res = (0, _ERROR, "")
                reward, code, ext = res
                for i in owners[j]:
                    rewards[i] = float(reward)
                    status[i] = STATUSES[code]
                    extracted[i] = ext
        return BatchScores(rewards=rewards, status=status, extracted=extracted)

    def _grade_many(self, work: list[tuple[str, str]]) -> list:
        with self._lock:
            if not self._in_process:
                try:
                    return self._get_pool().run(work)
                except _PoolUnavailable as e:
                    logger.warning("dars.rewards: %s; scoring in-process from now on", e)
                    self._in_process = True
                    self._drop_pool()
                except Exception:  # the pool machinery itself failed (not an item): start afresh next call
                    logger.exception("dars.rewards: the worker pool failed; scoring this batch in-process")
                    self._drop_pool()
            return self._grade_in_process(work)

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and pool.pid == os.getpid():
            try:
                pool.close()
            except Exception:
                pass

    def _get_pool(self) -> _Pool:
        if self._pool is not None and self._pool.pid != os.getpid():
            self._pool = None  # we are a forked child: the parent's workers are not ours
        if self._pool is None:
            self._pool = _Pool(self.num_workers, self.cache_size, self.timeout_s, fast=None)
        return self._pool

    def _grade_in_process(self, work: list[tuple[str, str]]) -> list:
        if self._grader is None:
            self._grader = _Grader(self.cache_size)
        out = []
        for text, gold in work:
            res = None
            try:
                with _Deadline(self.timeout_s):
                    res = self._grader.grade(text, gold)
            except _ItemTimeout:
                pass  # res stays None unless the alarm raced the end of a finished item
            except Exception:
                res = (0, _ERROR, "")
            out.append(res if res is not None else (0, _TIMEOUT, ""))
        return out

    def stats(self) -> dict:
        """Counters for diagnostics: items graded with math-verify, verify / conversion calls and memo
        hits, and (pool mode) worker processes spawned / killed / crashed."""
        pool = self._pool
        if pool is not None:
            return dict(pool.stats)
        return dict(self._grader.stats) if self._grader is not None else {}


def score_batch(responses, golds, version: str = "math_verify", **kw) -> BatchScores:
    """One-shot convenience: a scorer for this call only (pays the pool start-up; prefer RewardScorer)."""
    with RewardScorer(version=version, **kw) as scorer:
        return scorer.score(responses, golds)


_DEFAULT_SCORERS: dict[str, RewardScorer] = {}
_DEFAULT_LOCK = threading.Lock()


def _default_scorer(version: str) -> RewardScorer:
    with _DEFAULT_LOCK:
        scorer = _DEFAULT_SCORERS.get(version)
        if scorer is None:
            timeout_s = float(os.environ.get("DARS_REWARD_TIMEOUT", "5.0"))
            scorer = _DEFAULT_SCORERS[version] = RewardScorer(version, num_workers=1, timeout_s=timeout_s)
        return scorer


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info=None, *,
                  version: str | None = None, timeout_s: float | None = None, return_dict: bool = False,
                  **_verl_kwargs):
    """verl custom reward function: 1.0 / 0.0 for one response (never raises for a bad item).

    The reward version is ``version`` (verl passes ``reward.custom_reward_function.reward_kwargs``
    as keywords), else ``extra_info["reward_version"]``, else the ``DARS_REWARD_VERSION``
    environment variable, else "math_verify". Items are graded in one persistent worker process per
    version (so the time budget holds in any thread, e.g. inside a Ray actor). With
    ``return_dict=True`` the result is ``{"score", "acc", "pred"}`` (verl logs the extra keys and
    uses ``pred`` for maj@k; the dars verl trainer stores it in eval/).
    """
    if version is None:
        version = os.environ.get("DARS_REWARD_VERSION", "math_verify")
        if isinstance(extra_info, dict) and extra_info.get("reward_version"):
            version = str(extra_info["reward_version"])
    if version not in REWARD_VERSIONS:
        raise ValueError(f"unknown reward version {version!r}; expected one of {REWARD_VERSIONS}")
    if timeout_s is not None:
        os.environ.setdefault("DARS_REWARD_TIMEOUT", str(timeout_s))  # read when the scorer starts
    try:
        scored = _default_scorer(version).score([solution_str], [ground_truth])
        score, pred = float(scored.rewards[0]), scored.extracted[0]
    except Exception:
        logger.exception("dars.rewards.compute_score failed; scoring 0")
        score, pred = 0.0, ""
    return {"score": score, "acc": score, "pred": pred} if return_dict else score


@atexit.register
def _close_all() -> None:
    for scorer in list(_LIVE_SCORERS):
        try:
            scorer.close()
        except Exception:
            pass


__all__ = [
    "REWARD_VERSIONS",
    "STATUSES",
    "BatchScores",
    "RewardScorer",
    "score_batch",
    "compute_score",
    "reference_verdict",
    "last_boxed_content",
]
