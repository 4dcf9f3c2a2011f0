"""What a candidate will cost to train, learned per search, and the search effort it is worth.

Notation (``n`` completed trials with a measured time):

``f`` (FLOPs)
    the forward FLOPs of one example (:attr:`Graph.flops`); a training epoch costs about
    ``examples × 3f`` operations plus a fixed overhead, so time grows with ``f``.
``x = log f``, ``y = log s``
    log FLOPs and log measured seconds ``s`` (``Observation.seconds``: suggestion to report) of
    the trials with ``s ≥ S_min`` (:data:`MIN_SECONDS`). Shorter trials are left out of the fit
    (censored, not "cheap": their time is the service's own overhead — the ask, weights, start-up
    — more than the network's), which also keeps the model, and with it the proposals, from
    following the jitter of a loaded or test machine: two runs of the same history whose times
    differ only below S_min propose the same.
``y ≈ a + b (x − x̄)``
    the cost model, a log-log line. ``b`` has a Gaussian prior ``N(b₀, τ²)`` (b₀ = 1: time
    proportional to FLOPs; τ = :data:`SLOPE_PRIOR_SD`); the residual variance is taken as
    ``σ²`` = :data:`LOG_NOISE`²; ``a`` is flat. The posterior mean is closed form:
    ``b̂ = (Σ x̃ ỹ / σ² + b₀/τ²) / (Σ x̃² / σ² + 1/τ²)``, ``â = ȳ`` (x̃, ỹ centred). With one
    measured trial this is the prior slope through that trial; with none only *relative* costs
    are known, ``ĉ(x) ∝ f^{b₀}`` — and relative costs are all the acquisition needs.
``ĉ(f) = exp(â + b̂ (log f − x̄))``
    predicted seconds.

The acquisition divides expected improvement by ``ĉ^α`` (see :mod:`morphnas.search.ei`); only
ratios of costs matter there, so :meth:`CostModel.log_relative` gives ``log ĉ(f) − log ĉ_ref``
with ``ĉ_ref`` the cost at the mean log FLOPs of the observed points.

**Search effort.** A proposal's tree search may spend about :data:`EFFORT_FRACTION` of a mean
trial's measured time: ``E = clamp(round(φ · s̄ / t_e), E_min, E_max)`` expansions, with ``s̄``
the mean (clamped) measured trial seconds, φ = :data:`EFFORT_FRACTION`, ``t_e`` =
:data:`SECONDS_PER_EXPANSION` a *constant* estimate of an expansion's cost (measured on one CPU
thread, see the constant) and the clamp :data:`MIN_EXPANSIONS`..:data:`MAX_EXPANSIONS`. It is
counted in expansions and derived only from stored numbers, so the same snapshot gives the same
effort on any machine; the wall clock is only a safety net (:func:`safety_seconds`).
At the minimum effort a proposal costs well under 0.1 s of CPU at 30 trials (``bench/suggest.py
--runs``): within 5 % of even a 2-second digits trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from morphnas.core.records import Observation

#: Measured times below this (seconds) are not fitted, and count as this in the mean trial time
#: (see ``S_min`` above): an ask on a loaded machine was measured at up to a few seconds.
MIN_SECONDS = 5.0
#: Prior mean and standard deviation of the log-log slope b.
PRIOR_SLOPE = 1.0
SLOPE_PRIOR_SD = 0.5
#: Assumed standard deviation of log seconds around the line (σ): a factor of about 1.35.
LOG_NOISE = 0.3
#: Share of a mean trial's time a proposal's tree search may take (φ).
EFFORT_FRACTION = 0.02
#: Estimated seconds per tree-search expansion (t_e): the median on one CPU thread of
#: ``bench/suggest.py`` (8 children materialised, distances and GP prediction) was about 5 ms;
#: this errs high so that the effort stays within its share on slower machines.
SECONDS_PER_EXPANSION = 0.01
#: Bounds of the expansions per proposal (E_min, E_max). E_min keeps a cheap search's proposals
#: GP-guided at a cost within the 5 % goal on the shortest trials (digits, 2-3 s): about 8 ms
#: of CPU an expansion at 30 trials (``bench/suggest.py --runs``). An earlier E_min of 24 was
#: needed only because the layer distance averaged attribute differences, so the synthetic
#: first-layer-width objective needed many expansions to find a widening (see
#: :mod:`morphnas.search.distance`); with the largest difference the synthetic objectives hold
#: at 8 (docs/performance.md, "The suggest path (issue 15)"). E_max bounds the latency of an
#: expensive one.
MIN_EXPANSIONS = 8
MAX_EXPANSIONS = 400


@dataclass(frozen=True)
class CostModel:
    """The fitted line ``log ĉ = a + b (log f − x̄)``; ``n`` is how many trials it saw."""

    a: float
    b: float
    x_mean: float
    n: int

    @classmethod
    def fit(cls, flops: Sequence[float], seconds: Sequence[float | None]) -> CostModel:
        """Fit on the observed points' FLOPs and measured seconds (None: not measured).

        Only times of at least :data:`MIN_SECONDS` are fitted (see the module docstring).

        ``x̄`` is the mean log FLOPs over *all* given points (measured or not), so relative
        costs are centred on the observed architectures even before any time is known.
        """
        keep = [s is not None and math.isfinite(s) and s >= MIN_SECONDS for s in seconds]
        return cls(*fit_log_line(flops, seconds, keep, PRIOR_SLOPE, SLOPE_PRIOR_SD, LOG_NOISE))

    def log_seconds(self, flops: np.ndarray) -> np.ndarray:
        """Predicted log seconds (Q,) at these FLOPs (Q,); meaningful only once n ≥ 1."""
        return self.a + self.b * (np.log(np.maximum(flops, 1.0)) - self.x_mean)

    def log_relative(self, flops: np.ndarray) -> np.ndarray:
        """``log ĉ(f) − log ĉ_ref`` (Q,): log cost relative to the observed points' typical one."""
        return self.b * (np.log(np.maximum(np.asarray(flops, np.float64), 1.0)) - self.x_mean)


def fit_log_line(
    flops: Sequence[float],
    values: Sequence[float | None],
    keep: Sequence[bool],
    prior_slope: float,
    slope_prior_sd: float,
    log_noise: float,
) -> tuple[float, float, float, int]:
    """``log v ≈ a + b (log f − x̄)`` fitted on the kept points: ``(a, b, x̄, n)``.

    ``x̄`` is the mean log FLOPs over *all* given points (kept or not), so predictions are
    centred on the observed architectures even before any value is known. The slope has the
    prior ``b ~ N(prior_slope, slope_prior_sd²)``, the residuals noise ``log_noise``, ``a`` a flat
    prior; ``b`` is its posterior mean and ``a`` puts the line through the kept points'
    centroid. With no kept point: ``(0, prior_slope, x̄, 0)``. Shared by the cost model here and
    the latency model (:mod:`morphnas.search.latency`).
    """
    x_all = np.log(np.maximum(np.asarray(flops, np.float64), 1.0))  # (N,)
    x_mean = float(x_all.mean()) if len(x_all) else 0.0
    known = [i for i, k in enumerate(keep) if k]
    if not known:
        return 0.0, prior_slope, x_mean, 0
    x = x_all[known]  # (n,)
    y = np.log(np.asarray([values[i] for i in known], np.float64))  # (n,)
    xc, yc = x - x.mean(), y - y.mean()
    precision = 1.0 / slope_prior_sd**2
    b = (float(xc @ yc) / log_noise**2 + prior_slope * precision) / (
        float(xc @ xc) / log_noise**2 + precision
    )
    a = float(y.mean()) + b * (x_mean - float(x.mean()))
    return a, b, x_mean, len(known)


def mean_seconds(observations: Sequence[Observation]) -> float | None:
    """Mean measured (clamped) seconds of the completed trials that have one; None if none."""
    known = [max(o.seconds, MIN_SECONDS) for o in observations if o.seconds is not None]
    known = [s for s in known if math.isfinite(s)]
    return float(np.mean(known)) if known else None


def expansions(observations: Sequence[Observation]) -> int:
    """Tree-search expansions per proposal, from the measured trial times (see the module doc)."""
    mean = mean_seconds(observations)
    if mean is None:
        return MIN_EXPANSIONS
    wanted = round(EFFORT_FRACTION * mean / SECONDS_PER_EXPANSION)
    return int(min(max(wanted, MIN_EXPANSIONS), MAX_EXPANSIONS))


def safety_seconds(planned: int) -> float:
    """The wall-clock safety net for ``planned`` expansions: 20x their estimated time, ≥ 5 s.

    Past it the search stops early and its answer depends on the machine's speed (logged). The
    margin is wide on purpose: on a shared, loaded machine (2 cores, load 9) an ask's wall time
    was measured at 5-7x its CPU time, and the net must not decide proposals there.
    """
    return max(5.0, 20.0 * planned * SECONDS_PER_EXPANSION)


def cooling(planned: int, t0: float, t_min: float) -> float:
    """The annealing factor that takes the temperature from ``t0`` to ``t_min`` in ``planned``
    expansions, so the schedule spans the whole budget (0.9 for 88 expansions)."""
    return float((t_min / t0) ** (1.0 / max(planned, 1)))
