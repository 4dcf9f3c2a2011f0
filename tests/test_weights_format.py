"""weights_to_bytes writes what the safetensors library writes, and reads back the same."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import load, save

from morphnas.core.seeds import seed_graph
from morphnas.core.weights import init_weights, weights_from_bytes, weights_to_bytes


def test_float32_weights_are_byte_identical_to_the_library() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        weights = {
            f"layer{i}.{suffix}": rng.standard_normal(
                tuple(int(n) for n in rng.integers(1, 5, size=rng.integers(0, 4)))
            ).astype(np.float32)
            for i in range(int(rng.integers(1, 6)))
            for suffix in ("weight", "bias")
        }
        assert weights_to_bytes(weights) == save(weights)


def test_a_seed_network_round_trips() -> None:
    graph = seed_graph((1, 8, 8), 10)
    weights = init_weights(graph, seed=0)
    blob = weights_to_bytes(weights)
    assert blob == save(weights)
    back = weights_from_bytes(blob)
    assert set(back) == set(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(back[name], array)
        np.testing.assert_array_equal(load(blob)[name], array)


def test_other_dtypes_go_through_the_library() -> None:
    weights = {"a": np.arange(3, dtype=np.float64), "b": np.ones((2,), np.float32)}
    assert weights_to_bytes(weights) == save(weights)


def test_names_that_json_must_escape_are_still_byte_identical() -> None:
    names = ['quote"d', "back\\slash", "tab\there", "naïve.weight", "space name", "a.b-c"]
    weights = {name: np.full((2,), i, np.float32) for i, name in enumerate(names)}
    assert weights_to_bytes(weights) == save(weights)
    assert set(weights_from_bytes(weights_to_bytes(weights))) == set(names)
