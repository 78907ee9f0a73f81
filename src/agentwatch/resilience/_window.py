"""A time-based sliding window of two counters, shared by the ratio breaker and the retry budget."""

from __future__ import annotations

__all__ = ["SlidingCounts"]


class SlidingCounts:
    """Two counters summed over the last ``width`` seconds, in ``buckets`` time slices.

    Old slices are recycled lazily on the next write, so the window costs O(buckets) memory
    whatever the traffic. Not thread-safe: callers hold their own lock.
    """

    __slots__ = ("_first", "_second", "_slice", "_stamps")

    def __init__(self, width: float, buckets: int = 10) -> None:
        self._slice = width / buckets
        self._stamps = [-1] * buckets
        self._first = [0] * buckets
        self._second = [0] * buckets

    def add(self, now: float, first: int = 0, second: int = 0) -> None:
        index = int(now // self._slice)
        slot = index % len(self._stamps)
        if self._stamps[slot] != index:
            self._stamps[slot] = index
            self._first[slot] = 0
            self._second[slot] = 0
        self._first[slot] += first
        self._second[slot] += second

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now // self._slice) - len(self._stamps)
        first = second = 0
        for slot, stamp in enumerate(self._stamps):
            if stamp > oldest:
                first += self._first[slot]
                second += self._second[slot]
        return first, second

    def clear(self) -> None:
        self._stamps = [-1] * len(self._stamps)
