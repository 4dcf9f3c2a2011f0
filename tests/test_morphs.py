"""Network morphisms: every registered kind keeps the function, on every seed, from trained weights.

The tests are parametrised over :data:`MORPH_KINDS`, so a newly registered kind is checked the
moment it exists. "Keeps the function" means: in eval mode the child's logits equal the parent's
on random inputs within ``ATOL`` (absolute).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphnas.core.errors import InvalidMorphError
from morphnas.core.graph import INPUT, build_graph
from morphnas.core.layers import Layer
from morphnas.core.morphs import (
    MORPH_KINDS,
    AddSkip,
    ConcatSkip,
    Deeper,
    Wider,
    apply_path,
    morph_from_dict,
    neighbourhood,
    sample_morph,
    widening_plan,
)
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import check_weights, init_weights

ATOL = 1e-4
KINDS = sorted(MORPH_KINDS)
#: Candidates tried per kind and seed (drawn with a fixed generator; the image seed has ~100).
CANDIDATES_PER_KIND = 12


def _some(ops: list, count: int = CANDIDATES_PER_KIND) -> list:
    if len(ops) <= count:
        return ops
    picks = np.random.default_rng(0).choice(len(ops), size=count, replace=False)
    return [ops[i] for i in sorted(picks)]


def _child(op, graph, weights):
    return op.apply(graph), op.transfer(graph, weights)


# ------------------------------------------------------------------- function preservation


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_keeps_the_logits_of_a_trained_seed(trained_seed, logits_of, kind):
    ops = MORPH_KINDS[kind].candidates(trained_seed.graph)
    assert ops, f"{kind} has no candidate on the {trained_seed.name} seed"
    parent = logits_of(trained_seed.graph, trained_seed.weights, trained_seed.probe)
    for op in _some(ops):
        child_graph, child_weights = _child(op, trained_seed.graph, trained_seed.weights)
        child = logits_of(child_graph, child_weights, trained_seed.probe)
        np.testing.assert_allclose(child, parent, rtol=0, atol=ATOL, err_msg=str(op))


@pytest.mark.parametrize("chain_seed", [0, 1, 2])
def test_twenty_random_morphs_keep_the_logits(trained_seed, logits_of, chain_seed):
    rng = np.random.default_rng(chain_seed)
    graph, weights = trained_seed.graph, trained_seed.weights
    for _ in range(20):
        op = sample_morph(graph, rng)
        graph, weights = _child(op, graph, weights)
        check_weights(graph, weights)  # the transferred weights fit the child exactly
    assert len(graph.layers) > len(trained_seed.graph.layers)
    np.testing.assert_allclose(
        logits_of(graph, weights, trained_seed.probe),
        logits_of(trained_seed.graph, trained_seed.weights, trained_seed.probe),
        rtol=0,
        atol=ATOL,
    )


def test_apply_path_replays_a_logged_chain(trained_seed, logits_of):
    rng = np.random.default_rng(7)
    graph, ops = trained_seed.graph, []
    for _ in range(6):
        ops.append(sample_morph(graph, rng))
        graph = ops[-1].apply(graph)
    log = json.loads(json.dumps([op.to_dict() for op in ops]))  # as stored with a trial
    replayed, weights = apply_path(
        trained_seed.graph, [morph_from_dict(d) for d in log], trained_seed.weights
    )
    assert replayed == graph
    assert apply_path(trained_seed.graph, ops)[1] is None
    np.testing.assert_allclose(
        logits_of(replayed, weights, trained_seed.probe),
        logits_of(trained_seed.graph, trained_seed.weights, trained_seed.probe),
        rtol=0,
        atol=ATOL,
    )


# ------------------------------------------------------------------- the registry


def test_every_kind_appears_in_the_neighbourhood_of_every_seed(trained_seed):
    kinds = {op.kind for op in neighbourhood(trained_seed.graph)}
    assert kinds == set(MORPH_KINDS)


def test_morphs_round_trip_through_their_dict_form(trained_seed):
    for op in neighbourhood(trained_seed.graph):
        data = json.loads(json.dumps(op.to_dict()))
        assert data["op"] == op.kind
        assert morph_from_dict(data) == op


@pytest.mark.parametrize(
    "data",
    [
        {"op": "shallower", "after": "conv1"},
        {"after": "conv1"},
        {"op": "deeper", "layer": "conv1"},
        {"op": "deeper", "after": 3},
        {"op": "wider", "layer": "conv1", "add": "8"},
        {"op": "wider", "layer": "conv1", "add": 0},
        {"op": "add_skip", "start": "conv1"},
        "deeper",
    ],
)
def test_malformed_morphs_are_refused(data):
    with pytest.raises(InvalidMorphError):
        morph_from_dict(data)


def test_no_candidate_touches_the_output_layer(trained_seed):
    output = trained_seed.graph.output.name
    for op in neighbourhood(trained_seed.graph):
        assert output not in (getattr(op, f, None) for f in ("after", "layer", "end")), op
    with pytest.raises(InvalidMorphError):
        Deeper(output).apply(trained_seed.graph)


def test_morphs_that_do_not_fit_are_refused():
    graph = seed_graph((2, 12, 12), 5, width=16)
    refused = [
        Deeper("nosuch", 3),
        Deeper("conv3", 2),  # even kernel
        Deeper("dense16", 3),  # a vector takes a Dense, kernel 0
        Wider("bn1", 4),  # only conv and dense grow
        Wider("conv3", 20_000),  # past MAX_UNITS
        AddSkip("conv10", "conv3"),  # backwards
        AddSkip("conv3", "dense16"),  # across the global pool
    ]
    for op in refused:
        with pytest.raises(InvalidMorphError):
            op.apply(graph)
        with pytest.raises(InvalidMorphError):
            op.transfer(graph, init_weights(graph, 0))


# ------------------------------------------------------------------- deeper and its ReLU


def _inserted_kinds(graph, op):
    child = op.apply(graph)
    return [layer.kind for layer in child.layers if layer.name not in graph.by_name]


def test_deeper_adds_a_relu_only_where_the_tensor_is_non_negative():
    cnn = seed_graph((2, 12, 12), 5, width=16)  # conv0 -> bn1 -> relu2 -> conv3 -> bn4 ...
    assert _inserted_kinds(cnn, Deeper("relu2", 3)) == ["conv", "bn", "relu"]
    assert _inserted_kinds(cnn, Deeper("bn4", 3)) == ["conv", "bn"]
    assert _inserted_kinds(cnn, Deeper("conv7", 5)) == ["conv", "bn"]
    mlp = seed_graph((20,), 3, width=32)  # dense0 -> dropout1 -> relu2 -> dense3 ...
    assert _inserted_kinds(mlp, Deeper("relu2")) == ["dense", "relu"]
    assert _inserted_kinds(mlp, Deeper("dense0")) == ["dense"]


def test_a_relu_after_a_pool_of_a_relu_is_safe():
    layers = [
        Layer("conv0", "conv", (INPUT,), units=4, kernel=3, stride=1),
        Layer("relu1", "relu", ("conv0",)),
        Layer("pool2", "maxpool", ("relu1",), kernel=2, stride=2),
        Layer("gap3", "gap", ("pool2",)),
        Layer("dense4", "dense", ("gap3",), units=3),
    ]
    graph = build_graph((1, 8, 8), layers)
    assert _inserted_kinds(graph, Deeper("pool2", 1)) == ["conv", "bn", "relu"]


# ------------------------------------------------------------------- wider through joins


def test_wider_through_an_add_widens_the_other_branch(logits_of):
    parent = seed_graph((2, 12, 12), 5, width=16)
    skip = AddSkip("conv3", "conv10")  # conv3 -> maxpool copy -> relu -> 1x1 conv -> add(conv10, .)
    graph, weights = _child(skip, parent, init_weights(parent, 0))
    projection = next(n for n in graph.by_name if n not in parent.by_name and n.startswith("conv"))
    plan = widening_plan(graph, "conv10", 8)
    assert plan.sources == {"conv10": 8, projection: 8}
    child = Wider("conv10", 8).apply(graph)
    assert child.by_name[projection].units == 24
    _assert_same_logits(logits_of, graph, weights, Wider("conv10", 8))


def test_wider_through_a_concat_inserts_at_the_right_offset(logits_of):
    parent = seed_graph((2, 12, 12), 5, width=16)
    skip = ConcatSkip("conv3", "conv10")  # concat(conv10 [16 ch], relu(pool(conv3)) [16 ch])
    graph, weights = _child(skip, parent, init_weights(parent, 0))
    projection = graph.consumers[next(n for n in graph.by_name if n.startswith("concat"))][0]
    # conv10 is the concat's first input: new channels go between the two inputs.
    assert widening_plan(graph, "conv10", 8).sinks == {projection: ((16, 8),)}
    # conv3 feeds the main path (conv7) and the concat's second input (appended at the end).
    assert widening_plan(graph, "conv3", 8).sinks == {"conv7": ((16, 8),), projection: ((32, 8),)}
    for op in (Wider("conv10", 8), Wider("conv3", 8)):
        _assert_same_logits(logits_of, graph, weights, op)


def test_wider_through_a_flatten_scales_the_insertion_to_features(logits_of):
    layers = [
        Layer("conv0", "conv", (INPUT,), units=4, kernel=3, stride=1),
        Layer("relu1", "relu", ("conv0",)),
        Layer("flat2", "flatten", ("relu1",)),
        Layer("dense3", "dense", ("flat2",), units=3),
    ]
    graph = build_graph((1, 5, 5), layers)  # 4 channels x 25 positions = 100 features
    assert widening_plan(graph, "conv0", 2).sinks == {"dense3": ((100, 50),)}
    child_weights = Wider("conv0", 2).transfer(graph, init_weights(graph, 0))
    assert child_weights["dense3.weight"].shape == (3, 150)
    _assert_same_logits(logits_of, graph, init_weights(graph, 0), Wider("conv0", 2))


def test_wider_never_reaches_the_input():
    layers = [
        Layer("conv0", "conv", (INPUT,), units=2, kernel=3, stride=1),
        Layer("add1", "add", (INPUT, "conv0")),
        Layer("gap2", "gap", ("add1",)),
        Layer("dense3", "dense", ("gap2",), units=3),
    ]
    graph = build_graph((2, 6, 6), layers)
    assert not Wider.candidates(graph)
    with pytest.raises(InvalidMorphError, match="input"):
        Wider("conv0", 2).apply(graph)


def _assert_same_logits(logits_of, graph, weights, op):
    probe = np.random.default_rng(3).normal(size=(4, *graph.input_shape)).astype(np.float32)
    child = logits_of(op.apply(graph), op.transfer(graph, weights), probe)
    np.testing.assert_allclose(child, logits_of(graph, weights, probe), rtol=0, atol=ATOL)


# ------------------------------------------------------------------- properties of chains

SEEDS = {
    "image": seed_graph((3, 16, 16), 10, width=8),
    "sequence": seed_graph((2, 40), 4, width=8),
    "vector": seed_graph((12,), 3, width=8),
}


def _random_chain(seed_name: str, rng_seed: int, length: int):
    graph = SEEDS[seed_name]
    rng = np.random.default_rng(rng_seed)
    for _ in range(length):
        graph = sample_morph(graph, rng).apply(graph)
    return graph


def _renamed(graph, rng_seed: int):
    """The same architecture with every layer renamed and the layer list shuffled."""
    rng = np.random.default_rng(rng_seed)
    new = {layer.name: f"L{i}_{layer.kind}" for i, layer in enumerate(graph.layers)}
    new[INPUT] = INPUT
    layers = [
        layer.replace(name=new[layer.name], inputs=tuple(new[s] for s in layer.inputs))
        for layer in graph.layers
    ]
    return build_graph(graph.input_shape, [layers[i] for i in rng.permutation(len(layers))])


chains = st.builds(
    _random_chain,
    st.sampled_from(sorted(SEEDS)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 20),
)


@settings(max_examples=40, deadline=None)
@given(graph=chains)
def test_random_chains_give_valid_graphs_whose_json_round_trips(graph):
    text = graph.to_json()
    again = type(graph).from_json(text)
    assert again == graph
    assert again.to_json() == text
    assert again.content_hash == graph.content_hash
    assert graph.num_params > 0 and graph.flops > 0


@settings(max_examples=40, deadline=None)
@given(graph=chains, rename_seed=st.integers(0, 1000))
def test_the_hash_ignores_names_and_listing_order(graph, rename_seed):
    renamed = _renamed(graph, rename_seed)
    assert renamed != graph  # different names...
    assert renamed.content_hash == graph.content_hash


@settings(max_examples=25, deadline=None)
@given(graph=chains, rng_seed=st.integers(0, 1000))
def test_a_morph_always_changes_the_hash(graph, rng_seed):
    op = sample_morph(graph, np.random.default_rng(rng_seed))
    assert op.apply(graph).content_hash != graph.content_hash


def test_joins_do_not_block_widening():
    parent = seed_graph((2, 12, 12), 5, width=16)
    for skip in (ConcatSkip("conv3", "conv10"), AddSkip("conv3", "conv10")):
        graph = skip.apply(parent)
        widenable = {op.layer for op in Wider.candidates(graph)}
        convs = {layer.name for layer in graph.layers if layer.kind == "conv"}
        assert convs <= widenable, skip


def test_the_neighbourhood_of_a_sixty_layer_graph_is_quick():
    graph, rng = seed_graph((3, 32, 32), 10), np.random.default_rng(0)
    while len(graph.layers) < 60:
        graph = sample_morph(graph, rng).apply(graph)
    seconds = []
    for _ in range(3):
        cold = type(graph)(graph.input_shape, graph.layers)  # no per-graph cache is warm
        start = time.perf_counter()
        ops = neighbourhood(cold)
        seconds.append(time.perf_counter() - start)
    assert len(ops) > 500
    assert min(seconds) < 0.1  # about 4 ms on one core (see bench/morph.py)
