"""Search and trial records: the plain values that storage returns and the server converts.

No ORM rows or protos leave their folders; these frozen dataclasses are what moves between
``storage``, ``search`` and ``server``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from morphnas.core.errors import InvalidArgumentError

MAX_CLASSES = 100_000
DEFAULT_LEASE_SECONDS = 600.0


class TrialState(StrEnum):
    """Life of a trial. ACTIVE trials hold a lease; the others are final."""

    ACTIVE = "ACTIVE"  # handed to a worker, lease running
    COMPLETED = "COMPLETED"  # score reported
    FAILED = "FAILED"  # the worker gave up (reason says why, e.g. out-of-memory)
    INFEASIBLE = "INFEASIBLE"  # the architecture cannot be trained as asked
    STALE = "STALE"  # the lease expired; the architecture was handed out again


#: States a trial never leaves, the ones a report sets (STALE is not one: a late worker may
#: still report it).
FINAL_STATES = frozenset({TrialState.COMPLETED, TrialState.FAILED, TrialState.INFEASIBLE})


class Policy(StrEnum):
    """How a search proposes the next architecture."""

    BAYESIAN = "bayesian"
    RANDOM = "random"


@dataclass(frozen=True)
class SearchConfig:
    """What a user chooses when creating a search. Validated on construction."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    seed: int = 0
    policy: Policy = Policy.BAYESIAN
    beta: float = 2.576  # UCB's weight; unused since the bayesian policy maximises EI per cost
    seed_width: int = 64
    seed_depth: int = 4
    max_params: int = 20_000_000
    max_memory_bytes: int = 8 * 1024**3
    batch_size: int = 128  # used for the memory estimate
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    max_trials: int = 10_000
    #: What to minimise besides maximising the score, any of :data:`OBJECTIVES` (empty: the
    #: score alone). A search with objectives is a Pareto search (:mod:`morphnas.search.pareto`).
    objectives: tuple[str, ...] = ()
    #: Hard constraint on the measured batch-1 latency (milliseconds); None: no constraint.
    max_latency_ms: float | None = None
    #: The second batch size latency is measured at (besides 1), see :mod:`morphnas.nn.latency`.
    latency_batch_size: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 200:
            raise InvalidArgumentError("name must be 1 to 200 characters")
        if not 1 <= len(self.input_shape) <= 3 or any(
            not isinstance(n, int) or n < 1 or n > 100_000 for n in self.input_shape
        ):
            raise InvalidArgumentError(
                f"input_shape must be (D,), (C, L) or (C, H, W) with positive sizes, "
                f"got {tuple(self.input_shape)}"
            )
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise InvalidArgumentError(
                f"num_classes must be between 2 and {MAX_CLASSES}, got {self.num_classes}"
            )
        if not isinstance(self.policy, Policy):
            raise InvalidArgumentError(f"unknown policy {self.policy!r}")
        if not math.isfinite(self.beta) or self.beta < 0:
            raise InvalidArgumentError(f"beta must be finite and >= 0, got {self.beta}")
        if not 1 <= self.seed_width <= 4096 or not 1 <= self.seed_depth <= 20:
            raise InvalidArgumentError("seed_width must be in 1..4096 and seed_depth in 1..20")
        if self.max_params < 1 or self.max_memory_bytes < 1 or self.batch_size < 1:
            raise InvalidArgumentError(
                "max_params, max_memory_bytes and batch_size must be positive"
            )
        if not 1.0 <= self.lease_seconds <= 7 * 24 * 3600:
            raise InvalidArgumentError("lease_seconds must be between 1 s and 7 days")
        if not 1 <= self.max_trials <= 1_000_000:
            raise InvalidArgumentError("max_trials must be between 1 and 1,000,000")
        check_objectives(self.objectives)
        if not 1 <= self.latency_batch_size <= 4096:
            raise InvalidArgumentError(
                f"latency_batch_size must be 1 to 4096, got {self.latency_batch_size}"
            )
        if self.max_latency_ms is not None and not (
            math.isfinite(self.max_latency_ms) and 0 < self.max_latency_ms <= MAX_LATENCY_MS
        ):
            raise InvalidArgumentError(
                f"max_latency_ms must be positive and at most {MAX_LATENCY_MS:g}, "
                f"got {self.max_latency_ms}"
            )

    @property
    def measures_latency(self) -> bool:
        """Whether trials of this search should have their inference latency measured."""
        return LATENCY in self.objectives or self.max_latency_ms is not None


#: Names of the objectives a search may minimise besides maximising its score, and of the
#: metrics a worker reports for them: trainable parameters, forward FLOPs of one example, and
#: the median inference latency at batch 1 in milliseconds (ONNX Runtime on the CPU).
PARAMS = "params"
FLOPS = "flops"
LATENCY = "latency_ms"
OBJECTIVES = (PARAMS, FLOPS, LATENCY)
#: The latency at the configurable batch size is reported as this metric (milliseconds per
#: batch); its batch size as :data:`LATENCY_BATCH_METRIC`.
LATENCY_BATCHED = "latency_ms_batch"
LATENCY_BATCH_METRIC = "latency_batch_size"
#: Largest max_latency_ms (one hour) and most metrics a report may carry, with their name length.
MAX_LATENCY_MS = 3_600_000.0
MAX_METRICS = 32
MAX_METRIC_NAME = 100
MAX_MACHINE_CHARS = 200


def check_objectives(objectives: Sequence[str]) -> None:
    """:class:`InvalidArgumentError` unless ``objectives`` are distinct names of OBJECTIVES."""
    if not isinstance(objectives, tuple):
        raise InvalidArgumentError("objectives must be a tuple of names")
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown objective(s) {unknown}: choose among {', '.join(OBJECTIVES)}"
        )
    if len(set(objectives)) != len(objectives):
        raise InvalidArgumentError(f"objectives repeat a name: {list(objectives)}")


def check_metrics(metrics: Mapping[str, float], measured_on: str) -> dict[str, float]:
    """The reported named metrics as a plain dict, checked: at most :data:`MAX_METRICS` names of
    1 to :data:`MAX_METRIC_NAME` characters, finite values, ``measured_on`` (the machine they
    were measured on) at most :data:`MAX_MACHINE_CHARS` characters."""
    if len(metrics) > MAX_METRICS:
        raise InvalidArgumentError(f"at most {MAX_METRICS} metrics a report, got {len(metrics)}")
    checked: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_METRIC_NAME:
            raise InvalidArgumentError(f"metric names must be 1 to {MAX_METRIC_NAME} characters")
        value = float(value)
        if not math.isfinite(value):
            raise InvalidArgumentError(f"metric {name!r} must be finite, got {value}")
        checked[name] = value
    if len(measured_on) > MAX_MACHINE_CHARS:
        raise InvalidArgumentError(f"measured_on must be at most {MAX_MACHINE_CHARS} characters")
    return checked


@dataclass(frozen=True)
class Search:
    """A stored search."""

    id: str
    config: SearchConfig
    created_at: float
    #: Current parameter cap: starts at config.max_params, lowered by out-of-memory failures.
    size_cap_params: int
    trial_count: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class Trial:
    """A stored trial: one architecture handed to a worker, and what came back."""

    id: str
    search_id: str
    number: int  # 0, 1, 2... unique and gapless per search
    state: TrialState
    architecture: str  # canonical graph JSON
    arch_hash: str
    parent_id: str | None  # None for a seed
    operations: tuple[dict[str, Any], ...]  # morph ops (to_dict form) from the parent
    created_at: float
    updated_at: float
    score: float | None = None
    reason: str = ""
    worker_id: str = ""
    lease_expires_at: float | None = None
    has_trained_weights: bool = False
    weights_sha256: str = ""  # of the reported (trained) weights, "" if none
    num_params: int | None = None  # trainable parameters; None when not recorded (old rows)
    #: Named metrics the report carried (e.g. ``latency_ms``, see :data:`OBJECTIVES`).
    metrics: Mapping[str, float] = field(default_factory=dict, hash=False)
    measured_on: str = ""  # the machine the metrics were measured on ("" if not said)


@dataclass(frozen=True)
class Measurement:
    """One intermediate value reported during training (e.g. validation accuracy at an epoch)."""

    trial_id: str
    step: int
    value: float
    name: str = "objective"
    created_at: float = 0.0


@dataclass(frozen=True)
class NewTrial:
    """What a policy proposes; storage numbers it and stores it ACTIVE."""

    architecture: str
    arch_hash: str
    parent_id: str | None
    operations: tuple[dict[str, Any], ...]
    initial_weights: bytes  # safetensors
    num_params: int | None = None  # of the architecture, when the proposer knows it


@dataclass(frozen=True)
class Observation:
    """A trial as the optimiser sees it: an architecture and, when completed, its score."""

    trial_id: str
    number: int
    architecture: str
    arch_hash: str
    state: TrialState
    score: float | None
    parent_id: str | None
    has_trained_weights: bool = False  # a report stored the trained weights
    #: Seconds from suggestion to the final report of a COMPLETED trial (what it cost to
    #: train); None when not known. The cost model of :mod:`morphnas.search.cost` learns from it.
    seconds: float | None = None
    #: Named metrics of its report (e.g. the measured ``latency_ms``); empty when none.
    metrics: Mapping[str, float] = field(default_factory=dict, hash=False)


def _number(observation: Observation) -> int:
    return observation.number


def _rank(observation: Observation) -> tuple[float, int]:
    """Sort key: best score first, then lower number."""
    return (-(observation.score or 0.0), observation.number)


def _inserted(
    ordered: tuple[Observation, ...], new: Sequence[Observation], key: Any
) -> tuple[Observation, ...]:
    grown = list(ordered)
    for o in new:
        bisect.insort(grown, o, key=key)
    return tuple(grown)


@dataclass(frozen=True, eq=False)
class ObservationIndex:
    """A search's observations, numbered 0..n-1, with the lookups every ask needs.

    Built once with :meth:`of`, then kept up to date with :meth:`updated` from just the
    observations that changed (one copy of each collection, no sort or filter over all trials).
    """

    observations: tuple[Observation, ...]  # by number
    completed: tuple[Observation, ...]  # the COMPLETED ones, by number
    ranked: tuple[Observation, ...]  # the COMPLETED ones, best score first (ties: lower number)
    by_id: Mapping[str, Observation]  # do not modify
    arch_hashes: frozenset[str]
    open_ids: tuple[str, ...]  # trials not in a final state (ACTIVE or STALE), by number

    @classmethod
    def of(cls, observations: Sequence[Observation]) -> ObservationIndex | None:
        """The index of ``observations`` (in any order); None unless numbered 0..n-1."""
        ordered = tuple(sorted(observations, key=lambda o: o.number))
        if any(o.number != i for i, o in enumerate(ordered)):
            return None
        return cls.build(ordered)

    @classmethod
    def build(cls, observations: Sequence[Observation]) -> ObservationIndex:
        """The lookups of ``observations`` in the order given (numbering is not checked)."""
        observations = tuple(observations)
        completed = tuple([o for o in observations if o.state is TrialState.COMPLETED])
        return cls(
            observations,
            completed,
            tuple(sorted(completed, key=_rank)),
            {o.trial_id: o for o in observations},
            frozenset(o.arch_hash for o in observations),
            tuple([o.trial_id for o in observations if o.state not in FINAL_STATES]),
        )

    def updated(self, changed: Sequence[Observation]) -> ObservationIndex | None:
        """This index with ``changed`` (new versions of open trials, or trials numbered from n on)
        applied; None if they leave a gap in the numbering or change a final observation."""
        if not changed:
            return self
        merged = list(self.observations)
        by_id = dict(self.by_id)
        newly_completed: list[Observation] = []
        for o in sorted(changed, key=lambda o: o.number):
            if o.number < len(merged):
                old = merged[o.number]
                if old.trial_id != o.trial_id or old.state in FINAL_STATES:
                    return None
                merged[o.number] = o
            elif o.number == len(merged):
                merged.append(o)
            else:
                return None
            by_id[o.trial_id] = o
            if o.state is TrialState.COMPLETED:
                newly_completed.append(o)
        completed, ranked = self.completed, self.ranked
        if newly_completed:  # a few binary searches and moves each
            completed = _inserted(completed, newly_completed, _number)
            ranked = _inserted(ranked, newly_completed, _rank)
        still_open = [by_id[i] for i in self.open_ids]
        now_open = {o.number: o for o in still_open if o.state not in FINAL_STATES}
        now_open.update((o.number, o) for o in changed if o.state not in FINAL_STATES)
        return ObservationIndex(
            tuple(merged),
            completed,
            ranked,
            by_id,
            self.arch_hashes | {o.arch_hash for o in changed},
            tuple(now_open[n].trial_id for n in sorted(now_open)),
        )


@dataclass(frozen=True)
class SearchSnapshot:
    """Everything a policy may read when proposing: the search and all its trials so far.

    ``index``, when given, must be ``ObservationIndex.of(observations)`` (storage passes the one it
    keeps up to date); without it the lookups are computed once, on first use.
    """

    search: Search
    observations: Sequence[Observation] = field(default_factory=tuple)
    index: ObservationIndex | None = field(default=None, compare=False, repr=False)

    @cached_property
    def _index(self) -> ObservationIndex:
        if self.index is not None:
            return self.index
        return ObservationIndex.build(tuple(self.observations))

    @property
    def completed(self) -> tuple[Observation, ...]:
        """COMPLETED observations, in order."""
        return self._index.completed

    @property
    def ranked(self) -> tuple[Observation, ...]:
        """COMPLETED observations, best score first (ties: lower trial number)."""
        return self._index.ranked

    @property
    def pending(self) -> tuple[Observation, ...]:
        """ACTIVE observations, in order."""
        by_id = self._index.by_id
        return tuple(by_id[i] for i in self._index.open_ids if by_id[i].state is TrialState.ACTIVE)

    @property
    def by_id(self) -> Mapping[str, Observation]:
        """Observations by trial id."""
        return self._index.by_id

    @property
    def arch_hashes(self) -> frozenset[str]:
        """Content hashes of every trial's architecture."""
        return self._index.arch_hashes


# ---------------------------------------------------------------------- server-side training

BUILTIN_DATASETS = ("digits", "mnist1d")


class RunState(StrEnum):
    """Life of a server-side training run."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"  # the user stopped it
    DONE = "DONE"  # every trial it asked for is final, or its compute budget is spent


@dataclass(frozen=True)
class DatasetInfo:
    """An uploaded dataset (the arrays themselves stay in storage)."""

    id: str
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    num_examples: int
    sha256: str
    size_bytes: int
    created_at: float


@dataclass(frozen=True)
class TrainingBudget:
    """How each trial of a server-side run is trained."""

    epochs: int = 20
    max_seconds: float = 120.0
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 0.0  # 0: the optimiser's default
    patience: int = 5
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= 10_000:
            raise InvalidArgumentError(f"epochs must be between 1 and 10,000, got {self.epochs}")
        if not 0 < self.max_seconds <= 7 * 24 * 3600:
            raise InvalidArgumentError("max_seconds must be positive and at most 7 days")
        if not 1 <= self.batch_size <= 65_536:
            raise InvalidArgumentError("batch_size must be between 1 and 65,536")
        if self.optimizer not in ("adamw", "sgd"):
            raise InvalidArgumentError(
                f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}"
            )
        if not math.isfinite(self.learning_rate) or self.learning_rate < 0:
            raise InvalidArgumentError("learning_rate must be finite and >= 0")
        if not 1 <= self.patience <= 1000:
            raise InvalidArgumentError("patience must be between 1 and 1000")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise InvalidArgumentError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")


#: What a run does after its search (see ``StartTrainingRequest.final_fit``).
FINAL_FIT_OPTIONS = ("none", "continue", "retrain")

#: Largest compute budget of a training run, in seconds (30 days).
MAX_BUDGET_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True)
class TrainingRun:
    """A server-side run: train ``trials`` suggestions of a search on a dataset.

    ``budget_seconds`` (0: none) caps the summed training seconds of the run's trials;
    ``spent_seconds`` is that sum so far, charged by the workers after every epoch.
    ``final_fit`` ("none", "continue" or "retrain"): train the best architecture on training +
    validation data after the search.
    """

    id: str
    search_id: str
    dataset: str  # a built-in name or an uploaded dataset's id
    trials: int
    claimed: int  # trial slots handed to workers so far
    budget: TrainingBudget
    state: RunState
    first_number: int  # trials of this run have numbers >= this
    created_at: float
    finished_at: float | None = None
    best_trial_id: str | None = None
    test_accuracy: float | None = None
    budget_seconds: float = 0.0
    spent_seconds: float = 0.0
    final_fit: str = "none"
    final_test_accuracy: float | None = None  # of the final fit's model, when it ran
    #: Budget seconds held back for the final fit (see :mod:`morphnas.server.budget`).
    reserved_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.final_fit not in FINAL_FIT_OPTIONS:
            raise InvalidArgumentError(
                f"final_fit must be one of {FINAL_FIT_OPTIONS}, got {self.final_fit!r}"
            )

    @property
    def budget_spent(self) -> bool:
        """Whether the run has a compute budget and its trials have spent it (all but what is
        reserved for the final fit)."""
        return (
            self.budget_seconds > 0
            and self.spent_seconds + self.reserved_seconds >= self.budget_seconds
        )

    @property
    def seconds_left(self) -> float | None:
        """Training seconds left in the budget (never negative); None without a budget."""
        if self.budget_seconds <= 0:
            return None
        return max(0.0, self.budget_seconds - self.reserved_seconds - self.spent_seconds)


@dataclass(frozen=True)
class SearchEvent:
    """Something that happened in a search, in order (``id`` grows)."""

    id: int
    search_id: str
    kind: str  # trial_started | epoch_finished | trial_finished | search_finished
    payload: dict[str, Any]
    created_at: float


#: Input shape and number of classes of the built-in datasets (no download needed for either).
BUILTIN_DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist1d": ((1, 40), 10),
}
