"""``check_weights_blob`` (chunked, nothing materialised) holds the rules of
``check_weights(graph, require_float32(weights_from_bytes(blob)))``, and header bombs are refused
from the raw header before any JSON is parsed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from morphnas.core.errors import WeightsError
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import (
    SafetensorsLimits,
    Weights,
    check_weights,
    check_weights_blob,
    init_weights,
    require_float32,
    weights_from_bytes,
    weights_to_bytes,
)
from tests.reliability.hostile.bombs import declared_header, deep_header, header_bomb

GRAPH = seed_graph((1, 8, 8), 10, 16, 2)


def good() -> Weights:
    return init_weights(GRAPH, 0)


def changed(change: Callable[[Weights], None]) -> bytes:
    weights = good()
    change(weights)
    return weights_to_bytes(weights)


def first_big(weights: Weights) -> str:
    return next(n for n in sorted(weights) if weights[n].size > 10)


CASES: dict[str, Callable[[], bytes]] = {
    "missing": lambda: changed(lambda w: w.pop(first_big(w))),
    "extra": lambda: changed(lambda w: w.update(extra=np.zeros(3, np.float32))),
    "wrong shape": lambda: changed(lambda w: w.update({first_big(w): np.zeros(3, np.float32)})),
    "float64": lambda: changed(lambda w: w.update({first_big(w): w[first_big(w)].astype("f8")})),
    "NaN": lambda: changed(
        lambda w: w[first_big(w)].__setitem__((0,) * w[first_big(w)].ndim, np.nan)
    ),
    "truncated": lambda: weights_to_bytes(good())[:-4],
    "not safetensors": lambda: b"hello world, no header here",
    "too short": lambda: b"\x01",
}


def view(blob: bytes) -> Callable[[int, int], memoryview]:
    data = memoryview(blob)
    return lambda offset, size: data[offset : offset + size]


def test_good_weights_pass() -> None:
    blob = weights_to_bytes(good())
    check_weights_blob(GRAPH, view(blob), len(blob))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_chunked_check_refuses_what_the_parsing_check_refuses(case: str) -> None:
    blob = CASES[case]()
    with pytest.raises(WeightsError):
        check_weights(GRAPH, require_float32(weights_from_bytes(blob)))
    with pytest.raises(WeightsError):
        check_weights_blob(GRAPH, view(blob), len(blob))


@pytest.mark.parametrize(
    "blob",
    [header_bomb(20_000), declared_header(10**9), b"\xff" * 8 + b"{}", deep_header(100_000)],
    ids=["tensors", "declared-1GB", "declared-2^64", "deep"],
)
def test_header_bombs_are_refused_before_parsing(blob: bytes) -> None:
    with pytest.raises(WeightsError, match="limit|tensors"):
        weights_from_bytes(blob)
    with pytest.raises(WeightsError):
        check_weights_blob(GRAPH, view(blob), len(blob))


def test_the_header_ceilings_are_configurable() -> None:
    blob = weights_to_bytes(good())
    with pytest.raises(WeightsError, match="tensors"):
        check_weights_blob(GRAPH, view(blob), len(blob), SafetensorsLimits(max_tensors=2))
    with pytest.raises(WeightsError, match="header declares"):
        weights_from_bytes(blob, SafetensorsLimits(max_header_bytes=16))
