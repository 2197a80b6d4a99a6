"""Batched scoring under a per-item time budget, over ``pebble.ProcessPool`` (or in-process).

* Work is grouped by gold and cut into chunks; a chunk is one pebble task. The worker grades items
  until ``_SLICE_S`` has passed and returns what it did (the rest is queued again), so an honest task
  never runs longer than one slice plus one item, and the task's pebble timeout is
  ``timeout_s + _SLICE_S`` (``timeout_s`` for a one-item task).
* pebble kills a worker whose task is over its timeout (or notices one that died) and starts a fresh
  one. A killed or crashed chunk of several items is re-run one item per task, so each item gets its
  own budget: an item over budget scores 0 (``timeout``); an item whose worker dies twice scores 0
  (``error``). A gold that cannot be parsed within the budget marks all its items (found by a probe
  task, remembered across calls).
* The caller keeps a cache of conversion outcomes / verdicts per gold learned from all workers and
  sends it with each task of that gold, so any worker (also a fresh one) reuses them.
* ``num_workers=0`` grades in the calling process: math-verify's own signal timeouts are off (they
  fail outside the main thread), the budget is a SIGALRM in the main thread only (best effort).
"""

# A bad item must never raise out of scoring: the blind excepts below are the contract, not sloppiness.
# ruff: noqa: BLE001

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from .grader import _Grader
from .memo import _LRU
from .parse import _ERROR, _TIMEOUT

logger = logging.getLogger("dars.rewards")

_SLICE_S = 0.3  # a worker returns a chunk's results after this long (then at most one more item runs)
_STARTUP_TIMEOUT_S = 120.0  # no task started for this long: the workers cannot start


class _PoolUnavailable(RuntimeError):
    pass


def _default_num_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except Exception:
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------------
# in-process budget (best effort: main thread only, Python code only)


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


def grade_in_process(grader: _Grader, work: list[tuple[str, str]], timeout_s: float) -> list:
    """[(text, gold)] -> [(reward, status code, extracted)] in this process (see _Deadline)."""
    out = []
    for text, gold in work:
        res = None
        try:
            with _Deadline(timeout_s):
                res = grader.grade(text, gold)
        except _ItemTimeout:
            pass  # res stays None unless the alarm raced the end of a finished item
        except Exception:
            res = (0, _ERROR, "")
        out.append(res if res is not None else (0, _TIMEOUT, ""))
    return out


# ----------------------------------------------------------------------------------------------
# worker side (functions run by pebble in the worker processes)

_WORKER_GRADER: _Grader | None = None


def _init_worker(cache_size: int, fast: bool, parent_pid: int) -> None:
    """pebble initializer: one warm grader per worker process."""
    global _WORKER_GRADER
    # pebble stops a worker with SIGTERM and a Python handler, which cannot run while C code holds the
    # GIL (a huge sympy integer): it then waits 3 s before SIGKILL. The default action ends us at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _WORKER_GRADER = _Grader(cache_size, fast=fast)
    _WORKER_GRADER.warmup()

    def orphan_watch():  # a worker stuck on an item would outlive a SIGKILLed caller without this
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphan_watch, daemon=True).start()


def _score_chunk(gold: str, items: list, hints, slice_s: float):
    """Grade [(pos, text)] against gold until slice_s has passed -> (results, learned, stats delta)."""
    g = _WORKER_GRADER
    if hints:
        g.absorb(gold, *hints)
    g.learned = []
    base = dict(g.stats)
    g.parse_gold(gold)
    t0 = time.monotonic()
    results = []
    for pos, text in items:
        if results and time.monotonic() - t0 > slice_s:
            break  # the caller queues the rest again
        try:
            res = g.grade(text, gold)
        except Exception:
            res = (0, _ERROR, "")
        results.append((pos, *res))
    learned, g.learned = g.learned, None
    return results, learned, {k: v - base.get(k, 0) for k, v in g.stats.items()}


def _probe_gold(gold: str) -> bool:
    _WORKER_GRADER.parse_gold(gold)
    return True


# ----------------------------------------------------------------------------------------------
# caller side


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
        if self.max_entries <= 0 or not learned:
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
    """A pebble.ProcessPool of graders plus the scheduling described in the module docstring."""

    MAX_BROKEN = 3  # the pebble pool broke this many times in a row without a result: give up on it

    def __init__(self, num_workers: int, cache_size: int, timeout_s: float, fast: bool | None = None):
        from .parse import fast_path_available

        self.num_workers = num_workers
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self.fast = fast_path_available() if fast is None else bool(fast)
        self.pid = os.getpid()
        self.pebble = None
        self.broken_in_a_row = 0
        self.bad_golds = _LRU(10_000)  # gold -> status code (its parse timed out / crashed)
        self.good_golds = _LRU(100_000)  # golds known to parse within the budget
        self.shared = _SharedCache(cache_size)
        self.stats = {"killed": 0, "crashed": 0, "spawned": 0}

    def _start(self):
        import pebble

        if self.pebble is not None and not self.pebble.active:  # broke while idle (a worker died)
            self._broken()
        if self.pebble is None:
            # spawn: a fresh interpreter per worker (never fork a threaded trainer, e.g. a Ray actor)
            self.pebble = pebble.ProcessPool(
                max_workers=self.num_workers,
                initializer=_init_worker,
                initargs=(self.cache_size, self.fast, os.getpid()),
                context=multiprocessing.get_context("spawn"),
            )
            self.stats["spawned"] += self.num_workers
        return self.pebble

    def close(self) -> None:
        pool, self.pebble = self.pebble, None
        if pool is not None:
            pool.stop()
            pool.join(timeout=10)

    def run(self, work: list[tuple[str, str]]) -> list:
        """Grade [(text, gold)] -> [(reward, status code, extracted)], each item under the time budget."""
        n = len(work)
        out: list = [None] * n
        if n == 0:
            return out
        by_gold: dict[str, list[int]] = {}
        for pos, (_, gold) in enumerate(work):
            by_gold.setdefault(gold, []).append(pos)
        chunk = max(8, min(256, math.ceil(n / (self.num_workers * 4))))
        queue: deque = deque()  # (gold, [(pos, text)], attempts)
        for gold, positions in by_gold.items():
            for s in range(0, len(positions), chunk):
                queue.append((gold, [(p, work[p][0]) for p in positions[s : s + chunk]], 0))
        parked: dict[str, list] = {}  # gold -> failed tasks waiting for the gold's probe
        inflight: dict = {}  # future -> ("chunk", gold, items, attempts) | ("probe", gold)
        try:
            self._loop(queue, inflight, parked, out)
        except BaseException:  # e.g. KeyboardInterrupt: stop the tasks still running (pebble kills them)
            for fut in inflight:
                fut.cancel()
            raise
        return out

    def _loop(self, queue, inflight, parked, out) -> None:
        last_progress = time.monotonic()

        def resolve(items, code):
            for p, _ in items:
                out[p] = (0, code, "")

        while queue or inflight:
            pool = self._start()
            # keep every worker busy with one task queued behind it, not more: hints stay fresh and
            # a task's timeout starts only when a worker takes it
            while queue and len(inflight) < 2 * self.num_workers:
                gold, items, attempts = queue.popleft()
                code = self.bad_golds.get(gold)
                if code is not None:
                    resolve(items, code)
                    continue
                t = self.timeout_s + (_SLICE_S if len(items) > 1 else 0.0)
                fut = pool.schedule(_score_chunk, (gold, items, self.shared.hints(gold), _SLICE_S), timeout=t)
                inflight[fut] = ("chunk", gold, items, attempts)
            if not inflight:
                break
            done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
            if not done:
                if not any(f.running() for f in inflight) and time.monotonic() - last_progress > _STARTUP_TIMEOUT_S:
                    raise _PoolUnavailable(f"no reward worker started a task in {_STARTUP_TIMEOUT_S:.0f} s")
                continue
            last_progress = time.monotonic()
            broken = False
            for fut in done:
                task = inflight.pop(fut)
                try:
                    value = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if task[0] == "chunk":
                        queue.appendleft(task[1:])
                    else:
                        queue.extendleft(parked.pop(task[1], []))
                    continue
                except FutureTimeout:
                    self.stats["killed"] += 1
                    self.stats["spawned"] += 1  # pebble replaced the worker
                    self._failed(task, _TIMEOUT, queue, parked, inflight, resolve)
                    continue
                except Exception:  # the worker died (pebble.ProcessExpired) or the task itself raised
                    self.stats["crashed"] += 1
                    self.stats["spawned"] += 1
                    self._failed(task, _ERROR, queue, parked, inflight, resolve)
                    continue
                self.broken_in_a_row = 0
                if task[0] == "probe":
                    self.good_golds.put(task[1], True)
                    for t in parked.pop(task[1], []):
                        self._split_or_resolve(t, queue, resolve)
                    continue
                _, gold, items, attempts = task
                results, learned, counts = value
                self.good_golds.put(gold, True)  # the worker parsed it before grading
                self.shared.learn(gold, learned)
                for k, v in counts.items():
                    self.stats[k] = self.stats.get(k, 0) + v
                for pos, reward, code, extracted in results:
                    out[pos] = (reward, code, extracted)
                if len(results) < len(items):  # the slice ran out: the rest goes first, same gold
                    queue.appendleft((gold, items[len(results) :], attempts))
            if broken:  # e.g. an idle worker was killed: pebble gives up the pool; start a new one
                for fut, task in inflight.items():
                    fut.cancel()
                    if task[0] == "chunk":
                        queue.appendleft(task[1:])
                    else:
                        queue.extendleft(parked.pop(task[1], []))
                inflight.clear()
                self._broken()

    def _broken(self) -> None:
        """pebble gave the pool up (BrokenProcessPool): drop it; the next task starts a new one."""
        self.broken_in_a_row += 1
        self.stats["crashed"] += 1
        self.close()
        if self.broken_in_a_row >= self.MAX_BROKEN:
            raise _PoolUnavailable(f"reward worker pool broke {self.broken_in_a_row} times in a row")

    def _failed(self, task, code, queue, parked, inflight, resolve) -> None:
        """A task timed out (code _TIMEOUT) or its worker died (_ERROR)."""
        if task[0] == "probe":  # the gold itself does not parse within the budget / crashes the worker
            self.bad_golds.put(task[1], code)
            for t in parked.pop(task[1], []):
                resolve(t[1], code)
            return
        _, gold, items, attempts = task
        failed = (gold, items, attempts, code)
        if self.good_golds.get(gold) is not None:
            self._split_or_resolve(failed, queue, resolve)
            return
        # the gold or an item is to blame: find out with a probe that parses the gold alone
        if gold not in parked:
            fut = self.pebble.schedule(_probe_gold, (gold,), timeout=self.timeout_s)
            inflight[fut] = ("probe", gold)
        parked.setdefault(gold, []).append(failed)

    @staticmethod
    def _split_or_resolve(failed, queue, resolve) -> None:
        gold, items, attempts, code = failed
        if len(items) > 1:  # unknown which item was to blame: give each its own task and budget
            queue.extendleft((gold, [it], 0) for it in reversed(items))
        elif code == _ERROR and attempts == 0:  # a crash may be transient (OOM killer): retry once
            queue.appendleft((gold, items, 1))
        else:
            resolve(items, code)
