"""Early stopping across trials: stop a child whose learning curve is clearly below its parent's
and its completed peers' at the same step (a median stopping rule, as in Google Vizier's
"automated stopping" and Optuna's ``MedianPruner``, with the parent as a second reference).

Notation. A *curve* is what a trial reported through ReportProgress for one measurement name:
points (s, m(s)), step s ≥ 0 (the server's workers use the epoch, 1, 2, ...), value m(s),
higher is better (as the score). For a curve c and a step e,

    b_c(e) = max{ m_c(s) : s ≤ e }        best value so far (undefined if c has no s ≤ e)

A completed trial's curve ends at its last step S; for e > S, b_c(e) = b_c(S): what it reached.
The best so far, rather than the last value, makes one noisy epoch harmless, and it is what the
trial would report if it stopped now (the trainer restores its best epoch).

For the trial t reporting step e, with parent p and completed peers P (every other COMPLETED
trial of the search with a point at a step ≤ e; the parent is one of them), the rule says stop
when all of these hold:

    t has a parent                          a seed (trained from scratch) is never stopped
    e ≥ warmup_steps                        a child may dip for a few epochs while its
                                            optimiser's state is rebuilt
    |P| ≥ min_peers                         a median of one or two curves is noise
    b_p(e) is defined                       without the parent's curve there is no judgement
    b_t(e) < b_p(e) − margin                below its parent at the same step, and
    b_t(e) < median{ b_j(e) : j ∈ P } − margin      below the median of its peers.

Why both references. The median alone would stop a child of a weak parent that is improving on
it; the parent alone would stop nothing once a parent is strong early. A child below both at the
same step is losing what it inherited and is unlikely to pay for the epochs it has left.

Defaults. ``warmup_steps = 3``: with the default trial budget (20 epochs, patience 5) a child is
stopped two epochs before its own early stopping could act, and still sees three epochs to
recover from the morph. ``min_peers = 3``: the rule applies from the fourth completed trial on,
so an 8-trial search already saves compute. ``margin = 0.01``: one point of accuracy, 3 to 6
examples of the built-in datasets' validation splits, well above one example's noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from morphnas.core.errors import InvalidArgumentError

#: A learning curve: (step, value) points, in any order.
Curve = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class StoppingRule:
    """The parameters of :func:`should_stop` (see the module docstring for the defaults)."""

    warmup_steps: int = 3
    min_peers: int = 3
    margin: float = 0.01

    def __post_init__(self) -> None:
        if self.warmup_steps < 1:
            raise InvalidArgumentError(f"warmup_steps must be >= 1, got {self.warmup_steps}")
        if self.min_peers < 1:
            raise InvalidArgumentError(f"min_peers must be >= 1, got {self.min_peers}")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise InvalidArgumentError(f"margin must be finite and >= 0, got {self.margin}")


def best_so_far(curve: Curve | None, step: int) -> float | None:
    """b(step): the curve's best value at a step ≤ ``step``; None if it has none."""
    values = [value for s, value in curve or () if s <= step]
    return max(values) if values else None


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def should_stop(
    step: int,
    trial: Curve,
    parent: Curve | None,
    peers: Sequence[Curve],
    rule: StoppingRule = StoppingRule(),
) -> bool:
    """Whether the trial that just reported ``step`` should stop (the module docstring's rule).

    ``parent``: its parent's curve, None for a seed. ``peers``: the curves of the search's other
    COMPLETED trials (the parent's among them; curves with no point at a step ≤ ``step`` are not
    counted)."""
    if parent is None or step < rule.warmup_steps:
        return False
    own = best_so_far(trial, step)
    parent_best = best_so_far(parent, step)
    if own is None or parent_best is None:
        return False
    peer_bests = [b for b in (best_so_far(c, step) for c in peers) if b is not None]
    if len(peer_bests) < rule.min_peers:
        return False
    return own < parent_best - rule.margin and own < median(peer_bests) - rule.margin
