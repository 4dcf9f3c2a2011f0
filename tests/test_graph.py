"""The architecture graph: seeds, shapes and sizes, JSON, content hash, and named errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from morphnas.core.errors import (
    CycleError,
    DanglingLayerError,
    InvalidGraphError,
    ShapeMismatchError,
    SizeLimitError,
    UnknownLayerKindError,
)
from morphnas.core.graph import INPUT, Graph, build_graph
from morphnas.core.layers import LAYER_KINDS, Layer
from morphnas.core.morphs import sample_morph
from morphnas.core.seeds import seed_graph


def conv(name, source, units=4, kernel=3, stride=1):
    return Layer(name, "conv", (source,), units=units, kernel=kernel, stride=stride)


def dense(name, source, units=3):
    return Layer(name, "dense", (source,), units=units)


def op(name, kind, *sources, **attrs):
    return Layer(name, kind, tuple(sources), **attrs)


# ------------------------------------------------------------------- seeds


def test_image_seed_is_a_post_activation_cnn_pooled_every_second_block():
    graph = seed_graph((3, 32, 32), 10)
    kinds = [layer.kind for layer in graph.layers]
    block = ["conv", "bn", "relu"]
    assert kinds == (block * 2 + ["maxpool"]) * 2 + ["gap", "dropout", "dense"]
    assert graph.main_chain == tuple(layer.name for layer in graph.layers)
    assert graph.layers[0].inputs == (INPUT,)  # the first conv sees the normalised input
    pools = [graph.shapes[layer.name] for layer in graph.layers if layer.kind == "maxpool"]
    assert pools == [(64, 16, 16), (64, 8, 8)]
    assert graph.shapes[graph.output.name] == (10,)


def test_seed_cnn_size_is_four_convolutions_their_bn_and_a_linear_head():
    graph = seed_graph((1, 40), 10)
    convs = (1 * 3 * 64 + 64) + 3 * (64 * 3 * 64 + 64)
    assert graph.num_params == convs + 4 * 2 * 64 + (64 * 10 + 10)


def test_sequence_seed_uses_1d_layers():
    graph = seed_graph((3, 100), 4)
    pools = [graph.shapes[layer.name] for layer in graph.layers if layer.kind == "maxpool"]
    assert pools == [(64, 50), (64, 25)]
    assert graph.weight_shapes()["conv0.weight"] == (64, 3, 3)


def test_small_maps_skip_the_pools_that_would_not_fit():
    assert [layer.kind for layer in seed_graph((1, 4, 4), 10).layers].count("maxpool") == 1
    assert [layer.kind for layer in seed_graph((1, 2, 2), 10).layers].count("maxpool") == 0


def test_vector_seed_is_the_auto_keras_mlp():
    graph = seed_graph((20,), 3)
    kinds = [layer.kind for layer in graph.layers]
    assert kinds == ["dense", "dropout", "relu"] * 4 + ["dense"]
    assert graph.num_params == (20 * 64 + 64) + 3 * (64 * 64 + 64) + (64 * 3 + 3)


def test_seed_sizes_are_configurable():
    assert seed_graph((3, 8, 8), 2, width=8, depth=1).num_params == (8 * 3 * 9 + 8) + (8 + 8) + (
        8 * 2 + 2
    )
    with pytest.raises(ValueError):
        seed_graph((3, 8, 8), 1)


def test_costs_grow_with_the_architecture():
    small, large = seed_graph((3, 32, 32), 10, width=16), seed_graph((3, 32, 32), 10, width=64)
    assert small.num_params < large.num_params
    assert 0 < small.flops < large.flops
    assert small.training_memory_bytes(32) < large.training_memory_bytes(32)
    assert large.training_memory_bytes(32) < large.training_memory_bytes(64)


def test_non_negative_tensors_are_those_after_a_relu_and_what_keeps_sign():
    graph = seed_graph((3, 16, 16), 10)  # conv0 bn1 relu2 conv3 bn4 relu5 maxpool6 ...
    assert graph.is_non_negative("relu2")
    assert graph.is_non_negative("maxpool6")  # a pool of a ReLU
    assert not graph.is_non_negative("bn4")
    assert not graph.is_non_negative("conv3")
    assert not graph.is_non_negative(INPUT)


# ------------------------------------------------------------------- JSON and hash


def test_json_is_canonical_and_round_trips():
    graph = seed_graph((3, 16, 16), 10)
    text = graph.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert Graph.from_json(text) == graph
    assert Graph.from_json(text.encode()) == graph


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(3, 16, 16), (1, 40), (20,)]),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 12),
)
def test_json_assembled_from_layer_texts_is_the_whole_graph_dumped(shape, seed, steps):
    """to_json joins remembered per-layer texts; it must equal dumping the whole dict."""
    rng = np.random.default_rng(seed)
    graph = seed_graph(shape, 10, width=8, depth=2)
    for _ in range(steps):
        graph = sample_morph(graph, rng).apply(graph)
        expected = json.dumps(graph.to_dict(), sort_keys=True, separators=(",", ":"))
        assert graph.to_json() == expected


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"format": "other/9", "input_shape": [3], "layers": []}',
        '{"input_shape": [3]}',
        '{"input_shape": [3.5], "layers": []}',
        '{"input_shape": [3], "layers": [{"name": "d", "kind": "dense", "inputs": ["input"], '
        '"units": true}]}',
        '{"input_shape": [3], "layers": [{"name": "d", "kind": "dense", "inputs": ["input"], '
        '"units": 2, "colour": "red"}]}',
        '{"input_shape": [3], "layers": [{"name": "d", "kind": "dropout", "inputs": ["input"], '
        '"rate": "half"}]}',
        '{"input_shape": [3], "layers": [{"name": "d", "kind": "dense", "inputs": "input"}]}',
    ],
)
def test_malformed_json_is_an_invalid_graph(text):
    with pytest.raises(InvalidGraphError):
        Graph.from_json(text)


def test_hash_is_structural():
    base = seed_graph((3, 16, 16), 10, width=8)
    assert base.content_hash == seed_graph((3, 16, 16), 10, width=8).content_hash
    assert base.content_hash != seed_graph((3, 16, 16), 10, width=9).content_hash
    assert base.content_hash != seed_graph((3, 16, 18), 10, width=8).content_hash


def test_add_commutes_in_the_hash_but_concat_does_not():
    def joined(kind: str, *sources: str) -> Graph:
        branches = [conv("a", INPUT, units=2), conv("b", INPUT, units=2, kernel=1)]
        head = [op("j", kind, *sources), op("g", "gap", "j"), dense("o", "g")]
        return build_graph((1, 4, 4), branches + head)

    assert joined("add", "a", "b").content_hash == joined("add", "b", "a").content_hash
    assert joined("concat", "a", "b").content_hash != joined("concat", "b", "a").content_hash


def test_build_graph_keeps_a_topological_listing_and_sorts_any_other():
    graph = seed_graph((3, 16, 16), 10, width=8)
    layers = list(graph.layers)
    assert build_graph(graph.input_shape, layers).layers == graph.layers
    assert build_graph(graph.input_shape, layers[::-1]).layers == graph.layers


# ------------------------------------------------------------------- invalid graphs


def _tiny(*extra: Layer, head: tuple[Layer, ...] | None = None) -> list[Layer]:
    body = [conv("c1", INPUT), op("r2", "relu", "c1"), *extra]
    return body + list(head or (op("g3", "gap", "r2"), dense("d4", "g3")))


INVALID = [
    # (description, layers, input shape, error class, offending layer)
    (
        "cycle",
        [conv("c1", "c2"), conv("c2", "c1"), op("g3", "gap", "c2"), dense("d4", "g3")],
        (1, 6, 6),
        CycleError,
        {"c1", "c2"},
    ),
    ("reads a ghost", _tiny(op("x", "relu", "ghost")), (1, 6, 6), DanglingLayerError, {"x"}),
    ("output unread", _tiny(op("x", "relu", "c1")), (1, 6, 6), DanglingLayerError, {"x"}),
    ("no inputs", _tiny(op("x", "relu")), (1, 6, 6), DanglingLayerError, {"x"}),
    ("unknown kind", _tiny(op("x", "lstm", "r2")), (1, 6, 6), UnknownLayerKindError, {"x"}),
    (
        "add channels",
        _tiny(conv("c5", INPUT, units=5), op("a6", "add", "r2", "c5")),
        (1, 6, 6),
        ShapeMismatchError,
        {"a6"},
    ),
    (
        "concat sizes",
        _tiny(op("p5", "maxpool", "r2", kernel=2, stride=2), op("j6", "concat", "r2", "p5")),
        (1, 6, 6),
        ShapeMismatchError,
        {"j6"},
    ),
    (
        "dense on a map",
        _tiny(head=(dense("d4", "r2"),)),
        (1, 6, 6),
        ShapeMismatchError,
        {"d4"},
    ),
    ("huge width", _tiny(conv("c5", "r2", units=10**6)), (1, 6, 6), SizeLimitError, {"c5"}),
    ("huge kernel", _tiny(conv("c5", "r2", kernel=99)), (1, 6, 6), SizeLimitError, {"c5"}),
    (
        "pool too big",
        _tiny(op("p5", "maxpool", "r2", kernel=7, stride=7)),
        (1, 6, 6),
        SizeLimitError,
        {"p5"},
    ),
    ("huge input", _tiny(), (1000, 1000, 1000), SizeLimitError, {INPUT}),
    ("negative rate", _tiny(op("x", "dropout", "r2", rate=-0.5)), (1, 6, 6), SizeLimitError, {"x"}),
]


@pytest.mark.parametrize(
    ("layers", "shape", "error", "culprits"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_graphs_raise_a_named_error_naming_the_layer(layers, shape, error, culprits):
    with pytest.raises(error) as caught:
        build_graph(shape, layers)
    assert caught.value.layer in culprits
    assert repr(caught.value.layer) in str(caught.value)


def test_every_layer_kind_has_an_example_in_a_valid_graph():
    layers = [
        conv("c1", INPUT),
        op("b2", "bn", "c1"),
        op("r3", "relu", "b2"),
        op("m4", "maxpool", "r3", kernel=2, stride=2),
        op("a5", "avgpool", "r3", kernel=2, stride=2),
        op("s6", "add", "m4", "a5"),
        op("j7", "concat", "m4", "s6"),
        op("f8", "flatten", "j7"),
        op("g9", "gap", "j7"),
        op("k10", "concat", "f8", "g9"),
        op("x11", "dropout", "k10", rate=0.5),
        dense("d12", "x11"),
    ]
    graph = build_graph((2, 6, 6), layers)
    assert {layer.kind for layer in graph.layers} == set(LAYER_KINDS)
    assert graph.shapes["k10"] == (8 * 3 * 3 + 8,)


# ------------------------------------------------------------------- invalid graphs, by property

SEEDS = [
    seed_graph((3, 16, 16), 10, width=8),
    seed_graph((2, 40), 4, width=8),
    seed_graph((12,), 3),
]


@st.composite
def graphs(draw):
    """A seed after 0-12 random morphs (so skips, concats and odd widths appear)."""
    graph = SEEDS[draw(st.integers(0, len(SEEDS) - 1))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(0, 12))):
        graph = sample_morph(graph, rng).apply(graph)
    return graph


def _before_output(graph: Graph, *new: Layer) -> list[Layer]:
    return [*graph.layers[:-1], *new, graph.output]


def _reach(graph: Graph, name: str, forward: bool) -> set[str]:
    """``name`` and every layer downstream (forward) or upstream of it."""
    found, todo = {name}, [name]
    while todo:
        current = todo.pop()
        step = graph.consumers[current] if forward else graph.by_name[current].inputs
        for other in step:
            if other != INPUT and other not in found:
                found.add(other)
                todo.append(other)
    return found


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), data=st.data())
def test_a_back_edge_is_a_cycle_named_by_a_layer_on_it(graph, data):
    layer = data.draw(st.sampled_from(graph.layers[:-1]))
    consumer = data.draw(st.sampled_from(graph.consumers[layer.name]))
    looped = layer.replace(inputs=(consumer, *layer.inputs[1:]))
    layers = [looped if item is layer else item for item in graph.layers]
    with pytest.raises(CycleError) as caught:
        build_graph(graph.input_shape, layers)
    on_cycle = _reach(graph, layer.name, forward=True) & _reach(graph, consumer, forward=False)
    assert caught.value.layer in on_cycle


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), data=st.data())
def test_dangling_layers_are_named(graph, data):
    target = data.draw(st.sampled_from(graph.layers[:-1])).name
    with pytest.raises(DanglingLayerError) as caught:
        build_graph(graph.input_shape, _before_output(graph, op("stray", "relu", target)))
    assert caught.value.layer == "stray"
    victim = data.draw(st.sampled_from(graph.layers))
    ghosted = [
        layer.replace(inputs=("ghost", *layer.inputs[1:])) if layer is victim else layer
        for layer in graph.layers
    ]
    with pytest.raises(DanglingLayerError) as caught:
        build_graph(graph.input_shape, ghosted)
    assert caught.value.layer == victim.name


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), data=st.data())
def test_unknown_kinds_are_named(graph, data):
    victim = data.draw(st.sampled_from(graph.layers))
    layers = [layer.replace(kind="lstm") if layer is victim else layer for layer in graph.layers]
    with pytest.raises(UnknownLayerKindError) as caught:
        build_graph(graph.input_shape, layers)
    assert caught.value.layer == victim.name


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), data=st.data(), kind=st.sampled_from(["add", "concat"]))
def test_joins_of_mismatched_tensors_are_named(graph, data, kind):
    names = [INPUT, *(layer.name for layer in graph.layers[:-1])]
    shapes = graph.shapes
    if kind == "add":
        pairs = [(a, b) for a in names for b in names if shapes[a] != shapes[b]]
    else:
        pairs = [(a, b) for a in names for b in names if shapes[a][1:] != shapes[b][1:]]
    assume(pairs)
    a, b = data.draw(st.sampled_from(pairs))
    with pytest.raises(ShapeMismatchError) as caught:
        build_graph(graph.input_shape, _before_output(graph, op("join", kind, a, b)))
    assert caught.value.layer == "join"


ABSURD = {
    "conv": [{"units": 10**6}, {"units": 0}, {"kernel": 99}, {"stride": 0}, {"kernel": 4}],
    "dense": [{"units": 10**6}, {"units": 0}],
    "maxpool": [{"kernel": 15, "stride": 15}],
}


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), data=st.data())
def test_absurd_sizes_are_named(graph, data):
    victim = data.draw(st.sampled_from([x for x in graph.layers if x.kind in ABSURD]))
    change = data.draw(st.sampled_from(ABSURD[victim.kind]))
    if victim.kind == "maxpool":
        assume(max(graph.shapes[victim.inputs[0]][1:]) < change["kernel"])
    layers = [layer.replace(**change) if layer is victim else layer for layer in graph.layers]
    with pytest.raises(SizeLimitError) as caught:
        build_graph(graph.input_shape, layers)
    assert caught.value.layer == victim.name


def test_inputs_may_be_given_as_a_list():
    graph = build_graph((4,), [Layer("d", "dense", ["input"], units=2)])  # type: ignore[arg-type]
    assert graph.layers[0].inputs == (INPUT,)
    assert hash(graph) == hash(build_graph((4,), [dense("d", INPUT, units=2)]))


def test_the_hash_is_stable_across_processes_and_versions():
    # Stored trials are de-duplicated by this value: changing the hash function breaks old
    # databases, so a change here must come with a migration.
    # The graph is spelled out (Auto-Keras's CNN) so that changing a seed cannot move it.
    layers, previous = [], INPUT
    block = [
        ("relu", {}),
        ("bn", {}),
        ("conv", {"units": 64, "kernel": 3, "stride": 1}),
        ("maxpool", {"kernel": 2, "stride": 2}),
    ]
    head = [
        ("gap", {}),
        ("dropout", {"rate": 0.25}),
        ("dense", {"units": 64}),
        ("relu", {}),
        ("dense", {"units": 10}),
    ]
    for kind, attrs in block * 3 + head:
        layers.append(Layer(f"{kind}{len(layers)}", kind, (previous,), **attrs))
        previous = layers[-1].name
    expected = "0e64c1347129579e7b7e83ce5f967ca027afaa1515a1754b870d50dcd6d7d10c"
    assert build_graph((3, 32, 32), layers).content_hash == expected


# ------------------------------------------------------------------- validation reusing a parent


def _outcome(shape, layers, parent=None):
    """The graph and its shapes, or the error's type, layer and message."""
    try:
        graph = build_graph(shape, layers, parent=parent)
    except InvalidGraphError as err:
        return type(err), err.layer, str(err)
    return graph, graph.shapes, graph.num_params, graph.training_memory_bytes(8)


EDITS = [
    {"units": True},
    {"units": 0},
    {"units": 10**6},
    {"units": 1},
    {"units": 3.0},
    {"kernel": 4},
    {"kernel": 15, "stride": 15},
    {"stride": 0},
    {"rate": float("nan")},
    {"rate": 0.5},
    {"kind": "lstm"},
    {"kind": "dense"},
    {"kind": "flatten"},
    {"inputs": ("ghost",)},
    {"inputs": ()},
]


@settings(max_examples=80, deadline=None)
@given(graph=graphs(), data=st.data())
def test_validation_with_a_parent_has_the_same_outcome_as_without(graph, data):
    # Layer objects shared with the parent may skip their checks only while they read the same
    # shapes: an edit anywhere, or another input shape, must be caught exactly as without.
    victim = data.draw(st.sampled_from(graph.layers))
    edit = data.draw(st.sampled_from(EDITS))
    if victim is not graph.output and data.draw(st.booleans()):  # a back edge, or a name twice
        consumer = data.draw(st.sampled_from(graph.consumers[victim.name]))
        other = data.draw(st.sampled_from([x.name for x in graph.layers if x is not victim]))
        edit = data.draw(st.sampled_from([{"inputs": (consumer,)}, {"name": other}]))
    layers = [layer.replace(**edit) if layer is victim else layer for layer in graph.layers]
    shape = graph.input_shape
    if data.draw(st.booleans()):
        shape = (shape[0] + 1, *(max(1, n // 3) for n in shape[1:]))
    assert _outcome(shape, layers, parent=graph) == _outcome(shape, layers)
    if data.draw(st.booleans()):
        dropped = [layer for layer in graph.layers if layer is not victim]
        if dropped:
            assert _outcome(shape, dropped, parent=graph) == _outcome(shape, dropped)


@settings(max_examples=40, deadline=None)
@given(graph=graphs(), rng_seed=st.integers(0, 2**32 - 1))
def test_a_morphed_graph_validated_against_its_parent_is_the_same_graph(graph, rng_seed):
    op = sample_morph(graph, np.random.default_rng(rng_seed))
    child = op.apply(graph)  # reuses the parent's checks
    fresh = build_graph(child.input_shape, child.layers)
    assert child == fresh
    assert child.shapes == fresh.shapes
    assert child.weight_shapes() == fresh.weight_shapes()
    assert child.num_params == fresh.num_params
