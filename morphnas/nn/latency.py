"""Inference latency of a trained trial, as the user will deploy it: its ONNX file in ONNX Runtime
on the CPU.

Protocol (:func:`measure_onnx`): one ``InferenceSession`` with one intra-op and one inter-op
thread and sequential execution (one thread: the figure does not depend on how many cores the
measuring machine happens to have free, and is what a single-request server sees), full graph
optimisation; :attr:`LatencySettings.warmup` runs first (allocations, caches), then
:attr:`LatencySettings.repeats` timed runs (``time.perf_counter`` around ``session.run``) at
batch 1 and as many at :attr:`LatencySettings.batch_size`; the **median** of each is the result
(robust to the odd run preempted by another process). The input is random normal data of the
model's input shape. :func:`machine` names the machine the figure belongs to (CPU model, logical
cores, ONNX Runtime version): latencies are comparable only on the same one.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from morphnas.core.graph import Graph
from morphnas.core.records import LATENCY, LATENCY_BATCH_METRIC, LATENCY_BATCHED
from morphnas.nn.datasets import Normalisation
from morphnas.nn.onnx_export import INPUT_NAME, export_onnx


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured (see the module docstring)."""

    batch_size: int = 32
    warmup: int = 10
    repeats: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 65_536:
            raise ValueError(f"batch_size must be 1 to 65,536, got {self.batch_size}")
        if not 0 <= self.warmup <= 10_000 or not 1 <= self.repeats <= 100_000:
            raise ValueError("warmup must be 0 to 10,000 and repeats 1 to 100,000")


@dataclass(frozen=True)
class Latency:
    """Median milliseconds per call at batch 1 and at ``batch_size``, on ``machine``."""

    batch1_ms: float
    batch_ms: float
    batch_size: int
    machine: str

    def metrics(self) -> dict[str, float]:
        """As named report metrics (:data:`morphnas.core.records.LATENCY` and the batched ones)."""
        return {
            LATENCY: self.batch1_ms,
            LATENCY_BATCHED: self.batch_ms,
            LATENCY_BATCH_METRIC: float(self.batch_size),
        }


@lru_cache(maxsize=1)
def machine() -> str:
    """The measuring machine in words: CPU model, logical cores, ONNX Runtime version."""
    import onnxruntime

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}; {os.cpu_count()} logical CPUs; onnxruntime {onnxruntime.__version__}"[:200]


def _session(onnx_bytes: bytes) -> object:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(
        onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )


def _median_ms(session: object, x: np.ndarray, settings: LatencySettings) -> float:
    feed = {INPUT_NAME: x}
    run = session.run  # type: ignore[attr-defined]
    for _ in range(settings.warmup):
        run(None, feed)
    times = []
    for _ in range(settings.repeats):
        began = time.perf_counter()
        run(None, feed)
        times.append(time.perf_counter() - began)
    return 1000.0 * statistics.median(times)


def measure_onnx(
    onnx_bytes: bytes, input_shape: tuple[int, ...], settings: LatencySettings | None = None
) -> Latency:
    """Median latency of an ONNX model with one input of ``(batch, *input_shape)``."""
    settings = settings or LatencySettings()
    session = _session(onnx_bytes)
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, *input_shape)).astype(np.float32)  # (1, *input_shape)
    batch = rng.standard_normal((settings.batch_size, *input_shape)).astype(np.float32)
    return Latency(
        _median_ms(session, one, settings),
        _median_ms(session, batch, settings),
        settings.batch_size,
        machine(),
    )


def measure_latency(
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    norm: Normalisation,
    settings: LatencySettings | None = None,
) -> Latency:
    """Export ``graph`` with ``weights`` as the user would get it, and measure it."""
    return measure_onnx(export_onnx(graph, weights, norm), tuple(graph.input_shape), settings)
