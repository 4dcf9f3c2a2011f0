"""Proto ⇄ domain converters, in symmetric pairs. Enums go through explicit maps."""

from __future__ import annotations

import functools
import json
import logging

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.records import (
    DatasetInfo,
    Policy,
    RunState,
    Search,
    SearchConfig,
    SearchEvent,
    TrainingBudget,
    TrainingRun,
    Trial,
    TrialState,
)
from morphnas.v1 import morphnas_pb2 as pb

log = logging.getLogger(__name__)

POLICY_TO_PB = {Policy.BAYESIAN: pb.POLICY_BAYESIAN, Policy.RANDOM: pb.POLICY_RANDOM}
POLICY_FROM_PB = {v: k for k, v in POLICY_TO_PB.items()} | {pb.POLICY_UNSPECIFIED: Policy.BAYESIAN}

STATE_TO_PB = {
    TrialState.ACTIVE: pb.ACTIVE,
    TrialState.COMPLETED: pb.COMPLETED,
    TrialState.FAILED: pb.FAILED,
    TrialState.INFEASIBLE: pb.INFEASIBLE,
    TrialState.STALE: pb.STALE,
}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}


def policy_from_pb(value: int) -> Policy:
    try:
        return POLICY_FROM_PB[value]  # type: ignore[index]  # an unknown int raises below
    except KeyError:
        raise InvalidArgumentError(f"unknown policy {value}") from None


def state_from_pb(value: int) -> TrialState:
    try:
        return STATE_FROM_PB[value]  # type: ignore[index]  # an unknown int raises below
    except KeyError:
        raise InvalidArgumentError(
            f"unknown trial state {value}; use COMPLETED, FAILED or INFEASIBLE"
        ) from None


def search_config_from_pb(request: pb.CreateSearchRequest) -> SearchConfig:
    """Build a validated config; unset optional fields take the defaults of SearchConfig."""
    optional = {}
    for field in (
        "beta",
        "seed_width",
        "seed_depth",
        "max_params",
        "max_memory_bytes",
        "batch_size",
        "lease_seconds",
        "max_trials",
    ):
        if request.HasField(field):
            optional[field] = getattr(request, field)
    return SearchConfig(
        name=request.name,
        input_shape=tuple(request.input_shape),
        num_classes=request.num_classes,
        seed=request.seed,
        policy=policy_from_pb(request.policy),
        **optional,
    )


def search_to_pb(search: Search, best: Trial | None = None) -> pb.Search:
    """``best``: the search's best completed trial, if it has one (Service.best_trials)."""
    c = search.config
    message = pb.Search(
        id=search.id,
        name=c.name,
        input_shape=list(c.input_shape),
        num_classes=c.num_classes,
        seed=c.seed,
        policy=POLICY_TO_PB[c.policy],
        beta=c.beta,
        seed_width=c.seed_width,
        seed_depth=c.seed_depth,
        max_params=c.max_params,
        max_memory_bytes=c.max_memory_bytes,
        batch_size=c.batch_size,
        lease_seconds=c.lease_seconds,
        max_trials=c.max_trials,
        created_at=search.created_at,
        size_cap_params=search.size_cap_params,
        trial_count=search.trial_count,
        stopped=search.stopped,
    )
    if best is not None:
        message.best_trial_id = best.id
        message.best_score = best.score  # type: ignore[assignment]  # completed: a float
    return message


def trial_to_pb(trial: Trial) -> pb.Trial:
    message = pb.Trial(
        id=trial.id,
        search_id=trial.search_id,
        number=trial.number,
        state=STATE_TO_PB[trial.state],
        architecture_json=trial.architecture,
        architecture_hash=trial.arch_hash,
        parent_id=trial.parent_id or "",
        operations_json=json.dumps(list(trial.operations), sort_keys=True),
        reason=trial.reason,
        worker_id=trial.worker_id,
        lease_expires_at=trial.lease_expires_at or 0.0,
        created_at=trial.created_at,
        updated_at=trial.updated_at,
        has_trained_weights=trial.has_trained_weights,
        trained_weights_sha256=trial.weights_sha256,
        num_params=(
            trial.num_params if trial.num_params is not None else _num_params(trial.architecture)
        ),
    )
    if trial.score is not None:
        message.score = trial.score
    return message


@functools.lru_cache(maxsize=4096)
def _num_params(architecture: str) -> int:
    return Graph.from_json(architecture).num_params


# ---------------------------------------------------------------------- server-side training

RUN_STATE_TO_PB = {
    RunState.RUNNING: pb.RUNNING,
    RunState.STOPPED: pb.STOPPED,
    RunState.DONE: pb.DONE,
}


def budget_from_pb(message: pb.TrainingBudget) -> TrainingBudget:
    """Unset (zero) fields take TrainingBudget's defaults."""
    defaults = TrainingBudget()
    return TrainingBudget(
        epochs=message.epochs or defaults.epochs,
        max_seconds=message.max_seconds or defaults.max_seconds,
        batch_size=message.batch_size or defaults.batch_size,
        optimizer=message.optimizer or defaults.optimizer,
        learning_rate=message.learning_rate,
        patience=message.patience or defaults.patience,
        device=message.device or defaults.device,
    )


def budget_to_pb(budget: TrainingBudget) -> pb.TrainingBudget:
    return pb.TrainingBudget(
        epochs=budget.epochs,
        max_seconds=budget.max_seconds,
        batch_size=budget.batch_size,
        optimizer=budget.optimizer,
        learning_rate=budget.learning_rate,
        patience=budget.patience,
        device=budget.device,
    )


def run_to_pb(run: TrainingRun) -> pb.TrainingRun:
    message = pb.TrainingRun(
        id=run.id,
        search_id=run.search_id,
        dataset=run.dataset,
        trials=run.trials,
        claimed=run.claimed,
        budget=budget_to_pb(run.budget),
        state=RUN_STATE_TO_PB[run.state],
        first_number=run.first_number,
        created_at=run.created_at,
        finished_at=run.finished_at or 0.0,
        best_trial_id=run.best_trial_id or "",
        budget_seconds=run.budget_seconds,
        spent_seconds=run.spent_seconds,
        final_fit=run.final_fit,
        reserved_seconds=run.reserved_seconds,
    )
    if run.test_accuracy is not None:
        message.test_accuracy = run.test_accuracy
    if run.final_test_accuracy is not None:
        message.final_test_accuracy = run.final_test_accuracy
    return message


def event_to_pb(event: SearchEvent) -> pb.SearchEvent:
    return pb.SearchEvent(
        id=event.id,
        search_id=event.search_id,
        kind=event.kind,
        payload_json=json.dumps(event.payload, sort_keys=True),
        created_at=event.created_at,
    )


def dataset_to_pb(info: DatasetInfo) -> pb.Dataset:
    """A stored dataset as the wire shows it; never raises, so one row cannot break a listing.

    Uploads are checked to fit the message (labels below MAX_CLASSES, int32 shapes and counts);
    a row stored before those checks with a value beyond int32 shows 0 there, and a warning.
    """

    def int32(value: int, what: str) -> int:
        if -(2**31) <= value < 2**31:
            return value
        log.warning(
            "dataset %s: stored %s %d does not fit the message; shown as 0", info.id, what, value
        )
        return 0

    return pb.Dataset(
        id=info.id,
        name=info.name,
        input_shape=[int32(n, "input size") for n in info.input_shape],
        num_classes=int32(info.num_classes, "num_classes"),
        num_examples=int32(info.num_examples, "num_examples"),
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        created_at=info.created_at,
    )
