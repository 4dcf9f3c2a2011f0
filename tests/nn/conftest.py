"""Fixtures for the training stack: built-in datasets, splits, small graphs and random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphnas.core.graph import Graph
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import Weights, init_weights
from morphnas.nn.datasets import (
    Dataset,
    Normalisation,
    Split,
    builtin_dataset,
    compute_normalisation,
    dataset_split,
)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return builtin_dataset("digits")


@pytest.fixture(scope="session")
def digits_split(digits: Dataset) -> Split:
    return dataset_split(digits, seed=0)


@pytest.fixture(scope="session")
def digits_norm(digits: Dataset, digits_split: Split) -> Normalisation:
    return compute_normalisation(digits.x, digits_split.train)


@pytest.fixture(scope="session")
def small_cnn(digits: Dataset) -> Graph:
    """A small 2-D CNN for digits: fast enough to train a few epochs in a test."""
    return seed_graph(digits.input_shape, digits.num_classes, width=16, depth=2)


def random_weights(graph: Graph, seed: int = 0) -> Weights:
    """Fresh weights with BN affines and running statistics far from the identity."""
    rng = np.random.default_rng(seed)
    weights = init_weights(graph, seed)
    ranges = {
        "weight": (0.5, 1.5),
        "bias": (-0.3, 0.3),
        "running_mean": (-0.5, 0.5),
        "running_var": (0.5, 2.0),
    }
    for name, array in weights.items():
        layer, suffix = name.rsplit(".", 1)
        if graph.by_name[layer].kind == "bn":
            weights[name] = rng.uniform(*ranges[suffix], array.shape).astype(np.float32)
    return weights
