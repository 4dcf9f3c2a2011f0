"""Weights (init, check, safetensors) and the torch module compiled from a graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from morphnas.core.errors import WeightsError
from morphnas.core.graph import INPUT, build_graph
from morphnas.core.layers import LAYER_KINDS, Layer
from morphnas.core.morphs import sample_morph
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import check_weights, init_weights, weights_from_bytes, weights_to_bytes
from morphnas.nn.module import build_module, load_weights, module_weights

#: One small graph per layer kind (the kind under test is named ``x``); a new kind needs one.
_CONV = Layer("c", "conv", (INPUT,), units=4, kernel=3, stride=1)
KIND_EXAMPLES: dict[str, tuple[tuple[int, ...], list[Layer]]] = {
    "conv": ((2, 7, 7), [Layer("x", "conv", (INPUT,), units=3, kernel=3, stride=2)]),
    "dense": ((5,), [Layer("x", "dense", (INPUT,), units=4)]),
    "bn": ((2, 6, 6), [Layer("x", "bn", (INPUT,))]),
    "relu": ((2, 6), [Layer("x", "relu", (INPUT,))]),
    "maxpool": ((2, 6, 6), [Layer("x", "maxpool", (INPUT,), kernel=3, stride=2)]),
    "avgpool": ((2, 9), [Layer("x", "avgpool", (INPUT,), kernel=2, stride=2)]),
    "gap": ((2, 6, 6), [Layer("x", "gap", (INPUT,))]),
    "dropout": ((6,), [Layer("x", "dropout", (INPUT,), rate=0.5)]),
    "flatten": ((2, 3, 3), [Layer("x", "flatten", (INPUT,))]),
    "add": ((2, 5, 5), [_CONV.replace(units=2), Layer("x", "add", (INPUT, "c"))]),
    "concat": ((2, 5, 5), [_CONV, Layer("x", "concat", ("c", INPUT))]),
}


def _example_graph(kind: str):
    shape, layers = KIND_EXAMPLES[kind]
    head = [Layer("f", "flatten", ("x",)), Layer("o", "dense", ("f",), units=3)]
    return build_graph(shape, layers + head)


def test_every_layer_kind_has_an_example():
    assert set(KIND_EXAMPLES) == set(LAYER_KINDS)


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_layer_kind_compiles_with_the_shapes_the_graph_infers(kind):
    graph = _example_graph(kind)
    module = build_module(graph, init_weights(graph, 0))
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.layers[name].register_forward_hook(
            lambda m, i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
        for name in graph.by_name
    ]
    module.train()(torch.randn(2, *graph.input_shape))
    for hook in hooks:
        hook.remove()
    assert shapes == {layer.name: graph.shapes[layer.name] for layer in graph.layers}
    assert graph.num_params == sum(p.numel() for p in module.parameters())


def test_parameter_count_matches_torch_on_seeds_and_morphed_graphs():
    rng = np.random.default_rng(0)
    for graph in (seed_graph((3, 32, 32), 10), seed_graph((3, 50), 4), seed_graph((20,), 3)):
        for _ in range(4):
            module = build_module(graph)
            assert graph.num_params == sum(p.numel() for p in module.parameters())
            graph = sample_morph(graph, rng).apply(graph)


def test_seed_cnn_logits_have_the_class_axis():
    graph = seed_graph((3, 32, 32), 10)
    module = build_module(graph, init_weights(graph, 0)).eval()
    assert module(torch.randn(4, 3, 32, 32)).shape == (4, 10)


def test_a_dense_layer_computes_x_w_transposed_plus_b():
    graph = build_graph((5,), [Layer("d", "dense", (INPUT,), units=3)])
    weights = init_weights(graph, 0)
    x = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    with torch.no_grad():
        out = build_module(graph, weights)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, x @ weights["d.weight"].T + weights["d.bias"], atol=1e-6)


# ------------------------------------------------------------------- weights


def test_init_weights_is_seeded_and_uses_torch_bounds():
    graph = seed_graph((3, 16, 16), 10, width=8)
    first, again, other = init_weights(graph, 1), init_weights(graph, 1), init_weights(graph, 2)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["conv0.weight"], other["conv0.weight"])
    bound = 1 / math.sqrt(3 * 3 * 3)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C*k*k
    assert np.abs(first["conv0.weight"]).max() <= bound
    assert np.array_equal(first["bn1.weight"], np.ones(8, np.float32))
    assert set(first) == set(graph.weight_shapes())


def test_module_weights_round_trip_exactly():
    graph = seed_graph((3, 16, 16), 10, width=8)
    weights = init_weights(graph, 3)
    weights["bn4.running_var"] = np.full(8, 2.5, np.float32)  # buffers travel too
    back = module_weights(build_module(graph, weights))
    assert set(back) == set(weights)
    assert all(np.array_equal(back[k], weights[k]) and back[k].dtype == np.float32 for k in back)


def test_loading_into_a_module_changes_its_output():
    graph = seed_graph((8,), 3, width=8)
    module = build_module(graph, init_weights(graph, 0)).eval()
    x = torch.randn(2, 8)
    before = module(x)
    load_weights(module, init_weights(graph, 1))
    assert not torch.allclose(before, module(x))


def test_safetensors_round_trip():
    graph = seed_graph((2, 20), 4, width=8)
    weights = init_weights(graph, 0)
    data = weights_to_bytes(weights)
    header_size = int.from_bytes(data[:8], "little")  # safetensors: u64 size, JSON header, raw
    assert data[8:9] == b"{" and header_size < len(data)
    back = weights_from_bytes(data)
    assert set(back) == set(weights)
    assert all(np.array_equal(back[k], weights[k]) for k in weights)
    check_weights(graph, back)


@pytest.mark.parametrize(
    "data", [b"", b"\x80\x04 pickle?", b"\x10" + b"\0" * 7 + b"{not json}xxxxx"]
)
def test_malformed_safetensors_are_a_weights_error(data):
    with pytest.raises(WeightsError):
        weights_from_bytes(data)


def _broken(change):
    graph = seed_graph((12,), 3, width=8)
    weights = init_weights(graph, 0)
    change(weights)
    return graph, weights


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.pop("dense0.bias"), "missing dense0.bias"),
        (lambda w: w.__setitem__("ghost.weight", np.zeros(1, np.float32)), "unexpected ghost"),
        (lambda w: w.__setitem__("dense3.weight", np.zeros((8, 9), np.float32)), "shape"),
        (lambda w: w.__setitem__("dense3.bias", np.zeros(8, np.int32)), "dtype"),
        (lambda w: w["dense3.bias"].__setitem__(0, np.nan), "NaN"),
        (lambda w: w["dense3.bias"].__setitem__(1, np.inf), "infinite"),
    ],
)
def test_check_weights_names_what_is_wrong(change, message):
    graph, weights = _broken(change)
    with pytest.raises(WeightsError, match=message):
        check_weights(graph, weights)
    with pytest.raises(WeightsError, match=message):
        build_module(graph, weights)


def test_check_weights_accepts_float64_and_returns_float32():
    graph, weights = _broken(lambda w: w.__setitem__("dense0.bias", w["dense0.bias"].astype(float)))
    assert check_weights(graph, weights)["dense0.bias"].dtype == np.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_module_runs_on_cuda_with_the_same_logits():
    graph = seed_graph((3, 32, 32), 10)
    module = build_module(graph, init_weights(graph, 0)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = module(x)
        got = module.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
