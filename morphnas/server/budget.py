"""Compute budgets of server-side runs, and why a worker stopped a trial early.

A training run may have ``budget_seconds``: the summed training seconds of its trials. The
worker that trains a trial keeps a :class:`TrialMeter` for it, which

- cuts the trial's own ``max_seconds`` to what is left of the budget when it starts,
- charges the seconds it trained to the run after every epoch and at its end (one atomic
  ``UPDATE``, so workers training trials of one run at the same time add up),
- says, when polled before each batch, whether the budget is spent: the run's total as of the
  last charge plus this trial's seconds since then. Other workers' seconds are seen as of their
  last epoch.

So the budget is honoured to within a small overshoot: with one worker, one training batch plus
the restore of the best epoch's weights and the report (0.04–0.06 s measured over a 20 s budget
on digits; more only when a trial starts with less budget left than its set-up and first
validation take, which are not interrupted); with W workers on one run, up to about one epoch of
each of the other W − 1 workers more (their seconds since their last charge; 0.5–1.0 s measured
with 2 workers on a loaded machine). A trial the budget stops reports its best epoch so
far as COMPLETED with ``stopped_reason`` "budget"; no trial starts once the budget is spent, and
the last worker closes the run (DONE, ``search_finished`` with reason "budget spent").

**The final fit's share.** A run with a budget and a final fit holds back an estimate of the
final fit's seconds (``reserved_seconds``): the trials stop once ``spent + reserved`` reaches
the budget, then the final fit runs uncut and its seconds are charged to the run too. The
estimate (:func:`final_fit_reserve`), refreshed after every trial for the current best trial:
the final fit's epochs × (train + validation) examples / the best trial's measured training
throughput (samples per second of its training steps), × 1.25, at most half the budget (so the
search keeps at least half). Until a trial has finished, a quarter of the budget is reserved.
(The best trial's wall seconds per epoch were tried first: they include its validation passes,
progress reports and events and over-estimated a MNIST-1D final fit six-fold, 25 s reserved for
a 4 s fit.) The overshoot is the final fit's actual seconds minus the reservation, when the
trials used all the rest (see ``bench/results/final_fit.md``).

The meter also records why the search, rather than the trial's own training loop, ended a trial
early: "budget", or "pruned" (early stopping across trials, :mod:`morphnas.search.stopping`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.records import MAX_BUDGET_SECONDS, Search, TrainingRun, Trial, TrialState

#: Trials of a run without a trial count (``trials=0`` with a budget): the budget ends it first.
MAX_RUN_TRIALS = 10_000

#: Reason of a run that ended because its compute budget was spent.
BUDGET_SPENT = "budget spent"
#: Reason of a run that ended because all its trials are final.
TRIALS_DONE = "all trials done"


def run_trials(trials: int, budget_seconds: float) -> int:
    """The trial count to store for a run: ``trials``, or ``MAX_RUN_TRIALS`` when it is 0 and
    a budget is given. Raises InvalidArgumentError for a count or budget out of range."""
    if not math.isfinite(budget_seconds) or not 0 <= budget_seconds <= MAX_BUDGET_SECONDS:
        raise InvalidArgumentError(
            f"budget_seconds must be between 0 (no budget) and {MAX_BUDGET_SECONDS:,.0f} "
            f"(30 days), got {budget_seconds}"
        )
    if trials == 0 and budget_seconds > 0:
        return MAX_RUN_TRIALS
    if not 1 <= trials <= MAX_RUN_TRIALS:
        raise InvalidArgumentError(
            f"trials must be between 1 and {MAX_RUN_TRIALS}, got {trials} "
            "(0 is allowed with a budget_seconds: as many as the budget allows)"
        )
    return trials


#: At most this share of a run's budget is reserved for its final fit.
MAX_FINAL_FIT_SHARE = 0.5


#: Share of a run's budget reserved for its final fit before any trial was measured.
INITIAL_FINAL_FIT_SHARE = 0.25
#: Margin of the estimate over the training steps alone (set-up, the test pass, a loaded machine).
FINAL_FIT_MARGIN = 1.25


def final_fit_reserve(
    *,
    samples_per_second: float,
    final_epochs: int,
    examples: int,
    budget_seconds: float,
) -> float:
    """Seconds to hold back for a final fit of ``final_epochs`` over ``examples`` (training +
    validation) examples, at the training throughput a trial of the same architecture measured
    (``samples_per_second``, training steps only), with a margin; at most
    ``MAX_FINAL_FIT_SHARE`` of the budget. See the module docstring."""
    cap = MAX_FINAL_FIT_SHARE * budget_seconds
    if samples_per_second <= 0:
        return cap
    return min(cap, FINAL_FIT_MARGIN * final_epochs * examples / samples_per_second)


class TrialMeter:
    """One trial's share of its run's budget (see the module docstring). Not thread-safe except
    :meth:`exhausted`, which only reads."""

    def __init__(
        self,
        charge: Callable[[str, float], TrainingRun],
        run: TrainingRun,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._charge = charge
        self._clock = clock
        self.run_id = run.id
        self.limited = run.budget_seconds > 0
        # Trials may spend the budget less what is reserved for the final fit.
        self.budget = run.budget_seconds - run.reserved_seconds
        self.spent = run.spent_seconds  # the run's total as of the last charge
        self.started = clock()
        self.charged = 0.0  # of this trial's seconds
        #: Why the search ended the trial early: "" (it did not), "budget" or "pruned".
        self.cause = ""

    def max_seconds(self, per_trial: float) -> float:
        """The trial's wall-clock limit: its own, cut to what is left of the run's budget."""
        if not self.limited:
            return per_trial
        return max(1e-3, min(per_trial, self.budget - self.spent))

    def charge(self) -> TrainingRun:
        """Add the seconds trained since the last charge to the run; returns the run after it."""
        elapsed = self._clock() - self.started
        run = self._charge(self.run_id, max(0.0, elapsed - self.charged))
        self.charged = elapsed
        self.spent = run.spent_seconds
        return run

    def exhausted(self) -> bool:
        """Whether the run's budget is spent, counting this trial's uncharged seconds."""
        if not self.limited:
            return False
        uncharged = self._clock() - self.started - self.charged
        if self.spent + uncharged < self.budget:
            return False
        self.cause = self.cause or "budget"
        return True


def stopped_by_search(service: object, search: Search, trial: Trial) -> str:
    """Why ``service.progress`` answered should_stop for a trial that ``progress`` returned:
    "pruned" when the trial is still ACTIVE in a running search (so only early stopping across
    trials can have said so), "" otherwise (the search was stopped or the trial is no longer
    ours: the caller cancels it as before)."""
    if trial.state is not TrialState.ACTIVE:
        return ""
    current = service.get_search(search.id)  # type: ignore[attr-defined]
    return "" if current.stopped else "pruned"
