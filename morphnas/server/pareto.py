"""Pareto fronts of stored trials, and the trial an export by constraint picks.

Pure functions over :class:`~morphnas.core.records.Trial` records (the service reads the
trials; the dashboard and the CLI read the answer through the service):

* :func:`front`: the COMPLETED trials that meet the constraints and that no other such trial
  dominates, with the score maximised and each objective minimised
  (:func:`morphnas.search.pareto.non_dominated`);
* :func:`best_under`: the highest-scoring of those trials that has trained weights.

A trial's objectives: ``params`` (:attr:`Trial.num_params`, or counted from its architecture
for old rows), ``flops`` (:attr:`Graph.flops` of its architecture) and ``latency_ms`` (the
metric of its report). A constraint or objective on latency leaves out trials without a
measured latency: nothing says they meet it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from morphnas.core.errors import FailedPreconditionError, InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.records import (
    FLOPS,
    LATENCY,
    MAX_LATENCY_MS,
    OBJECTIVES,
    PARAMS,
    Search,
    Trial,
    TrialState,
    check_objectives,
)
from morphnas.search.pareto import non_dominated


@dataclass(frozen=True)
class Constraints:
    """Hard limits a trial must meet (None: no limit)."""

    max_latency_ms: float | None = None
    max_params: int | None = None

    def __post_init__(self) -> None:
        if self.max_latency_ms is not None and not (
            math.isfinite(self.max_latency_ms) and 0 < self.max_latency_ms <= MAX_LATENCY_MS
        ):
            raise InvalidArgumentError(
                f"max_latency_ms must be positive and at most {MAX_LATENCY_MS:g}, "
                f"got {self.max_latency_ms}"
            )
        if self.max_params is not None and self.max_params < 1:
            raise InvalidArgumentError(f"max_params must be >= 1, got {self.max_params}")

    def allow(self, trial: Trial) -> bool:
        if self.max_params is not None and params_of(trial) > self.max_params:
            return False
        if self.max_latency_ms is not None:
            latency = trial.metrics.get(LATENCY)
            return latency is not None and latency <= self.max_latency_ms
        return True


def params_of(trial: Trial) -> int:
    if trial.num_params is not None:
        return trial.num_params
    return Graph.from_json(trial.architecture).num_params


def objective_value(trial: Trial, objective: str) -> float | None:
    """The trial's value of one objective (None: latency not measured)."""
    if objective == PARAMS:
        return float(params_of(trial))
    if objective == FLOPS:
        return float(Graph.from_json(trial.architecture).flops)
    if objective == LATENCY:
        return trial.metrics.get(LATENCY)
    raise InvalidArgumentError(f"unknown objective {objective!r}")


def objectives_for(search: Search, asked: Sequence[str]) -> tuple[str, ...]:
    """The objectives asked for, else the search's own, else ``params``."""
    chosen = tuple(asked) or search.config.objectives or (PARAMS,)
    if len(chosen) > len(OBJECTIVES):
        raise InvalidArgumentError(f"at most {len(OBJECTIVES)} objectives")
    check_objectives(chosen)
    return chosen


def search_constraints(search: Search, asked: Constraints) -> Constraints:
    """The constraints asked for, the search's ``max_latency_ms`` where none was asked."""
    latency = asked.max_latency_ms
    if latency is None:
        latency = search.config.max_latency_ms
    return Constraints(latency, asked.max_params)


def front(
    trials: Sequence[Trial], objectives: Sequence[str], constraints: Constraints
) -> list[Trial]:
    """The Pareto front (see the module docstring), cheapest in the first objective first."""
    rows: list[tuple[Trial, list[float]]] = []
    for trial in trials:
        if trial.state is not TrialState.COMPLETED or trial.score is None:
            continue
        if not constraints.allow(trial):
            continue
        values = [objective_value(trial, o) for o in objectives]
        if any(v is None for v in values):
            continue  # latency asked for and not measured
        rows.append((trial, [float(v) for v in values if v is not None]))
    if not rows:
        return []
    scores = np.array([t.score for t, _ in rows], np.float64)  # (N,)
    costs = np.array([v for _, v in rows], np.float64)  # (N, M)
    keep = non_dominated(scores, costs)
    chosen = [row for row, k in zip(rows, keep.tolist(), strict=True) if k]
    chosen.sort(key=lambda row: (row[1][0], row[0].number))
    return [trial for trial, _ in chosen]


def best_under(trials: Sequence[Trial], constraints: Constraints) -> Trial:
    """The highest-scoring COMPLETED trial with trained weights that meets the constraints
    (the lowest number on ties); FailedPreconditionError when none does."""
    best: Trial | None = None
    for trial in sorted(trials, key=lambda t: t.number):
        if (
            trial.state is TrialState.COMPLETED
            and trial.score is not None
            and trial.has_trained_weights
            and constraints.allow(trial)
            and (best is None or trial.score > best.score)  # type: ignore[operator]
        ):
            best = trial
    if best is None:
        limits = []
        if constraints.max_latency_ms is not None:
            limits.append(f"latency_ms <= {constraints.max_latency_ms:g} (measured)")
        if constraints.max_params is not None:
            limits.append(f"params <= {constraints.max_params:,}")
        raise FailedPreconditionError(
            "no completed trial with trained weights meets " + " and ".join(limits or ["-"])
        )
    return best
