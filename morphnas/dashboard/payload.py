"""The JSON the pages draw: plain dicts built from :mod:`morphnas.dashboard.data` records.

One builder per page, shared by the live app and the static report, so both show the same
numbers. Per trial (``trial_row``): ``n`` number, ``id``, ``state``, ``score``, ``parent`` (the
parent's number; null for a seed), ``morphs`` (the path from the parent in words), ``kinds`` (its
morph kinds, e.g. ``["wider", "add_skip"]``), ``params``, ``flops``, ``seconds`` (suggestion to
final report), ``created`` and ``finished`` (Unix seconds), ``latency_ms`` (the measured latency
of its report, or null). ``axes`` names the trial fields the score-against-cost scatter may use
as its x axis; a field added to every row and named there becomes a choice on the page without
touching the page (``latency_ms`` is named once some trial has one).

``pareto`` maps each axis to the numbers of the trials on the Pareto front of score (maximised)
against that cost (minimised), cheapest first: the completed trials no other completed trial
beats on both, as :func:`morphnas.server.pareto.front` defines it (read through
:meth:`Source.pareto <morphnas.dashboard.data.Source.pareto>`; the search's own latency limit
applies). The scatter marks them and draws the staircase through them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from morphnas.dashboard.data import (
    STATES,
    Curves,
    SearchView,
    Source,
    TrialView,
    flops_of,
    layers_of,
)
from morphnas.tables import describe_path

#: How many of the best trials' learning curves a search page overlays at first.
DEFAULT_CURVES = 5
#: The scatter's x axes: trial field -> label (the first is the default).
AXES = {"params": "parameters", "flops": "FLOPs per example"}
#: The latency axis, offered once some trial reports a measured ``latency_ms``.
LATENCY_AXIS = ("latency_ms", "measured latency (ms)")
#: Axis -> the ids of the trials on its Pareto front.
Fronts = dict[str, list[str]]


def trial_row(trial: TrialView, numbers: dict[str, int]) -> dict[str, Any]:
    """One trial as the search page's table, plots and tree read it."""
    return {
        "n": trial.number,
        "id": trial.id,
        "state": trial.state,
        "score": trial.score,
        "parent": numbers.get(trial.parent_id) if trial.parent_id else None,
        "morphs": describe_path(trial.operations),
        "kinds": [str(op.get("op", "?")) for op in trial.operations],
        "params": trial.num_params,
        "flops": flops_of(trial.architecture),
        "seconds": None if trial.seconds is None else round(trial.seconds, 3),
        "created": trial.created_at,
        "finished": trial.updated_at if trial.seconds is not None else None,
        "reason": trial.reason,
        "latency_ms": trial.latency_ms,
    }


def axes_of(trials: Sequence[TrialView]) -> dict[str, str]:
    """The scatter's x axes for these trials: :data:`AXES`, and latency once one is measured."""
    axes = dict(AXES)
    if any(t.latency_ms is not None for t in trials):
        axes[LATENCY_AXIS[0]] = LATENCY_AXIS[1]
    return axes


def pareto_fronts(source: Source, search_id: str, trials: Sequence[TrialView]) -> Fronts:
    """Axis -> ids of the trials on the front of score against that axis's cost."""
    return {axis: source.pareto(search_id, axis) for axis in axes_of(trials)}


def best_trial(trials: Sequence[TrialView]) -> TrialView | None:
    """The COMPLETED trial with the highest score (the lowest number on ties)."""
    scored = [t for t in trials if t.state == "COMPLETED" and t.score is not None]
    return min(scored, key=lambda t: (-(t.score or 0.0), t.number), default=None)


def best_path(trials: Sequence[TrialView]) -> list[int]:
    """Trial numbers from the seed to the best trial (empty without a completed trial)."""
    best = best_trial(trials)
    by_id = {t.id: t for t in trials}
    path: list[int] = []
    node = best
    while node is not None and len(path) <= len(trials):  # a bound against a corrupt cycle
        path.append(node.number)
        node = by_id.get(node.parent_id) if node.parent_id else None
    return path[::-1]


def search_summary(search: SearchView, trials: Sequence[TrialView]) -> dict[str, Any]:
    """A search as the searches page lists it (and the search page's header)."""
    counts = Counter(t.state for t in trials)
    best = best_trial(trials)
    trained = sum(t.seconds or 0.0 for t in trials)
    if search.stopped:
        state = "STOPPED"
    elif search.run_state:
        state = search.run_state
    else:
        state = "OPEN"
    return {
        "id": search.id,
        "name": search.name,
        "state": state,
        "policy": search.policy,
        "dataset": search.dataset,
        "input_shape": list(search.input_shape),
        "num_classes": search.num_classes,
        "trials": len(trials),
        "counts": {s: counts.get(s, 0) for s in STATES},
        "best": None if best is None else best.score,
        "best_number": None if best is None else best.number,
        # compute spent: the run's charged training seconds, else the trials' own seconds
        "spent": round(search.spent_seconds or trained, 3),
        "budget": search.budget_seconds,
        "created": search.created_at,
        "last_activity": max([search.created_at, *(t.updated_at for t in trials)]),
    }


def search_payload(
    search: SearchView,
    trials: Sequence[TrialView],
    curves: Curves | None = None,
    fronts: Fronts | None = None,
) -> dict[str, Any]:
    """Everything the search page draws; ``curves`` of some trials, by trial id; ``fronts``
    (:func:`pareto_fronts`) the Pareto front per axis, by trial id."""
    numbers = {t.id: t.number for t in trials}
    return {
        "search": search_summary(search, trials),
        "trials": [trial_row(t, numbers) for t in trials],
        "best_path": best_path(trials),
        "axes": axes_of(trials),
        "pareto": {
            axis: [numbers[i] for i in ids if i in numbers] for axis, ids in (fronts or {}).items()
        },
        "curves": curves_payload(curves or {}),
    }


def curve_ids(trials: Sequence[TrialView], count: int = DEFAULT_CURVES) -> list[str]:
    """Ids of the ``count`` best completed trials, whose curves a page shows at first."""
    scored = [t for t in trials if t.state == "COMPLETED" and t.score is not None]
    scored.sort(key=lambda t: (-(t.score or 0.0), t.number))
    return [t.id for t in scored[:count]]


def curves_payload(curves: Curves) -> dict[str, dict[str, list[list[float]]]]:
    """Curves as JSON: trial id -> name -> [[step, value], ...]."""
    return {
        trial_id: {name: [[step, value] for step, value in points] for name, points in by.items()}
        for trial_id, by in curves.items()
    }


def trial_payload(
    search: SearchView,
    trial: TrialView,
    trials: Sequence[TrialView],
    curves: Curves,
) -> dict[str, Any]:
    """Everything the trial page draws: the trial, its architecture, parent, children, curve."""
    numbers = {t.id: t.number for t in trials}
    children = [{"n": t.number, "id": t.id} for t in trials if t.parent_id == trial.id]
    return {
        "search": search_summary(search, trials),
        "trial": trial_row(trial, numbers) | {"operations": list(trial.operations)},
        "parent_id": trial.parent_id,
        "children": children,
        "layers": layers_of(trial.architecture),
        "input_shape": list(search.input_shape),
        "curves": curves_payload(curves),
        "onnx": trial.has_trained_weights,
    }


def to_json(payload: Any) -> str:
    """Compact JSON; non-finite floats (never stored, but a bound on bad data) become null."""
    return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
