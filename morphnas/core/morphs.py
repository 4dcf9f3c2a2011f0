"""Network morphisms: function-preserving edits of a graph, as typed values.

Each operation is a frozen dataclass with

* ``apply(graph) -> Graph``: the child architecture;
* ``transfer(graph, weights) -> weights``: the child's weights from the parent's, chosen so the
  child computes exactly the parent's function in eval mode (no noise is added: new units get
  zero outgoing weights, new layers are identities, so symmetry breaks through the gradients).
  The parent's weights are checked against ``graph`` first (:func:`check_weights`), unless the
  caller passes ``checked=True`` to vouch that they came out of such a check or a transfer;
* ``candidates(graph) -> list``: every legal instance of this kind on a graph, built from
  ``candidate_args(graph)``, the constructor arguments of each (plain tuples: cheap to list
  when only a few of thousands will be built, see :func:`neighbourhood_args`);
* ``to_dict()`` / :func:`morph_from_dict`: the JSON form stored with each trial.

The kinds (:data:`MORPH_KINDS`):

``deeper``  after layer ``after`` insert Conv k×k (identity kernel) → BN (identity) for feature
            maps, or Dense (identity matrix) for vectors, then a ReLU only when the tensor there
            is provably non-negative (so the ReLU is the identity too).
``wider``   give conv/dense layer ``layer`` ``add`` more units, each a copy of unit ``j mod C``;
            the change is followed through BN, ReLU, pooling, dropout, GAP, flatten and Concat
            to every consumer, and backwards through Add to the other branch; consumers get zero
            weights on the new inputs.
``add_skip``    from the output of ``start`` to that of ``end``: a branch repeating the pools on
                the main path between them → ReLU → 1×1 conv (or Dense) initialised to zero,
                joined to ``end`` by Add.
``concat_skip`` the same branch without the projection, joined by Concat, then a 1×1 conv (or
                Dense) that is the identity on ``end``'s channels and zero on the branch's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from morphnas.core.errors import InvalidGraphError, InvalidMorphError
from morphnas.core.graph import INPUT, Graph, build_graph
from morphnas.core.layers import MAX_UNITS, Layer, Shape
from morphnas.core.weights import Weights, check_weights, identity_bn

#: Kernel sizes offered by ``deeper`` on feature maps.
DEEPER_KERNELS = (1, 3, 5)
#: Largest vector width at which ``deeper`` offers an identity Dense (it costs width² weights).
MAX_DEEPER_DENSE = 4096
#: ``wider`` offers these fractions of the current width as the number of new units.
WIDER_FRACTIONS = (0.5, 1.0)
_POOLS = ("maxpool", "avgpool")
_SKIP_OVER = _POOLS + ("relu", "bn", "dropout", "conv", "dense", "add", "concat")


class Morph(Protocol):
    """What every morph operation offers (see the module docstring)."""

    kind: ClassVar[str]

    def apply(self, graph: Graph) -> Graph: ...

    def transfer(
        self, graph: Graph, weights: Mapping[str, np.ndarray], *, checked: bool = False
    ) -> Weights: ...

    def to_dict(self) -> dict[str, Any]: ...


MORPH_KINDS: dict[str, type] = {}


def register_morph(cls: type) -> type:
    """Class decorator adding a morph kind to :data:`MORPH_KINDS`."""
    MORPH_KINDS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def morph_from_dict(data: Mapping[str, Any]) -> Morph:
    """Inverse of ``op.to_dict()``; raises InvalidMorphError on anything malformed."""
    if not isinstance(data, Mapping) or not isinstance(data.get("op"), str):
        raise InvalidMorphError(f"a morph needs an 'op' field, got {data!r}")
    cls = MORPH_KINDS.get(data["op"])
    if cls is None:
        raise InvalidMorphError(f"unknown morph {data['op']!r} (known: {sorted(MORPH_KINDS)})")
    fields = {k: v for k, v in data.items() if k != "op"}
    try:
        return cls(**fields)  # type: ignore[no-any-return]
    except TypeError as err:
        raise InvalidMorphError(f"malformed {data['op']} morph: {err}") from None


def neighbourhood(graph: Graph) -> list[Morph]:
    """Every legal one-step morph of ``graph``, in a deterministic order."""
    return [cls(*args) for cls, candidates in neighbourhood_args(graph) for args in candidates]


def neighbourhood_args(graph: Graph) -> tuple[tuple[type, tuple[tuple[Any, ...], ...]], ...]:
    """Per registered kind: its class and the constructor arguments of each legal instance.

    ``cls(*args)`` builds a morph; listing every one as such gives :func:`neighbourhood`, in the
    same order. Plain tuples are cheap, so a caller that needs a few of thousands of morphs builds
    only those. Computed once per (immutable) graph object.
    """
    cached = graph.__dict__.get("_morph_candidates")
    if cached is None or len(cached) != len(MORPH_KINDS):
        cached = tuple(
            (cls, tuple(cls.candidate_args(graph)))  # type: ignore[attr-defined]
            for cls in MORPH_KINDS.values()
        )
        graph.__dict__["_morph_candidates"] = cached  # like functools.cached_property does
    return cached  # type: ignore[no-any-return]


def sample_morph(graph: Graph, rng: np.random.Generator) -> Morph:
    """One morph drawn uniformly over kinds, then uniformly within the kind (reproducible)."""
    by_kind = [(cls, args) for cls, args in neighbourhood_args(graph) if args]
    if not by_kind:
        raise InvalidMorphError("this graph has no legal morph")
    cls, args = by_kind[int(rng.integers(len(by_kind)))]
    return cls(*args[int(rng.integers(len(args)))])  # type: ignore[no-any-return]


def apply_path(
    graph: Graph,
    ops: Sequence[Morph],
    weights: Mapping[str, np.ndarray] | None = None,
    *,
    checked: bool = False,
) -> tuple[Graph, Weights | None]:
    """Apply ops in order; carry weights along when given (``checked``: as in ``transfer``;
    each transfer's output is trusted by the next)."""
    current_weights = dict(weights) if weights is not None else None
    for op in ops:
        if current_weights is not None:
            current_weights = op.transfer(graph, current_weights, checked=checked)
            checked = True
        graph = op.apply(graph)
    return graph, current_weights


def _parent_weights(graph: Graph, weights: Mapping[str, np.ndarray], checked: bool) -> Weights:
    """A mutable copy of the parent's weights, checked against ``graph`` unless ``checked``."""
    return dict(weights) if checked else check_weights(graph, weights)


# ------------------------------------------------------------------------------------ helpers


def _rewire(layers: list[Layer], old: str, new: str, skip: set[str]) -> list[Layer]:
    """Make every layer reading ``old`` read ``new`` instead (except the layers in ``skip``).

    Other layers stay the same objects (graph validation reuses the parent's checks of those).
    """
    return [
        layer.replace(inputs=tuple(new if s == old else s for s in layer.inputs))
        if old in layer.inputs and layer.name not in skip
        else layer
        for layer in layers
    ]


def _insert_after(layers: list[Layer], anchor: str, new: list[Layer]) -> list[Layer]:
    index = next(i for i, layer in enumerate(layers) if layer.name == anchor)
    return layers[: index + 1] + new + layers[index + 1 :]


def _rebuild(graph: Graph, layers: list[Layer], op: object) -> Graph:
    try:
        return build_graph(graph.input_shape, layers, parent=graph)
    except InvalidGraphError as err:
        raise InvalidMorphError(f"{op} gives an invalid graph: {err}") from None


def _require_layer(graph: Graph, name: str, op: object) -> Layer:
    layer = graph.by_name.get(name)
    if layer is None:
        raise InvalidMorphError(f"{op}: the graph has no layer {name!r}")
    return layer


def _check_fields(op: object, **types: type) -> None:
    """Refuse ill-typed fields (a morph read from JSON must fail here, not deep inside apply)."""
    for name, expected in types.items():
        value = getattr(op, name)
        if isinstance(value, bool) or not isinstance(value, expected):
            raise InvalidMorphError(
                f"{type(op).__name__}.{name} must be {expected.__name__}, got {value!r}"
            )


def _identity_kernel(channels: int, kernel: int, rank: int) -> np.ndarray:
    """Conv weight (C, C, k[, k]) whose output equals its input (1 at the centre tap)."""
    weight = np.zeros((channels, channels) + (kernel,) * rank, np.float32)
    centre = (kernel // 2,) * rank
    for c in range(channels):
        weight[(c, c) + centre] = 1.0
    return weight


def _projection(name: str, rank: int, units: int, source: str) -> Layer:
    """A 1×1 conv (feature maps) or a Dense (vectors) from ``source`` to ``units`` channels."""
    if rank >= 2:
        return Layer(name=name, kind="conv", inputs=(source,), units=units, kernel=1, stride=1)
    return Layer(name=name, kind="dense", inputs=(source,), units=units)


def _projection_weight(rank: int, out_units: int, in_units: int) -> np.ndarray:
    return np.zeros((out_units, in_units) + (1,) * (rank - 1), np.float32)


# ------------------------------------------------------------------------------------ deeper


@register_morph
@dataclass(frozen=True)
class Deeper:
    """Insert an identity layer (and a safe ReLU) after ``after``. ``kernel`` is 0 for Dense."""

    kind: ClassVar[str] = "deeper"
    after: str
    kernel: int = 0

    def __post_init__(self) -> None:
        _check_fields(self, after=str, kernel=int)

    def _new_layers(self, graph: Graph) -> list[Layer]:
        anchor = _require_layer(graph, self.after, self)
        if anchor is graph.output:
            raise InvalidMorphError(f"{self}: cannot deepen after the output layer")
        shape = graph.shape_of(self.after)
        taken: list[str] = []

        def fresh(kind: str) -> str:
            taken.append(graph.fresh_name(kind, taken))
            return taken[-1]

        new: list[Layer] = []
        if len(shape) >= 2:
            if self.kernel not in DEEPER_KERNELS:
                raise InvalidMorphError(f"{self}: kernel must be one of {DEEPER_KERNELS}")
            conv = fresh("conv")
            new.append(
                Layer(conv, "conv", (self.after,), units=shape[0], kernel=self.kernel, stride=1)
            )
            new.append(Layer(fresh("bn"), "bn", (conv,)))
        else:
            if self.kernel != 0:
                raise InvalidMorphError(f"{self}: a vector takes kernel=0 (Dense)")
            new.append(Layer(fresh("dense"), "dense", (self.after,), units=shape[0]))
        if graph.is_non_negative(self.after):
            new.append(Layer(fresh("relu"), "relu", (new[-1].name,)))
        return new

    def apply(self, graph: Graph) -> Graph:
        new = self._new_layers(graph)
        layers = _rewire(list(graph.layers), self.after, new[-1].name, skip={new[0].name})
        return _rebuild(graph, _insert_after(layers, self.after, new), self)

    def transfer(
        self, graph: Graph, weights: Mapping[str, np.ndarray], *, checked: bool = False
    ) -> Weights:
        """Identity kernels and identity BN: ``conv(x) = x`` (centre tap 1 on its own channel).

        BN in eval computes ``γ (x − μ) / sqrt(σ² + ε) + β``; with γ=1, β=0, μ=0 and σ² = 1 − ε
        that is ``x`` exactly. A ReLU is only inserted where ``x >= 0``, where it is ``x`` too.
        """
        new_layers = self._new_layers(graph)  # validates the op before anything else
        result = _parent_weights(graph, weights, checked)
        channels = graph.shape_of(self.after)[0]
        rank = len(graph.shape_of(self.after))
        for layer in new_layers:
            if layer.kind == "conv":
                result[f"{layer.name}.weight"] = _identity_kernel(channels, self.kernel, rank - 1)
                result[f"{layer.name}.bias"] = np.zeros(channels, np.float32)
            elif layer.kind == "dense":
                result[f"{layer.name}.weight"] = np.eye(channels, dtype=np.float32)
                result[f"{layer.name}.bias"] = np.zeros(channels, np.float32)
            elif layer.kind == "bn":
                for suffix, value in identity_bn(channels).items():
                    result[f"{layer.name}.{suffix}"] = value
        return result

    @classmethod
    def candidates(cls, graph: Graph) -> list[Deeper]:
        return [cls(*args) for args in cls.candidate_args(graph)]

    @classmethod
    def candidate_args(cls, graph: Graph) -> list[tuple[str, int]]:
        args: list[tuple[str, int]] = []
        for layer in graph.layers[:-1]:
            shape = graph.shape_of(layer.name)
            if len(shape) >= 2:
                args.extend((layer.name, k) for k in DEEPER_KERNELS)
            elif shape[0] <= MAX_DEEPER_DENSE:
                args.append((layer.name, 0))
        return args

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, **asdict(self)}


# ------------------------------------------------------------------------------------ wider

Insertions = tuple[tuple[int, int], ...]  # ((old index, how many new channels), ...)


@dataclass
class WideningPlan:
    """Which layers change when a layer is widened, and where the new channels go.

    ``sources``: conv/dense layers that get new output units (``name -> count``).
    ``tensors``: every tensor that grows, with its insertions in old-channel coordinates.
    ``sinks``: conv/dense layers reading a grown tensor (``name -> insertions`` along their
    input features; after a flatten these are already scaled to feature positions).
    """

    sources: dict[str, int] = field(default_factory=dict)
    tensors: dict[str, Insertions] = field(default_factory=dict)
    sinks: dict[str, Insertions] = field(default_factory=dict)


_CHANNEL_PRESERVING = ("bn", "relu", "maxpool", "avgpool", "dropout", "gap")


class _Illegal(Exception):
    pass


def widening_plan(graph: Graph, layer_name: str, add: int) -> WideningPlan:
    """Trace the tensors that must grow with ``layer_name``; raises InvalidMorphError if blocked.

    A tensor grows either *from behind* (its producer must make the new channels: a conv/dense
    gets new units, a channel-preserving layer passes the request to its input, an Add to every
    input) or *from the front* (one of its inputs grew: channel-preserving layers, Add, Concat and
    Flatten pass the new channels on). Either way every consumer of a grown tensor is visited:
    a conv/dense consumer becomes a sink (zero weights on the new inputs), any other layer grows.
    """
    plan = WideningPlan()
    try:
        _grow(graph, plan, layer_name, ((graph.shape_of(layer_name)[0], add),), forward=False)
    except _Illegal as err:
        raise InvalidMorphError(f"cannot widen {layer_name!r}: {err}") from None
    return plan


def _grow(graph: Graph, plan: WideningPlan, name: str, ins: Insertions, forward: bool) -> None:
    """Make tensor ``name`` grow by ``ins``, reached from an input (forward) or a consumer."""
    if name in plan.tensors:
        if plan.tensors[name] != ins:
            raise _Illegal(f"tensor {name!r} would grow in two different ways")
        return
    if name == INPUT:
        raise _Illegal("the change reaches the network input")
    layer = graph.by_name[name]
    if layer is graph.output:
        raise _Illegal("the change reaches the output layer")
    plan.tensors[name] = ins
    if layer.kind in ("conv", "dense") and not forward:
        width = graph.shape_of(name)[0]
        if len(ins) != 1 or ins[0][0] != width:
            raise _Illegal(f"{name!r} can only grow at its end")
        plan.sources[name] = ins[0][1]
    elif layer.kind in _CHANNEL_PRESERVING or layer.kind == "add":
        for source in layer.inputs:
            _grow(graph, plan, source, ins, forward=False)
    elif not forward:  # concat and flatten cannot be asked to grow from behind
        raise _Illegal(f"cannot grow the output of {layer.kind} {name!r} from behind")
    for consumer in graph.consumers[name]:
        _grow_consumer(graph, plan, graph.by_name[consumer], name, ins)


def _grow_consumer(
    graph: Graph, plan: WideningPlan, consumer: Layer, source: str, ins: Insertions
) -> None:
    """Tensor ``source`` grew by ``ins``: adapt one layer that reads it."""
    if consumer.kind in ("conv", "dense"):
        if consumer.name in plan.sinks and plan.sinks[consumer.name] != ins:
            raise _Illegal(f"{consumer.name!r} would get two different new inputs")
        plan.sinks[consumer.name] = ins
    elif consumer.kind in _CHANNEL_PRESERVING or consumer.kind == "add":
        _grow(graph, plan, consumer.name, ins, forward=True)
    elif consumer.kind == "flatten":
        # Channel c of a (C, *S) map is features [c*|S|, (c+1)*|S|) of the flattened vector.
        per_channel = math.prod(graph.shape_of(source)[1:])
        scaled = tuple((p * per_channel, n * per_channel) for p, n in ins)
        _grow(graph, plan, consumer.name, scaled, forward=True)
    elif consumer.kind == "concat":
        grown = [s for s in consumer.inputs if s in plan.tensors]
        if len(grown) > 1 or consumer.inputs.count(source) > 1:
            raise _Illegal(f"more than one input of concat {consumer.name!r} would grow")
        offset = sum(graph.shape_of(s)[0] for s in consumer.inputs[: consumer.inputs.index(source)])
        _grow(graph, plan, consumer.name, tuple((p + offset, n) for p, n in ins), forward=True)
    else:
        raise _Illegal(f"cannot follow the change through {consumer.kind} {consumer.name!r}")


def _insert_channels(
    array: np.ndarray, ins: Insertions, axis: int, fill: np.ndarray | float
) -> np.ndarray:
    """Insert new channels along ``axis`` before the given old indices."""
    positions = [p for p, n in ins for _ in range(n)]
    count = len(positions)
    shape = list(array.shape)
    shape[axis] = count
    values = np.broadcast_to(np.asarray(fill, np.float32), shape) if np.ndim(fill) == 0 else fill
    return np.insert(array, positions, values, axis=axis)


@register_morph
@dataclass(frozen=True)
class Wider:
    """Add ``add`` units to conv/dense layer ``layer`` (see :func:`widening_plan`)."""

    kind: ClassVar[str] = "wider"
    layer: str
    add: int

    def __post_init__(self) -> None:
        _check_fields(self, layer=str, add=int)
        if self.add < 1:
            raise InvalidMorphError(f"{self}: add must be positive")

    def plan(self, graph: Graph) -> WideningPlan:
        """What changes (raises InvalidMorphError when this widening does not fit ``graph``)."""
        layer = _require_layer(graph, self.layer, self)
        if layer.kind not in ("conv", "dense"):
            raise InvalidMorphError(f"{self}: only conv and dense layers can be widened")
        if layer.units + self.add > MAX_UNITS:
            raise InvalidMorphError(f"{self}: more than {MAX_UNITS} units")
        return widening_plan(graph, self.layer, self.add)

    def apply(self, graph: Graph) -> Graph:
        plan = self.plan(graph)
        layers = [
            layer.replace(units=layer.units + plan.sources[layer.name])
            if layer.name in plan.sources
            else layer
            for layer in graph.layers
        ]
        return _rebuild(graph, layers, self)

    def transfer(
        self, graph: Graph, weights: Mapping[str, np.ndarray], *, checked: bool = False
    ) -> Weights:
        """New units copy unit ``j mod C``; every consumer reads them with weight 0.

        With ``y = W x + b`` for a consumer and ``x' = [x; x_new]``, ``W' = [W, 0]`` gives
        ``W' x' + b = W x + b``: the function is unchanged whatever the copied values are.
        BN layers on the way get identity statistics on the new channels.
        """
        plan = self.plan(graph)
        result = _parent_weights(graph, weights, checked)
        # Consumers first (zero weights on new inputs), then producers (copied units), so a
        # layer that is both reads the grown tensor and copies its already-grown rows.
        for name, ins in plan.sinks.items():
            result[f"{name}.weight"] = _insert_channels(result[f"{name}.weight"], ins, 1, 0.0)
        for name, count in plan.sources.items():
            weight, bias = result[f"{name}.weight"], result[f"{name}.bias"]
            copies = np.arange(count) % weight.shape[0]
            result[f"{name}.weight"] = np.concatenate([weight, weight[copies]], axis=0)
            result[f"{name}.bias"] = np.concatenate([bias, bias[copies]], axis=0)
        for name, ins in plan.tensors.items():
            if graph.by_name[name].kind == "bn":
                for suffix, value in identity_bn(1).items():
                    result[f"{name}.{suffix}"] = _insert_channels(
                        result[f"{name}.{suffix}"], ins, 0, float(value[0])
                    )
        return result

    @classmethod
    def candidates(cls, graph: Graph) -> list[Wider]:
        return [cls(*args) for args in cls.candidate_args(graph)]

    @classmethod
    def candidate_args(cls, graph: Graph) -> list[tuple[str, int]]:
        args: list[tuple[str, int]] = []
        for layer in graph.layers[:-1]:
            if layer.kind not in ("conv", "dense"):
                continue
            try:
                widening_plan(graph, layer.name, 1)
            except InvalidMorphError:
                continue
            adds = sorted({max(1, int(layer.units * f)) for f in WIDER_FRACTIONS})
            args.extend((layer.name, add) for add in adds if layer.units + add <= MAX_UNITS)
        return args

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, **asdict(self)}


# ------------------------------------------------------------------------------------ skips


def _skip_ends(graph: Graph, i: int) -> Iterator[tuple[str, list[Layer]]]:
    """Every legal skip end after ``main_chain[i]``, with the pools the branch must repeat.

    Walking the main chain from the start, a skip may end at any layer before the output whose
    output has the start's rank and the spatial size the pools seen so far give; it cannot cross
    a strided conv, a global pool or a flatten (the branch could not follow).
    """
    chain = graph.main_chain
    layers, shapes = _along_chain(graph)
    for j, pools in _ends_on(layers, shapes, i):
        yield chain[j], pools


def _along_chain(graph: Graph) -> tuple[list[Layer], list[Shape]]:
    """The main chain's layers and their output shapes."""
    return [graph.by_name[name] for name in graph.main_chain], [
        graph.shape_of(name) for name in graph.main_chain
    ]


def _ends_on(layers: list[Layer], shapes: list[Shape], i: int) -> Iterator[tuple[int, list[Layer]]]:
    """:func:`_skip_ends` as positions on a chain of ``layers`` with output ``shapes``."""
    shape = shapes[i]
    spatial = shape[1:]
    pools: list[Layer] = []
    for j in range(i + 1, len(layers) - 1):
        layer = layers[j]
        if layer.kind not in _SKIP_OVER or (layer.kind == "conv" and layer.stride != 1):
            return
        if layer.kind in _POOLS:
            if any(n < layer.kernel for n in spatial):
                return
            spatial = tuple((n - layer.kernel) // layer.stride + 1 for n in spatial)
            pools = [*pools, layer]
        target = shapes[j]
        if len(target) == len(shape) and target[1:] == spatial:
            yield j, pools


def _skip_pairs(graph: Graph) -> list[tuple[str, str]]:
    """(start, end) of every legal skip, starts in chain order (once per graph object)."""
    cached = graph.__dict__.get("_skip_pairs")
    if cached is None:
        chain = graph.main_chain
        layers, shapes = _along_chain(graph)
        cached = [
            (chain[i], chain[j]) for i in range(len(chain)) for j, _ in _ends_on(layers, shapes, i)
        ]
        graph.__dict__["_skip_pairs"] = cached  # like functools.cached_property does
    return cached  # type: ignore[no-any-return]


def _skip_branch_pools(graph: Graph, start: str, end: str) -> list[Layer] | None:
    """The pools the branch from ``start`` to ``end`` repeats, or None if no skip fits there."""
    chain = graph.main_chain
    if start not in chain:
        return None
    return dict(_skip_ends(graph, chain.index(start))).get(end)


@dataclass(frozen=True)
class _Skip:
    start: str
    end: str

    join: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_fields(self, start=str, end=str)

    def _branch(self, graph: Graph) -> tuple[list[Layer], str]:
        """The main-path pools the branch must repeat, and the tensor the branch starts from."""
        _require_layer(graph, self.start, self)
        _require_layer(graph, self.end, self)
        pools = _skip_branch_pools(graph, self.start, self.end)
        if pools is None:
            raise InvalidMorphError(f"{self}: no skip fits between these layers")
        return pools, self.start

    def _new_layers(self, graph: Graph) -> list[Layer]:
        pools, previous = self._branch(graph)
        taken: list[str] = []

        def fresh(kind: str) -> str:
            taken.append(graph.fresh_name(kind, taken))
            return taken[-1]

        new: list[Layer] = []
        for pool in pools:
            new.append(pool.replace(name=fresh(pool.kind), inputs=(previous,)))
            previous = new[-1].name
        relu = fresh("relu")
        new.append(Layer(relu, "relu", (previous,)))
        rank = len(graph.shape_of(self.end))
        end_units = graph.shape_of(self.end)[0]
        if self.join == "add":
            proj = _projection(fresh("conv" if rank >= 2 else "dense"), rank, end_units, relu)
            new.append(proj)
            new.append(Layer(fresh("add"), "add", (self.end, proj.name)))
        else:
            concat = fresh("concat")
            new.append(Layer(concat, "concat", (self.end, relu)))
            new.append(
                _projection(fresh("conv" if rank >= 2 else "dense"), rank, end_units, concat)
            )
        return new

    def apply(self, graph: Graph) -> Graph:
        new = self._new_layers(graph)
        joiner = new[-2] if self.join == "concat" else new[-1]
        layers = _rewire(list(graph.layers), self.end, new[-1].name, skip={joiner.name})
        return _rebuild(graph, _insert_after(layers, self.end, new), self)

    def transfer(
        self, graph: Graph, weights: Mapping[str, np.ndarray], *, checked: bool = False
    ) -> Weights:
        """The branch adds ``P · relu(pool(x_start))`` with ``P = 0`` (Add), or is read by a
        projection ``[I, 0]`` over ``concat(x_end, branch)`` (Concat): the output stays ``x_end``.
        """
        new_layers = self._new_layers(graph)  # validates the op before anything else
        result = _parent_weights(graph, weights, checked)
        rank = len(graph.shape_of(self.end))
        end_units = graph.shape_of(self.end)[0]
        start_units = graph.shape_of(self.start)[0]
        proj = next(layer for layer in reversed(new_layers) if layer.kind in ("conv", "dense"))
        if self.join == "add":
            weight = _projection_weight(rank, end_units, start_units)
        else:
            weight = _projection_weight(rank, end_units, end_units + start_units)
            for c in range(end_units):
                weight[(c, c) + (0,) * (rank - 1)] = 1.0
        result[f"{proj.name}.weight"] = weight
        result[f"{proj.name}.bias"] = np.zeros(end_units, np.float32)
        return result

    @classmethod
    def candidates(cls, graph: Graph) -> list[Any]:
        return [cls(*args) for args in cls.candidate_args(graph)]

    @classmethod
    def candidate_args(cls, graph: Graph) -> list[tuple[str, str]]:
        return _skip_pairs(graph)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, **asdict(self)}  # type: ignore[attr-defined]


@register_morph
@dataclass(frozen=True)
class AddSkip(_Skip):
    """Residual branch from ``start`` to ``end`` joined by Add (zero-initialised projection)."""

    kind: ClassVar[str] = "add_skip"
    join: ClassVar[str] = "add"


@register_morph
@dataclass(frozen=True)
class ConcatSkip(_Skip):
    """Dense-style branch from ``start`` to ``end`` joined by Concat and an identity projection."""

    kind: ClassVar[str] = "concat_skip"
    join: ClassVar[str] = "concat"
