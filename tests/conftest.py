"""Shared fixtures: the test databases, and small seed architectures with *trained* weights.

``db_url`` runs a test on SQLite and on PostgreSQL; ``postgres_url`` is the one PostgreSQL
fixture (an empty schema of the test's own, see :mod:`tests.dbs`).

Function-preservation tests must start from weights a search would really morph: trained conv
and dense kernels and BN layers whose running statistics and affine parameters are far from
their fresh values (fresh BN is the identity, which would hide a wrong channel mapping).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from morphnas.grpc_io import prefer_low_latency_io

# The tests run on the gRPC I/O path morphnas asks for (before anything loads grpc), unless
# GRPC_EXPERIMENTS is set: .ci/run runs the service tests again with gRPC's default.
prefer_low_latency_io()

import numpy as np
import pytest
import torch

from morphnas.core.graph import Graph
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import Weights, init_weights
from morphnas.nn.module import build_module, module_weights
from tests.dbs import DATABASES, fresh_postgres_database, fresh_schema

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of the database created for this test session (dropped afterwards)."""
    yield from fresh_postgres_database()


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """An empty PostgreSQL schema for this test (tests using it carry ``@pytest.mark.postgres``)."""
    yield from fresh_schema(postgres_database)


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables yet): a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'morphnas.db'}"
        return
    yield request.getfixturevalue("postgres_url")


#: Small seeds, one per input rank, so a test can afford many forward passes.
SEED_SHAPES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "image": ((2, 12, 12), 5, 16),  # (input shape, classes, width)
    "sequence": ((3, 32), 4, 16),
    "vector": ((20,), 3, 32),
}


#: Ranges for randomised BN tensors: far from the identity, still well conditioned.
_BN_RANGES = {
    "weight": (0.5, 1.5),
    "bias": (-0.3, 0.3),
    "running_mean": (-0.5, 0.5),
    "running_var": (0.5, 2.0),
}


@dataclass(frozen=True)
class Seed:
    """A seed graph, trained weights for it, and a batch of probe inputs."""

    name: str
    graph: Graph
    weights: Weights
    probe: np.ndarray  # (N, *graph.input_shape), float32


def trained_weights(graph: Graph, seed: int = 0, steps: int = 5) -> Weights:
    """Weights after a few AdamW steps on random data, then BN statistics and affines randomised.

    The training steps run in train mode, so they also move the BN running statistics; the
    randomisation then makes sure every BN channel is far from the identity.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = build_module(graph, init_weights(graph, seed))
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-2)
    classes = graph.shape_of(graph.output.name)[0]
    module.train()
    for _ in range(steps):
        x = torch.randn(16, *graph.input_shape)
        y = torch.randint(0, classes, (16,))
        loss = torch.nn.functional.cross_entropy(module(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    weights = module_weights(module)
    for name, array in weights.items():
        layer, suffix = name.rsplit(".", 1)
        if graph.by_name[layer].kind == "bn":
            low, high = _BN_RANGES[suffix]
            weights[name] = rng.uniform(low, high, array.shape).astype(np.float32)
    return weights


@pytest.fixture(scope="session", autouse=True)
def architectures_match_the_schema() -> Iterator[None]:
    """Every architecture the session serialises must pass protos/.../architecture.schema.json
    (checked once, at the end: an error in the last test's teardown names the first few)."""
    from tests.contract.recorder import invalid_architectures, record_architectures

    with record_architectures() as seen:
        yield
    bad = invalid_architectures(seen)
    assert not bad, f"{len(bad)}+ of {len(seen)} architectures break the schema:\n" + "\n".join(bad)


@pytest.fixture(scope="session", params=sorted(SEED_SHAPES))
def trained_seed(request: pytest.FixtureRequest) -> Seed:
    """Each seed architecture (image, sequence, vector) with trained weights."""
    shape, classes, width = SEED_SHAPES[request.param]
    graph = seed_graph(shape, classes, width=width)
    probe = np.random.default_rng(1).normal(size=(8, *shape)).astype(np.float32)
    return Seed(request.param, graph, trained_weights(graph), probe)


def eval_logits(graph: Graph, weights: Weights, x: np.ndarray) -> np.ndarray:
    """Logits of ``graph`` with ``weights`` on ``x`` in eval mode, as a numpy array."""
    module = build_module(graph, weights).eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="session")
def logits_of():
    """``logits_of(graph, weights, x)``: eval-mode logits (see :func:`eval_logits`)."""
    return eval_logits
