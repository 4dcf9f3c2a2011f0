"""The repository: every read and write of searches, trials, weights and measurements.

Each public method is one unit of work (one connection, one transaction, commit or roll back)
and returns the frozen records of :mod:`morphnas.core.records`; rows never leave this folder.
Database errors surface as domain errors (:mod:`morphnas.core.errors`): a lost connection is
:class:`UnavailableError`, a duplicate :class:`AlreadyExistsError`, and so on.

Concurrency. No unit of work calls out of storage or holds a lock across a call: an ask is
two units with the policy between them, run by the service
(:func:`morphnas.server.service.suggest_trials`). :meth:`Repository.read_suggest_state` reads a
snapshot with no lock and writes nothing; :meth:`Repository.store_plan` stores the plan in one
short transaction holding the search's lock (``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL; on
SQLite every writing unit of work begins IMMEDIATE, so writers serialise), from expiring leases
to storing the new trials, which makes trial numbers unique and gapless per search: the next
number is the search's ``trial_count``, read and advanced under that lock. If the search gained
trials since the snapshot, ``store_plan`` refuses the plan with :class:`StalePlan` and the
caller plans again (see :mod:`morphnas.storage._suggest`). The same path runs on SQLite and
PostgreSQL. Reports and heartbeats lock only their trial row.

Leases. A trial handed to a worker is ACTIVE until ``lease_expires_at``; heartbeats and
measurements renew the lease. Once it has expired, the next ``store_plan`` on the search (or
:meth:`Repository.expire_leases`) marks it STALE, and ``store_plan`` hands its architecture out
again, exactly once, as a new trial with the next number and the same initial weights.

Late reports. A worker whose lease ran out may still report: the STALE trial takes the reported
state and score and counts like any other (the work was done; throwing it away helps no one).
If its copy was already handed out, both trials end up with results of their own.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import exc as sa_exc

from morphnas.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    shown,
)
from morphnas.core.ids import check_id
from morphnas.core.records import (
    FINAL_STATES,
    Measurement,
    NewTrial,
    Search,
    SearchConfig,
    SearchSnapshot,
    Trial,
    TrialState,
    check_metrics,
)
from morphnas.storage import _engine
from morphnas.storage._blobs import insert_blob
from morphnas.storage._migrate import SchemaVersionError, prepare_schema
from morphnas.storage._observations import ObservationCache, load_observations
from morphnas.storage._rows import (
    config_to_json,
    expire,
    lock_search,
    metrics_to_json,
    put_weights,
    require_trial,
    search_record,
    search_row,
    trial_record,
    trial_row,
)
from morphnas.storage._suggest import Ask, StalePlan, SuggestState, read_state, store_plan
from morphnas.storage._tables import (
    measurements,
    searches,
    staged_weights,
    trial_weights,
    trials,
)
from morphnas.storage.training import TrainingStorage

__all__ = [
    "DEFAULT_URL",
    "WEIGHT_KINDS",
    "Repository",
    "SchemaVersionError",
    "StalePlan",
    "SuggestState",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "sqlite:///morphnas.db"
WEIGHT_KINDS = ("initial", "trained", "final")
_REPORTED_COLUMNS = (
    "state",
    "score",
    "reason",
    "lease_expires_at",
    "updated_at",
    "weights_sha256",
    "metrics",
    "measured_on",
)


class Repository(TrainingStorage):
    """Storage of morphnas on SQLite or PostgreSQL. Thread-safe: share one per process."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._checkpointer = _engine.background_checkpoints(engine)
        self._observation_cache = ObservationCache()

    def _unit(self, work: Callable[[Connection], T], *, write: bool) -> T:
        return _engine.run(self._engine, work, write=write)

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, create: bool = True) -> Repository:
        """Open the database at ``url``, upgrading its schema to this version if ``create``.

        ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``. Raises
        :class:`SchemaVersionError` on a schema written by a newer morphnas (or, with
        ``create=False``, an older one) and :class:`UnavailableError` if unreachable.
        """
        engine = _engine.make_engine(url)
        try:
            prepare_schema(engine, create=create)
        except sa_exc.DBAPIError as error:
            engine.dispose()
            domain = _engine.translate(error)
            if domain is None:
                raise
            raise domain from error
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._engine.dispose()

    def ping(self) -> None:
        """Return if the database answers; raise :class:`UnavailableError` if not."""
        self._unit(lambda c: c.execute(select(1)).scalar_one(), write=False)

    # ------------------------------------------------------------------ searches
    def create_search(self, config: SearchConfig, *, now: float | None = None) -> Search:
        search = Search(
            id=uuid.uuid4().hex,
            config=config,
            created_at=_now(now),
            size_cap_params=config.max_params,
        )
        values = {
            "id": search.id,
            "name": config.name,
            "config": config_to_json(config),
            "created_at": search.created_at,
            "size_cap_params": search.size_cap_params,
            "trial_count": 0,
            "stopped": False,
        }
        self._unit(lambda c: c.execute(insert(searches).values(values)), write=True)
        return search

    def get_search(self, search_id: str) -> Search:
        return self._unit(lambda c: search_row(c, search_id), write=False)

    def list_searches(self, page_size: int = 50, page_token: str = "") -> tuple[list[Search], str]:
        """Searches oldest first (by creation time, then id); returns (page, next token or "").

        Page sizes are the caller's to bound (the service does)."""
        query = select(searches).order_by(searches.c.created_at, searches.c.id).limit(page_size + 1)
        if page_token:
            created_at, last_id = _decode_token(page_token, float, str)
            query = query.where(
                or_(
                    searches.c.created_at > created_at,
                    and_(searches.c.created_at == created_at, searches.c.id > last_id),
                )
            )
        rows = self._unit(lambda c: c.execute(query).all(), write=False)
        page = [search_record(row) for row in rows[:page_size]]
        token = _encode_token(page[-1].created_at, page[-1].id) if len(rows) > page_size else ""
        return page, token

    def delete_search(self, search_id: str) -> None:
        """Delete a search with its trials, weights and measurements."""

        def work(c: Connection) -> None:
            lock_search(c, search_id)
            of_search = select(trials.c.id).where(trials.c.search_id == search_id)
            c.execute(delete(measurements).where(measurements.c.trial_id.in_(of_search)))
            c.execute(delete(trial_weights).where(trial_weights.c.trial_id.in_(of_search)))
            c.execute(delete(trials).where(trials.c.search_id == search_id))
            c.execute(delete(searches).where(searches.c.id == search_id))

        self._unit(work, write=True)

    def stop_search(self, search_id: str) -> Search:
        """Stop a search: no more suggestions; running trials are told to stop. Idempotent."""
        return self._update_search(search_id, lambda search: {"stopped": True})

    def lower_size_cap(self, search_id: str, params: int) -> Search:
        """Lower the search's parameter cap to ``params`` (never raises it)."""
        if params < 1:
            raise InvalidArgumentError(f"size cap must be at least 1 parameter, got {params}")
        return self._update_search(
            search_id, lambda search: {"size_cap_params": min(search.size_cap_params, params)}
        )

    def _update_search(
        self, search_id: str, change: Callable[[Search], Mapping[str, Any]]
    ) -> Search:
        def work(c: Connection) -> Search:
            search = lock_search(c, search_id)
            values = dict(change(search))
            c.execute(update(searches).where(searches.c.id == search_id).values(values))
            return dataclasses.replace(search, **values)

        return self._unit(work, write=True)

    # ------------------------------------------------------------------ suggest
    def read_suggest_state(
        self,
        search_id: str,
        worker_id: str,
        count: int,
        *,
        lease_seconds: float | None = None,
        now: float | None = None,
    ) -> SuggestState:
        """Step 1 of an ask: what ``worker_id`` holds, or the snapshot to plan ``count`` trials on.

        Takes no lock and writes nothing (leases are expired by :meth:`store_plan`). If the
        (non-empty) ``worker_id`` still holds ACTIVE trials, they are ``held`` and are the whole
        answer. Otherwise ``wanted`` new trials (the count, cut to the room left, less the STALE
        trials ``store_plan`` will re-issue first) are to be proposed on ``snapshot``, which
        holds every trial's observation (no blobs). ``lease_seconds`` (default: the search's)
        and ``now`` are those of the trials ``store_plan`` stores.

        Raises :class:`FailedPreconditionError` if the search is stopped and
        :class:`ResourceExhaustedError` once it has ``config.max_trials`` trials.
        """
        if lease_seconds is not None and not (math.isfinite(lease_seconds) and lease_seconds > 0):
            raise InvalidArgumentError(f"lease_seconds must be positive, got {lease_seconds}")
        ask = Ask(search_id, worker_id, count, lease_seconds, _now(now))
        return self._unit(lambda c: read_state(c, ask, self._observation_cache), write=False)

    def store_plan(
        self, state: SuggestState, proposals: Sequence[NewTrial], *, force: bool = False
    ) -> list[Trial]:
        """Step 2 of an ask: store the trials planned on ``state``, in one locked transaction.

        Expires the search's run-out leases; returns what the worker holds if it holds
        anything now; re-issues STALE trials first, each exactly once (a new trial with the
        next number, the same architecture and initial weights); then stores ``proposals``
        (fewer than ``state.wanted`` is fine) with the next numbers.

        Raises :class:`StalePlan`, storing nothing, if the search gained trials since ``state``
        was read or now wants more new trials than were planned; with ``force`` it stores them
        anyway (up to the number wanted now), numbered after the trials stored meanwhile.
        Raises :class:`InvalidArgumentError` for a proposal without an architecture or with a
        parent outside the search, and the errors of :meth:`read_suggest_state`.
        """
        return self._unit(lambda c: store_plan(c, state, proposals, force=force), write=True)

    def observations(self, search_id: str) -> SearchSnapshot:
        """The snapshot a policy would see now (no lock; for read-only views)."""

        def work(c: Connection) -> SearchSnapshot:
            search = search_row(c, search_id)
            index = load_observations(c, search_id, self._observation_cache)
            return SearchSnapshot(search, index.observations, index)

        return self._unit(work, write=False)

    # ------------------------------------------------------------------ trials
    def get_trial(self, trial_id: str) -> Trial:
        return self._unit(lambda c: trial_record(trial_row(c, trial_id)), write=False)

    def list_trials(
        self,
        search_id: str,
        *,
        states: Sequence[TrialState] = (),
        newer_than: int = -1,
        page_size: int = 100,
        page_token: str = "",
    ) -> tuple[list[Trial], str]:
        """Trials of a search by number, optionally only some states and numbers > newer_than."""
        after = newer_than
        if page_token:
            (last,) = _decode_token(page_token, int)
            after = max(after, last)
        query = (
            select(trials)
            .where(trials.c.search_id == search_id, trials.c.number > after)
            .order_by(trials.c.number)
            .limit(page_size + 1)
        )
        if states:
            query = query.where(trials.c.state.in_([TrialState(s).value for s in states]))

        def work(c: Connection) -> list[Row[Any]]:
            search_row(c, search_id)
            return list(c.execute(query).all())

        rows = self._unit(work, write=False)
        page = [trial_record(row) for row in rows[:page_size]]
        return page, _encode_token(page[-1].number) if len(rows) > page_size else ""

    def completed_trials(self, search_id: str) -> list[Trial]:
        """Every COMPLETED trial of a search, by number, in one read (what a Pareto front is
        chosen from; NotFoundError for an unknown search)."""
        query = (
            select(trials)
            .where(trials.c.search_id == search_id, trials.c.state == TrialState.COMPLETED.value)
            .order_by(trials.c.number)
        )

        def work(c: Connection) -> list[Trial]:
            search_row(c, search_id)
            return [trial_record(row) for row in c.execute(query)]

        return self._unit(work, write=False)

    def count_trials(self, search_id: str, states: Sequence[TrialState] = ()) -> int:
        query = select(func.count()).select_from(trials).where(trials.c.search_id == search_id)
        if states:
            query = query.where(trials.c.state.in_([TrialState(s).value for s in states]))

        def work(c: Connection) -> int:
            search_row(c, search_id)
            return int(c.execute(query).scalar_one())

        return self._unit(work, write=False)

    def count_searches(self) -> int:
        """How many searches exist (for the server's cap on searches)."""
        query = select(func.count()).select_from(searches)
        return self._unit(lambda c: int(c.execute(query).scalar_one()), write=False)

    def count_trials_by_state(self) -> dict[TrialState, int]:
        """Trials of every search by state: one grouped count (for the metrics gauge)."""
        query = select(trials.c.state, func.count()).group_by(trials.c.state)
        rows = self._unit(lambda c: c.execute(query).all(), write=False)
        return {TrialState(state): int(n) for state, n in rows}

    def load_weights(self, trial_id: str, kind: str) -> bytes | None:
        """A trial's ``"initial"``, ``"trained"`` or ``"final"`` weights (safetensors), or None.
        ``"final"``: the weights of a run's final fit of its best trial (see
        :meth:`store_final_weights`)."""
        if kind not in WEIGHT_KINDS:
            raise InvalidArgumentError(f"weights kind must be one of {WEIGHT_KINDS}, got {kind!r}")

        def work(c: Connection) -> bytes | None:
            data = c.execute(
                select(trial_weights.c.data).where(
                    trial_weights.c.trial_id == trial_id, trial_weights.c.kind == kind
                )
            ).scalar_one_or_none()
            if data is None:
                require_trial(c, trial_id)
            return None if data is None else bytes(data)

        return self._unit(work, write=False)

    def weights_header(self, trial_id: str, kind: str) -> tuple[str, int] | None:
        """(sha256, size) of a trial's stored weights of ``kind``, or None; reads no data."""
        if kind not in WEIGHT_KINDS:
            raise InvalidArgumentError(f"weights kind must be one of {WEIGHT_KINDS}, got {kind!r}")

        def work(c: Connection) -> tuple[str, int] | None:
            row = c.execute(
                select(trial_weights.c.sha256, trial_weights.c.size).where(
                    trial_weights.c.trial_id == trial_id, trial_weights.c.kind == kind
                )
            ).first()
            if row is None:
                require_trial(c, trial_id)
                return None
            return str(row.sha256), int(row.size)

        return self._unit(work, write=False)

    def read_weights_chunk(
        self, trial_id: str, kind: str, sha256: str, offset: int, size: int
    ) -> bytes | None:
        """``size`` bytes from ``offset`` of a trial's weights of ``kind`` (SQL ``substr``, so
        only the chunk leaves the database), or None when they are gone or are no longer the
        weights with ``sha256`` (final weights are replaced by a later final fit)."""

        def work(c: Connection) -> bytes | None:
            data = c.execute(
                select(func.substr(trial_weights.c.data, offset + 1, size)).where(
                    trial_weights.c.trial_id == trial_id,
                    trial_weights.c.kind == kind,
                    trial_weights.c.sha256 == sha256,
                )
            ).scalar_one_or_none()
            return None if data is None else bytes(data)

        return self._unit(work, write=False)

    def store_final_weights(self, trial_id: str, data: bytes) -> None:
        """Store (or replace) a trial's ``"final"`` weights: those of a final fit of its
        architecture on training + validation data. A trial's initial and trained weights never
        change; its final ones are replaced by a later final fit."""
        digest = hashlib.sha256(data).hexdigest()

        def work(c: Connection) -> None:
            require_trial(c, trial_id, lock=True)
            key = and_(trial_weights.c.trial_id == trial_id, trial_weights.c.kind == "final")
            c.execute(delete(trial_weights).where(key))
            c.execute(
                insert(trial_weights).values(
                    trial_id=trial_id, kind="final", sha256=digest, size=len(data), data=data
                )
            )

        self._unit(work, write=True)

    def stage_weights(
        self, trial_id: str, sha256: str, data: bytes | memoryview, now: float | None = None
    ) -> None:
        """Keep uploaded weights until a report names them by ``sha256`` (idempotent)."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidArgumentError("staged weights do not match their sha256")
        at = _now(now)

        def work(c: Connection) -> None:
            require_trial(c, trial_id, lock=True)
            key = and_(staged_weights.c.trial_id == trial_id, staged_weights.c.sha256 == sha256)
            if c.execute(select(staged_weights.c.size).where(key)).first() is None:
                row = {"trial_id": trial_id, "sha256": sha256, "size": len(data), "created_at": at}
                insert_blob(c, staged_weights, row, "data", data, key=("trial_id", "sha256"))

        self._unit(work, write=True)

    def load_staged_weights(self, trial_id: str, sha256: str) -> bytes | None:
        """Weights staged for a trial under ``sha256``, or None."""

        def work(c: Connection) -> bytes | None:
            data = c.execute(
                select(staged_weights.c.data).where(
                    staged_weights.c.trial_id == trial_id, staged_weights.c.sha256 == sha256
                )
            ).scalar_one_or_none()
            if data is None:
                require_trial(c, trial_id)
            return None if data is None else bytes(data)

        return self._unit(work, write=False)

    def drop_spent_staged_weights(self) -> int:
        """Delete uploads staged for trials that are final now (their report did not use them:
        a report that names staged weights drops its trial's own). Returns how many."""
        final = [s.value for s in FINAL_STATES]
        spent = (  # correlated: walks the (few) staged rows, looks each trial up by id
            select(trials.c.id)
            .where(trials.c.id == staged_weights.c.trial_id, trials.c.state.in_(final))
            .exists()
        )
        return self._unit(
            lambda c: int(c.execute(delete(staged_weights).where(spent)).rowcount), write=True
        )

    # ------------------------------------------------------------------ workers
    def report(
        self,
        trial_id: str,
        *,
        state: TrialState,
        score: float | None,
        reason: str = "",
        weights: bytes | None = None,
        worker_id: str = "",
        metrics: Mapping[str, float] | None = None,
        measured_on: str = "",
        now: float | None = None,
        spent_weights_sha256: str = "",
    ) -> tuple[Trial, bool]:
        """Store a trial's final result; returns (trial, changed).

        ``metrics``: named values measured with it (e.g. ``latency_ms``), on the machine
        ``measured_on``; checked by :func:`check_metrics` and part of what a repeat must match.

        COMPLETED needs a finite score; FAILED and INFEASIBLE take none (a non-finite one is
        dropped). Repeating the same report (state, score, reason and weights digest) is a no-op
        returning ``changed=False``; a different report on a final trial raises
        :class:`FailedPreconditionError`. ``spent_weights_sha256`` names weights by digest only:
        a retry of a report whose staged upload that report used up; it can only repeat a
        stored report. A non-empty ``worker_id`` must match the worker an ACTIVE trial was
        handed to.

        A late report (the trial is STALE: its lease ran out) is kept when its architecture has
        no result yet: the copy the trial was handed out as again (``reissued_as``, and that
        copy's copies) has not been reported. The copies still open are closed then (FAILED,
        reason "superseded ..."): a proposal has one result, the first to arrive. When a copy
        has reported already, the late report is FAILED_PRECONDITION and nothing changes.
        """
        state = TrialState(state)
        if state not in FINAL_STATES:
            raise InvalidArgumentError(
                f"a report must be COMPLETED, FAILED or INFEASIBLE, not {state.value}"
            )
        score = _reported_score(state, score)
        sha = hashlib.sha256(weights).hexdigest() if weights is not None else ""
        checked = check_metrics(metrics or {}, measured_on)
        at = _now(now)

        values = {  # bound as new_<column> (see _REPORT_OPEN)
            "new_state": state.value,
            "new_score": score,
            "new_reason": reason,
            "new_lease_expires_at": None,
            "new_updated_at": at,
            "new_weights_sha256": sha,
            "new_metrics": metrics_to_json(checked),
            "new_measured_on": measured_on,
        }

        def work(c: Connection) -> tuple[Trial, bool]:
            if spent_weights_sha256:
                current = trial_record(trial_row(c, trial_id, lock=True))
                if current.state not in FINAL_STATES:
                    raise FailedPreconditionError(
                        f"no weights with sha256 {spent_weights_sha256} were uploaded for trial "
                        f"{current.number}; call UploadWeights first"
                    )
                return _repeat(current, state, score, reason, spent_weights_sha256), False
            # The usual case in one statement: an open trial (ACTIVE for this worker, or STALE)
            # takes the report. Anything else (unknown id, a repeat, another worker's trial)
            # matches no row and is sorted out below, under the lock, with the full row.
            row = c.execute(
                _REPORT_OPEN,
                {
                    "trial_id": trial_id,
                    "reporting_worker": worker_id,
                    "any_worker": not worker_id,
                    **values,
                },
            ).first()
            if row is None:
                current = trial_record(trial_row(c, trial_id, lock=True))
                if current.state in FINAL_STATES:
                    if checked and dict(current.metrics) != checked:
                        raise FailedPreconditionError(
                            f"trial {current.number} is already {current.state.value} "
                            "with other metrics"
                        )
                    return _repeat(current, state, score, reason, sha), False
                # Under the lock an open trial missed by _REPORT_OPEN is another worker's.
                assert worker_id and current.worker_id and worker_id != current.worker_id
                raise FailedPreconditionError(
                    f"trial {current.number} is leased to worker {current.worker_id!r}, "
                    f"not {worker_id!r}"
                )
            if row.reissued_as is not None:  # a late report: its copies yield to it
                _supersede_copies(c, row, at)
            if weights is not None:
                put_weights(c, trial_id, "trained", weights, sha)
                # Staged uploads of this trial are spent (others go in drop_spent_staged_weights).
                c.execute(_DROP_STAGED, {"trial_id": trial_id})
            return trial_record(row), True

        return self._unit(work, write=True)

    def heartbeat(self, trial_id: str, now: float | None = None) -> Trial:
        """Renew an ACTIVE trial's lease; :class:`FailedPreconditionError` if it is final."""
        at = _now(now)

        def work(c: Connection) -> Trial:
            row = trial_row(c, trial_id, lock=True)
            trial = trial_record(row)
            if trial.state is not TrialState.ACTIVE:
                raise FailedPreconditionError(
                    f"trial {trial.number} is {trial.state.value}: its lease cannot be renewed"
                )
            return _renew(c, trial, at + row.lease_seconds, at)

        return self._unit(work, write=True)

    def add_measurement(
        self,
        trial_id: str,
        step: int,
        value: float,
        name: str = "objective",
        now: float | None = None,
    ) -> tuple[Trial, bool]:
        """Store an intermediate value and renew the lease; returns (trial, should_stop).

        ``should_stop`` is True once the trial is no longer ACTIVE or its search is stopped.
        Sending the same (name, step, value) again is fine; a different value for a stored
        (name, step) raises :class:`AlreadyExistsError`.
        """
        if not isinstance(step, int) or step < 0:
            raise InvalidArgumentError(f"step must be a non-negative integer, got {step!r}")
        if not math.isfinite(value):
            raise InvalidArgumentError(f"measurement value must be finite, got {value}")
        if not 1 <= len(name) <= 100:
            raise InvalidArgumentError("measurement name must be 1 to 100 characters")
        at = _now(now)

        def work(c: Connection) -> tuple[Trial, bool]:
            row = trial_row(c, trial_id, lock=True)
            trial = trial_record(row)
            _put_measurement(c, trial, name, step, float(value), at)
            if trial.state is TrialState.ACTIVE:
                trial = _renew(c, trial, at + row.lease_seconds, at)
            stopped = c.execute(
                select(searches.c.stopped).where(searches.c.id == trial.search_id)
            ).scalar_one()
            return trial, bool(stopped) or trial.state is not TrialState.ACTIVE

        return self._unit(work, write=True)

    def list_measurements(self, trial_id: str) -> list[Measurement]:
        """A trial's measurements by name, then step."""

        def work(c: Connection) -> list[Measurement]:
            require_trial(c, trial_id)
            rows = c.execute(
                select(measurements)
                .where(measurements.c.trial_id == trial_id)
                .order_by(measurements.c.name, measurements.c.step)
            ).all()
            return [
                Measurement(
                    trial_id=row.trial_id,
                    step=row.step,
                    value=row.value,
                    name=row.name,
                    created_at=row.created_at,
                )
                for row in rows
            ]

        return self._unit(work, write=False)

    def expire_leases(self, now: float | None = None) -> int:
        """Mark every ACTIVE trial whose lease has run out STALE; returns how many."""
        at = _now(now)
        return self._unit(lambda c: expire(c, at, true()), write=True)

    def learning_curves(
        self, trial_id: str, name: str, up_to_step: int
    ) -> dict[str, list[tuple[int, float]]]:
        """Curves of measurement ``name`` up to a step, for early stopping across trials: trial
        id → [(step, value)] by step, of the trial itself and of every COMPLETED trial of its
        search (those without a point at a step ≤ ``up_to_step`` are absent). One read over the
        measurements' primary key (trial, name, step) of the search's completed trials."""

        def work(c: Connection) -> dict[str, list[tuple[int, float]]]:
            search_id = select(trials.c.search_id).where(trials.c.id == trial_id).scalar_subquery()
            rows = c.execute(
                select(measurements.c.trial_id, measurements.c.step, measurements.c.value)
                .join(trials, trials.c.id == measurements.c.trial_id)
                .where(
                    trials.c.search_id == search_id,
                    or_(trials.c.state == TrialState.COMPLETED.value, trials.c.id == trial_id),
                    measurements.c.name == name,
                    measurements.c.step <= up_to_step,
                )
                .order_by(measurements.c.trial_id, measurements.c.step)
            )
            curves: dict[str, list[tuple[int, float]]] = {}
            for row in rows:
                curves.setdefault(row.trial_id, []).append((row.step, row.value))
            return curves

        return self._unit(work, write=False)

    def best_completed_trials(self, search_ids: Sequence[str]) -> dict[str, Trial]:
        """Per search id: its COMPLETED trial with the highest score, the lowest number on ties
        (searches without a completed trial, or unknown ids, are left out). One unit of work."""
        query = (
            select(trials)
            .where(
                trials.c.search_id == bindparam("search_id"),
                trials.c.state == TrialState.COMPLETED.value,
                trials.c.score.is_not(None),
            )
            .order_by(trials.c.score.desc(), trials.c.number)
            .limit(1)
        )

        def work(c: Connection) -> dict[str, Trial]:
            found = {}
            for search_id in dict.fromkeys(search_ids):
                row = c.execute(query, {"search_id": search_id}).first()
                if row is not None:
                    found[search_id] = trial_record(row)
            return found

        return self._unit(work, write=False)


# ---------------------------------------------------------------------- trial helpers
#: A report on an open trial: STALE (a late worker), or ACTIVE and leased to the reporting
#: worker (or to no one, or the report names no worker). Returns the updated row.
_REPORT_OPEN = (
    update(trials)
    .where(
        trials.c.id == bindparam("trial_id"),
        or_(
            trials.c.state == TrialState.STALE.value,
            and_(
                trials.c.state == TrialState.ACTIVE.value,
                or_(
                    bindparam("any_worker", type_=Boolean),
                    trials.c.worker_id.is_(None),
                    trials.c.worker_id == "",
                    trials.c.worker_id == bindparam("reporting_worker"),
                ),
            ),
        ),
    )
    .values({name: bindparam(f"new_{name}") for name in _REPORTED_COLUMNS})
    .returning(*trials.c)
)


_DROP_STAGED = delete(staged_weights).where(staged_weights.c.trial_id == bindparam("trial_id"))


def _reported_score(state: TrialState, score: float | None) -> float | None:
    if state is TrialState.COMPLETED:
        if score is None or not math.isfinite(score):
            raise InvalidArgumentError(f"a COMPLETED trial needs a finite score, got {score}")
        return float(score)
    return float(score) if score is not None and math.isfinite(score) else None


def _supersede_copies(c: Connection, reported: Row[Any], now: float) -> None:
    """Close the open copies of a trial that reported late; FailedPreconditionError (rolling
    the report back) when a copy has its own result. Copies form a chain: a copy whose lease
    ran out was handed out again in turn."""
    copy_id = reported.reissued_as
    while copy_id is not None:
        copy = trial_record(trial_row(c, copy_id, lock=True))
        if copy.state in FINAL_STATES:
            raise FailedPreconditionError(
                f"trial {reported.number} was handed out again as trial {copy.number} (its lease "
                f"ran out), which reported {copy.state.value} first; this late report is not kept"
            )
        c.execute(
            update(trials)
            .where(trials.c.id == copy.id)
            .values(
                state=TrialState.FAILED.value,
                score=None,
                reason=f"superseded: trial {reported.number}, handed out before, reported late",
                lease_expires_at=None,
                updated_at=now,
            )
        )
        copy_id = c.execute(
            select(trials.c.reissued_as).where(trials.c.id == copy.id)
        ).scalar_one_or_none()


def _repeat(current: Trial, state: TrialState, score: float | None, reason: str, sha: str) -> Trial:
    """The stored trial if this report repeats the stored one; else FailedPreconditionError."""
    if (current.state, current.score, current.reason, current.weights_sha256) == (
        state,
        score,
        reason,
        sha,
    ):
        return current
    detail = f" with score {current.score}" if current.score is not None else ""
    if current.reason:
        detail += f" ({current.reason})"
    raise FailedPreconditionError(
        f"trial {current.number} is already {current.state.value}{detail}"
    )


def _renew(c: Connection, trial: Trial, expires: float, now: float) -> Trial:
    c.execute(
        update(trials)
        .where(trials.c.id == trial.id)
        .values(lease_expires_at=expires, updated_at=now)
    )
    return dataclasses.replace(trial, lease_expires_at=expires, updated_at=now)


def _put_measurement(
    c: Connection, trial: Trial, name: str, step: int, value: float, now: float
) -> None:
    key = and_(
        measurements.c.trial_id == trial.id,
        measurements.c.name == name,
        measurements.c.step == step,
    )
    stored = c.execute(select(measurements.c.value).where(key)).scalar_one_or_none()
    if stored is None:
        c.execute(
            insert(measurements).values(
                trial_id=trial.id, name=name, step=step, value=value, created_at=now
            )
        )
    elif stored != value:
        raise AlreadyExistsError(
            f"trial {trial.number} already has {name!r} = {stored} at step {step}, not {value}"
        )


# ---------------------------------------------------------------------- small helpers
def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


def _encode_token(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


#: The tokens this repository issues are base64 of a short JSON list (a number, or a time and
#: an id); a longer one was not issued here.
MAX_PAGE_TOKEN_CHARS = 200
_MAX_INTEGER = 2**63 - 1  # the largest value of an SQL BIGINT (and of SQLite's INTEGER)


def _decode_token(token: str, *kinds: type) -> tuple[Any, ...]:
    """The values of a page token this repository issued: one per ``kinds``, each of that kind
    and in range (int: 0 to 2**63 - 1; float: finite; str: an id). A token is the caller's
    bytes: anything else (too long, not base64 or JSON, nested, a float that overflows, an
    integer beyond SQL's) is InvalidArgumentError."""
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError(f"longer than {MAX_PAGE_TOKEN_CHARS} characters")
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        return tuple(_token_value(kind, value) for kind, value in zip(kinds, values, strict=True))
    except (
        ValueError,  # also json's JSONDecodeError, binascii.Error and UnicodeDecodeError
        TypeError,
        OverflowError,
        RecursionError,
        InvalidArgumentError,
    ):
        raise InvalidArgumentError(
            f"invalid page_token {shown(token)}: send back the next_page_token of the last page"
        ) from None


def _token_value(kind: type, value: Any) -> Any:
    if kind is int and type(value) is int and 0 <= value <= _MAX_INTEGER:
        return value
    if kind is float and type(value) in (int, float) and math.isfinite(value):
        return float(value)
    if kind is str and type(value) is str:
        return check_id(value, "page_token")
    raise ValueError(f"not a {kind.__name__} in range")
