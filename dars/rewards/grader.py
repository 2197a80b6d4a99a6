"""0/1 verdicts with math-verify on top of the parse replica (parse.py), memoised per (gold, answer).

``verify(parse("$" + gold + "$"), parse(response))`` is a function of the gold string and of what the
replica's extraction step found (``pred_key``), so that pair keys the verdict memo: with 128 samples
per problem a repeated answer is converted and verified once. Runs in pool workers or in-process.
"""

# A bad item must never raise out of scoring: the blind excepts below are the contract, not sloppiness.
# ruff: noqa: BLE001

from __future__ import annotations

import contextlib

from .memo import _LRU, _MISS
from .parse import _ERROR, _MAX_EXTRACTED_CHARS, _MAX_KEY_CHARS, _NO_ANSWER, _OK, _ParseReplica


class _Grader(_ParseReplica):
    """math-verify grading with memoisation that cannot change a verdict (see _ParseReplica)."""

    def __init__(self, cache_size: int = 1_000_000, fast: bool | None = None):
        from math_verify import verify  # noqa: F401  (import once, early)

        super().__init__(cache_size, fast)
        self.gold_memo = _LRU(min(cache_size, 100_000))
        self.verdict_memo = _LRU(cache_size)

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

    # -- verdict --------------------------------------------------------------------------------
    def grade(self, text: str, gold: str) -> tuple[int, int, str]:
        """(reward 0/1, status code, extracted) for one response text against one gold string."""
        from math_verify import verify  # import once, early

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
        with contextlib.suppress(Exception):
            self.grade("The answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}")
