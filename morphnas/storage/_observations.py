"""Loading a search's observations cheaply, with a cache of the ones that can no longer change.

A policy reads every trial of a search on every ask. Architectures are kilobytes of JSON, so
re-reading and re-wrapping a thousand of them per ask would dominate its cost. An observation's
fields other than ``state`` and ``score`` never change, and its score is written exactly once,
when it leaves ACTIVE. So an observation read in a state other than ACTIVE is fully determined
by ``(trial id, state)``: each ask reads only ``(id, state)`` for all trials and fetches full
rows just for the pairs it has not seen. The database stays the truth; the cache only saves
work, and an entry from a rolled-back transaction can at worst be unused.

Incremental loads. Trial numbers are gapless and a final observation (COMPLETED, FAILED,
INFEASIBLE) never changes. So once a search's observations were loaded, the next load reads only
the trials that could have changed since: those that were ACTIVE or STALE, and those numbered
from the last count on. Everything else is the last tuple, reused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Connection, bindparam, select, union_all

from morphnas.core.records import Observation, ObservationIndex, TrialState
from morphnas.storage._rows import metrics_from_json
from morphnas.storage._tables import trials

_COLUMNS = (
    trials.c.id,
    trials.c.number,
    trials.c.architecture,
    trials.c.arch_hash,
    trials.c.state,
    trials.c.score,
    trials.c.parent_id,
    trials.c.weights_sha256,
    trials.c.created_at,
    trials.c.updated_at,
    trials.c.metrics,
)
_STATES = {state.value: state for state in TrialState}
#: Trials numbered from ``count`` on, and (a UNION, not an OR: each half then uses its own index
#: instead of a scan of the whole search) earlier ones among ``ids``.
_NEWER = select(*_COLUMNS).where(
    trials.c.search_id == bindparam("search_id"), trials.c.number >= bindparam("count")
)
_NEWER_OR_REOPENED = union_all(
    _NEWER,
    select(*_COLUMNS).where(
        trials.c.id.in_(bindparam("ids", expanding=True)), trials.c.number < bindparam("count")
    ),
)

#: Above this many unseen trials, one scan of the search beats a long ``IN (...)`` list.
_SCAN_THRESHOLD = 200


class ObservationCache:
    """A bounded, thread-safe LRU map ``(trial id, state) -> Observation`` of non-ACTIVE trials."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self._entries: OrderedDict[tuple[str, str], Observation] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()
        # search id -> its observations at the last load (see the module docstring).
        self._snapshots: OrderedDict[str, ObservationIndex] = OrderedDict()

    def lookup(self, keys: list[tuple[str, str]]) -> list[Observation | None]:
        with self._lock:
            found = [self._entries.get(key) for key in keys]
            for key, observation in zip(keys, found, strict=True):
                if observation is not None:
                    self._entries.move_to_end(key)
            return found

    def last(self, search_id: str) -> ObservationIndex | None:
        with self._lock:
            return self._snapshots.get(search_id)

    def remember(self, search_id: str, loaded: ObservationIndex | None) -> None:
        with self._lock:
            if loaded is None:
                self._snapshots.pop(search_id, None)
                return
            self._snapshots[search_id] = loaded
            self._snapshots.move_to_end(search_id)
            while len(self._snapshots) > 64:
                self._snapshots.popitem(last=False)

    def store(self, observations: list[Observation]) -> None:
        with self._lock:
            for observation in observations:
                if observation.state is not TrialState.ACTIVE:
                    self._entries[(observation.trial_id, observation.state.value)] = observation
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


def load_observations(c: Connection, search_id: str, cache: ObservationCache) -> ObservationIndex:
    """Every trial of the search as the policy sees it, by number (blobs are never read)."""
    last = cache.last(search_id)
    index = _load_changes(c, search_id, last) if last is not None else None
    if index is None:
        observations = _load(c, search_id, cache)
        index = ObservationIndex.of(observations)
        if index is None:  # a gap: numbering was being written while we read
            index = ObservationIndex.build(observations)
            cache.remember(search_id, None)
            return index
    cache.remember(search_id, index)
    return index


def _load_changes(c: Connection, search_id: str, last: ObservationIndex) -> ObservationIndex | None:
    """``last`` brought up to date by reading only what may have changed; None if unsure."""
    if len(last.open_ids) > _SCAN_THRESHOLD:
        return None
    params = {"search_id": search_id, "count": len(last.observations)}
    if last.open_ids:
        rows = c.execute(_NEWER_OR_REOPENED, {**params, "ids": list(last.open_ids)}).all()
    else:
        rows = c.execute(_NEWER, params).all()
    return last.updated([_observation(row) for row in rows])


def _load(c: Connection, search_id: str, cache: ObservationCache) -> tuple[Observation, ...]:
    keys = [
        (row[0], row[1])
        for row in c.execute(
            select(trials.c.id, trials.c.state)
            .where(trials.c.search_id == search_id)
            .order_by(trials.c.number)
        )
    ]
    found = cache.lookup(keys)
    missing = [key[0] for key, observation in zip(keys, found, strict=True) if observation is None]
    if not missing:
        return tuple(o for o in found if o is not None)
    fresh = {o.trial_id: o for o in _fetch(c, search_id, missing)}
    cache.store(list(fresh.values()))
    # A report may commit between the two reads (it does not take the search lock): prefer
    # the newer row, which carries its own state.
    result: list[Observation] = []
    for (trial_id, _), cached in zip(keys, found, strict=True):
        observation = fresh.get(trial_id, cached)
        if observation is not None:
            result.append(observation)
    return tuple(result)


def _fetch(c: Connection, search_id: str, ids: list[str]) -> list[Observation]:
    if len(ids) <= _SCAN_THRESHOLD:  # by primary key (a search_id filter misleads SQLite)
        query = select(*_COLUMNS).where(trials.c.id.in_(ids))
    else:
        query = select(*_COLUMNS).where(trials.c.search_id == search_id)
    return [_observation(row) for row in c.execute(query)]


def _observation(row: Any) -> Observation:
    return Observation(
        trial_id=row.id,
        number=row.number,
        architecture=row.architecture,
        arch_hash=row.arch_hash,
        state=_STATES[row.state],
        score=row.score,
        parent_id=row.parent_id,
        has_trained_weights=bool(row.weights_sha256),
        # A COMPLETED trial's row is last written by its report: suggestion to report.
        seconds=row.updated_at - row.created_at if row.state == "COMPLETED" else None,
        metrics=metrics_from_json(row.metrics),
    )
