"""Use cases of the ask/tell service: plain Python over the repository, the policy and the morphs.

Nothing here knows gRPC: the servicer converts requests, calls one method, converts the answer.
Nothing lives only in memory either: every decision is rebuilt from the repository, so a restarted
server (or another replica) continues where this one stopped.

An ask (:func:`suggest_trials`) is a protocol in three steps, the same on SQLite and PostgreSQL:
read the search's state with no lock held (what the worker already holds, or a snapshot and how
many trials to propose), run the policy and carry the parent's weights outside any transaction,
then store the plan in one short transaction under the search's lock, which numbers the trials.
If the search gained trials meanwhile, the store refuses the plan (:class:`StalePlan`) and the
ask plans again on a fresh snapshot; the last attempt stores its plan whatever happened
(numbered after the trials that came in between), so every ask ends. Asks of one search in this
process take turns (:class:`SearchTurns`), so they seldom outrun each other's plans.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from morphnas.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    WeightsError,
)
from morphnas.core.graph import Graph
from morphnas.core.ids import check_id, check_sha256
from morphnas.core.morphs import apply_path
from morphnas.core.records import (
    Measurement,
    NewTrial,
    Search,
    SearchConfig,
    SearchSnapshot,
    Trial,
    TrialState,
)
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import (
    ReadAt,
    SafetensorsLimits,
    Weights,
    check_weights,
    check_weights_blob,
    init_weights,
    weights_from_bytes,
    weights_to_bytes,
)
from morphnas.nn.datasets import NpzLimits
from morphnas.search.cache import SearchCache
from morphnas.search.policy import Proposal, propose
from morphnas.search.stopping import StoppingRule, should_stop
from morphnas.server import pareto
from morphnas.server.blobs import CHUNK_BYTES, ByteBudget, Upload
from morphnas.storage import Repository, StalePlan

log = logging.getLogger(__name__)

MAX_SUGGEST_COUNT = 64
#: Plans an ask makes at most: all but the last are stored only if the search did not move.
PLAN_ATTEMPTS = 4
#: A FAILED report whose reason contains one of these lowers the search's parameter cap.
OUT_OF_MEMORY_MARKERS = ("out of memory", "out-of-memory", "oom")


@dataclass(frozen=True)
class ServiceLimits:
    """Size limits the service enforces (the server's command line can change them)."""

    max_weights_bytes: int = 512 * 1024**2
    #: Tree-search expansions per proposal: a budget of work, so proposals are reproducible.
    #: None: scaled with the search's measured trial seconds (``morphnas.search.cost``).
    suggest_expansions: int | None = None
    #: Safety net on a suggest call's wall time (past it, proposals depend on the machine's
    #: speed). None: 20x the planned expansions' estimated time, at least 5 s per proposal.
    suggest_time_budget_s: float | None = None
    #: Memory for parsed weights of completed parents (a cache; 0 turns it off).
    weights_cache_bytes: int = 256 * 1024**2
    max_page_size: int = 1000
    max_searches: int = 100_000
    #: Largest dataset upload accepted (enforced by the dataset upload stream).
    max_dataset_bytes: int = 512 * 1024**2
    #: Early stopping across trials (ReportProgress answers should_stop); None turns it off.
    early_stopping: StoppingRule | None = StoppingRule()
    # Ceilings a client cannot raise (docs/operations.md, "Resource ceilings").
    #: Largest ``max_params`` a search may ask for (its seed must fit too).
    max_params: int = 20_000_000
    #: Largest ``max_memory_bytes`` (training-step estimate) a search may ask for.
    max_model_memory_bytes: int = 8 * 1024**3
    #: Largest input a search may declare: the product of its ``input_shape``.
    max_input_values: int = 1024**2
    #: Upload bytes held by all upload streams together (spooled to disk, read once to store).
    max_upload_bytes_in_flight: int = 512 * 1024**2
    #: Header size and tensor count of uploaded safetensors, checked before parsing.
    safetensors: SafetensorsLimits = SafetensorsLimits()
    #: Inflated size and deflate ratio of an uploaded .npz, checked while inflating.
    npz: NpzLimits = NpzLimits()


class WeightsCache:
    """A thread-safe LRU of parsed, read-only weight mappings, bounded by their total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, weights: dict[str, np.ndarray]) -> None:
        size = sum(a.nbytes for a in weights.values())
        if size > self.max_bytes:
            return
        frozen = {}
        for name, array in weights.items():
            array = array.view()
            array.flags.writeable = False  # a transfer that wrote in place would corrupt the cache
            frozen[name] = array
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = frozen
            self._sizes[key] = size
            self._total += size
            while self._total > self.max_bytes:
                old, _ = self._entries.popitem(last=False)
                self._total -= self._sizes.pop(old)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_out_of_memory(reason: str) -> bool:
    text = reason.lower()
    return any(marker in text for marker in OUT_OF_MEMORY_MARKERS)


#: A policy: given a search's snapshot, propose up to ``n`` new trials.
Propose = Callable[[SearchSnapshot, int], Sequence[NewTrial]]


def suggest_trials(
    repo: Repository,
    search_id: str,
    worker_id: str,
    count: int,
    propose: Propose,
    *,
    lease_seconds: float | None = None,
    now: float | None = None,
) -> list[Trial]:
    """Hand ``worker_id`` up to ``count`` trials of the search (the protocol of the module
    docstring). A worker that holds ACTIVE trials gets them back and no policy runs. ``propose``
    runs outside any transaction; it may run again (at most ``PLAN_ATTEMPTS`` times in all) if
    the search gains trials while it thinks."""
    if not 1 <= count <= MAX_SUGGEST_COUNT:
        raise InvalidArgumentError(f"count must be between 1 and {MAX_SUGGEST_COUNT}, got {count}")
    for attempt in range(1, PLAN_ATTEMPTS + 1):
        state = repo.read_suggest_state(
            search_id, worker_id, count, lease_seconds=lease_seconds, now=now
        )
        if state.held:
            return list(state.held)
        proposals: Sequence[NewTrial] = ()
        if state.snapshot is not None:
            proposals = list(propose(state.snapshot, state.wanted))[: state.wanted]
        try:
            return repo.store_plan(state, proposals, force=attempt == PLAN_ATTEMPTS)
        except StalePlan:
            log.info("search %s gained trials while its policy ran: planning again", search_id)
    raise AssertionError("unreachable: the last attempt is forced")  # pragma: no cover


class SearchTurns:
    """Asks of one search in this process take turns (64 locks, by hash of the search id).

    Not needed for correctness (the store checks the plan under the database's lock), but
    without it concurrent asks of one search in this process outrun each other's plans and
    plan again, each repeat costing a policy run. Measured with 8 threads asking and reporting
    on one search (SQLite): the GP policy 0.55 s per ask with turns, 4.5 s without (3.2 policy
    runs per ask); the random policy 11 ms with, 13 ms without (2.1 runs per ask).
    """

    def __init__(self, stripes: int = 64) -> None:
        self._locks = tuple(threading.Lock() for _ in range(stripes))

    def of(self, search_id: str) -> threading.Lock:
        return self._locks[hash(search_id) % len(self._locks)]


class SearchService:
    """The ask/tell use cases. One instance serves every request; it holds no search state."""

    def __init__(
        self,
        repo: Repository,
        limits: ServiceLimits | None = None,
        search_cache: SearchCache | None = None,
    ) -> None:
        self.repo = repo
        self.limits = limits or ServiceLimits()
        # What the optimiser remembers between asks (only a cache), shared by every thread.
        self.search_cache = search_cache if search_cache is not None else SearchCache()
        # Parsed weights of completed parents (immutable), so popular parents are read once.
        self._weights_cache = WeightsCache(self.limits.weights_cache_bytes)
        self._turns = SearchTurns()
        # Bytes of uploads in progress, across all calls (see morphnas.server.blobs).
        self.uploads = ByteBudget(self.limits.max_upload_bytes_in_flight)

    # ------------------------------------------------------------------ searches
    def create_search(self, config: SearchConfig) -> Search:
        # The seed is data (no weights): building it checks the shapes (INVALID_ARGUMENT).
        seed = seed_graph(
            config.input_shape, config.num_classes, config.seed_width, config.seed_depth
        )
        if seed.num_params > config.max_params:
            raise InvalidArgumentError(
                f"the seed architecture has {seed.num_params:,} parameters, more than "
                f"max_params={config.max_params:,}: lower seed_width/seed_depth or raise max_params"
            )
        check_ceilings(config, self.limits)
        memory = seed.training_memory_bytes(config.batch_size)
        if memory > self.limits.max_model_memory_bytes:
            raise ResourceExhaustedError(
                f"the seed architecture needs about {memory:,} bytes to train (batch "
                f"{config.batch_size}), more than this server's ceiling of "
                f"{self.limits.max_model_memory_bytes:,} (serve --max-model-memory-mb): lower "
                "seed_width/seed_depth or batch_size"
            )
        # A soft cap: replicas creating searches at the same moment may overshoot it by a few.
        if self.repo.count_searches() >= self.limits.max_searches:
            raise ResourceExhaustedError(
                f"this server holds {self.limits.max_searches:,} searches, its limit: "
                "delete searches you no longer need"
            )
        return self.repo.create_search(config)

    def get_search(self, search_id: str) -> Search:
        return self.repo.get_search(_id(search_id, "search_id"))

    def list_searches(self, page_size: int, page_token: str) -> tuple[list[Search], str]:
        return self.repo.list_searches(self._page_size(page_size, 50), page_token)

    def delete_search(self, search_id: str) -> None:
        self.repo.delete_search(_id(search_id, "search_id"))

    # ------------------------------------------------------------------ ask
    def suggest(self, search_id: str, count: int, worker_id: str) -> list[Trial]:
        if len(worker_id) > 200:
            raise InvalidArgumentError("worker_id must be at most 200 characters")
        search_id = _id(search_id, "search_id")
        made: dict[str, Weights] = {}  # initial weights of the last plan's proposals, by hash
        with self._turns.of(search_id):
            trials = suggest_trials(
                self.repo,
                search_id,
                worker_id,
                count,
                lambda snapshot, n: self._propose(snapshot, n, made),
            )
        for trial in trials:  # stored: a child of one of them will start from these weights
            weights = made.get(trial.arch_hash)
            if weights is not None:
                self._weights_cache.put(f"{trial.id}/initial", weights)
        return trials

    def _propose(
        self, snapshot: SearchSnapshot, count: int, made: dict[str, Weights] | None = None
    ) -> list[NewTrial]:
        """The policy's proposals as new trials: child graphs and the weights carried to them, also
        put in ``made`` (an ask may plan more than once; the last plan's are stored)."""
        if made is not None:
            made.clear()
        proposals = propose(
            snapshot,
            count,
            time_budget_s=self.limits.suggest_time_budget_s,
            max_expansions=self.limits.suggest_expansions,
            cache=self.search_cache,
        )
        new: list[NewTrial] = []
        for proposal in proposals:
            weights = self._initial_weights(snapshot, proposal)
            graph = proposal.graph
            if made is not None:
                made[graph.content_hash] = weights
            new.append(
                NewTrial(
                    architecture=graph.to_json(),
                    arch_hash=graph.content_hash,
                    parent_id=proposal.parent_id,
                    operations=tuple(op.to_dict() for op in proposal.operations),
                    initial_weights=weights_to_bytes(weights),
                    num_params=graph.num_params,
                )
            )
        return new

    def _initial_weights(self, snapshot: SearchSnapshot, proposal: Proposal) -> Weights:
        """The parent's weights carried along the proposal's path (the policy already built the
        final graph, so the last morph only transfers)."""
        if proposal.parent_id is None and not proposal.operations:
            # A seed: the search's seed architecture or one of a Pareto search's smaller seeds
            # (morphnas.core.seed_ladder), fresh weights seeded by the search seed.
            return init_weights(proposal.graph, snapshot.search.config.seed)
        graph, weights = self._parent(snapshot, proposal.parent_id)
        if not proposal.operations:
            return weights
        *leading, last = proposal.operations
        # _parent's weights passed check_weights (fresh ones are made for the graph).
        graph, carried = apply_path(graph, leading, weights, checked=True)
        assert carried is not None
        return last.transfer(graph, carried, checked=True)

    def _parent(self, snapshot: SearchSnapshot, parent_id: str | None) -> tuple[Graph, dict]:
        """The graph and weights a proposal starts from.

        A seed starts from fresh weights seeded by the search seed. A child starts from its
        parent's trained weights, or, when the parent was reported without weights (as the
        snapshot says), from the parent's initial weights (the child then still computes what
        the parent computed at start).
        """
        config = snapshot.search.config
        if parent_id is None:
            graph = seed_graph(
                config.input_shape, config.num_classes, config.seed_width, config.seed_depth
            )
            return graph, init_weights(graph, config.seed)
        parent = snapshot.by_id[parent_id]
        graph = Graph.from_json(parent.architecture)
        kind = "trained" if parent.has_trained_weights else "initial"
        # Both kinds are written once (initial at creation, trained with the final report).
        cached = self._weights_cache.get(f"{parent_id}/{kind}")
        if cached is not None:
            return graph, dict(cached)
        blob = self.repo.load_weights(parent_id, kind)
        if blob is None:
            raise FailedPreconditionError(f"trial {parent_id!r} has no stored {kind} weights")
        weights = check_weights(graph, weights_from_bytes(blob))
        self._weights_cache.put(f"{parent_id}/{kind}", weights)
        return graph, dict(weights)

    # ------------------------------------------------------------------ tell
    def report(
        self,
        trial_id: str,
        *,
        state: TrialState,
        score: float | None,
        reason: str = "",
        weights: bytes = b"",
        weights_sha256: str = "",
        worker_id: str = "",
        metrics: Mapping[str, float] | None = None,
        measured_on: str = "",
    ) -> Trial:
        """Store a trial's final result (the state and score rules are the repository's);
        ``metrics``: named values measured with it (e.g. ``latency_ms``) on ``measured_on``."""
        trial_id = _id(trial_id, "trial_id")
        if len(reason) > 10_000:
            raise InvalidArgumentError("reason must be at most 10,000 characters")
        if len(worker_id) > 200:
            raise InvalidArgumentError("worker_id must be at most 200 characters")
        if weights_sha256:
            check_sha256(weights_sha256, "weights_sha256")
        blob, spent = None, ""
        if weights or weights_sha256:
            if state is not TrialState.COMPLETED:
                raise InvalidArgumentError("only a COMPLETED report can carry trained weights")
            # Only weights need the stored trial (its architecture); a plain report is one write.
            trial = self.repo.get_trial(trial_id)
            if weights_sha256 and not weights and trial.weights_sha256 == weights_sha256:
                # A retry of the report that used up this upload: it can only repeat that one.
                spent = weights_sha256
            else:
                blob = self._reported_weights(trial, weights, weights_sha256)
        updated, changed = self.repo.report(
            trial_id,
            state=state,
            score=score,
            reason=reason,
            weights=blob,
            worker_id=worker_id,
            metrics=metrics,
            measured_on=measured_on,
            spent_weights_sha256=spent,
        )
        if changed and state is TrialState.FAILED and is_out_of_memory(reason):
            params = Graph.from_json(updated.architecture).num_params
            search = self.repo.lower_size_cap(updated.search_id, max(1, params - 1))
            log.warning(
                "trial %s ran out of memory: search %s now caps models at %d parameters",
                updated.id,
                updated.search_id,
                search.size_cap_params,
            )
        return updated

    def _reported_weights(self, trial: Trial, inline: bytes, sha: str) -> bytes:
        """The weights a report names (inline, or uploaded before under ``sha``), validated."""
        if inline and sha and sha256_hex(inline) != sha:
            raise InvalidArgumentError("weights_sha256 does not match the inline weights")
        blob = inline or self.repo.load_staged_weights(trial.id, sha)
        if blob is None:
            raise FailedPreconditionError(
                f"no weights with sha256 {sha} were uploaded for trial {trial.number}; "
                "call UploadWeights first"
            )
        self.validate_weights(trial, blob)
        return blob

    def validate_weights(self, trial: Trial, blob: bytes) -> None:
        """Weights must be safetensors matching the trial's architecture exactly."""
        view = memoryview(blob)
        self._check_weights(trial, lambda offset, size: view[offset : offset + size], len(blob))

    def _check_weights(self, trial: Trial, read: ReadAt, size: int) -> None:
        if size > self.limits.max_weights_bytes:
            raise ResourceExhaustedError(
                f"weights of {size:,} bytes exceed the limit of {self.limits.max_weights_bytes:,}"
            )
        try:
            check_weights_blob(
                Graph.from_json(trial.architecture), read, size, self.limits.safetensors
            )
        except WeightsError as err:
            raise WeightsError(f"trial {trial.number}: {err}") from None

    def stage_weights(self, trial_id: str, upload: Upload, expected_sha: str) -> str:
        """Store uploaded weights until a report names them; returns their sha256. They are
        checked from the spool file in chunks, then read into memory once, to be stored."""
        trial = self.repo.get_trial(_id(trial_id, "trial_id"))
        if expected_sha:
            check_sha256(expected_sha, "sha256")
        digest = upload.sha256
        if expected_sha and expected_sha != digest:
            raise InvalidArgumentError(
                f"uploaded bytes have sha256 {digest}, not the announced {expected_sha}"
            )
        self._check_weights(trial, upload.read_at, upload.size)
        self.repo.stage_weights(trial.id, digest, upload.read_all())
        return digest

    def progress(self, trial_id: str, step: int, value: float, name: str) -> tuple[Trial, bool]:
        """Store an intermediate value (the repository checks it); returns (trial, should_stop).

        Early stopping across trials (:mod:`morphnas.search.stopping`): a child clearly below its
        parent's and its completed peers' curves at this step is told to stop."""
        name = name or "objective"
        trial, stop = self.repo.add_measurement(_id(trial_id, "trial_id"), step, value, name)
        rule = self.limits.early_stopping
        if not stop and rule is not None and trial.parent_id and step >= rule.warmup_steps:
            curves = self.repo.learning_curves(trial.id, name, step)
            own = curves.pop(trial.id, [])
            parent = curves.get(trial.parent_id)
            stop = should_stop(step, own, parent, list(curves.values()), rule)
        return trial, stop

    def heartbeat(self, trial_id: str) -> Trial:
        return self.repo.heartbeat(_id(trial_id, "trial_id"))

    # ------------------------------------------------------------------ reads
    def get_trial(self, trial_id: str) -> Trial:
        return self.repo.get_trial(_id(trial_id, "trial_id"))

    def list_trials(
        self,
        search_id: str,
        states: Sequence[TrialState],
        newer_than: int,
        page_size: int,
        page_token: str,
    ) -> tuple[list[Trial], str]:
        return self.repo.list_trials(
            _id(search_id, "search_id"),
            states=tuple(states),
            newer_than=newer_than,
            page_size=self._page_size(page_size, 100),
            page_token=page_token,
        )

    def measurements(self, trial_id: str) -> list[Measurement]:
        return self.repo.list_measurements(_id(trial_id, "trial_id"))

    def weights(self, trial_id: str, kind: str) -> bytes:
        trial = self.repo.get_trial(_id(trial_id, "trial_id"))
        blob = self.repo.load_weights(trial.id, kind)
        if blob is None:
            raise FailedPreconditionError(f"trial {trial.number} has no {kind} weights")
        return blob

    def weights_chunks(self, trial_id: str, kind: str) -> tuple[str, int, Iterator[bytes]]:
        """(sha256, size, chunks) of a trial's weights: the chunks are read from the database
        one at a time as the iterator is advanced, so a download never holds the whole blob."""
        trial = self.repo.get_trial(_id(trial_id, "trial_id"))
        header = self.repo.weights_header(trial.id, kind)
        if header is None:
            raise FailedPreconditionError(f"trial {trial.number} has no {kind} weights")
        sha, size = header

        def chunks() -> Iterator[bytes]:
            for offset in range(0, max(size, 1), CHUNK_BYTES):
                chunk = self.repo.read_weights_chunk(trial.id, kind, sha, offset, CHUNK_BYTES)
                if chunk is None:
                    raise FailedPreconditionError(
                        f"the {kind} weights of trial {trial.number} changed during the "
                        "download; download them again"
                    )
                yield chunk

        return sha, size, chunks()

    def expire_leases(self) -> int:
        return self.repo.expire_leases()

    def drop_spent_uploads(self) -> int:
        """Delete weights uploaded for trials that finished without naming them."""
        return self.repo.drop_spent_staged_weights()

    def pareto_front(
        self,
        search_id: str,
        objectives: Sequence[str] = (),
        constraints: pareto.Constraints | None = None,
    ) -> tuple[tuple[str, ...], list[Trial]]:
        """The objectives used and the search's Pareto front (:func:`morphnas.server.pareto
        .front`); objectives default to the search's (``params`` without any), the latency
        constraint to the search's ``max_latency_ms``."""
        search = self.repo.get_search(_id(search_id, "search_id"))
        chosen = pareto.objectives_for(search, objectives)
        limits = pareto.search_constraints(search, constraints or pareto.Constraints())
        return chosen, pareto.front(self.repo.completed_trials(search.id), chosen, limits)

    def best_trials(self, search_ids: Sequence[str]) -> dict[str, Trial]:
        """The best completed trial of each search that has one (highest score, earliest on
        ties), for ``Search.best_trial_id`` and ``best_score``."""
        return self.repo.best_completed_trials(search_ids)

    def _page_size(self, requested: int, default: int) -> int:
        if not 0 <= requested <= self.limits.max_page_size:
            raise InvalidArgumentError(
                f"page_size must be between 0 (the default) and {self.limits.max_page_size}, "
                f"got {requested}"
            )
        return requested or default


def check_ceilings(config: SearchConfig, limits: ServiceLimits) -> None:
    """Refuse (RESOURCE_EXHAUSTED) a search that asks for more than the server allows: the
    ceilings bound what the API server builds when it plans the search's trials (a seed's
    fresh weights, a child's carried ones), whatever the client sets."""
    if config.max_params > limits.max_params:
        raise ResourceExhaustedError(
            f"max_params={config.max_params:,} is above this server's ceiling of "
            f"{limits.max_params:,} parameters (serve --max-params)"
        )
    if config.max_memory_bytes > limits.max_model_memory_bytes:
        raise ResourceExhaustedError(
            f"max_memory_bytes={config.max_memory_bytes:,} is above this server's ceiling of "
            f"{limits.max_model_memory_bytes:,} (serve --max-model-memory-mb)"
        )
    values = math.prod(config.input_shape)
    if values > limits.max_input_values:
        raise ResourceExhaustedError(
            f"input_shape {tuple(config.input_shape)} holds {values:,} values an example, more "
            f"than this server's ceiling of {limits.max_input_values:,} (serve --max-input-values)"
        )


def _id(value: str, field: str) -> str:
    return check_id(value, field)
