"""Compact numeric descriptors of architectures: what the edit distance compares.

A :class:`Descriptor` reduces a :class:`~morphnas.core.graph.Graph` to two small arrays:

``tokens`` (L, 4) float64
    one row per main-chain layer, in order: ``[kind id, units, kernel, stride]`` (attributes a
    kind does not use are 0). ``L = len(graph.main_chain)``.
``skips`` (M, 3) float64
    one row per skip branch: ``[start depth u, span δ, type]`` with type 0 for Add, 1 for
    Concat. A skip is every non-primary input of an Add/Concat layer (the primary input is the
    deepest one, as in :attr:`Graph.main_chain`); it is traced back through single-input,
    single-consumer layers to the layer it forks from (``start``); ``u`` is the longest-path depth
    of ``start`` from the input (the main-chain rank for main-chain layers, 0 for the input) and
    ``δ = depth(primary input) − u``.

Descriptors are cached by structural key (a cache only: they are a pure function of the graph).
The byte signatures ``layer_key`` / ``skip_key`` let distance rows be shared between different
architectures with the same main chain or the same skips.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter

import numpy as np

from morphnas.core.graph import INPUT, Graph, common_prefix
from morphnas.core.layers import LAYER_KINDS, Layer

#: Layer attributes compared by the layer distance, in token column order (after the kind id).
ATTRS = ("units", "kernel", "stride")
SKIP_TYPES = {"add": 0.0, "concat": 1.0}
_attrs = attrgetter(*ATTRS)

_KIND_IDS: dict[str, int] = {}
_WEIGHTS: list[np.ndarray] = []


def kind_id(kind: str) -> int:
    """A small integer per layer kind, stable within the process (registry order first)."""
    if kind not in _KIND_IDS:
        _KIND_IDS[kind] = len(_KIND_IDS)
    return _KIND_IDS[kind]


for _name in LAYER_KINDS:
    kind_id(_name)


def attr_weights() -> np.ndarray:
    """(n_kinds, 3): weight of each attribute column in a same-kind layer distance.

    Each kind averages the relative differences of the attributes it uses (1/count each), so a
    kind without units/kernel/stride (ReLU, BN, ...) costs 0 against its own kind.
    """
    if _WEIGHTS and len(_WEIGHTS[0]) == len(_KIND_IDS):
        return _WEIGHTS[0]
    weights = np.zeros((len(_KIND_IDS), len(ATTRS)))
    for name, index in _KIND_IDS.items():
        kind = LAYER_KINDS.get(name)
        used = [i for i, attr in enumerate(ATTRS) if kind is not None and attr in kind.attrs]
        if used:
            weights[index, used] = 1.0 / len(used)
    _WEIGHTS[:] = [weights]
    return weights


#: Every distinct main-chain token seen in this process, by id (ids are stable in a process;
#: the layer distance looks substitution costs up by id).
TOKENS: list[np.ndarray] = []
_TOKEN_IDS: dict[tuple[float, ...], int] = {}


def encode_tokens(tokens: np.ndarray) -> np.ndarray:
    """Token ids (L,) of a token array (L, 4)."""
    ids = []
    for row in tokens.tolist():
        key = tuple(row)
        found = _TOKEN_IDS.get(key)
        if found is None:
            found = _TOKEN_IDS[key] = len(TOKENS)
            TOKENS.append(np.array(row, dtype=np.float64))
        ids.append(found)
    return np.array(ids, dtype=np.intp)


@dataclass(frozen=True, eq=False)
class Descriptor:
    """See the module docstring."""

    key: str  # structural_key of the graph
    tokens: np.ndarray  # (L, 4)
    skips: np.ndarray  # (M, 3)
    token_ids: np.ndarray  # (L,) ids into TOKENS

    @cached_property
    def layer_key(self) -> bytes:
        return self.tokens.tobytes()

    @cached_property
    def skip_key(self) -> bytes:
        return self.skips.tobytes()


def _depths(graph: Graph) -> dict[str, int]:
    depth = {INPUT: 0}
    for layer in graph.layers:
        inputs = layer.inputs
        depth[layer.name] = 1 + (
            depth[inputs[0]] if len(inputs) == 1 else max(depth[name] for name in inputs)
        )
    return depth


def _skips(graph: Graph, depth: dict[str, int]) -> np.ndarray:
    rows: list[tuple[float, float, float]] = []
    joins = [layer for layer in graph.layers if layer.kind in SKIP_TYPES]
    readers: dict[str, int] = {}  # number of layers reading each tensor
    if joins:
        for layer in graph.layers:
            for source in layer.inputs:
                readers[source] = readers.get(source, 0) + 1
    for layer in joins:
        primary = max(layer.inputs, key=lambda name: depth[name])
        for source in layer.inputs:
            if source == primary:
                continue
            start = source
            while start != INPUT and readers[start] == 1 and len(graph.by_name[start].inputs) == 1:
                start = graph.by_name[start].inputs[0]
            u = depth[start]
            rows.append((float(u), float(max(depth[primary] - u, 0)), SKIP_TYPES[layer.kind]))
    rows.sort()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def structural_key(graph: Graph, parent: Graph | None = None) -> str:
    """A structural digest with the invariances of ``Graph.content_hash`` (names ignored, Add
    inputs unordered), several times cheaper to compute; the search's own identity for graphs.

    Each tensor's digest hashes its layer's kind and attributes with its inputs' digests.
    ``parent``: a graph sharing layer objects with this one (a morph's input); a shared layer
    reading the same digests there has the same digest (a speed hint: same key without it).
    The parent keeps its digests, for its other children.
    """
    digests = graph.__dict__.get("_structural_digests")
    if digests is None:
        digests = _digests(graph, parent)
    return digests[graph.output.name]  # type: ignore[no-any-return]


def _digests(graph: Graph, parent: Graph | None = None) -> dict[str, str]:
    known: dict[str, str] = {}
    shared: dict[str, Layer] = {}
    done = 0
    digests = {INPUT: hashlib.sha1(repr(graph.input_shape).encode()).hexdigest()}
    if parent is not None:
        known = parent.__dict__.get("_structural_digests") or _digests(parent)
        parent.__dict__["_structural_digests"] = known  # like functools.cached_property does
        shared = parent.by_name
        if known[INPUT] == digests[INPUT]:
            done = common_prefix(graph.layers, parent)  # the same layers reading the same inputs
            for layer in graph.layers[:done]:
                digests[layer.name] = known[layer.name]
    for layer in graph.layers[done:]:
        sources = [digests[name] for name in layer.inputs]
        if shared.get(layer.name) is layer and sources == [known[s] for s in layer.inputs]:
            digests[layer.name] = known[layer.name]
            continue
        if layer.kind == "add":
            sources.sort()
        text = f"{layer.kind}|{layer.units}|{layer.kernel}|{layer.stride}|{layer.rate!r}|{sources}"
        digests[layer.name] = hashlib.sha1(text.encode()).hexdigest()
    return digests


def describe(graph: Graph, key: str | None = None) -> Descriptor:
    """The descriptor of a graph (uncached; see :func:`descriptor`)."""
    chain = [graph.by_name[name] for name in graph.main_chain]
    tokens = np.array(
        [(kind_id(layer.kind), *_attrs(layer)) for layer in chain], dtype=np.float64
    ).reshape(len(chain), 1 + len(ATTRS))
    return Descriptor(
        key or structural_key(graph), tokens, _skips(graph, _depths(graph)), encode_tokens(tokens)
    )


class LRU(OrderedDict):  # type: ignore[type-arg]
    """A small least-recently-used mapping (a cache: evicting an entry only costs time).

    Shared by the server's handler threads: a lookup and its move to the end, and an insert and
    its evictions, each happen under a lock (another thread's eviction could otherwise remove
    the key between the two). ``make`` runs outside it: two threads may both build a missing
    value, and the later one is kept.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._lock = threading.Lock()

    def get_or(self, key: object, make):  # type: ignore[no-untyped-def]
        with self._lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()
        self.put(key, value)
        return value

    def put(self, key: object, value: object) -> None:
        with self._lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.capacity:
                self.popitem(last=False)


_DESCRIPTORS: LRU = LRU(200_000)
_GRAPHS: LRU = LRU(20_000)


def descriptor(graph: Graph, parent: Graph | None = None) -> Descriptor:
    """Cached :func:`describe`, keyed by :func:`structural_key` (``parent``: its speed hint)."""
    key = structural_key(graph, parent)
    return _DESCRIPTORS.get_or(key, lambda: describe(graph, key))  # type: ignore[no-any-return]


def parse(architecture: str) -> tuple[Graph, Descriptor]:
    """Graph and descriptor of a stored architecture, cached by its text."""

    def build() -> tuple[Graph, Descriptor]:
        graph = Graph.from_json(architecture)
        return graph, descriptor(graph)

    return _GRAPHS.get_or(architecture, build)  # type: ignore[no-any-return]


def clear() -> None:
    _DESCRIPTORS.clear()
    _GRAPHS.clear()
