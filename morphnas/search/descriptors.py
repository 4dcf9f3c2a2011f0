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

``token_ids`` (L,) int64
    one code per main-chain token, a pure function of the token (:func:`encode_tokens`): the
    same token has the same code in every process and thread, whatever order tokens were met
    in, so distances never depend on that order (ids handed out on first sight could, and did,
    race between threads).

Descriptors are a pure function of the graph; :class:`~morphnas.search.cache.SearchCache`
remembers them by structural key (a cache only). The byte signatures ``layer_key`` /
``skip_key`` let distance rows be shared between different architectures with the same main
chain or the same skips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from morphnas.core.graph import INPUT, Graph, common_prefix
from morphnas.core.layers import LAYER_KINDS, MAX_KERNEL, MAX_UNITS, Layer

if TYPE_CHECKING:
    from morphnas.search.cache import SearchCache

#: Layer attributes compared by the layer distance, in token column order (after the kind id).
ATTRS = ("units", "kernel", "stride")
SKIP_TYPES = {"add": 0.0, "concat": 1.0}
_attrs = attrgetter(*ATTRS)

# Bits of each token field in a token code: kind | kernel | stride | units.
_UNITS_BITS = max(MAX_UNITS, 1).bit_length()
_KERNEL_BITS = max(MAX_KERNEL, 1).bit_length()
_KIND_BITS = 8


@lru_cache(maxsize=4)
def _kinds(count: int) -> tuple[dict[str, int], np.ndarray]:
    """Kind ids and attribute weights for the first ``count`` registered kinds (the registry
    only grows, so these are a pure function of ``count``)."""
    names = list(LAYER_KINDS)[:count]
    weights = np.zeros((count, len(ATTRS)))
    for index, name in enumerate(names):
        used = [i for i, attr in enumerate(ATTRS) if attr in LAYER_KINDS[name].attrs]
        if used:
            weights[index, used] = 1.0 / len(used)
    weights.setflags(write=False)
    return {name: index for index, name in enumerate(names)}, weights


def kind_id(kind: str) -> int:
    """A small integer per layer kind: its position in the registry (the same in every process)."""
    found = _kinds(len(LAYER_KINDS))[0].get(kind)
    if found is None:
        raise ValueError(f"unknown layer kind {kind!r}")
    return found


def attr_weights() -> np.ndarray:
    """(n_kinds, 3): which attribute columns a kind uses (non-zero: used; read-only).

    A same-kind layer distance is the largest relative difference over the used attributes, so a
    kind without units/kernel/stride (ReLU, BN, ...) costs 0 against its own kind.
    """
    return _kinds(len(LAYER_KINDS))[1]


def encode_tokens(tokens: np.ndarray) -> np.ndarray:
    """Token codes (L,) int64 of a token array (L, 4): the fields packed into one integer, so
    equal tokens have equal codes and :func:`decode_tokens` gives the token back."""
    t = tokens.astype(np.int64).reshape(-1, 1 + len(ATTRS))
    kind, units, kernel, stride = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    if t.size and (
        t.min() < 0
        or kind.max() >= 1 << _KIND_BITS
        or units.max() >= 1 << _UNITS_BITS
        or max(kernel.max(), stride.max()) >= 1 << _KERNEL_BITS
    ):
        raise ValueError("a token is outside the layer size limits")
    code = (kind << _KERNEL_BITS | kernel) << _KERNEL_BITS | stride
    return np.asarray((code << _UNITS_BITS) | units, dtype=np.int64)


def decode_tokens(codes: np.ndarray) -> np.ndarray:
    """Tokens (..., 4) float64 of token codes (...) (the inverse of :func:`encode_tokens`)."""
    codes = np.asarray(codes, dtype=np.int64)
    mask = (1 << _KERNEL_BITS) - 1
    units = codes & ((1 << _UNITS_BITS) - 1)
    rest = codes >> _UNITS_BITS
    stride = rest & mask
    kernel = (rest >> _KERNEL_BITS) & mask
    kind = rest >> (2 * _KERNEL_BITS)
    return np.stack([kind, units, kernel, stride], axis=-1).astype(np.float64)


@dataclass(frozen=True, eq=False)
class Descriptor:
    """See the module docstring."""

    key: str  # structural_key of the graph
    tokens: np.ndarray  # (L, 4)
    skips: np.ndarray  # (M, 3)
    token_ids: np.ndarray  # (L,) token codes (encode_tokens)
    layer_key: bytes  # tokens.tobytes(): the main chain's signature
    skip_key: bytes  # skips.tobytes(): the skip set's signature


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


def structural_key(
    graph: Graph, parent: Graph | None = None, cache: SearchCache | None = None
) -> str:
    """A structural digest with the invariances of ``Graph.content_hash`` (names ignored, Add
    inputs unordered), several times cheaper to compute; the search's own identity for graphs.

    Each tensor's digest hashes its layer's kind and attributes with its inputs' digests.
    ``parent``: a graph sharing layer objects with this one (a morph's input); a shared layer
    reading the same digests there has the same digest (a speed hint: same key without it).
    ``cache`` keeps the parent's digests, for its other children.
    """
    digests = cache.digests.get(graph) if cache is not None else None
    if digests is None:
        digests = _digests(graph, parent, cache)
    return digests[graph.output.name]


def _digests(
    graph: Graph, parent: Graph | None = None, cache: SearchCache | None = None
) -> dict[str, str]:
    known: dict[str, str] = {}
    shared: dict[str, Layer] = {}
    done = 0
    digests = {INPUT: hashlib.sha1(repr(graph.input_shape).encode()).hexdigest()}
    if parent is not None:
        if cache is None:
            known = _digests(parent)
        else:
            known = cache.digests.get_or(parent, lambda: _digests(parent))
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
    skips = _skips(graph, _depths(graph))
    return Descriptor(
        key or structural_key(graph),
        tokens,
        skips,
        encode_tokens(tokens),
        tokens.tobytes(),
        skips.tobytes(),
    )


def descriptor(
    graph: Graph, parent: Graph | None = None, cache: SearchCache | None = None
) -> Descriptor:
    """:func:`describe`, remembered in ``cache`` by :func:`structural_key` (``parent``: its
    speed hint)."""
    key = structural_key(graph, parent, cache)
    if cache is None:
        return describe(graph, key)
    return cache.descriptors.get_or(key, lambda: describe(graph, key))


def parse(architecture: str, cache: SearchCache | None = None) -> tuple[Graph, Descriptor]:
    """Graph and descriptor of a stored architecture, remembered in ``cache`` by its text."""

    def build() -> tuple[Graph, Descriptor]:
        graph = Graph.from_json(architecture)
        return graph, descriptor(graph, cache=cache)

    return build() if cache is None else cache.parsed.get_or(architecture, build)
