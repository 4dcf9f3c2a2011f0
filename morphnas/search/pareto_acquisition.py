"""The acquisition of a Pareto search on the morph tree: log EHVI per unit of training cost.

A search with objectives (``SearchConfig.objectives``) keeps the Bayesian policy's GP, tree
search and cost model (:mod:`morphnas.search.policy`) and changes only the value the tree search
maximises, from ``log EI − κ log ĉ`` to ``log EHVI − κ log ĉ`` (:mod:`morphnas.search.pareto`):

* the score axis is the GP posterior (z-scored units); the front's scores are the posterior
  means at the observed architectures (as the incumbent of plain EI is);
* the cost axis is a random scalarisation ``c = Σ λ_m ñ_m`` of the normalised log costs
  ``ñ_m`` of the objectives, with ``λ ~ Dirichlet(1)`` drawn from the policy's seeded generator
  for each proposal (:meth:`ParetoAcquisition.redraw`). Parameters and FLOPs of a candidate are
  exact (the tree search materialises it); its latency is the measured one for an observed
  trial and :class:`morphnas.search.latency.LatencyModel`'s prediction otherwise;
* the reference point is ``(min μ − 0.1·range, max c + 0.1)`` (normalised costs span [0, 1]
  over the observed points), so the cheapest and the most accurate front points both add area.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from morphnas.core.graph import Graph
from morphnas.core.records import FLOPS, LATENCY, PARAMS
from morphnas.search import ei, pareto
from morphnas.search.acquisition import Child
from morphnas.search.cost import CostModel
from morphnas.search.descriptors import Descriptor
from morphnas.search.latency import LatencyModel
from morphnas.search.surrogate import Surrogate

#: Reference point margins: below the worst mean score by this share of the score range (at
#: least 0.1 z-units), and this far right of the costliest point in normalised cost units.
SCORE_MARGIN = 0.1
COST_MARGIN = 0.1


def cost_columns(
    objectives: Sequence[str], params: np.ndarray, flops: np.ndarray, latency: np.ndarray
) -> np.ndarray:
    """The raw costs (N, M) of the objectives, in the order named."""
    by_name = {PARAMS: params, FLOPS: flops, LATENCY: latency}
    return np.stack([np.asarray(by_name[o], np.float64) for o in objectives], axis=1)


@dataclass
class ParetoAcquisition:
    """α for the tree search of one Pareto proposal (rebuilt on every ask: no state kept)."""

    objectives: tuple[str, ...]
    model: Surrogate
    costs: CostModel
    latency: LatencyModel
    observed: np.ndarray  # (N, M) raw costs of the GP points
    point_flops: np.ndarray  # (N,)
    point_mean: np.ndarray  # (N,) posterior means at the GP points
    point_std: np.ndarray  # (N,)
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))  # λ (M,)

    @classmethod
    def build(
        cls,
        objectives: Sequence[str],
        model: Surrogate,
        costs: CostModel,
        graphs: Sequence[Graph],
        metrics: Sequence[Mapping[str, float]],
        rng: np.random.Generator,
    ) -> ParetoAcquisition:
        """From the GP over the observed ``graphs`` and their reported ``metrics``."""
        flops = np.array([g.flops for g in graphs], np.float64)
        params = np.array([g.num_params for g in graphs], np.float64)
        measured = [m.get(LATENCY) for m in metrics]
        latency_model = LatencyModel.fit(flops.tolist(), measured)
        latency = latency_model.latencies(flops, measured)
        mean, std = model.predict_points()
        made = cls(
            tuple(objectives),
            model,
            costs,
            latency_model,
            cost_columns(objectives, params, flops, latency),
            flops,
            mean,
            std,
        )
        made.redraw(rng)
        return made

    def redraw(self, rng: np.random.Generator) -> None:
        """A new λ: each proposal of an ask aims at another part of the front."""
        self.weights = pareto.random_weights(rng, len(self.objectives))

    def _scalar(self, raw: np.ndarray) -> np.ndarray:
        return pareto.normalised_log_costs(raw, self.observed) @ self.weights  # (Q,)

    def _staircase(self) -> tuple[np.ndarray, np.ndarray]:
        c = self._scalar(self.observed)
        spread = float(np.ptp(self.point_mean)) if len(self.point_mean) > 1 else 0.0
        reference = (
            float(np.min(self.point_mean)) - max(SCORE_MARGIN * spread, 0.1),
            float(np.max(c)) + COST_MARGIN,
        )
        return pareto.front_staircase(self.point_mean, c, reference)

    def _value(
        self, mean: np.ndarray, std: np.ndarray, raw: np.ndarray, flops: np.ndarray
    ) -> np.ndarray:
        breaks, levels = self._staircase()
        gain = pareto.log_ehvi(mean, std, self._scalar(raw), breaks, levels)
        return gain - ei.COST_EXPONENT * self.costs.log_relative(flops)

    def roots(self) -> np.ndarray:
        """α (N,) of the observed architectures (the tree search's roots)."""
        return self._value(self.point_mean, self.point_std, self.observed, self.point_flops)

    def children(self, children: list[Child], parent: Descriptor) -> np.ndarray:
        """α (Q,) of one node's materialised one-step morphs (training cost included)."""
        mean, std = self.model.predict([c.descriptor for c in children], parent)
        flops = np.array([c.flops for c in children], np.float64)
        params = np.array([c.params for c in children], np.float64)
        raw = cost_columns(self.objectives, params, flops, self.latency.predict_ms(flops))
        return self._value(mean, std, raw, flops)
