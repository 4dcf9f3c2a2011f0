"""Predicted inference latency of an architecture that has not been measured yet.

Workers measure a trial's latency after training (:mod:`morphnas.nn.latency`: ONNX Runtime on
the CPU, batch 1, median of repeated runs). The Pareto acquisition needs it for candidates before
they exist, so it is predicted from the forward FLOPs ``f`` of one example:

``x = log f``, ``y = log ℓ``
    log FLOPs and log measured latency (ms) of the measured trials.
``y ≈ a + b (x − x̄)``
    a log-log line, as the training-cost model of :mod:`morphnas.search.cost`, with a Gaussian
    prior ``b ~ N(b₀, τ²)`` on the slope (b₀ = :data:`PRIOR_SLOPE`: small networks' latency is
    mostly fixed per-operator overhead, so it grows much slower than their FLOPs) and residual
    standard deviation σ = :data:`LOG_NOISE`; ``a`` flat. Posterior mean:
    ``b̂ = (Σ x̃ ỹ / σ² + b₀/τ²) / (Σ x̃² / σ² + 1/τ²)``, ``â = ȳ + b̂ (x̄ − x̄_measured)``.
    With no measurement only relative latencies are known: ``ℓ ∝ f^{b₀}`` (enough for the
    acquisition, which normalises each log cost by its observed range).

A measured trial always uses its measurement (:meth:`LatencyModel.latencies`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from morphnas.search.cost import fit_log_line

PRIOR_SLOPE = 0.5
SLOPE_PRIOR_SD = 0.5
LOG_NOISE = 0.3


@dataclass(frozen=True)
class LatencyModel:
    """The fitted line ``log ℓ = a + b (log f − x̄)``; ``n``: how many measurements it saw."""

    a: float
    b: float
    x_mean: float
    n: int

    @classmethod
    def fit(cls, flops: Sequence[float], latency_ms: Sequence[float | None]) -> LatencyModel:
        """Fit on the observed points' FLOPs and measured latencies (None: not measured)."""
        keep = [v is not None and math.isfinite(v) and v > 0 for v in latency_ms]
        return cls(*fit_log_line(flops, latency_ms, keep, PRIOR_SLOPE, SLOPE_PRIOR_SD, LOG_NOISE))

    def predict_ms(self, flops: np.ndarray) -> np.ndarray:
        """Predicted latency (Q,) in ms at these FLOPs (Q,) (relative only while n = 0)."""
        x = np.log(np.maximum(np.asarray(flops, np.float64), 1.0))
        return np.exp(self.a + self.b * (x - self.x_mean))

    def latencies(self, flops: np.ndarray, measured: Sequence[float | None]) -> np.ndarray:
        """Measured latency where there is one, else the prediction (N,)."""
        predicted = self.predict_ms(flops)
        return np.array(
            [
                float(m) if m is not None and math.isfinite(m) and m > 0 else float(p)
                for m, p in zip(measured, predicted.tolist(), strict=True)
            ]
        )
