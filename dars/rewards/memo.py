"""The bounded memo tables of the reward grader (conversion outcomes, verdicts, golds): least
recently used entries go first, so memory stays bounded over a long run."""

from __future__ import annotations

from collections import OrderedDict


class _LRU:
    """A bounded least-recently-used mapping (OrderedDict based; not thread-safe)."""

    __slots__ = ("data", "maxsize")

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
