"""The architecture and operations JSON Schemas accept what morphnas makes and refuse what it
refuses. (tests/conftest.py also validates every architecture the whole test session makes.)"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from morphnas.client import Client
from morphnas.core.errors import InvalidGraphError
from morphnas.core.graph import Graph
from morphnas.core.morphs import MORPH_KINDS, neighbourhood, sample_morph
from morphnas.core.seeds import seed_graph
from morphnas.server.app import ServerOptions, build_server
from morphnas.v1 import morphnas_pb2 as pb
from tests.contract.recorder import invalid_architectures, record_architectures
from tests.contract.schemas import architecture_errors, schema_errors

SHAPES = {"image": (3, 16, 16), "sequence": (2, 40), "vector": (12,)}


def _chains(
    shape: tuple[int, ...], seed: int, chains: int = 6, length: int = 8
) -> Iterator[tuple[Graph, list[dict[str, Any]]]]:
    """Random morph chains from the seed, each starting with one morph of every kind."""
    rng = np.random.default_rng(seed)
    for _ in range(chains):
        graph = seed_graph(shape, 5, width=8, depth=2)
        ops: list[dict[str, Any]] = []
        for step in range(length):
            if step < len(MORPH_KINDS):
                kind = list(MORPH_KINDS)[step]
                options = [op for op in neighbourhood(graph) if op.kind == kind]
                op = options[int(rng.integers(len(options)))]
            else:
                op = sample_morph(graph, rng)
            graph = op.apply(graph)
            ops.append(op.to_dict())
            yield graph, list(ops)


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_seeds_and_morph_chains_of_every_kind_match_both_schemas(kind: str) -> None:
    shape = SHAPES[kind]
    for width, depth in [(1, 1), (16, 3), (64, 5)]:
        seed = seed_graph(shape, 3, width=width, depth=depth)
        assert schema_errors("architecture", json.loads(seed.to_json())) == []
    seen_kinds: set[str] = set()
    for index, (graph, ops) in enumerate(_chains(shape, seed=len(kind))):
        document = json.loads(graph.to_json())
        assert architecture_errors(document) == [], graph.summary()
        if index % 4 == 0:  # the plain validator too, on a share (it is slow)
            assert schema_errors("architecture", document) == []
        # operations_json as the server writes it
        assert schema_errors("operations", json.loads(json.dumps(ops, sort_keys=True))) == []
        seen_kinds.update(op["op"] for op in ops)
    assert seen_kinds == set(MORPH_KINDS)


def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    def layer(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda doc: next(x for x in doc["layers"] if x["kind"] == kind)

    conv, dense, drop, pool = layer("conv"), layer("dense"), layer("dropout"), layer("maxpool")
    return [
        ("unknown kind", lambda d: conv(d).update(kind="conv3d")),
        ("no units", lambda d: conv(d).pop("units")),
        ("zero units", lambda d: dense(d).update(units=0)),
        ("too many units", lambda d: dense(d).update(units=16_385)),
        ("even kernel", lambda d: conv(d).update(kernel=4)),
        ("stride 0", lambda d: pool(d).update(stride=0)),
        ("float kernel", lambda d: pool(d).update(kernel=2.5)),
        ("rate 1", lambda d: drop(d).update(rate=1.0)),
        ("rate as text", lambda d: drop(d).update(rate="0.1")),
        ("extra field", lambda d: conv(d).update(padding=1)),
        ("attribute of another kind", lambda d: dense(d).update(kernel=3)),
        ("bad name", lambda d: conv(d).update(name="1conv")),
        ("named input", lambda d: conv(d).update(name="input")),
        ("two inputs to conv", lambda d: conv(d).update(inputs=["input", "input"])),
        ("add of one", lambda d: d["layers"].append({"name": "z", "kind": "add", "inputs": ["x"]})),
        ("wrong format", lambda d: d.update(format="morphnas.graph/2")),
        ("4-d input", lambda d: d.update(input_shape=[1, 2, 3, 4])),
        ("empty axis", lambda d: d.update(input_shape=[3, 0, 16])),
        ("no layers", lambda d: d.update(layers=[])),
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_the_schema_refuses_what_the_graph_refuses(
    what: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    document = json.loads(seed_graph(SHAPES["image"], 3, width=8, depth=2).to_json())
    mutate(document)
    assert schema_errors("architecture", document), what
    assert architecture_errors(document), what  # the fast check agrees
    with pytest.raises(InvalidGraphError):
        Graph.from_dict(document)


@pytest.mark.parametrize(
    "op",
    [
        {"op": "deeper", "after": "conv1"},
        {"op": "deeper", "after": "conv1", "kernel": 2},
        {"op": "wider", "layer": "conv1", "add": 0},
        {"op": "add_skip", "start": "conv1"},
        {"op": "concat_skip", "start": "a", "end": "b", "join": "x"},
        {"op": "shallower", "layer": "conv1"},
        {"after": "conv1", "kernel": 3},
    ],
)
def test_the_operations_schema_refuses_malformed_morphs(op: dict[str, Any]) -> None:
    assert schema_errors("operations", [op])


def test_what_a_server_hands_out_matches_both_schemas(tmp_path) -> None:
    server = build_server(ServerOptions(db_url=f"sqlite:///{tmp_path / 's.db'}", port=0))
    try:
        with Client(server.address, timeout=30) as client:
            for shape in SHAPES.values():
                search = client.create_search(
                    "schema", input_shape=shape, num_classes=4, policy="random", seed_width=8
                )
                for number in range(6):
                    [trial] = search.suggest(worker_id="w")
                    message = client.stub.GetTrial(pb.GetTrialRequest(trial_id=trial.id))
                    assert (
                        schema_errors("architecture", json.loads(message.architecture_json)) == []
                    )
                    assert schema_errors("operations", json.loads(message.operations_json)) == []
                    assert (message.operations_json == "[]") == (number == 0)
                    trial.report(score=float(number))
    finally:
        server.stop(0)


def test_the_session_recorder_sees_architectures_and_flags_bad_ones() -> None:
    with record_architectures() as seen:
        text = seed_graph((4,), 3, width=2, depth=1).to_json()
    assert text in seen
    assert invalid_architectures({text}) == []
    broken = copy.deepcopy(json.loads(text))
    broken["layers"][0]["units"] = 0
    [problem] = invalid_architectures({json.dumps(broken)})
    assert "minimum" in problem
