"""ONNX export: every seed shape, morphed graphs with both kinds of skip, batch sizes 1/2/7."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import onnx
import pytest

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.morphs import AddSkip, ConcatSkip, Morph, apply_path
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import Weights
from morphnas.nn.datasets import Dataset, Normalisation, Split
from morphnas.nn.onnx_export import (
    OPSET,
    check_onnx_matches,
    export_onnx,
    onnx_metadata,
    run_onnx,
)
from morphnas.nn.train import evaluate

from .conftest import random_weights

SHAPES = {"image": (1, 8, 8), "sequence": (1, 40), "vector": (64,)}
BATCHES = (1, 2, 7)
META = {"search": "search-1", "trial": "7", "score": "0.93"}


def _longest(graph: Graph, ops: list[AddSkip] | list[ConcatSkip]) -> Morph:
    """The skip spanning most of the main chain (on CNNs it crosses pools, so the branch pools)."""
    assert ops, "no candidate of this kind"
    chain = graph.main_chain
    return max(ops, key=lambda op: chain.index(op.end) - chain.index(op.start))


def _morphed(graph: Graph, variant: str) -> Graph:
    """The seed, or the seed with an Add skip, a Concat skip, or both."""
    ops: list[Morph] = []
    if variant in ("add_skip", "both"):
        ops.append(_longest(graph, AddSkip.candidates(graph)))
        graph, _ = apply_path(graph, ops[-1:])
    if variant in ("concat_skip", "both"):
        ops.append(_longest(graph, ConcatSkip.candidates(graph)))
        graph, _ = apply_path(graph, ops[-1:])
    return graph


@dataclass(frozen=True)
class Case:
    variant: str
    graph: Graph
    weights: Weights
    norm: Normalisation
    onnx: bytes


def _case(kind: str, variant: str, softmax: bool = False) -> Case:
    shape = SHAPES[kind]
    graph = _morphed(seed_graph(shape, 10, width=8, depth=2), variant)
    # Random weights everywhere, so the skip branches (zero-initialised by a morph) really count.
    weights = random_weights(graph, seed=len(graph.layers))
    rng = np.random.default_rng(0)
    norm = Normalisation(
        tuple(rng.uniform(-1, 1, shape[0]).tolist()), tuple(rng.uniform(0.5, 2, shape[0]).tolist())
    )
    return Case(
        variant,
        graph,
        weights,
        norm,
        export_onnx(graph, weights, norm, softmax=softmax, metadata=META),
    )


@pytest.fixture(
    scope="module",
    params=[(k, v) for k in SHAPES for v in ("seed", "add_skip", "concat_skip", "both")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def case(request: pytest.FixtureRequest) -> Case:
    return _case(*request.param)


def test_graph_variants_have_the_skips_they_claim(case: Case) -> None:
    kinds = [layer.kind for layer in case.graph.layers]
    expected = {
        "seed": (0, 0),
        "add_skip": (1, 0),
        "concat_skip": (0, 1),
        "both": (1, 1),
    }[case.variant]
    assert (kinds.count("add"), kinds.count("concat")) == expected
    if case.variant != "seed" and len(case.graph.input_shape) > 1:
        seed = seed_graph(case.graph.input_shape, 10, width=8, depth=2)
        seed_pools = [layer.kind for layer in seed.layers].count("maxpool")
        assert kinds.count("maxpool") > seed_pools  # the branch repeats main-path pools


@pytest.mark.parametrize("batch", BATCHES)
def test_onnx_matches_torch(case: Case, batch: int) -> None:
    x = np.random.default_rng(batch).normal(size=(batch, *case.graph.input_shape))
    agreement, max_abs_diff = check_onnx_matches(case.onnx, case.graph, case.weights, case.norm, x)
    assert agreement == 1.0
    assert max_abs_diff <= 1e-4


def test_batch_axis_is_dynamic_and_opset_fixed(case: Case) -> None:
    proto = onnx.load_from_string(case.onnx)
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == list(case.graph.input_shape)
    assert proto.graph.output[0].name == "logits"
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET


def test_metadata_present(case: Case) -> None:
    meta = onnx_metadata(case.onnx)
    for key, value in META.items():
        assert meta[key] == value
    assert json.loads(meta["input_shape"]) == list(case.graph.input_shape)
    assert meta["classes"] == "10"
    assert Normalisation.from_dict(json.loads(meta["normalisation"])) == case.norm
    assert meta["morphnas_version"]
    assert Graph.from_json(meta["architecture"]) == case.graph


def test_softmax_output() -> None:
    case = _case("image", "both", softmax=True)
    x = np.random.default_rng(0).normal(size=(7, *SHAPES["image"]))
    assert onnx.load_from_string(case.onnx).graph.output[0].name == "probabilities"
    probabilities = run_onnx(case.onnx, x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    agreement, max_abs_diff = check_onnx_matches(case.onnx, case.graph, case.weights, case.norm, x)
    assert agreement == 1.0 and max_abs_diff <= 1e-5


def test_export_equals_evaluate_on_raw_data(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    # The trainer normalises the data; the export must do the same inside the model.
    weights = random_weights(small_cnn, seed=3)
    _, logits = evaluate(small_cnn, weights, digits, digits_split.val, digits_norm)
    exported = export_onnx(small_cnn, weights, digits_norm, metadata={})
    got = run_onnx(exported, digits.x[digits_split.val])
    np.testing.assert_allclose(got, logits, atol=1e-4)
    assert (got.argmax(1) == logits.argmax(1)).all()


def test_onnx_runs_without_morphnas_or_torch(tmp_path) -> None:
    case = _case("sequence", "both")
    path = tmp_path / "model.onnx"
    path.write_bytes(case.onnx)
    x = np.random.default_rng(0).normal(size=(3, *SHAPES["sequence"])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
out = session.run(None, {{"input": np.load({str(tmp_path / "x.npy")!r})}})[0]
assert meta["search"] == "search-1", meta
assert "morphnas" not in sys.modules and "torch" not in sys.modules
np.save({str(tmp_path / "out.npy")!r}, out)
"""
    subprocess.run([sys.executable, "-I", "-c", script], check=True, timeout=120)
    expected = run_onnx(case.onnx, x)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_metadata_is_checked() -> None:
    graph = seed_graph((64,), 3, width=8, depth=1)
    weights = random_weights(graph)
    norm = Normalisation.identity(64)
    with pytest.raises(InvalidArgumentError, match="set by the exporter"):
        export_onnx(graph, weights, norm, metadata={"classes": "4"})
    with pytest.raises(InvalidArgumentError, match="str"):
        export_onnx(graph, weights, norm, metadata={"score": 0.5})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="channels"):
        export_onnx(graph, weights, Normalisation.identity(3), metadata={})


def test_single_pair_normalisation_exports_for_any_input() -> None:
    graph = seed_graph((64,), 3, width=8, depth=1)
    weights = random_weights(graph)
    norm = Normalisation((0.3,), (2.0,))
    exported = export_onnx(graph, weights, norm, metadata={})
    x = np.random.default_rng(0).normal(size=(7, 64))
    assert check_onnx_matches(exported, graph, weights, norm, x)[0] == 1.0
