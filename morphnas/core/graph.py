"""The architecture graph: a validated DAG of layers, framework-free.

A :class:`Graph` is an input shape plus a tuple of :class:`~morphnas.core.layers.Layer` values in
topological order; the last layer is the output (the logits). Construction validates everything
(unknown kinds, dangling or unreachable layers, cycles, shape and size errors) and raises an
:class:`~morphnas.core.errors.InvalidGraphError` subclass naming the offending layer, so a
``Graph`` that exists is always a runnable architecture.

Canonical JSON (:meth:`Graph.to_json`) round-trips exactly. :attr:`Graph.content_hash` is
structural: it hashes each layer's kind, attributes and (recursively) the hashes of its inputs,
never names, so the same architecture reached along two morph paths gets the same hash.

Weights are a plain mapping ``"<layer name>.<suffix>" -> numpy array`` (suffixes from the layer
registry, e.g. ``conv3.weight``); :meth:`Graph.weight_shapes` lists what a graph needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from functools import cached_property, lru_cache
from typing import Any

from morphnas.core.errors import (
    CycleError,
    DanglingLayerError,
    InvalidGraphError,
    SizeLimitError,
)
from morphnas.core.layers import LAYER_KINDS, Layer, Shape, check_layer, layer_kind

INPUT = "input"
FORMAT = "morphnas.graph/1"
MAX_LAYERS = 2_000
MAX_INPUT_ELEMENTS = 16_000_000
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Graph:
    """A validated architecture. Build one with :func:`build_graph` or :meth:`Graph.from_json`."""

    input_shape: Shape
    layers: tuple[Layer, ...]
    #: A valid graph this one is derived from (a speed hint, not stored): validation trusts the
    #: checks it made of the very same layer objects reading equal input shapes. The outcome is
    #: the same with or without it.
    parent: InitVar[Graph | None] = None

    def __post_init__(self, parent: Graph | None) -> None:
        # Validation happens while inferring shapes.
        self.__dict__["shapes"] = _validate(self.input_shape, self.layers, parent)

    # ---------------------------------------------------------------- structure
    @property
    def output(self) -> Layer:
        """The layer whose output is the network's output (the logits)."""
        return self.layers[-1]

    @cached_property
    def by_name(self) -> dict[str, Layer]:
        return {layer.name: layer for layer in self.layers}

    @cached_property
    def consumers(self) -> dict[str, tuple[str, ...]]:
        """For each tensor name (a layer, or ``"input"``): the layers reading it, in order."""
        result: dict[str, list[str]] = {INPUT: []}
        for layer in self.layers:
            result.setdefault(layer.name, [])
            for source in layer.inputs:
                result[source].append(layer.name)
        return {name: tuple(names) for name, names in result.items()}

    @cached_property
    def shapes(self) -> dict[str, Shape]:
        """Output shape of every layer, and of ``"input"``; validates the graph on the way."""
        return _validate(self.input_shape, self.layers)

    def shape_of(self, name: str) -> Shape:
        return self.shapes[name]

    def input_shapes(self, layer: Layer) -> list[Shape]:
        return [self.shapes[name] for name in layer.inputs]

    @cached_property
    def main_chain(self) -> tuple[str, ...]:
        """Layers on the main path from input to output, in order.

        The main path follows each layer's *first* input backwards from the output. Morphs keep
        the parent's path first at every join (``Add(end, branch)``, ``Concat(end, branch)``), so
        the path stays the same under skips however short the skip is (a longest-path rule
        would let a two-layer branch around one layer take over the chain). This is the sequence
        the edit distance compares; every other layer sits on a skip branch.
        """
        chain = [self.output.name]
        while (first := self.by_name[chain[-1]].inputs[0]) != INPUT:
            chain.append(first)
        return tuple(reversed(chain))

    # ---------------------------------------------------------------- costs
    def weight_shapes(self) -> dict[str, Shape]:
        """Every weight tensor this graph needs: ``"<layer>.<suffix>" -> shape`` (a fresh dict)."""
        return dict(self._weight_shapes)

    @cached_property
    def _weight_shapes(self) -> dict[str, Shape]:
        return {
            f"{layer.name}.{suffix}": shape
            for layer, (shapes, _, _) in zip(self.layers, self._layer_weights, strict=True)
            for suffix, shape in shapes.items()
        }

    @cached_property
    def _layer_weights(self) -> tuple[_Weights, ...]:
        return tuple(_weights_of(layer, self.input_shapes(layer)) for layer in self.layers)

    @cached_property
    def num_params(self) -> int:
        """Trainable parameters (as ``sum(p.numel() for p in module.parameters())`` counts)."""
        return sum(trainable for _, trainable, _ in self._layer_weights)

    @cached_property
    def flops(self) -> int:
        """Floating-point operations of one forward pass on one example."""
        return sum(
            layer_kind(layer).flops(layer, self.input_shapes(layer), self.shapes[layer.name])
            for layer in self.layers
        )

    def training_memory_bytes(self, batch_size: int, bytes_per_value: int = 4) -> int:
        """A deliberately simple upper-ish estimate of the memory one training step needs.

        Parameters: value, gradient and two Adam moments (4 copies). Activations: every layer
        output and its gradient for the whole batch (2 copies), plus the input batch. Buffers
        (BN statistics) count once. Framework workspace and fragmentation are not modelled.
        """
        weights = sum(values for _, _, values in self._layer_weights)
        activations = sum(math.prod(self.shapes[layer.name]) for layer in self.layers)
        values = 4 * weights + batch_size * (2 * activations + math.prod(self.input_shape))
        return values * bytes_per_value

    # ---------------------------------------------------------------- helpers for morphs
    def fresh_name(self, kind: str, taken: Iterable[str] = ()) -> str:
        """The first free layer name ``<kind><n>``, counting n up from the number of layers."""
        used = set(self.by_name) | set(taken)
        n = len(self.layers)
        while f"{kind}{n}" in used:
            n += 1
        return f"{kind}{n}"

    def is_non_negative(self, name: str) -> bool:
        """Whether the tensor ``name`` is >= 0 for every input (so a ReLU on it is the identity)."""
        return self._non_negative[name]

    @cached_property
    def _non_negative(self) -> dict[str, bool]:
        result = {INPUT: False}
        for layer in self.layers:
            if layer.kind == "relu":
                result[layer.name] = True
            else:
                kind = layer_kind(layer)
                result[layer.name] = kind.keeps_non_negative and all(
                    result[source] for source in layer.inputs
                )
        return result

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "input_shape": list(self.input_shape),
            "layers": [_layer_to_dict(layer) for layer in self.layers],
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; ``from_json(g.to_json()) == g``.

        The text is remembered with this graph, so parsing it again (a server reading back the
        architectures it stored) costs a lookup."""
        # json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")), assembled from each
        # layer's remembered text: a morph's child shares all but a few layers with its parent.
        text = (
            f'{{"format":{_FORMAT_JSON},"input_shape":{_compact(list(self.input_shape))},'
            f'"layers":[{",".join([_layer_json(layer) for layer in self.layers])}]}}'
        )
        if len(text) <= _PARSE_CACHE_MAX_CHARS:
            _remember(text, self)
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        if not isinstance(data, Mapping):
            raise InvalidGraphError("an architecture must be a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise InvalidGraphError(f"unknown architecture format {data.get('format')!r}")
        raw_shape = data.get("input_shape")
        raw_layers = data.get("layers")
        if not isinstance(raw_shape, list) or not isinstance(raw_layers, list):
            raise InvalidGraphError("an architecture needs the lists 'input_shape' and 'layers'")
        shape = tuple(_as_int(n, "input_shape") for n in raw_shape)
        return build_graph(shape, [_layer_from_dict(item) for item in raw_layers])

    @classmethod
    def from_json(cls, text: str | bytes) -> Graph:
        """Parse and validate. Graphs are immutable, so the last few thousand parses are
        remembered: a server re-reads the same stored architectures on every ask."""
        if isinstance(text, str) and len(text) <= _PARSE_CACHE_MAX_CHARS:
            return _parse_cached(text)
        return _parse(text)

    @cached_property
    def content_hash(self) -> str:
        """Structural SHA-256 (hex): independent of layer names and of listing order."""
        digests: dict[str, str] = {INPUT: _sha(json.dumps(["input", list(self.input_shape)]))}
        for layer in self.layers:
            sources = [digests[name] for name in layer.inputs]
            if layer.kind == "add":
                sources.sort()  # addition commutes; concatenation does not
            digests[layer.name] = _layer_digest(layer, sources)
        return digests[self.output.name]

    def __hash__(self) -> int:
        return hash((self.input_shape, self.layers))

    def summary(self) -> str:
        """A readable one-layer-per-line description."""
        lines = [f"input {self.input_shape}"]
        for layer in self.layers:
            attrs = {a: getattr(layer, a) for a in LAYER_KINDS[layer.kind].attrs}
            args = ", ".join(f"{k}={v}" for k, v in attrs.items())
            src = ", ".join(layer.inputs)
            lines.append(
                f"{layer.name}: {layer.kind}({args}) <- {src} -> {self.shapes[layer.name]}"
            )
        lines.append(f"{self.num_params:,} parameters")
        return "\n".join(lines)


_PARSE_CACHE_MAX_CHARS = 200_000

#: A layer's weight shapes by suffix, its trainable values and all its values (buffers too).
_Weights = tuple[dict[str, Shape], int, int]

# The memos of this module are pure functions of their arguments, bounded and thread-safe
# (functools.lru_cache); ``memo_stats()`` reports their hits for the server's metrics.


def _weights_of(layer: Layer, shapes: list[Shape]) -> _Weights:
    """The weights of one layer of a valid graph, memoised (thousands of graphs share layers).

    A pure function of the kind, the attributes and the input shapes; validation has made the
    attributes plain ints and a float, so equal keys mean equal arguments.
    """
    return _weights_by_attributes(
        layer.kind, layer.units, layer.kernel, layer.stride, layer.rate, tuple(shapes)
    )


@lru_cache(maxsize=65_536)
def _weights_by_attributes(
    kind_name: str, units: int, kernel: int, stride: int, rate: float, shapes: tuple[Shape, ...]
) -> _Weights:
    kind = LAYER_KINDS[kind_name]
    layer = Layer("w", kind_name, ("input",), units=units, kernel=kernel, stride=stride, rate=rate)
    weights = kind.weight_shapes(layer, list(shapes))
    return (
        weights,
        sum(math.prod(weights[name]) for name in kind.trainable),
        sum(math.prod(shape) for shape in weights.values()),
    )


def _parse(text: str | bytes) -> Graph:
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as err:
        raise InvalidGraphError(f"architecture is not valid JSON: {err}") from None
    return Graph.from_dict(data)


_PARSED: OrderedDict[str, Graph] = OrderedDict()
_PARSED_MAX = 4096
_PARSED_LOCK = threading.Lock()
_PARSED_COUNTS = [0, 0]  # hits, misses (under _PARSED_LOCK)


def _parse_cached(text: str) -> Graph:
    with _PARSED_LOCK:
        graph = _PARSED.get(text)
        if graph is not None:
            _PARSED.move_to_end(text)
            _PARSED_COUNTS[0] += 1
            return graph
        _PARSED_COUNTS[1] += 1
    graph = _parse(text)
    _remember(text, graph)
    return graph


def _remember(text: str, graph: Graph) -> None:
    with _PARSED_LOCK:
        _PARSED[text] = graph
        _PARSED.move_to_end(text)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)


def memo_stats() -> dict[str, tuple[int, int, int, int]]:
    """(hits, misses, entries, bound) of each memo of this module, by name."""
    with _PARSED_LOCK:
        hits, misses = _PARSED_COUNTS
        stats = {"graph_parse": (hits, misses, len(_PARSED), _PARSED_MAX)}
    for name, memo in (
        ("graph_layer_weights", _weights_by_attributes),
        ("graph_layer_json", _layer_json),
        ("graph_layer_digests", _digest_of),
    ):
        info = memo.cache_info()
        stats[name] = (info.hits, info.misses, info.currsize, info.maxsize or 0)
    return stats


def build_graph(
    input_shape: Iterable[int], layers: Iterable[Layer], parent: Graph | None = None
) -> Graph:
    """Validate and order layers into a :class:`Graph` (any order that is a DAG is accepted).

    ``parent``: a valid graph sharing most layer objects with this one (a morph's input); its
    checks of those objects are reused, which makes no difference to the outcome.
    """
    shape = tuple(input_shape)
    return Graph(shape, _topological(list(layers), parent), parent)


# -------------------------------------------------------------------- validation


def _check_input_shape(shape: Shape) -> None:
    if not 1 <= len(shape) <= 3:
        raise InvalidGraphError(
            f"input_shape must be (D,), (C, L) or (C, H, W), got {shape}", INPUT
        )
    if any(not isinstance(n, int) or n < 1 for n in shape):
        raise InvalidGraphError(f"input_shape must hold positive integers, got {shape}", INPUT)
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise SizeLimitError(f"input of {math.prod(shape):,} values is too large", INPUT)


def _topological(layers: list[Layer], parent: Graph | None = None) -> tuple[Layer, ...]:
    """Kahn's algorithm, stable in the given order; raises on duplicates, unknowns and cycles.

    A layer object that is one of ``parent``'s passed the per-layer checks (type, inputs, name,
    kind) there already; a leading run of them in ``parent``'s order is placed as it is.
    """
    if not layers:
        raise InvalidGraphError("a graph needs at least one layer")
    if len(layers) > MAX_LAYERS:
        raise SizeLimitError(f"{len(layers)} layers is more than the limit of {MAX_LAYERS}")
    checked = {id(layer) for layer in parent.layers} if parent is not None else set()
    done = common_prefix(layers, parent) if parent is not None else 0
    prefix, layers = (
        layers[:done],
        [layer if id(layer) in checked else _with_tuple_inputs(layer) for layer in layers[done:]],
    )
    names: dict[str, Layer] = {layer.name: layer for layer in prefix}
    for layer in layers:
        if id(layer) in checked:
            pass
        elif not isinstance(layer.name, str) or not _NAME.match(layer.name) or layer.name == INPUT:
            raise InvalidGraphError(
                "layer names are 1-64 letters, digits or '_' starting with a letter, "
                "and not 'input'",
                str(layer.name),
            )
        if layer.name in names:
            raise InvalidGraphError("two layers have this name", layer.name)
        names[layer.name] = layer
    for layer in layers:
        if id(layer) not in checked:
            layer_kind(layer)
        for source in layer.inputs:
            if source != INPUT and source not in names:
                raise DanglingLayerError(f"reads unknown layer {source!r}", layer.name)
        if not layer.inputs:
            raise DanglingLayerError("has no inputs", layer.name)
    placed: set[str] = {INPUT, *(layer.name for layer in prefix)}
    order: list[Layer] = list(prefix)
    pending = layers
    while pending:
        # One sweep places every layer whose inputs are placed already (earlier in this sweep
        # included), so a list that is already topological comes back unchanged in one sweep.
        waiting: list[Layer] = []
        for layer in pending:
            if all(s in placed for s in layer.inputs):
                placed.add(layer.name)
                order.append(layer)
            else:
                waiting.append(layer)
        if len(waiting) == len(pending):
            raise CycleError("is part of a cycle", _cycle_member(waiting, placed))
        pending = waiting
    return tuple(order)


def common_prefix(layers: Sequence[Layer], parent: Graph) -> int:
    """How many leading ``layers`` are ``parent``'s own layer objects, in ``parent``'s order."""
    done = 0
    for mine, theirs in zip(layers, parent.layers, strict=False):
        if mine is not theirs:
            break
        done += 1
    return done


def _with_tuple_inputs(layer: Layer) -> Layer:
    """The layer with ``inputs`` as a tuple of names (a list is accepted; anything else is not)."""
    if not isinstance(layer, Layer):
        raise InvalidGraphError(f"a graph holds Layer values, got {type(layer).__name__}")
    inputs = layer.inputs
    if not isinstance(inputs, (tuple, list)) or not all(isinstance(s, str) for s in inputs):
        raise InvalidGraphError(f"inputs must be layer names, got {inputs!r}", str(layer.name))
    return layer if isinstance(inputs, tuple) else layer.replace(inputs=tuple(inputs))


def _cycle_member(waiting: list[Layer], placed: set[str]) -> str:
    """A layer that lies on a cycle: walk unplaced inputs backwards until a layer repeats."""
    by_name = {layer.name: layer for layer in waiting}
    seen: list[str] = []
    name = waiting[0].name
    while name not in seen:
        seen.append(name)
        name = next(s for s in by_name[name].inputs if s not in placed)
    return name


def _validate(
    input_shape: Shape, layers: tuple[Layer, ...], parent: Graph | None = None
) -> dict[str, Shape]:
    """Output shapes of every layer (and the input); raises on the first invalid layer.

    ``check_layer`` is a pure function of the layer and its input shapes, so a layer object that
    ``parent`` holds, reading shapes equal to those it read there, keeps the output shape it had.
    """
    _check_input_shape(input_shape)
    shapes: dict[str, Shape] = {INPUT: input_shape}
    checked = parent.by_name if parent is not None else {}
    known = parent.shapes if parent is not None else {}
    consumed: set[str] = set()
    done = 0
    if parent is not None and parent.input_shape == input_shape:
        done = common_prefix(layers, parent)  # checked in the same place there
        for layer in layers[:done]:
            shapes[layer.name] = known[layer.name]
            consumed.update(layer.inputs)
    for layer in layers[done:]:
        for source in layer.inputs:
            if source not in shapes:
                raise DanglingLayerError(f"reads {source!r} before it is computed", layer.name)
            consumed.add(source)
        inputs = [shapes[s] for s in layer.inputs]
        if checked.get(layer.name) is layer and inputs == [known[s] for s in layer.inputs]:
            shapes[layer.name] = known[layer.name]
        else:
            shapes[layer.name] = check_layer(layer, inputs)
    if INPUT not in consumed:
        raise DanglingLayerError("the input is not read by any layer", INPUT)
    for layer in layers[:-1]:
        if layer.name not in consumed:
            raise DanglingLayerError(
                "its output reaches nothing (only the last layer may be unread)", layer.name
            )
    if len(shapes[layers[-1].name]) != 1:
        raise InvalidGraphError(
            f"the output must be a vector of logits, got shape {shapes[layers[-1].name]}",
            layers[-1].name,
        )
    return shapes


# -------------------------------------------------------------------- JSON


def _layer_to_dict(layer: Layer) -> dict[str, Any]:
    data: dict[str, Any] = {"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs)}
    kind = LAYER_KINDS.get(layer.kind)
    for attr in kind.attrs if kind else ():
        data[attr] = getattr(layer, attr)
    return data


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_FORMAT_JSON = json.dumps(FORMAT)


@lru_cache(maxsize=200_000)
def _layer_json(layer: Layer) -> str:
    """A layer's canonical JSON text, remembered (bounded; only a cache)."""
    return _compact(_layer_to_dict(layer))


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidGraphError(f"{what} must hold integers, got {value!r}")
    return value


def _layer_from_dict(item: Any) -> Layer:
    if not isinstance(item, Mapping):
        raise InvalidGraphError(f"each layer must be a JSON object, got {item!r}")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidGraphError(f"each layer needs a string 'name', got {name!r}")
    kind = item.get("kind")
    if not isinstance(kind, str):
        raise InvalidGraphError("needs a string 'kind'", name)
    inputs = item.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
        raise InvalidGraphError("needs 'inputs', a list of layer names", name)
    known = {"name", "kind", "inputs", "units", "kernel", "stride", "rate"}
    extra = set(item) - known
    if extra:
        raise InvalidGraphError(f"unknown fields {sorted(extra)}", name)
    rate = item.get("rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise InvalidGraphError(f"rate must be a finite number, got {rate!r}", name)
    return Layer(
        name=name,
        kind=kind,
        inputs=tuple(inputs),
        units=_as_int(item.get("units", 0), f"layer {name!r} units"),
        kernel=_as_int(item.get("kernel", 0), f"layer {name!r} kernel"),
        stride=_as_int(item.get("stride", 0), f"layer {name!r} stride"),
        rate=float(rate),
    )


def _layer_digest(layer: Layer, sources: list[str]) -> str:
    """A layer's digest: a function of its attributes and its sources' digests; a morph's child
    repeats most of its parent's, so they are remembered (bounded; only a cache)."""
    return _digest_of(layer.kind, layer.units, layer.kernel, layer.stride, layer.rate, *sources)


@lru_cache(maxsize=200_000)
def _digest_of(kind: str, units: int, kernel: int, stride: int, rate: float, *sources: str) -> str:
    layer = Layer("d", kind, ("input",), units=units, kernel=kernel, stride=stride, rate=rate)
    attrs = _layer_to_dict(layer)
    del attrs["name"], attrs["inputs"]
    return _sha(json.dumps([attrs, list(sources)], sort_keys=True))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
