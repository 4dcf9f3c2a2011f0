"""Immutable collections whose updated copies cost O(changes), not O(size).

A search's :class:`~morphnas.core.records.ObservationIndex` is replaced on every ask by a copy
with a trial or two changed. Copied as plain tuples, dicts and frozensets, that was O(trials):
0.75 ms of each ask on a 10,000-trial search. These keep most of their contents shared between
versions:

* :class:`LayeredSet` and :class:`LayeredMap`: a large base and a small layer of recent
  additions (or replacements), merged into a new base once the layer holds
  :data:`LAYER_MAX` entries;
* :class:`ChunkedSequence`: a tuple of chunks of at most :data:`CHUNK` items; replacing,
  appending or inserting an item copies one chunk and the (short) tuple of chunks.

Each reads like the plain collection it stands for (``Set``, ``Mapping``, ``Sequence``, with
equality against plain ones); none can be changed in place.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: Entries a recent layer holds before it is merged into its base (one O(size) merge every few
#: hundred updates; every update copies at most this many).
LAYER_MAX = 256
#: Items per chunk of a ChunkedSequence (a chunk that grows past twice this is split).
CHUNK = 256


class LayeredSet(Set[T]):
    """An immutable set: a frozen base and a small frozen layer of recent additions."""

    __slots__ = ("_base", "_recent")

    def __init__(self, base: Iterable[T] = (), recent: frozenset[T] = frozenset()) -> None:
        self._base: frozenset[T] = base if isinstance(base, frozenset) else frozenset(base)
        self._recent = recent  # disjoint from _base

    def __contains__(self, item: object) -> bool:
        return item in self._recent or item in self._base

    def __iter__(self) -> Iterator[T]:
        yield from self._base
        yield from self._recent

    def __len__(self) -> int:
        return len(self._base) + len(self._recent)

    def with_added(self, items: Iterable[T]) -> LayeredSet[T]:
        """This set with ``items`` added (itself when none is new)."""
        new = {item for item in items if item not in self}
        if not new:
            return self
        recent = self._recent | new
        if len(recent) > LAYER_MAX:
            return LayeredSet(self._base | recent)
        return LayeredSet(self._base, recent)


class LayeredMap(Mapping[K, V]):
    """An immutable mapping: a base and a small layer of recent changes (which may replace base
    values). Values are never None."""

    __slots__ = ("_base", "_recent", "_len")

    def __init__(
        self,
        base: Mapping[K, V] | None = None,
        recent: Mapping[K, V] | None = None,
        length: int | None = None,
    ) -> None:
        self._base: Mapping[K, V] = base if base is not None else {}
        self._recent: Mapping[K, V] = recent or {}
        if length is None:
            length = len(self._base) + sum(1 for key in self._recent if key not in self._base)
        self._len = length

    def __getitem__(self, key: K) -> V:
        found = self._recent.get(key)
        return found if found is not None else self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._recent or key in self._base

    def __iter__(self) -> Iterator[K]:
        yield from self._base
        yield from (key for key in self._recent if key not in self._base)

    def __len__(self) -> int:
        return self._len

    def with_changes(self, changes: Mapping[K, V]) -> LayeredMap[K, V]:
        """This mapping with ``changes`` set (itself when there are none)."""
        if not changes:
            return self
        recent = {**self._recent, **changes}
        if len(recent) > LAYER_MAX:
            return LayeredMap({**self._base, **recent})
        grown = sum(key not in self for key in changes)
        return LayeredMap(self._base, recent, self._len + grown)


class ChunkedSequence(Sequence[T]):
    """An immutable sequence held as a tuple of chunks (tuples of at most 2 × CHUNK items)."""

    __slots__ = ("_chunks", "_starts", "_len")

    def __init__(self, items: Iterable[T] = ()) -> None:
        flat = tuple(items)
        self._set(tuple(flat[i : i + CHUNK] for i in range(0, len(flat), CHUNK)))

    def _set(self, chunks: tuple[tuple[T, ...], ...]) -> None:
        starts, total = [], 0
        for chunk in chunks:
            starts.append(total)
            total += len(chunk)
        self._chunks, self._starts, self._len = chunks, starts, total

    @classmethod
    def _of_chunks(cls, chunks: tuple[tuple[T, ...], ...]) -> ChunkedSequence[T]:
        made = cls.__new__(cls)
        made._set(tuple(chunk for chunk in chunks if chunk))
        return made

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...
    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("sequence index out of range")
        k = bisect.bisect_right(self._starts, index) - 1
        return self._chunks[k][index - self._starts[k]]

    def __iter__(self) -> Iterator[T]:
        for chunk in self._chunks:
            yield from chunk

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # like a list: equal to tuples, so unhashable

    def __repr__(self) -> str:
        return f"ChunkedSequence({list(self)!r})"

    def replaced(self, index: int, item: T) -> ChunkedSequence[T]:
        """A copy with the item at ``index`` (0 <= index < len) replaced."""
        k = bisect.bisect_right(self._starts, index) - 1
        chunk = list(self._chunks[k])
        chunk[index - self._starts[k]] = item
        return self._with_chunk(k, [tuple(chunk)])

    def appended(self, item: T) -> ChunkedSequence[T]:
        """A copy with ``item`` added at the end."""
        if self._chunks and len(self._chunks[-1]) < CHUNK:
            return self._with_chunk(len(self._chunks) - 1, [(*self._chunks[-1], item)])
        return self._of_chunks((*self._chunks, (item,)))

    def inserted(self, item: T, key: Callable[[T], Any]) -> ChunkedSequence[T]:
        """A copy of this sequence, sorted by ``key``, with ``item`` inserted after its equals
        (as ``bisect.insort``)."""
        if not self._chunks:
            return self._of_chunks(((item,),))
        item_key = key(item)
        # The first chunk whose last item sorts after the new one (or the last chunk).
        k = bisect.bisect_right(self._chunks, item_key, key=lambda chunk: key(chunk[-1]))
        k = min(k, len(self._chunks) - 1)
        chunk = list(self._chunks[k])
        bisect.insort(chunk, item, key=key)
        if len(chunk) > 2 * CHUNK:
            return self._with_chunk(k, [tuple(chunk[:CHUNK]), tuple(chunk[CHUNK:])])
        return self._with_chunk(k, [tuple(chunk)])

    def _with_chunk(self, k: int, replacement: list[tuple[T, ...]]) -> ChunkedSequence[T]:
        if len(replacement) == 1 and len(replacement[0]) == len(self._chunks[k]):
            made = self.__class__.__new__(self.__class__)  # same sizes: the same starts
            made._chunks = (*self._chunks[:k], replacement[0], *self._chunks[k + 1 :])
            made._starts, made._len = self._starts, self._len
            return made
        return self._of_chunks((*self._chunks[:k], *replacement, *self._chunks[k + 1 :]))
