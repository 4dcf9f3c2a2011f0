"""Storage of server-side training: uploaded datasets, training runs (the job queue) and events.

Mixed into :class:`morphnas.storage.repository.Repository`, so each method is one unit of work
like the others.

The job queue. A training run asks for ``trials`` trained trials of a search. A worker claims a
*slot* of a run (:meth:`TrainingStorage.claim_training_slot`) and then asks the search for a trial
with its own worker id, which locks the search and numbers the trial. Claiming locks the run's row
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers on many machines pass each other instead of
queueing; SQLite: the IMMEDIATE write lock). A slot is free while fewer than ``trials`` were
claimed, or while the search has a STALE trial that was not handed out again yet (a worker died:
its architecture must be retried, and that takes no new slot).

Compute budgets. A run may also have ``budget_seconds``: workers add each trial's training
seconds to the run's ``spent_seconds`` as they go (:meth:`TrainingStorage.charge_training_run`,
after every epoch), and once the budget is spent no slot is free. Such a run is handed out once
more when nothing of it is ACTIVE any longer, so that a worker closes it (DONE), even if the
worker of its last trial died.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, select, update

from morphnas.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    shown,
)
from morphnas.core.records import (
    DatasetInfo,
    RunState,
    SearchEvent,
    TrainingBudget,
    TrainingRun,
    TrialState,
)
from morphnas.storage._blobs import insert_blob
from morphnas.storage._rows import expire, lock_search
from morphnas.storage._tables import (
    dataset_blobs,
    datasets,
    events,
    searches,
    training_runs,
    trials,
)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


class TrainingStorage:
    """Datasets, training runs and events (see the module docstring)."""

    _unit: Callable[..., Any]

    # ------------------------------------------------------------------ datasets
    def create_dataset(
        self,
        *,
        name: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        num_examples: int,
        sha256: str,
        data: bytes | memoryview,
        now: float | None = None,
    ) -> DatasetInfo:
        info = DatasetInfo(
            id=uuid.uuid4().hex,
            name=name,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            num_examples=num_examples,
            sha256=sha256,
            size_bytes=len(data),
            created_at=_now(now),
        )

        def work(c: Connection) -> DatasetInfo:
            row = dataclasses.asdict(info) | {"input_shape": json.dumps(list(info.input_shape))}
            c.execute(insert(datasets).values(**row))
            insert_blob(
                c, dataset_blobs, {"dataset_id": info.id}, "data", data, key=("dataset_id",)
            )
            return info

        return self._unit(work, write=True)  # type: ignore[no-any-return]

    def get_dataset(self, dataset_id: str) -> DatasetInfo:
        def work(c: Connection) -> DatasetInfo:
            row = c.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
            if row is None:
                raise NotFoundError(f"no dataset {shown(dataset_id)}")
            return _dataset_record(row)

        return self._unit(work, write=False)  # type: ignore[no-any-return]

    def list_datasets(self) -> list[DatasetInfo]:
        def work(c: Connection) -> list[DatasetInfo]:
            rows = c.execute(select(datasets).order_by(datasets.c.created_at, datasets.c.id))
            return [_dataset_record(r) for r in rows]

        return self._unit(work, write=False)  # type: ignore[no-any-return]

    def delete_dataset(self, dataset_id: str) -> None:
        def work(c: Connection) -> None:
            in_use = c.execute(
                select(func.count()).where(
                    training_runs.c.dataset == dataset_id,
                    training_runs.c.state == RunState.RUNNING.value,
                )
            ).scalar_one()
            if in_use:
                raise FailedPreconditionError(
                    f"dataset {dataset_id!r} is used by a running training run; stop it first"
                )
            c.execute(delete(dataset_blobs).where(dataset_blobs.c.dataset_id == dataset_id))
            if c.execute(delete(datasets).where(datasets.c.id == dataset_id)).rowcount == 0:
                raise NotFoundError(f"no dataset {shown(dataset_id)}")

        self._unit(work, write=True)

    def load_dataset_bytes(self, dataset_id: str) -> bytes:
        def work(c: Connection) -> bytes:
            data = c.execute(
                select(dataset_blobs.c.data).where(dataset_blobs.c.dataset_id == dataset_id)
            ).scalar_one_or_none()
            if data is None:
                raise NotFoundError(f"no dataset {shown(dataset_id)}")
            return bytes(data)

        return self._unit(work, write=False)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ training runs
    def create_training_run(
        self,
        search_id: str,
        *,
        dataset: str,
        trials: int,
        budget: TrainingBudget,
        budget_seconds: float = 0.0,
        final_fit: str = "none",
        reserved_seconds: float = 0.0,
        resume: bool = False,
        now: float | None = None,
    ) -> TrainingRun:
        """A RUNNING run of the search (one at a time), with its ``run_started`` event.

        ``resume`` lets a stopped search train again (it is no longer stopped)."""
        at = _now(now)

        def work(c: Connection) -> TrainingRun:
            search = lock_search(c, search_id)
            if search.stopped and not resume:
                raise FailedPreconditionError(
                    f"search {search_id!r} is stopped (resume it to train it again)"
                )
            if search.stopped:
                c.execute(update(searches).where(searches.c.id == search_id).values(stopped=False))
            running = c.execute(
                select(training_runs.c.id).where(
                    training_runs.c.search_id == search_id,
                    training_runs.c.state == RunState.RUNNING.value,
                )
            ).first()
            if running is not None:
                raise FailedPreconditionError(
                    f"search {search_id!r} already has a running training run ({running.id}); "
                    "watch it or stop it first"
                )
            run = TrainingRun(
                id=uuid.uuid4().hex,
                search_id=search_id,
                dataset=dataset,
                trials=trials,
                claimed=0,
                budget=budget,
                state=RunState.RUNNING,
                first_number=search.trial_count,
                created_at=at,
                budget_seconds=budget_seconds,
                final_fit=final_fit,
                reserved_seconds=reserved_seconds,
            )
            c.execute(insert(training_runs).values(**_run_row(run)))
            # In the same transaction: a worker may claim the run at once, and its events must
            # come after this one.
            _insert_event(
                c,
                search_id,
                "run_started",
                {
                    "run_id": run.id,
                    "dataset": dataset,
                    "trials": trials,
                    "budget_seconds": budget_seconds,
                    **({"resumed": True} if resume else {}),
                },
                at,
            )
            return run

        return self._unit(work, write=True)  # type: ignore[no-any-return]

    def get_training_run(self, run_id: str) -> TrainingRun:
        def work(c: Connection) -> TrainingRun:
            row = c.execute(select(training_runs).where(training_runs.c.id == run_id)).first()
            if row is None:
                raise NotFoundError(f"no training run {run_id!r}")
            return _run_record(row)

        return self._unit(work, write=False)  # type: ignore[no-any-return]

    def latest_training_run(self, search_id: str) -> TrainingRun | None:
        def work(c: Connection) -> TrainingRun | None:
            row = c.execute(
                select(training_runs)
                .where(training_runs.c.search_id == search_id)
                .order_by(training_runs.c.created_at.desc(), training_runs.c.id.desc())
                .limit(1)
            ).first()
            return None if row is None else _run_record(row)

        return self._unit(work, write=False)  # type: ignore[no-any-return]

    def claim_training_slot(self, now: float | None = None) -> TrainingRun | None:
        """A running run with work to do (its slot counted), or None. See the module docstring."""
        at = _now(now)

        def work(c: Connection) -> TrainingRun | None:
            rows = c.execute(
                select(training_runs)
                .where(training_runs.c.state == RunState.RUNNING.value)
                .order_by(training_runs.c.created_at, training_runs.c.id)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                run = _run_record(row)
                expire(c, at, and_(trials.c.search_id == run.search_id))
                if run.budget_spent or run.trials == 0:  # 0: a run of a final fit only
                    if not _active(c, run):
                        return run  # nothing left to train: the worker closes it
                    continue
                if _stale_waiting(c, run) > 0:
                    return run
                if run.claimed < run.trials:
                    c.execute(
                        update(training_runs)
                        .where(training_runs.c.id == run.id)
                        .values(claimed=run.claimed + 1)
                    )
                    return dataclasses.replace(run, claimed=run.claimed + 1)
            return None

        return self._unit(work, write=True)  # type: ignore[no-any-return]

    def run_counts(self, run: TrainingRun) -> dict[TrialState, int]:
        """How many trials of the run are in each state."""

        def work(c: Connection) -> dict[TrialState, int]:
            rows = c.execute(
                select(trials.c.state, func.count())
                .where(trials.c.search_id == run.search_id, trials.c.number >= run.first_number)
                .group_by(trials.c.state)
            )
            return {TrialState(state): count for state, count in rows}

        return self._unit(work, write=False)  # type: ignore[no-any-return]

    def charge_training_run(self, run_id: str, seconds: float) -> TrainingRun:
        """Add ``seconds`` of training to the run's ``spent_seconds``; returns the run after it.

        One atomic ``UPDATE ... SET spent_seconds = spent_seconds + x``, so workers charging the
        same run at the same time each add their own seconds. Negative or non-finite amounts are
        refused (a bug in the caller)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidArgumentError(f"seconds to charge must be finite and >= 0, got {seconds}")

        def work(c: Connection) -> TrainingRun:
            if seconds > 0:
                c.execute(
                    update(training_runs)
                    .where(training_runs.c.id == run_id)
                    .values(spent_seconds=training_runs.c.spent_seconds + seconds)
                )
            row = c.execute(select(training_runs).where(training_runs.c.id == run_id)).first()
            if row is None:
                raise NotFoundError(f"no training run {run_id!r}")
            return _run_record(row)

        return self._unit(work, write=True)  # type: ignore[no-any-return]

    def finish_training_run(
        self,
        run_id: str,
        *,
        state: RunState,
        best_trial_id: str | None,
        test_accuracy: float | None,
        now: float | None = None,
    ) -> bool:
        """Close a RUNNING run; False when another worker closed it first."""
        at = _now(now)

        def work(c: Connection) -> bool:
            result = c.execute(
                update(training_runs)
                .where(
                    training_runs.c.id == run_id, training_runs.c.state == RunState.RUNNING.value
                )
                .values(
                    state=state.value,
                    finished_at=at,
                    best_trial_id=best_trial_id,
                    test_accuracy=test_accuracy,
                )
            )
            return bool(result.rowcount)

        return self._unit(work, write=True)  # type: ignore[no-any-return]

    def reserve_training_seconds(self, run_id: str, seconds: float) -> None:
        """Hold back ``seconds`` of the run's budget for its final fit (replaces the previous
        reservation: it is an estimate that the workers refine after each trial)."""
        self._unit(
            lambda c: c.execute(
                update(training_runs)
                .where(training_runs.c.id == run_id)
                .values(reserved_seconds=max(0.0, seconds))
            ),
            write=True,
        )

    def set_final_test_accuracy(self, run_id: str, accuracy: float | None) -> None:
        """Record the test accuracy of the final fit's model of a (DONE) run."""
        self._unit(
            lambda c: c.execute(
                update(training_runs)
                .where(training_runs.c.id == run_id)
                .values(final_test_accuracy=accuracy)
            ),
            write=True,
        )

    def stop_training(self, search_id: str, now: float | None = None) -> int:
        """Mark the search's running runs STOPPED; returns how many."""
        at = _now(now)

        def work(c: Connection) -> int:
            lock_search(c, search_id)
            result = c.execute(
                update(training_runs)
                .where(
                    training_runs.c.search_id == search_id,
                    training_runs.c.state == RunState.RUNNING.value,
                )
                .values(state=RunState.STOPPED.value, finished_at=at)
            )
            return int(result.rowcount)

        return self._unit(work, write=True)  # type: ignore[no-any-return]

    def release_trial(self, trial_id: str, now: float | None = None) -> None:
        """End an ACTIVE trial's lease now (a worker shutting down), so it is retried at once."""
        at = _now(now)

        def work(c: Connection) -> None:
            c.execute(
                update(trials)
                .where(trials.c.id == trial_id, trials.c.state == TrialState.ACTIVE.value)
                .values(lease_expires_at=at - 1e-3)
            )
            expire(c, at, trials.c.id == trial_id)

        self._unit(work, write=True)

    # ------------------------------------------------------------------ events
    def add_event(
        self, search_id: str, kind: str, payload: dict[str, Any], now: float | None = None
    ) -> None:
        at = _now(now)
        self._unit(lambda c: _insert_event(c, search_id, kind, payload, at), write=True)

    def list_events(self, search_id: str, after_id: int = 0, limit: int = 500) -> list[SearchEvent]:
        def work(c: Connection) -> list[SearchEvent]:
            rows = c.execute(
                select(events)
                .where(events.c.search_id == search_id, events.c.id > after_id)
                .order_by(events.c.id)
                .limit(limit)
            )
            return [
                SearchEvent(r.id, r.search_id, r.kind, json.loads(r.payload), r.created_at)
                for r in rows
            ]

        return self._unit(work, write=False)  # type: ignore[no-any-return]


def _insert_event(
    c: Connection, search_id: str, kind: str, payload: dict[str, Any], at: float
) -> None:
    c.execute(
        insert(events).values(
            search_id=search_id,
            kind=kind,
            payload=json.dumps(payload, sort_keys=True),
            created_at=at,
        )
    )


def _stale_waiting(c: Connection, run: TrainingRun) -> int:
    """STALE trials of the run's search not handed out again yet."""
    return int(
        c.execute(
            select(func.count()).where(
                trials.c.search_id == run.search_id,
                trials.c.state == TrialState.STALE.value,
                trials.c.reissued_as.is_(None),
            )
        ).scalar_one()
    )


def _active(c: Connection, run: TrainingRun) -> bool:
    """Whether a trial of the run is ACTIVE (still training)."""
    return (
        c.execute(
            select(trials.c.id)
            .where(
                trials.c.search_id == run.search_id,
                trials.c.number >= run.first_number,
                trials.c.state == TrialState.ACTIVE.value,
            )
            .limit(1)
        ).first()
        is not None
    )


def _dataset_record(row: Row[Any]) -> DatasetInfo:
    return DatasetInfo(
        id=row.id,
        name=row.name,
        input_shape=tuple(json.loads(row.input_shape)),
        num_classes=row.num_classes,
        num_examples=row.num_examples,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
    )


def _run_row(run: TrainingRun) -> dict[str, Any]:
    row = dataclasses.asdict(run)
    row["budget"] = json.dumps(dataclasses.asdict(run.budget), sort_keys=True)
    row["state"] = run.state.value
    return row


def _run_record(row: Row[Any]) -> TrainingRun:
    return TrainingRun(
        id=row.id,
        search_id=row.search_id,
        dataset=row.dataset,
        trials=row.trials,
        claimed=row.claimed,
        budget=TrainingBudget(**json.loads(row.budget)),
        state=RunState(row.state),
        first_number=row.first_number,
        created_at=row.created_at,
        finished_at=row.finished_at,
        best_trial_id=row.best_trial_id,
        test_accuracy=row.test_accuracy,
        budget_seconds=row.budget_seconds,
        spent_seconds=row.spent_seconds,
        final_fit=row.final_fit,
        final_test_accuracy=row.final_test_accuracy,
        reserved_seconds=row.reserved_seconds,
    )
