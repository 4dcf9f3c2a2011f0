"""Where the dashboard reads a search: a database or a running server, behind one interface.

:class:`Source` is the read-only port the web app and the static report use. Two adapters:

* :class:`DatabaseSource` reads through :class:`morphnas.storage.Repository`'s read methods
  (``--db URL``); the ONNX download uses the server's own export use case on that repository,
  so the file is the one ``morphnas export`` writes.
* :class:`ServerSource` reads through the SDK (``--server ADDR``, :mod:`morphnas.client`).
  A server offers per-epoch measurements only as ``epoch_finished`` events of server-side
  training (``WatchSearch``), so its learning curves are those events, read incrementally.

Both return the plain records below; nothing here writes. Pareto fronts come from the one
definition of the front, :func:`morphnas.server.pareto.front`: called on the repository's
trials by :class:`DatabaseSource`, through ``GetParetoFront`` by :class:`ServerSource`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from morphnas.core.errors import MorphnasError, NotFoundError, UnavailableError
from morphnas.core.graph import Graph
from morphnas.core.records import LATENCY

if TYPE_CHECKING:
    from morphnas.client import Client
    from morphnas.storage import Repository

log = logging.getLogger(__name__)

#: Trial states in display order.
STATES = ("ACTIVE", "COMPLETED", "FAILED", "INFEASIBLE", "STALE")
FINAL = frozenset({"COMPLETED", "FAILED", "INFEASIBLE"})
#: Most trials one page reads (a search may hold at most 1,000,000; the page draws them all).
MAX_TRIALS = 100_000
#: Pareto fronts a database source keeps (one per search and axis) before it starts afresh.
MAX_CACHED_FRONTS = 256


@dataclass(frozen=True)
class SearchView:
    """A search as the dashboard shows it."""

    id: str
    name: str
    policy: str
    stopped: bool
    created_at: float
    trial_count: int
    input_shape: tuple[int, ...]
    num_classes: int
    run_state: str | None = None  # of its latest server-side training run, if any
    dataset: str | None = None
    budget_seconds: float = 0.0
    spent_seconds: float = 0.0  # charged by the workers; 0 for ask/tell searches


@dataclass(frozen=True)
class TrialView:
    """A trial as the dashboard shows it. ``seconds``: from suggestion to the final report (what
    the cost model learns from too), None while it is open."""

    id: str
    number: int
    state: str
    score: float | None
    parent_id: str | None
    operations: tuple[dict[str, Any], ...]
    architecture: str
    num_params: int | None
    created_at: float
    updated_at: float
    reason: str = ""
    has_trained_weights: bool = False
    latency_ms: float | None = None  # the ``latency_ms`` metric of its report, if measured
    seconds: float | None = field(init=False)

    def __post_init__(self) -> None:
        final = self.state in FINAL
        object.__setattr__(
            self, "seconds", max(0.0, self.updated_at - self.created_at) if final else None
        )


#: trial id -> measurement name -> [(step, value)] by step.
Curves = dict[str, dict[str, list[tuple[int, float]]]]


class Source(Protocol):
    """The read-only port of the dashboard."""

    def searches(self) -> list[SearchView]: ...

    def search(self, search_id: str) -> SearchView: ...

    def trials(self, search_id: str) -> list[TrialView]: ...

    def trial(self, trial_id: str) -> tuple[SearchView, TrialView]: ...

    def curves(self, search_id: str, trial_ids: Sequence[str]) -> Curves: ...

    def onnx(self, trial_id: str) -> bytes: ...

    def pareto(self, search_id: str, objective: str) -> list[str]: ...

    def close(self) -> None: ...


@functools.lru_cache(maxsize=65_536)
def flops_of(architecture: str) -> int | None:
    """Forward FLOPs of one example (:attr:`Graph.flops`); None for an unreadable architecture."""
    try:
        return Graph.from_json(architecture).flops
    except (MorphnasError, ValueError, KeyError, TypeError):
        return None


class DatabaseSource:
    """Reads a search straight from its database (SQLite or PostgreSQL)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._export: Any = None
        self._lock = threading.Lock()
        # (search id, objective) -> (the completed trials' ids and update times, the front's ids)
        self._fronts: dict[tuple[str, str], tuple[tuple[tuple[str, float], ...], list[str]]] = {}
        self._fronts_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> DatabaseSource:
        from morphnas.storage import Repository

        return cls(Repository.from_url(url, create=False))

    def close(self) -> None:
        self.repo.close()

    def searches(self) -> list[SearchView]:
        found, token = self.repo.list_searches(page_size=1000)
        while token:
            more, token = self.repo.list_searches(page_size=1000, page_token=token)
            found += more
        return [self._view(s) for s in found]

    def search(self, search_id: str) -> SearchView:
        return self._view(self.repo.get_search(search_id))

    def _view(self, search: Any) -> SearchView:
        run = self.repo.latest_training_run(search.id)
        config = search.config
        return SearchView(
            id=search.id,
            name=config.name,
            policy=str(config.policy.value),
            stopped=search.stopped,
            created_at=search.created_at,
            trial_count=search.trial_count,
            input_shape=tuple(config.input_shape),
            num_classes=config.num_classes,
            run_state=run.state.value if run else None,
            dataset=run.dataset if run else None,
            budget_seconds=run.budget_seconds if run else 0.0,
            spent_seconds=run.spent_seconds if run else 0.0,
        )

    def trials(self, search_id: str) -> list[TrialView]:
        rows, _ = self.repo.list_trials(search_id, page_size=MAX_TRIALS)
        return [_trial_from_record(t) for t in rows]

    def trial(self, trial_id: str) -> tuple[SearchView, TrialView]:
        trial = self.repo.get_trial(trial_id)
        return self.search(trial.search_id), _trial_from_record(trial)

    def curves(self, search_id: str, trial_ids: Sequence[str]) -> Curves:
        curves: Curves = {}
        for trial_id in trial_ids:
            for m in self.repo.list_measurements(trial_id):
                curves.setdefault(trial_id, {}).setdefault(m.name, []).append((m.step, m.value))
        return curves

    def onnx(self, trial_id: str) -> bytes:
        """The trial's ONNX file, as ``morphnas export --trial`` writes it."""
        with self._lock:
            if self._export is None:  # the export use case, built once (imports torch)
                from morphnas.server.service import SearchService
                from morphnas.server.training import TrainingService

                self._export = TrainingService(SearchService(self.repo))
        return bytes(self._export.export_onnx("", trial_id, softmax=False))

    def pareto(self, search_id: str, objective: str) -> list[str]:
        """Ids of the trials on the search's front of score against ``objective`` (what
        ``SearchService.pareto_front`` answers; the search's latency limit applies).

        The page asks every second; the front is recomputed (every architecture parsed for its
        FLOPs) only when the completed trials changed since the last answer."""
        from morphnas.server import pareto

        search = self.repo.get_search(search_id)
        trials = self.repo.completed_trials(search.id)
        stamp = tuple((t.id, t.updated_at) for t in trials)
        with self._fronts_lock:
            cached = self._fronts.get((search.id, objective))
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        chosen = pareto.objectives_for(search, (objective,))
        limits = pareto.search_constraints(search, pareto.Constraints())
        ids = [t.id for t in pareto.front(trials, chosen, limits)]
        with self._fronts_lock:
            if len(self._fronts) >= MAX_CACHED_FRONTS:
                self._fronts.clear()
            self._fronts[(search.id, objective)] = (stamp, ids)
        return ids


def _trial_from_record(trial: Any) -> TrialView:
    return TrialView(
        id=trial.id,
        number=trial.number,
        state=str(trial.state.value),
        score=trial.score,
        parent_id=trial.parent_id,
        operations=tuple(trial.operations),
        architecture=trial.architecture,
        num_params=trial.num_params,
        created_at=trial.created_at,
        updated_at=trial.updated_at,
        reason=trial.reason,
        has_trained_weights=trial.has_trained_weights,
        latency_ms=trial.metrics.get(LATENCY),
    )


class ServerSource:
    """Reads a search from a running morphnas server through the SDK."""

    #: How long one incremental read of a search's events waits for more (seconds).
    EVENT_WAIT = 0.25

    def __init__(self, client: Client) -> None:
        self.client = client
        self._events: dict[str, tuple[int, Curves]] = {}  # search id -> (last event id, curves)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def searches(self) -> list[SearchView]:
        return [self._view(handle) for handle in self.client.list_searches()]

    def search(self, search_id: str) -> SearchView:
        return self._view(self.client.get_search(search_id))

    def _view(self, handle: Any) -> SearchView:
        info = handle.info
        try:
            run = handle.training_run()
        except NotFoundError:
            run = None
        return SearchView(
            id=info.id,
            name=info.name,
            policy=info.policy,
            stopped=info.stopped,
            created_at=info.created_at,
            trial_count=info.trial_count,
            input_shape=tuple(info.input_shape),
            num_classes=info.num_classes,
            run_state=run.state if run else None,
            dataset=run.dataset if run else None,
            budget_seconds=run.budget_seconds if run else 0.0,
            spent_seconds=run.spent_seconds if run else 0.0,
        )

    def trials(self, search_id: str) -> list[TrialView]:
        handle = self.client.get_search(search_id)
        return [_trial_from_info(t.info) for t in handle.trials(page_size=1000)]

    def trial(self, trial_id: str) -> tuple[SearchView, TrialView]:
        info = self.client.get_trial(trial_id).info
        return self.search(info.search_id), _trial_from_info(info)

    def curves(self, search_id: str, trial_ids: Sequence[str]) -> Curves:
        """The ``epoch_finished`` events of the search's server-side training, read from where
        the last call stopped (every metric of an epoch is a curve: val_accuracy, train_loss…)."""
        with self._lock:
            last, curves = self._events.get(search_id, (0, {}))
            handle = self.client.get_search(search_id)
            last = _read_epochs(handle, last, curves, self.EVENT_WAIT)
            self._events[search_id] = (last, curves)
            wanted = set(trial_ids)
            return {k: {n: list(p) for n, p in v.items()} for k, v in curves.items() if k in wanted}

    def onnx(self, trial_id: str) -> bytes:
        return self.client.export_onnx(None, trial_id=trial_id)

    def pareto(self, search_id: str, objective: str) -> list[str]:
        """Ids of the trials on the search's front of score against ``objective``
        (``GetParetoFront``)."""
        front = self.client.get_search(search_id).pareto([objective])
        return [t.id for t in front.trials]


def _read_epochs(handle: Any, after: int, curves: Curves, wait: float) -> int:
    """Fold the search's epoch events after event ``after`` into ``curves``; the last id read.
    The watch stream stays open while a search trains, so it is read until ``wait`` runs out."""
    last = after
    try:
        for event in handle.watch(after_event_id=after, timeout=wait):
            last = event.id
            if event.kind == "epoch_finished":
                _add_epoch(curves, event.payload)
    except UnavailableError:  # the SDK's name for the deadline; a lost server fails elsewhere
        pass
    return last


def _add_epoch(curves: Curves, payload: dict[str, Any]) -> None:
    trial_id, step = payload.get("trial_id"), payload.get("epoch")
    if not isinstance(trial_id, str) or not isinstance(step, int):
        return
    for name, value in payload.items():
        if name in ("trial_id", "number", "epoch") or not isinstance(value, int | float):
            continue
        curves.setdefault(trial_id, {}).setdefault(name, []).append((step, float(value)))


def _trial_from_info(info: Any) -> TrialView:
    return TrialView(
        id=info.id,
        number=info.number,
        state=info.state,
        score=info.score,
        parent_id=info.parent_id,
        operations=tuple(info.operations),
        architecture=info.architecture_json,
        num_params=info.num_params or None,
        created_at=info.created_at,
        updated_at=info.updated_at,
        reason=info.reason,
        has_trained_weights=info.has_trained_weights,
        latency_ms=info.metrics.get(LATENCY),
    )


def layers_of(architecture: str) -> list[dict[str, Any]]:
    """The architecture's layers (name, kind, inputs, sizes) for the trial page's drawing."""
    try:
        data = json.loads(architecture)
    except ValueError:
        return []
    layers = data.get("layers") if isinstance(data, dict) else None
    return [layer for layer in layers or () if isinstance(layer, dict)]


def ids_in(values: Iterable[str], limit: int) -> list[str]:
    """At most ``limit`` distinct non-empty ids, in order."""
    return list(dict.fromkeys(v for v in values if v))[:limit]
