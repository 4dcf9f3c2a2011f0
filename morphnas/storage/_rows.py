"""Rows to records and back, and the row-level steps that several units of work share.

Private to ``morphnas.storage``: callers pass an open connection (the unit of work is theirs).
The statements of the ask/tell path are built once, with bound parameters: building a statement
costs more Python than SQLite takes to run it (SQLAlchemy caches the compiled form by statement).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, update

from morphnas.core.errors import NotFoundError
from morphnas.core.records import Policy, Search, SearchConfig, Trial, TrialState
from morphnas.storage._tables import searches, trial_weights, trials


def expire(c: Connection, now: float, where: Any) -> int:
    """Mark ACTIVE trials matching ``where`` whose lease ran out before ``now`` STALE; count."""
    result = c.execute(
        update(trials)
        .where(
            where,
            trials.c.state == TrialState.ACTIVE.value,
            trials.c.lease_expires_at < now,
        )
        .values(state=TrialState.STALE.value, lease_expires_at=None, updated_at=now)
    )
    return int(result.rowcount)


def put_weights(c: Connection, trial_id: str, kind: str, data: bytes, sha: str) -> None:
    """Store (or replace) a trial's weights of one kind."""
    c.execute(
        delete(trial_weights).where(
            trial_weights.c.trial_id == trial_id, trial_weights.c.kind == kind
        )
    )
    insert_weights(c, trial_id, kind, data, sha)


def insert_weights(c: Connection, trial_id: str, kind: str, data: bytes, sha: str) -> None:
    """Store a trial's weights of one kind it has none of yet."""
    c.execute(
        _INSERT_WEIGHTS,
        {"trial_id": trial_id, "kind": kind, "sha256": sha, "size": len(data), "data": bytes(data)},
    )


_INSERT_WEIGHTS = insert(trial_weights)
_TRIAL = select(trials).where(trials.c.id == bindparam("trial_id"))
_LOCK_TRIAL = _TRIAL.with_for_update(key_share=True)


def trial_row(c: Connection, trial_id: str, *, lock: bool = False) -> Row[Any]:
    row = c.execute(_LOCK_TRIAL if lock else _TRIAL, {"trial_id": trial_id}).first()
    if row is None:
        raise NotFoundError(f"no trial {trial_id!r}")
    return row


def require_trial(c: Connection, trial_id: str, *, lock: bool = False) -> None:
    query = select(trials.c.id).where(trials.c.id == trial_id)
    if lock:
        query = query.with_for_update(key_share=True)
    if c.execute(query).first() is None:
        raise NotFoundError(f"no trial {trial_id!r}")


def trial_record(row: Row[Any]) -> Trial:
    return Trial(
        id=row.id,
        search_id=row.search_id,
        number=row.number,
        state=TrialState(row.state),
        architecture=row.architecture,
        arch_hash=row.arch_hash,
        parent_id=row.parent_id,
        operations=tuple(json.loads(row.operations)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        score=row.score,
        reason=row.reason,
        worker_id=row.worker_id,
        lease_expires_at=row.lease_expires_at,
        has_trained_weights=bool(row.weights_sha256),
        weights_sha256=row.weights_sha256,
        num_params=row.num_params,
        metrics=metrics_from_json(row.metrics),
        measured_on=row.measured_on or "",
    )


def metrics_to_json(metrics: Mapping[str, float]) -> str | None:
    """A report's named metrics as stored (None: the report carried none)."""
    return json.dumps(dict(metrics), sort_keys=True) if metrics else None


def metrics_from_json(text: str | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in json.loads(text).items()} if text else {}


# ---------------------------------------------------------------------- search helpers
_SEARCH = select(searches).where(searches.c.id == bindparam("search_id"))
_LOCK_SEARCH = _SEARCH.with_for_update(key_share=True)


def search_row(c: Connection, search_id: str) -> Search:
    row = c.execute(_SEARCH, {"search_id": search_id}).first()
    if row is None:
        raise NotFoundError(f"no search {search_id!r}")
    return search_record(row)


def lock_search(c: Connection, search_id: str) -> Search:
    """The search, row-locked until the transaction ends (``FOR NO KEY UPDATE`` on PostgreSQL;
    a no-op on SQLite, where a writing unit of work holds the database's lock)."""
    row = c.execute(_LOCK_SEARCH, {"search_id": search_id}).first()
    if row is None:
        raise NotFoundError(f"no search {search_id!r}")
    return search_record(row)


def search_record(row: Row[Any]) -> Search:
    return Search(
        id=row.id,
        config=config_from_json(row.config),
        created_at=row.created_at,
        size_cap_params=int(row.size_cap_params),
        trial_count=row.trial_count,
        stopped=bool(row.stopped),
    )


def config_to_json(config: SearchConfig) -> str:
    data = dataclasses.asdict(config)
    data["input_shape"] = list(config.input_shape)
    data["policy"] = config.policy.value
    return json.dumps(data, sort_keys=True)


@lru_cache(maxsize=4096)
def config_from_json(text: str) -> SearchConfig:
    """Parse a stored config (cached: configs never change and SearchConfig is frozen).

    Keys this version does not know (written by a later one) are ignored.
    """
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    kwargs = {key: value for key, value in data.items() if key in known}
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    kwargs["policy"] = Policy(kwargs["policy"])
    kwargs["objectives"] = tuple(kwargs.get("objectives", ()))
    return SearchConfig(**kwargs)
