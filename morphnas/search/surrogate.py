"""The GP of :mod:`morphnas.search.gp` applied to a snapshot's observed architectures.

What is rebuilt from the snapshot on every ask (the optimiser keeps no state; every memo below, in
the :class:`~morphnas.search.cache.SearchCache` passed in, is keyed by the data it was computed
from, so a fresh cache only costs time):

* **GP points**: the distinct COMPLETED architectures in order of their first trial number, each
  with the mean of its scores and its count. Scores are z-scored over these points.
* **Hyperparameters** are refitted only at *schedule points* of the number of points n
  (every n up to 16, then ``floor(16·1.2^k)``), on the first s points (at most 200 of them, evenly
  spaced) — so two servers, or one server before and after a restart, agree. A fit is warm-started
  from the fit at the previous schedule point, except at the first schedule point of each octave
  [2^j, 2^{j+1}), which starts from the defaults; a cold restart therefore replays at most the
  few fits since the last octave boundary.
* **Landmarks** (the set that defines the feature map): all points up to 256; beyond, at most
  :data:`MAX_LANDMARKS` of the first ``b(n)`` points (b(n) = ``floor(256·1.05^k)``, so they
  change only on ~5 % growth): the best half by score and an evenly spaced half of the rest.
  Between changes new points enter through the same feature map (the kernel is a fixed
  function; the posterior is updated, not re-decomposed). Capping the landmarks bounds what a
  candidate costs (one distance per landmark) and the eigendecomposition, whatever n is; the
  price is that correlations between architectures far from every landmark are partly carried
  by the per-architecture residual variance instead (a subset-of-regressors approximation).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence

import numpy as np

from morphnas.search.cache import SearchCache
from morphnas.search.descriptors import Descriptor
from morphnas.search.gp import (
    DEFAULT_HYPER,
    Basis,
    Hyper,
    Posterior,
    fit_hyperparameters,
    make_basis,
    raw_kernel,
)

log = logging.getLogger(__name__)

HYPER_SCHEDULE = (16, 1.2)
BASIS_SCHEDULE = (256, 1.05)
MAX_LANDMARKS = 256
FIT_MAX_POINTS = 200
MIN_POINTS_TO_FIT = 3


def schedule_points(n: int, base: int, growth: float) -> list[int]:
    """Schedule points ≤ n, ascending: 1..base, then floor(base·growth^k) (deduplicated)."""
    points = list(range(1, min(n, base) + 1))
    k = 1
    while True:
        s = math.floor(base * growth**k)
        if s > n:
            return points
        if s > points[-1]:
            points.append(s)
        k += 1


def schedule_point(n: int, base: int, growth: float) -> int:
    """The largest schedule point ≤ n (0 for n = 0)."""
    return schedule_points(n, base, growth)[-1] if n >= 1 else 0


def zscore(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Z-scored values, their mean and standard deviation (1 when there is no spread)."""
    if len(values) == 0:
        return values, 0.0, 1.0
    mean = float(np.mean(values))
    std = float(np.std(values))
    if not std > 1e-12:
        std = 1.0
    return (values - mean) / std, mean, std


def _digest(points: Sequence[Descriptor], *arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for p in points:
        h.update(p.key.encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _fit_subset(s: int) -> np.ndarray:
    if s <= FIT_MAX_POINTS:
        return np.arange(s)
    return np.unique(np.round(np.linspace(0, s - 1, FIT_MAX_POINTS)).astype(np.intp))


def hyper_at(
    points: Sequence[Descriptor],
    scores: np.ndarray,
    counts: np.ndarray,
    s: int,
    cache: SearchCache,
) -> Hyper:
    """Hyperparameters fitted on the first ``s`` points (s a schedule point); memoised."""
    if s < MIN_POINTS_TO_FIT:
        return DEFAULT_HYPER
    key = _digest(points[:s], scores[:s], counts[:s])
    known = cache.hypers.get(key)  # one lookup: another thread may evict between two
    if known is not None:
        return known
    earlier = schedule_points(s - 1, *HYPER_SCHEDULE)
    previous = earlier[-1] if earlier else 0
    same_octave = previous >= MIN_POINTS_TO_FIT and int(math.log2(previous)) == int(math.log2(s))
    start = hyper_at(points, scores, counts, previous, cache) if same_octave else DEFAULT_HYPER
    subset = _fit_subset(s)
    chosen = [points[i] for i in subset]
    y, _, _ = zscore(scores[subset])
    dl, ds = cache.distances.block(chosen, chosen)
    hyper = fit_hyperparameters(
        dl, ds, y, counts[subset], start, max_iter=15 if same_octave else 30
    )
    log.info("hyperparameters at %d points: %s", s, hyper)
    return cache.hypers.get_or(key, lambda: hyper)


def landmarks(points: Sequence[Descriptor], scores: np.ndarray, b: int) -> list[Descriptor]:
    """The landmark set among the first ``b`` points (see the module docstring)."""
    if b <= MAX_LANDMARKS:
        return list(points[:b])
    order = np.argsort(-np.asarray(scores[:b]), kind="stable")
    best = order[: MAX_LANDMARKS // 2]
    rest = np.sort(order[MAX_LANDMARKS // 2 :])
    spread = rest[np.round(np.linspace(0, len(rest) - 1, MAX_LANDMARKS - len(best))).astype(int)]
    return [points[i] for i in np.sort(np.concatenate([best, spread]))]


class Surrogate:
    """Posterior over z-scored scores for the snapshot's completed architectures.

    ``points`` are distinct architectures in first-trial order, ``scores`` (n,) their mean raw
    scores (higher is better) and ``counts`` (n,) how many completed trials each has.
    """

    def __init__(
        self,
        points: Sequence[Descriptor],
        scores: np.ndarray,
        counts: np.ndarray,
        cache: SearchCache | None = None,
        hyper: Hyper | None = None,
    ) -> None:
        """``cache``: the search's cache (a fresh one when not given); ``hyper`` overrides the
        scheduled fit (for tests and experiments)."""
        if not points:
            raise ValueError("a surrogate needs at least one completed architecture")
        self.points = list(points)
        self.cache = cache if cache is not None else SearchCache()
        self.distances = self.cache.distances
        n = len(points)
        self.y, self.mean, self.std = zscore(np.asarray(scores, np.float64))
        counts = np.asarray(counts, np.float64)
        if hyper is None:
            s = schedule_point(n, *HYPER_SCHEDULE)
            hyper = hyper_at(self.points, np.asarray(scores, np.float64), counts, s, self.cache)
        self.hyper = hyper
        self.landmarks = landmarks(self.points, scores, schedule_point(n, *BASIS_SCHEDULE))
        self.basis = self._basis()
        z, residual = self.features(self.points)
        self.posterior = Posterior(
            z, residual, self.hyper.noise / counts, self.y, self.hyper.signal
        )
        self.point_keys = {p.key: i for i, p in enumerate(self.points)}

    def _basis(self) -> Basis:
        key = (_digest(self.landmarks), self.hyper)

        def build() -> Basis:
            dl, ds = self.distances.block(self.landmarks, self.landmarks)
            return make_basis(raw_kernel(dl, ds, self.hyper))

        return self.cache.bases.get_or(key, build)

    def features(
        self, descriptors: Sequence[Descriptor], parent: Descriptor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feature rows (Q, r) and residual variances (Q,) of any architectures.

        ``parent``: the architecture these are one-step morphs of, if any (a speed hint).
        """
        dl, ds = self.distances.block(descriptors, self.landmarks, parent)
        return self.basis.features(raw_kernel(dl, ds, self.hyper))

    def predict(
        self, descriptors: Sequence[Descriptor], parent: Descriptor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (Q,), z-scored units, at new architectures."""
        if not descriptors:
            return np.zeros(0), np.zeros(0)
        mean, var = self.posterior.predict(*self.features(descriptors, parent))
        return mean, np.sqrt(var)

    def predict_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (n,), z-scored units, at the GP points."""
        mean, var = self.posterior.predict_points()
        return mean[: len(self.points)], np.sqrt(var[: len(self.points)])

    def add_fantasies(self, descriptors: Sequence[Descriptor]) -> None:
        """Kriging believer: condition on these architectures scoring their predicted mean."""
        if not descriptors:
            return
        z, residual = self.features(descriptors)
        mean, _ = self.posterior.predict(z, residual)
        noise = np.full(len(descriptors), self.hyper.noise)
        self.posterior = self.posterior.with_points(z, residual, noise, mean)
