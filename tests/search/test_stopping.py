"""Early stopping across trials: the rule of morphnas.search.stopping, case by case."""

from __future__ import annotations

import pytest

from morphnas.core.errors import InvalidArgumentError
from morphnas.search.stopping import StoppingRule, best_so_far, median, should_stop


def curve(*values: float, start: int = 1) -> list[tuple[int, float]]:
    """Points (start, v0), (start + 1, v1), ..."""
    return [(start + i, v) for i, v in enumerate(values)]


PARENT = curve(0.60, 0.80, 0.88, 0.90, 0.91)
PEERS = [PARENT, curve(0.70, 0.85, 0.90, 0.92), curve(0.75, 0.86, 0.89), curve(0.50, 0.70, 0.80)]
BAD = curve(0.30, 0.40, 0.45, 0.50)
RULE = StoppingRule(warmup_steps=3, min_peers=3, margin=0.01)

CASES = [
    # (why, step, trial, parent, peers, rule, stop)
    ("clearly below parent and median at warm-up", 3, BAD, PARENT, PEERS, RULE, True),
    ("still before warm-up", 2, BAD, PARENT, PEERS, RULE, False),
    ("a seed is never stopped", 4, BAD, None, PEERS, RULE, False),
    ("too few peers", 3, BAD, PARENT, PEERS[:2], RULE, False),
    (
        "peers without a point at a step <= e do not count",
        3,
        BAD,
        PARENT,
        PEERS[:2] + [curve(0.9, start=4), curve(0.9, start=9)],
        RULE,
        False,
    ),
    ("no parent curve: no judgement", 3, BAD, [], PEERS, RULE, False),
    ("no point of its own at a step <= e", 3, curve(0.1, start=5), PARENT, PEERS, RULE, False),
    (
        "above its parent (parent weak early)",
        3,
        curve(0.85, 0.86, 0.89),
        PARENT,
        PEERS,
        RULE,
        False,
    ),
    (
        "below parent, above the median",
        3,
        curve(0.80, 0.86, 0.89),
        curve(0.9, 0.95, 0.97),
        PEERS,
        RULE,
        False,
    ),
    (
        "below the median, above parent",
        3,
        curve(0.7, 0.8, 0.83),
        curve(0.5, 0.6, 0.7),
        PEERS,
        RULE,
        False,
    ),
    (
        "within the margin is not clearly below",
        3,
        curve(0.6, 0.7, 0.875),
        PARENT,
        PEERS,
        RULE,
        False,
    ),
    ("just past the margin", 3, curve(0.6, 0.7, 0.865), PARENT, PEERS, RULE, True),
    (
        "the best so far counts, not the last value",
        3,
        curve(0.95, 0.3, 0.3),
        PARENT,
        PEERS,
        RULE,
        False,
    ),
    (
        "a finished peer's curve is carried forward",
        8,
        curve(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.87),
        PARENT,
        PEERS,
        RULE,
        True,
    ),
    ("a longer warm-up waits", 3, BAD, PARENT, PEERS, StoppingRule(warmup_steps=4), False),
    (
        "zero margin: strictly below",
        3,
        curve(0.3, 0.4, 0.879),
        PARENT,
        PEERS,
        StoppingRule(margin=0.0),
        True,
    ),
]


@pytest.mark.parametrize(
    ("step", "trial", "parent", "peers", "rule", "stop"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_rule(step, trial, parent, peers, rule, stop) -> None:
    assert should_stop(step, trial, parent, peers, rule) is stop


def test_best_so_far_and_median() -> None:
    points = [(3, 0.2), (1, 0.5), (2, 0.4)]  # in any order
    assert best_so_far(points, 0) is None
    assert best_so_far(points, 1) == 0.5 and best_so_far(points, 9) == 0.5
    assert best_so_far(None, 3) is None
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


@pytest.mark.parametrize(
    "options", [{"warmup_steps": 0}, {"min_peers": 0}, {"margin": -0.1}, {"margin": float("nan")}]
)
def test_bad_rules_are_refused(options: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        StoppingRule(**options)
