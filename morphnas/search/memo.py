"""Thread-safe, bounded memo tables that count their hits: the parts of :class:`SearchCache`.

Every table here is shared by the server's handler threads. Each has its own lock, held only
for a lookup or an insert (never while a value is built: two threads may both build a missing
value, and the later one is kept; values are pure functions of their keys, so either is right).

:class:`LRU`
    a least-recently-used mapping bounded by its number of entries.
:class:`GraphMemo`
    values remembered per graph *object* (by identity, weakly: an entry goes when its graph is
    collected), instead of writing them into the ``__dict__`` of the frozen graph.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
G = TypeVar("G")

_MISSING = object()


@dataclass(frozen=True)
class CacheStats:
    """What one table has done since it was made: lookups answered from it (``hits``), lookups
    that had to build the value (``misses``), and its size now and its bound."""

    hits: int
    misses: int
    entries: int
    capacity: int

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class LRU(Generic[K, V]):
    """A least-recently-used mapping of at most ``capacity`` entries (evicting only costs time)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value of ``key`` (made most recent), or None; counts a hit or a miss."""
        found = self._lookup(key)
        return None if found is _MISSING else found  # type: ignore[return-value]

    def get_or(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``, made by ``make()`` (outside the lock) and kept when missing
        (a None value is kept too)."""
        found = self._lookup(key)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        value = make()
        self.put(key, value)
        return value

    def _lookup(self, key: K) -> V | object:
        with self._lock:
            value = self._entries.get(key, _MISSING)
            if value is _MISSING:
                self._misses += 1
            else:
                self._entries.move_to_end(key)
                self._hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self.capacity)


class GraphMemo(Generic[G, V]):
    """A value per object, by identity, held weakly: nothing is written into the object (a
    frozen graph), and an entry whose object was collected is never returned. At most
    ``capacity`` entries, the least recent dropped first."""

    def __init__(self, capacity: int) -> None:
        self._lru: LRU[int, tuple[weakref.ref[G], V]] = LRU(capacity)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, obj: G) -> V | None:
        entry = self._lru.get(id(obj))
        # An id is reused once its object is gone: the weak reference tells the two apart.
        found = entry is not None and entry[0]() is obj
        with self._lock:
            if found:
                self._hits += 1
            else:
                self._misses += 1
        return entry[1] if found and entry is not None else None

    def put(self, obj: G, value: V) -> None:
        self._lru.put(id(obj), (weakref.ref(obj), value))

    def get_or(self, obj: G, make: Callable[[], V]) -> V:
        found = self.get(obj)
        if found is not None:
            return found
        value = make()
        self.put(obj, value)
        return value

    def clear(self) -> None:
        self._lru.clear()

    def stats(self) -> CacheStats:
        inner = self._lru.stats()
        with self._lock:
            return CacheStats(self._hits, self._misses, inner.entries, inner.capacity)
