"""What the SDK hands out: small frozen records, never protobuf messages.

Every message the server answers with is converted here, in one place, by a ``*_from_pb``
function; enums become their names through explicit maps, and an unknown value raises (a client
older than its server says so instead of guessing). Absent values are ``None`` rather than the
protobuf defaults (``parent_id`` of a seed, ``score`` before a report, ``finished_at`` of a
running run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from morphnas.v1 import morphnas_pb2 as pb

#: Trial states by name, both ways (the names are what the SDK speaks).
TRIAL_STATES = {
    "ACTIVE": pb.ACTIVE,
    "COMPLETED": pb.COMPLETED,
    "FAILED": pb.FAILED,
    "INFEASIBLE": pb.INFEASIBLE,
    "STALE": pb.STALE,
}
_TRIAL_STATE_NAMES = {value: name for name, value in TRIAL_STATES.items()}
_RUN_STATE_NAMES = {pb.RUNNING: "RUNNING", pb.STOPPED: "STOPPED", pb.DONE: "DONE"}
#: Policies by name, both ways; the server treats "unspecified" as its default, bayesian.
POLICIES = {"bayesian": pb.POLICY_BAYESIAN, "random": pb.POLICY_RANDOM}
_POLICY_NAMES = {pb.POLICY_UNSPECIFIED: "bayesian"} | {v: k for k, v in POLICIES.items()}


@dataclass(frozen=True)
class SearchInfo:
    """A search as last fetched (see ``Search`` in the proto for each field)."""

    id: str
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    seed: int
    policy: str  # "bayesian" or "random"
    beta: float
    seed_width: int
    seed_depth: int
    max_params: int
    max_memory_bytes: int
    batch_size: int
    lease_seconds: float
    max_trials: int
    created_at: float
    size_cap_params: int  # the current cap (lowered by out-of-memory failures)
    trial_count: int  # trials handed out so far
    stopped: bool
    objectives: tuple[str, ...] = ()  # minimised besides the score (a Pareto search)
    max_latency_ms: float | None = None  # the latency constraint, if any
    latency_batch_size: int = 32


@dataclass(frozen=True)
class TrialInfo:
    """A trial as last fetched. ``architecture_json`` is the canonical architecture JSON;
    ``operations`` the morphs that made it from its parent's (``parent_id``; None for a seed)."""

    id: str
    search_id: str
    number: int
    state: str  # ACTIVE, COMPLETED, FAILED, INFEASIBLE or STALE
    architecture_json: str
    architecture_hash: str
    parent_id: str | None
    operations: tuple[dict[str, Any], ...]
    score: float | None  # set once COMPLETED
    reason: str  # why FAILED / INFEASIBLE
    worker_id: str
    lease_expires_at: float | None  # while ACTIVE
    created_at: float
    updated_at: float
    has_trained_weights: bool
    trained_weights_sha256: str
    num_params: int
    metrics: Mapping[str, float] = field(default_factory=dict)  # named, e.g. latency_ms
    measured_on: str = ""  # the machine the metrics were measured on

    @property
    def latency_ms(self) -> float | None:
        """The measured batch-1 inference latency, if reported."""
        return self.metrics.get("latency_ms")


@dataclass(frozen=True)
class DatasetInfo:
    """An uploaded dataset."""

    id: str
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    num_examples: int
    sha256: str  # of the uploaded file
    size_bytes: int
    created_at: float


@dataclass(frozen=True)
class TrainingBudgetInfo:
    """How each trial of a run is trained (the server checked these values)."""

    epochs: int
    max_seconds: float
    batch_size: int
    optimizer: str
    learning_rate: float  # 0: the optimiser's default
    patience: int
    device: str


@dataclass(frozen=True)
class TrainingRunInfo:
    """A server-side training run: ``trials`` trained trials of a search on ``dataset``."""

    id: str
    search_id: str
    dataset: str
    trials: int
    claimed: int  # trial slots handed to workers so far
    budget: TrainingBudgetInfo
    state: str  # RUNNING, STOPPED or DONE
    first_number: int  # the run's trials have numbers >= this
    created_at: float
    finished_at: float | None
    best_trial_id: str | None  # set when DONE
    test_accuracy: float | None  # of the best trial on the test split, when DONE
    budget_seconds: float = 0.0  # the run's compute budget (0: none)
    spent_seconds: float = 0.0  # training seconds its trials spent so far (charged each epoch)
    final_fit: str = "none"  # "none", "continue" or "retrain"
    final_test_accuracy: float | None = None  # of the final fit's model, when DONE with one
    reserved_seconds: float = 0.0  # of budget_seconds, held back for the final fit

    @property
    def budget_spent(self) -> bool:
        """Whether the run has a compute budget and its trials have spent it (all but what is
        reserved for the final fit)."""
        return (
            self.budget_seconds > 0
            and self.spent_seconds + self.reserved_seconds >= self.budget_seconds
        )


@dataclass(frozen=True)
class FinalFitInfo:
    """A final fit: the best trial's architecture trained on training + validation data.

    ``test_accuracy`` is the final model's, ``best_trial_test_accuracy`` the best trial's own
    (both None without a test split); ``error`` is set when the fit failed."""

    trial_id: str
    trial_number: int
    mode: str  # "continue" or "retrain"
    epochs: int
    seconds: float
    test_accuracy: float | None
    best_trial_test_accuracy: float | None
    error: str = ""

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> FinalFitInfo:
        """From a ``final_fit_finished`` event's payload."""
        return cls(
            trial_id=payload["trial_id"],
            trial_number=int(payload["number"]),
            mode=payload["mode"],
            epochs=int(payload["epochs"]),
            seconds=float(payload["seconds"]),
            test_accuracy=payload.get("test_accuracy"),
            best_trial_test_accuracy=payload.get("best_trial_test_accuracy"),
            error=payload.get("error", ""),
        )


@dataclass(frozen=True)
class SearchEvent:
    """One event of a search (see WatchSearch in the proto for the payload of each kind)."""

    id: int  # resume a watch with after_event_id = the last id seen
    search_id: str
    kind: str
    payload: dict[str, Any]
    created_at: float


def _name(names: Mapping[Any, str], value: int, what: str) -> str:
    try:
        return names[value]
    except KeyError:
        raise ValueError(f"unknown {what} {value} from the server; upgrade morphnas") from None


def search_from_pb(message: pb.Search) -> SearchInfo:
    return SearchInfo(
        id=message.id,
        name=message.name,
        input_shape=tuple(message.input_shape),
        num_classes=message.num_classes,
        seed=message.seed,
        policy=_name(_POLICY_NAMES, message.policy, "policy"),
        beta=message.beta,
        seed_width=message.seed_width,
        seed_depth=message.seed_depth,
        max_params=message.max_params,
        max_memory_bytes=message.max_memory_bytes,
        batch_size=message.batch_size,
        lease_seconds=message.lease_seconds,
        max_trials=message.max_trials,
        created_at=message.created_at,
        size_cap_params=message.size_cap_params,
        trial_count=message.trial_count,
        stopped=message.stopped,
        objectives=tuple(message.objectives),
        max_latency_ms=(message.max_latency_ms if message.HasField("max_latency_ms") else None),
        latency_batch_size=message.latency_batch_size,
    )


def trial_from_pb(message: pb.Trial) -> TrialInfo:
    return TrialInfo(
        id=message.id,
        search_id=message.search_id,
        number=message.number,
        state=_name(_TRIAL_STATE_NAMES, message.state, "trial state"),
        architecture_json=message.architecture_json,
        architecture_hash=message.architecture_hash,
        parent_id=message.parent_id or None,
        operations=tuple(json.loads(message.operations_json or "[]")),
        score=message.score if message.HasField("score") else None,
        reason=message.reason,
        worker_id=message.worker_id,
        lease_expires_at=message.lease_expires_at or None,
        created_at=message.created_at,
        updated_at=message.updated_at,
        has_trained_weights=message.has_trained_weights,
        trained_weights_sha256=message.trained_weights_sha256,
        num_params=message.num_params,
        metrics=dict(message.metrics),
        measured_on=message.measured_on,
    )


@dataclass(frozen=True)
class ParetoFront:
    """A search's Pareto front: the objectives minimised besides the score, and the trials no
    other (constraint-meeting, completed) trial dominates, cheapest in the first objective
    first."""

    objectives: tuple[str, ...]
    trials: tuple[TrialInfo, ...]


def pareto_from_pb(message: pb.GetParetoFrontResponse) -> ParetoFront:
    return ParetoFront(tuple(message.objectives), tuple(trial_from_pb(t) for t in message.trials))


def dataset_from_pb(message: pb.Dataset) -> DatasetInfo:
    return DatasetInfo(
        id=message.id,
        name=message.name,
        input_shape=tuple(message.input_shape),
        num_classes=message.num_classes,
        num_examples=message.num_examples,
        sha256=message.sha256,
        size_bytes=message.size_bytes,
        created_at=message.created_at,
    )


def budget_from_pb(message: pb.TrainingBudget) -> TrainingBudgetInfo:
    return TrainingBudgetInfo(
        epochs=message.epochs,
        max_seconds=message.max_seconds,
        batch_size=message.batch_size,
        optimizer=message.optimizer,
        learning_rate=message.learning_rate,
        patience=message.patience,
        device=message.device,
    )


def training_run_from_pb(message: pb.TrainingRun) -> TrainingRunInfo:
    return TrainingRunInfo(
        id=message.id,
        search_id=message.search_id,
        dataset=message.dataset,
        trials=message.trials,
        claimed=message.claimed,
        budget=budget_from_pb(message.budget),
        state=_name(_RUN_STATE_NAMES, message.state, "run state"),
        first_number=message.first_number,
        created_at=message.created_at,
        finished_at=message.finished_at or None,
        best_trial_id=message.best_trial_id or None,
        test_accuracy=message.test_accuracy if message.HasField("test_accuracy") else None,
        budget_seconds=message.budget_seconds,
        spent_seconds=message.spent_seconds,
        final_fit=message.final_fit or "none",
        final_test_accuracy=(
            message.final_test_accuracy if message.HasField("final_test_accuracy") else None
        ),
        reserved_seconds=message.reserved_seconds,
    )


def event_from_pb(message: pb.SearchEvent) -> SearchEvent:
    return SearchEvent(
        id=message.id,
        search_id=message.search_id,
        kind=message.kind,
        payload=json.loads(message.payload_json),
        created_at=message.created_at,
    )
