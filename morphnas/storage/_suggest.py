"""Handing out trials in two steps around the policy: read a snapshot, store a plan under the lock.

The caller (:func:`morphnas.server.service.suggest_trials`) runs the policy between them, outside
any transaction, so that a policy that thinks for seconds holds no lock meanwhile:

1. :func:`read_state` reads, with no lock and without writing anything, what the asking worker
   already holds (a retried ask gets the same trials and no policy call), how many new trials
   the policy must propose (the count, cut to the room left, less the STALE trials to re-issue)
   and the snapshot for the policy.
2. :func:`store_plan` runs in one short transaction holding the search's lock: it expires
   leases, re-checks what the worker holds, re-issues STALE trials (each exactly once) and
   stores the policy's proposals with the next numbers. Numbers come from the search's
   ``trial_count``, read and advanced under the lock, so they are unique and gapless.

Between the two the search may move. ``store_plan`` stores the proposals only if the search still
has exactly the trials the policy saw (same ``trial_count``: trials are only ever added under the
lock, with gapless numbers) and needs no more of them than were planned; otherwise it raises
:class:`StalePlan` and the caller plans again. Scores reported in between are fine to miss: they
are what the policy would have seen had the report come a moment later. With ``force=True`` (the
caller's last attempt) a moved search takes the plan anyway, numbered after the trials that came
in between: numbers stay gapless and the ask ends, at the price of a plan made without seeing
those trials (its architecture may repeat one of them; the repository never judged
architectures, the policy does).

Both steps read the search's open trials (ACTIVE, and STALE not yet re-issued) once, and decide
expiry, what the worker holds and what to re-issue from that one result; full rows are read only
for trials returned as they are or re-issued.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, bindparam, insert, literal, select, update

from morphnas.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from morphnas.core.records import NewTrial, Search, SearchSnapshot, Trial, TrialState
from morphnas.storage._observations import ObservationCache, load_observations
from morphnas.storage._rows import expire, insert_weights, lock_search, search_row, trial_record
from morphnas.storage._tables import searches, trial_weights, trials


class StalePlan(Exception):
    """The search gained trials (or lost re-issuable ones) since its snapshot: plan again."""


@dataclass(frozen=True)
class Ask:
    """One ask's arguments."""

    search_id: str
    worker_id: str
    count: int
    lease_seconds: float | None
    now: float


@dataclass(frozen=True)
class SuggestState:
    """What :func:`read_state` found; handed back to :func:`store_plan` with the proposals.

    ``held``: ACTIVE trials the worker holds (the whole answer when not empty). ``wanted``: how
    many new trials to propose on ``snapshot`` (0: none, and ``snapshot`` is None).
    """

    ask: Ask
    trial_count: int  # the search's trial_count the snapshot was read at
    held: tuple[Trial, ...] = ()
    wanted: int = 0
    snapshot: SearchSnapshot | None = None


def read_state(c: Connection, ask: Ask, cache: ObservationCache) -> SuggestState:
    """Step 1 (no lock, no writes; see the module docstring)."""
    search = search_row(c, ask.search_id)
    _check_open(search)
    open_trials = OpenTrials.read(c, ask)
    if ask.worker_id and open_trials.held:
        return SuggestState(ask, search.trial_count, held=tuple(_full_trials(c, open_trials.held)))
    _check_room(search)
    reissues = len(open_trials.reissuable)
    wanted = min(ask.count, search.config.max_trials - search.trial_count) - reissues
    if wanted <= 0:
        return SuggestState(ask, search.trial_count)
    index = load_observations(c, ask.search_id, cache)
    # The policy sees the search as it will be once the re-issued copies are stored.
    snapshot = SearchSnapshot(
        replace(search, trial_count=search.trial_count + reissues), index.observations, index
    )
    return SuggestState(ask, search.trial_count, wanted=wanted, snapshot=snapshot)


def store_plan(
    c: Connection, state: SuggestState, proposals: Sequence[NewTrial], *, force: bool
) -> list[Trial]:
    """Step 2, under the search's lock (see the module docstring). Raises :class:`StalePlan`."""
    ask = state.ask
    search = lock_search(c, ask.search_id)
    _check_open(search)
    open_trials = OpenTrials.read(c, ask)
    if open_trials.expired:
        expire(c, ask.now, trials.c.id.in_(open_trials.expired))
    if ask.worker_id and open_trials.held:
        return _full_trials(c, open_trials.held)
    _check_room(search)
    issue = Issuer(
        c, search, ask.worker_id, ask.lease_seconds or search.config.lease_seconds, ask.now
    )
    room = min(ask.count, search.config.max_trials - search.trial_count)
    issue.reissue_stale(open_trials.reissuable[:room])
    wanted = room - len(issue.issued)
    if wanted > 0:
        moved = search.trial_count != state.trial_count or wanted > state.wanted
        if moved and not force:
            raise StalePlan()
        if state.snapshot is not None:
            issue.store_new(state.snapshot, list(proposals)[:wanted])
    issue.save_count()
    return issue.issued


@dataclass(frozen=True)
class OpenTrials:
    """Ids of a search's open trials, by what an ask does with them (each in number order).

    ``held``: ACTIVE with a live lease, leased to the asking worker. ``expired``: ACTIVE whose
    lease ran out (they turn STALE now). STALE trials not handed out again yet and the expired
    ones are ``reissuable``.
    """

    held: list[str]
    expired: list[str]
    reissuable: list[str]  # ``stale`` and ``expired`` together, in number order

    @classmethod
    def read(cls, c: Connection, ask: Ask) -> OpenTrials:
        # Sorted here, not by ORDER BY: ordering by number makes SQLite walk every trial of
        # the search through the (search_id, number) index instead of the few open ones.
        rows = sorted(
            c.execute(_OPEN_TRIALS, {"search_id": ask.search_id}).all(), key=lambda row: row.number
        )
        held: list[str] = []
        expired: list[str] = []
        reissuable: list[str] = []
        for _, trial_id, state, worker_id, lease_expires_at in rows:
            if state == TrialState.STALE.value:
                reissuable.append(trial_id)
            elif lease_expires_at is not None and lease_expires_at < ask.now:
                expired.append(trial_id)
                reissuable.append(trial_id)
            elif worker_id == ask.worker_id:
                held.append(trial_id)
        return cls(held, expired, reissuable)


# Statements of every ask, built once (building one costs more than SQLite takes to run it).
_OPEN_TRIALS = select(
    trials.c.number, trials.c.id, trials.c.state, trials.c.worker_id, trials.c.lease_expires_at
).where(
    trials.c.search_id == bindparam("search_id"),
    trials.c.state.in_([TrialState.ACTIVE.value, TrialState.STALE.value]),
    trials.c.reissued_as.is_(None),
)
_INSERT_TRIAL = insert(trials)
_SAVE_COUNT = (
    update(searches)
    .where(searches.c.id == bindparam("search_id"))
    .values(trial_count=bindparam("trial_count"))
)


def _full_trials(c: Connection, ids: Sequence[str]) -> list[Trial]:
    rows = c.execute(select(trials).where(trials.c.id.in_(ids)).order_by(trials.c.number))
    return [trial_record(row) for row in rows]


def _check_open(search: Search) -> None:
    if search.stopped:
        raise FailedPreconditionError(f"search {search.id!r} is stopped")


def _check_room(search: Search) -> None:
    if search.trial_count >= search.config.max_trials:
        raise ResourceExhaustedError(
            f"search {search.id!r} has reached its limit of {search.config.max_trials} trials"
        )


class Issuer:
    """Stores the trials of one ``suggest`` call, numbering them from the search's count."""

    def __init__(
        self, c: Connection, search: Search, worker_id: str, lease_seconds: float, now: float
    ) -> None:
        self.c = c
        self.search = search
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.now = now
        self.next_number = search.trial_count
        self.issued: list[Trial] = []

    def reissue_stale(self, ids: Sequence[str]) -> None:
        """Hand out again, as new trials, these STALE trials (in number order)."""
        if not ids:
            return
        rows = self.c.execute(
            select(
                trials.c.id,
                trials.c.architecture,
                trials.c.arch_hash,
                trials.c.parent_id,
                trials.c.operations,
                trials.c.num_params,
            )
            .where(trials.c.id.in_(ids))
            .order_by(trials.c.number)
        ).all()
        for row in rows:
            trial = self._insert(
                row.architecture,
                row.arch_hash,
                row.parent_id,
                tuple(json.loads(row.operations)),
                reissue_of=row.id,
                num_params=row.num_params,
            )
            self.c.execute(update(trials).where(trials.c.id == row.id).values(reissued_as=trial.id))
            self.c.execute(
                insert(trial_weights).from_select(
                    ["trial_id", "kind", "sha256", "size", "data"],
                    select(
                        literal(trial.id, type_=trials.c.id.type),
                        trial_weights.c.kind,
                        trial_weights.c.sha256,
                        trial_weights.c.size,
                        trial_weights.c.data,
                    ).where(trial_weights.c.trial_id == row.id, trial_weights.c.kind == "initial"),
                )
            )

    def store_new(self, snapshot: SearchSnapshot, proposals: Sequence[NewTrial]) -> None:
        known = snapshot.by_id
        for proposal in proposals:
            check_proposal(proposal, known, self.search.id)
            trial = self._insert(
                proposal.architecture,
                proposal.arch_hash,
                proposal.parent_id,
                tuple(proposal.operations),
                reissue_of=None,
                num_params=proposal.num_params,
            )
            insert_weights(
                self.c,
                trial.id,
                "initial",
                proposal.initial_weights,
                hashlib.sha256(proposal.initial_weights).hexdigest(),
            )

    def save_count(self) -> None:
        if self.next_number != self.search.trial_count:
            self.c.execute(
                _SAVE_COUNT, {"search_id": self.search.id, "trial_count": self.next_number}
            )

    def _insert(
        self,
        architecture: str,
        arch_hash: str,
        parent_id: str | None,
        operations: tuple[dict[str, Any], ...],
        *,
        reissue_of: str | None,
        num_params: int | None,
    ) -> Trial:
        trial = Trial(
            id=uuid.uuid4().hex,
            search_id=self.search.id,
            number=self.next_number,
            state=TrialState.ACTIVE,
            architecture=architecture,
            arch_hash=arch_hash,
            parent_id=parent_id,
            operations=operations,
            created_at=self.now,
            updated_at=self.now,
            worker_id=self.worker_id,
            lease_expires_at=self.now + self.lease_seconds,
            num_params=num_params,
        )
        self.c.execute(
            _INSERT_TRIAL,
            {
                "id": trial.id,
                "search_id": trial.search_id,
                "number": trial.number,
                "state": trial.state.value,
                "architecture": architecture,
                "arch_hash": arch_hash,
                "parent_id": parent_id,
                "operations": json.dumps(list(operations), sort_keys=True),
                "created_at": self.now,
                "updated_at": self.now,
                "score": None,
                "reason": "",
                "worker_id": self.worker_id,
                "lease_expires_at": trial.lease_expires_at,
                "lease_seconds": self.lease_seconds,
                "weights_sha256": "",
                "reissue_of": reissue_of,
                "reissued_as": None,
                "num_params": num_params,
            },
        )
        self.next_number += 1
        self.issued.append(trial)
        return trial


def check_proposal(proposal: NewTrial, known: Container[str], search_id: str) -> None:
    if not isinstance(proposal.architecture, str) or not proposal.architecture:
        raise InvalidArgumentError("a proposed trial needs an architecture")
    if proposal.parent_id is not None and proposal.parent_id not in known:
        raise InvalidArgumentError(
            f"proposed parent {proposal.parent_id!r} is not a trial of search {search_id!r}"
        )
