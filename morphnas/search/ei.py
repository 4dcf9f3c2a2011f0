"""Expected improvement per unit of predicted cost: the Bayesian policy's acquisition.

Notation (scores z-scored, higher is better; ``Q`` candidates):

``μ, s`` [Q]
    GP posterior mean and standard deviation at the candidates (:mod:`morphnas.search.surrogate`).
``y*``
    the incumbent: the largest posterior mean at the observed architectures (less jumpy than the
    largest raw score when scores are noisy).
``u = (μ − y*) / s``, ``EI = s · h(u)``, ``h(u) = u Φ(u) + φ(u)``
    expected improvement over y* (Φ, φ: standard normal cdf and pdf).
``log EI = log s + log h(u)``
    computed without underflow: ``h(u) = φ(u) (1 + u √(π/2) erfcx(−u/√2))`` and, far in the
    tail (u < −1000, where that sum cancels), ``log h(u) ≈ log φ(u) − 2 log|u| + log(1 − 3/u²)``.
``α(x) = log EI(x) − κ · log(ĉ(x) / ĉ_ref)``
    **the acquisition**: EI per unit of predicted cost raised to κ (:data:`COST_EXPONENT`), in
    logs (``ĉ`` from :mod:`morphnas.search.cost`). It is maximised by the tree search, which
    compares candidates 1, 2 and 3 morphs from a trained ancestor on this one scale: a longer
    path or a bigger network wins only when its expected gain grows faster than its cost.

Why not UCB: ``μ + β s`` with β = 2.576 over a distance kernel rewards distance itself (s grows
with every morph away from a trained network), and morphs only grow networks, so it drove
proposals to three-morph paths and the parameter cap (``bench/results/quality.txt``: mean path
2.66 of 3, networks at the cap, 3x the compute of random morphing) and lost to random morphing on
size-penalised synthetic objectives. EI rewards s only where μ is near or above the incumbent.

Why κ = 1/2: κ = 1 (EI per second, Snoek, Larochelle, Adams 2012) is the expected rate of
improvement per unit of compute, but as a one-step rule it over-favours cheap candidates: Lee et
al. (2020, "Cost-aware Bayesian optimization", CArBO) found EI per unit cost behind plain EI and
cool κ from 1 to 0 over a known budget. Here the bias had a concrete form: where the posterior
mean is flat, EI is driven by σ alone, and a skip connection moves as far in the kernel's metric
as a new layer at no FLOPs, so at κ = 1 the proposals were chains of skips and a widening (which
doubles a layer's FLOPs) was hardly tried: children that did not improve on their parents in
the main job, and the first-layer-width objective lost to random morphing. A search does not
know its budget (trials or seconds), so the cooling cannot be scheduled; κ = 1/2, the middle of
CArBO's schedule, keeps a cost preference (twice the cost needs √2 the EI) without letting cost
decide alone. Measured on ``tests/search/objectives.py`` (30 trials x 3 seeds; docs/performance.md,
"The suggest path (issue 15)"): at κ = 1 bayesian fell behind random on first-layer width, at
κ = 0 it grew networks 30x larger on the skip objective and fell behind there; at κ = 1/2 it is
ahead of random on all of them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx

#: κ, the exponent of the predicted cost.
COST_EXPONENT = 0.5
#: Standard deviations below this count as this (z-scored units): EI stays finite and ordered.
MIN_STD = 1e-9

#: Below this u the asymptotic series of log h is used (its error there is about 15/u⁴).
TAIL = -1000.0

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_h(u: np.ndarray) -> np.ndarray:
    """``log(u Φ(u) + φ(u))`` elementwise, accurate for any u (see the module docstring)."""
    u = np.asarray(u, np.float64)
    log_phi = -0.5 * u * u - _LOG_SQRT_2PI
    tail = u < TAIL
    safe = np.where(tail, TAIL, u)
    inner = 1.0 + safe * math.sqrt(math.pi / 2) * erfcx(-safe / math.sqrt(2))
    body = log_phi + np.log(np.maximum(inner, 1e-300))
    far = np.where(tail, u, TAIL)  # (avoids log 0 in the branch not taken)
    return np.where(tail, log_phi - 2.0 * np.log(-far) + np.log1p(-3.0 / (far * far)), body)


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """``log EI`` (Q,) of candidates with posterior ``mean``, ``std`` (Q,) over ``best``."""
    s = np.maximum(np.asarray(std, np.float64), MIN_STD)
    return np.log(s) + log_h((np.asarray(mean, np.float64) - best) / s)


def acquisition(
    mean: np.ndarray, std: np.ndarray, best: float, log_relative_cost: np.ndarray
) -> np.ndarray:
    """``α = log EI − κ log(ĉ/ĉ_ref)`` (Q,)."""
    return log_expected_improvement(mean, std, best) - COST_EXPONENT * log_relative_cost
