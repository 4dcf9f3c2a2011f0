"""Latency measurement is reproducible: the same model measured twice agrees at the median."""

from __future__ import annotations

import statistics

import numpy as np

from morphnas.core.seeds import seed_graph
from morphnas.core.weights import init_weights
from morphnas.nn.datasets import Normalisation
from morphnas.nn.latency import LatencySettings, machine, measure_latency, measure_onnx
from morphnas.nn.onnx_export import export_onnx


def test_the_same_model_measured_twice_differs_by_at_most_ten_percent() -> None:
    # Big enough (about 0.16 ms a call) that the call's fixed overhead, which varies by up to
    # 25 % from one ONNX Runtime session to the next on a model of 0.01 ms, does not dominate.
    graph = seed_graph((1, 28, 28), 10, width=32, depth=4)
    norm = Normalisation(tuple([0.0]), tuple([1.0]))
    blob = export_onnx(graph, init_weights(graph, 0), norm)
    settings = LatencySettings(batch_size=8, warmup=20, repeats=200)

    def one() -> float:
        return measure_onnx(blob, graph.input_shape, settings).batch1_ms

    # Each measurement is itself a median of 200 calls. Two series of five, taken in turns so
    # that a change of the shared machine's load falls on both, are compared at their medians.
    pairs = [(one(), one()) for _ in range(5)]
    first = statistics.median(a for a, _ in pairs)
    second = statistics.median(b for _, b in pairs)
    assert first > 0 and second > 0
    assert abs(first - second) <= 0.10 * max(first, second), (first, second)


def test_a_measurement_names_its_machine_and_both_batch_sizes() -> None:
    graph = seed_graph((1, 40), 10, width=8, depth=1)
    weights = init_weights(graph, 0)
    result = measure_latency(
        graph, weights, Normalisation((0.0,), (1.0,)), LatencySettings(batch_size=4, repeats=5)
    )
    assert result.machine == machine() and "onnxruntime" in result.machine
    assert result.batch_size == 4 and result.batch_ms > 0 and result.batch1_ms > 0
    assert result.metrics() == {
        "latency_ms": result.batch1_ms,
        "latency_ms_batch": result.batch_ms,
        "latency_batch_size": 4.0,
    }
    assert np.isfinite(list(result.metrics().values())).all()
