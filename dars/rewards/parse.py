"""An exact, memoised replica of ``math_verify.parse`` (the grader behind dars.rewards).

Mirrors **math-verify 0.9.0** (``math_verify.parser.parse`` with the default extraction config,
``fallback_mode="first_match"``, ``extraction_mode="any_match"``); pyproject.toml pins that version.
:class:`_Grader` runs math-verify's own extraction step (the regex search that decides *which* string
``parse`` converts) on every response, replicating ``parse`` line for line, and memoises everything
after it, keyed by exactly what that step found: the conversion outcome of each candidate and the
verdict per (gold, extracted answer). Objects handed to ``verify`` are the ones ``parse`` would return,
so verdicts are identical to plain serial math-verify (tests/test_rewards.py and
benchmarks/bench_rewards.py check this item for item). Exact accelerations on top: literal prefilters
and a safe scan start for math-verify's regexes, and ANTLR's two-stage (SLL, then LL) parse for
latex2sympy.

On any other math-verify version the replica is not used: :func:`fast_path_available` logs a one-time
warning naming both versions and the grader calls ``math_verify.parse`` itself per item (same
verdicts, no conversion / verdict memo, several times slower).
"""

# A bad item must never raise out of scoring: the blind excepts below are the contract, not sloppiness.
# ruff: noqa: BLE001

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from itertools import groupby
from typing import NamedTuple

from .memo import _LRU, _MISS

logger = logging.getLogger("dars.rewards")

STATUSES = ("ok", "no-answer", "timeout", "error")
_OK, _NO_ANSWER, _TIMEOUT, _ERROR = range(4)

# math-verify versions whose ``parse`` control flow _Grader.extract replicates (checked at run time;
# any other version falls back to calling math_verify.parse itself per item: exact but slower).
_REPLICATED_MATH_VERIFY = ("0.9.0",)

_MAX_EXTRACTED_CHARS = 1000  # BatchScores.extracted is cut to this length
_MAX_KEY_CHARS = 4096  # memo entries whose key is longer than this are not stored (bounded memory)


def _math_verify_version() -> str:
    try:
        return importlib.metadata.version("math-verify")
    except Exception:
        return "unknown"


_VERSION_WARNED = False


def fast_path_available() -> bool:
    """True when the installed math-verify is one the replica mirrors; else warns (once per process)."""
    global _VERSION_WARNED
    version = _math_verify_version()
    if version in _REPLICATED_MATH_VERIFY:
        return True
    if not _VERSION_WARNED:
        _VERSION_WARNED = True
        logger.warning(
            "dars.rewards: math-verify %s is installed but the fast parse replica mirrors %s; grading "
            "with math_verify.parse itself (same verdicts, several times slower)",
            version,
            ", ".join(_REPLICATED_MATH_VERIFY),
        )
    return False


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


# Literal prefilters. Every match of math-verify's "answer" patterns starts with the (case-insensitive)
# literal the pattern starts with, and every match of its two \boxed patterns contains "\boxed{". A
# pattern cannot match a text without its literal, and an "answer" pattern cannot match before the
# literal's first occurrence, so skipping the pattern, or starting its scan there, changes nothing.
# The literal is searched with the same case folding as the pattern's (?i:...) group (Unicode: "ſ" ~
# "s", ...); in an ASCII text that folding is plain ASCII lower-casing, so there ``text.lower().find``
# gives the same answer several times faster than an IGNORECASE regex search.
_ANSWER_PREFIXES = (
    ("(?i:final answer is)", "final answer is"),
    ("(?i:final answer.{0,100}?)", "final answer"),
    ("(?i:answer)", "answer"),
)
_BOXED_SRC = "\\\\boxed{"  # how the literal \boxed{ is written inside math-verify's regex sources


class _Prefilter(NamedTuple):
    literal: str  # lower-case ASCII where case-insensitive
    search: re.Pattern | None  # case-insensitive: the literal as an IGNORECASE regex (for non-ASCII texts)
    anchored: bool  # every match of the pattern starts with the literal


@functools.cache
def _prefilter_of(pattern) -> _Prefilter | None:
    """A literal every match of ``pattern`` contains, or None."""
    src = pattern.pattern
    for prefix, literal in _ANSWER_PREFIXES:
        if src.startswith(prefix):
            return _Prefilter(literal, re.compile(re.escape(literal), re.IGNORECASE), True)
    return _Prefilter("\\boxed{", None, False) if _BOXED_SRC in src else None


def _literal_at(prefilter: _Prefilter, text: str, folded: list) -> int:
    """Index of the prefilter literal's first occurrence in ``text``, or -1 (``folded``: text.lower())."""
    if prefilter.search is None:  # case-sensitive
        return text.find(prefilter.literal)
    if not text.isascii():  # Unicode case folding ("ſ" matches "s"): only the regex knows it
        match = prefilter.search.search(text)
        return -1 if match is None else match.start()
    if not folded:
        folded.append(text.lower())  # ASCII: same length, same indices
    return folded[0].find(prefilter.literal)


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
            raise e  # math-verify's code, kept line for line


class _ParseReplica:
    """``math_verify.parse`` with memoisation that cannot change its output (verdicts: grader._Grader).

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
    entries are small and can be shared between processes (see pool._SharedCache), objects stay local.
    """

    def __init__(self, cache_size: int = 1_000_000, fast: bool | None = None):
        from math_verify import parse  # noqa: F401  (import once, early)
        from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig, extract_expr, extract_match

        self._LatexCfg, self._ExprCfg = LatexExtractionConfig, ExprExtractionConfig
        self._extract_expr, self._extract_match_mv = extract_expr, extract_match
        _quiet_math_verify()
        if fast is None:
            fast = fast_path_available()
        self.fast = bool(fast)
        small = min(cache_size, 200_000)
        self.norm_memo = _LRU(small)
        self.outcome_memo = _LRU(small)
        self.object_memo = _LRU(small)
        self.learned: list | None = None  # when a list, new outcome / verdict entries are appended
        self.stats = {"items": 0, "verify_calls": 0, "verdict_hits": 0, "convert_calls": 0}

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
            is_percentage = True if (pct_name in percent_names and match.group(pct_name)) else False  # noqa: SIM210  (as in math-verify)
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
            return (
                None,
                _MAX_KEY_CHARS + 1,
                ("plain", preds),
                None,
                (strs[0] if strs else (str(preds[0]) if preds else "")),
            )
        literal_at: dict = {}
        folded: list = []
        local: dict = {}

        def scan_start(pattern) -> int:
            """-1 where ``pattern`` cannot match ``text``; else a position no match starts before."""
            prefilter = _prefilter_of(pattern)
            start = 0
            if prefilter is not None:
                at = literal_at.get(prefilter)
                if at is None:
                    at = literal_at[prefilter] = _literal_at(prefilter, text, folded)
                if at < 0:
                    return -1
                if prefilter.anchored:
                    start = at
            if pattern in _BOXED_ENV_PATTERNS:
                start = max(start, _boxed_env_scan_start(text))
            return start

        def matches_of(patterns_group):
            """(match, start, end, target type) of every match of the group's patterns, in pattern order."""
            for pattern, target_type, _ in patterns_group:
                start = scan_start(pattern)
                if start >= 0:
                    for match in pattern.finditer(text, start):
                        yield match, match.start(), match.end(), target_type

        try:
            # == math_verify.parser.extract_target_from_pred(text, regexes, "first_match", "any_match")
            fallbacks = []
            winner = None
            for _, patterns_group in _regex_groups():
                matches_with_pos = sorted(matches_of(patterns_group), key=lambda x: (x[2], -x[1]), reverse=True)
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
