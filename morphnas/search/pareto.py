"""Pareto fronts, hypervolume and the expected hypervolume improvement of a Pareto search.

A Pareto search maximises the score (validation accuracy) ``a`` and minimises ``M`` costs
(:data:`morphnas.core.records.OBJECTIVES`: parameters, FLOPs, measured latency). Notation:

``A`` [N], ``C`` [N, M]
    scores and costs of N completed trials. Trial i **dominates** j when ``A_i ≥ A_j``,
    ``C_i ≤ C_j`` in every column and at least one of those is strict. The **front** is the set of
    trials no trial dominates (:func:`non_dominated`); equal points do not dominate each other,
    so duplicates both stay.
``HV(P; r)``
    the hypervolume of points P (score, one cost) against the reference point ``r = (a_r, c_r)``:
    the area of ``{(a, c): a_r ≤ a ≤ A_i, C_i ≤ c ≤ c_r for some i}`` (:func:`hypervolume_2d`).

**Acquisition** (used by :mod:`morphnas.search.policy` for searches with objectives):

``λ ~ Dirichlet(1_M)``, ``c(x) = Σ_m λ_m (log C_m(x) − lo_m) / (hi_m − lo_m)``
    a random scalarisation of the log costs, drawn per proposal (ParEGO, Knowles 2006, applies
    it to all objectives; here only the costs are scalarised, because a candidate's cost is
    known — parameters and FLOPs exactly, latency from :mod:`morphnas.search.latency` — while
    the score is the GP's ``N(μ, s²)``). ``lo, hi``: the observed range of each log cost.
``EHVI(x) = E[HV(F ∪ {(a(x), c(x))}) − HV(F)]``
    the expected hypervolume improvement over the observed front F in the (score, c) plane.
    With c known it is exact and closed form: between consecutive front costs the front's best
    score is a constant ``F_k``, so the improvement is a sum of one-dimensional improvements
    ``Σ_k w_k(c) · EI(μ, s; F_k)`` with ``w_k(c)`` the width of the k-th cost interval right of
    c (up to ``c_r``) and ``EI(μ, s; y) = s h((μ − y)/s)`` (:mod:`morphnas.search.ei`). In logs:
    ``log EHVI = logsumexp_k(log w_k + log EI_k)`` (:func:`log_ehvi`), so it never underflows
    and plugs into the tree search exactly where ``log EI`` does: the policy maximises
    ``log EHVI − κ log ĉ`` (EHVI per unit of predicted training cost).

Why EHVI and not ParEGO's Tchebycheff scalarisation of the score as well: with the costs known,
EHVI of the 2-D (score, c) problem is exact, and it rewards a small network for beating the
front *at its size*, not for beating the best score overall; a random λ per proposal still
spreads the proposals over every cost when M > 1.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from morphnas.search.ei import MIN_STD, log_h

#: Candidates costlier than the reference are given this much width (normalised cost units) so
#: that their acquisition stays finite and ordered by expected score.
MIN_WIDTH = 1e-6
#: Above this u = (μ − level)/s the improvement is certain: log h(u) = log u.
CERTAIN = 30.0


def non_dominated(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Mask (N,) of the points no other point dominates (score maximised, costs (N, M)
    minimised); see the module docstring."""
    a = np.asarray(scores, np.float64)  # (N,)
    c = np.asarray(costs, np.float64).reshape(len(a), -1)  # (N, M)
    # weakly[i, j]: point i is at least as good as j everywhere; strictly: better somewhere.
    weakly = (a[:, None] >= a[None, :]) & np.all(c[:, None, :] <= c[None, :, :], axis=2)
    strictly = (a[:, None] > a[None, :]) | np.any(c[:, None, :] < c[None, :, :], axis=2)
    dominated = np.any(weakly & strictly, axis=0)  # (N,): some i dominates j
    return ~dominated


def hypervolume_2d(scores: np.ndarray, costs: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by the points (score ↑, cost ↓) and bounded by ``reference`` = (a_r, c_r).

    Points with a score ≤ a_r or a cost ≥ c_r add nothing.
    """
    a_ref, c_ref = reference
    a = np.asarray(scores, np.float64)
    c = np.asarray(costs, np.float64)
    keep = (a > a_ref) & (c < c_ref)
    a, c = a[keep], c[keep]
    if not len(a):
        return 0.0
    order = np.argsort(c, kind="stable")
    a, c = a[order], c[order]
    best = np.maximum.accumulate(a)  # the best score at cost ≤ c_k: a staircase
    edges = np.append(c, c_ref)  # (K+1,)
    return float(np.sum((edges[1:] - edges[:-1]) * (best - a_ref)))


def front_staircase(
    scores: np.ndarray, costs: np.ndarray, reference: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D front as a staircase: cost breakpoints ``b`` (K+2,) starting at −∞ and ending at
    c_r, and levels ``F`` (K+1,): the best score at costs in ``[b_k, b_{k+1})`` (a_r left of the
    cheapest front point)."""
    a_ref, c_ref = reference
    a = np.asarray(scores, np.float64)
    c = np.asarray(costs, np.float64)
    keep = c < c_ref
    a, c = a[keep], c[keep]
    order = np.argsort(c, kind="stable")
    a, c = a[order], c[order]
    levels = np.maximum(np.maximum.accumulate(a), a_ref) if len(a) else np.zeros(0)
    breaks = np.concatenate([[-np.inf], c, [c_ref]])
    return breaks, np.concatenate([[a_ref], levels])


def log_ehvi(
    mean: np.ndarray,
    std: np.ndarray,
    cost: np.ndarray,
    breaks: np.ndarray,
    levels: np.ndarray,
) -> np.ndarray:
    """``log EHVI`` (Q,) of candidates with score ``N(mean, std²)`` and known ``cost`` (Q,)
    against the staircase ``(breaks, levels)`` of :func:`front_staircase`."""
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    c_ref = float(breaks[-1])
    cost = np.minimum(np.asarray(cost, np.float64), c_ref - MIN_WIDTH)  # (Q,)
    lo = np.maximum(breaks[None, :-1], cost[:, None])  # (Q, K+1)
    width = np.maximum(breaks[None, 1:] - lo, 0.0)  # (Q, K+1)
    s = np.maximum(std, MIN_STD)[:, None]  # (Q, 1)
    log_ei = np.log(s) + _log_h((mean[:, None] - levels[None, :]) / s)  # (Q, K+1): log EI_k
    with np.errstate(divide="ignore"):
        log_width = np.log(width)  # -inf where the interval is empty
    terms = np.where(width > 0, log_width + np.where(width > 0, log_ei, 0.0), -np.inf)
    return np.asarray(logsumexp(terms, axis=1), np.float64)


def _log_h(u: np.ndarray) -> np.ndarray:
    """``log h(u)`` for any u: :func:`morphnas.search.ei.log_h` up to u = :data:`CERTAIN`, and
    ``log u`` beyond, where ``h(u) = u + φ(u) − u(1 − Φ(u))`` equals u in floating point (the
    closed form would overflow past u ≈ 37: an improvement over a level far below the mean with
    a tiny standard deviation, as the reference level is for an observed point)."""
    return np.where(u > CERTAIN, np.log(np.maximum(u, CERTAIN)), log_h(np.minimum(u, CERTAIN)))


def normalised_log_costs(costs: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``(log C − lo) / (hi − lo)`` per column (Q, M), lo and hi the observed (N, M) range of
    the log costs (a range of zero counts as 1)."""
    logs = np.log(np.maximum(np.asarray(costs, np.float64), 1e-12))
    seen = np.log(np.maximum(np.asarray(observed, np.float64), 1e-12))
    lo, hi = seen.min(axis=0), seen.max(axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    return (logs - lo) / span


def random_weights(rng: np.random.Generator, m: int) -> np.ndarray:
    """λ ~ Dirichlet(1, …, 1) (m,): uniform on the simplex (ParEGO's weight vectors)."""
    if m == 1:
        return np.ones(1)
    return rng.dirichlet(np.ones(m))
