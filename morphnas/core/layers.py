"""Layer kinds: one registry entry per kind, each knowing its shapes, weights and cost.

A layer is a plain frozen value (:class:`Layer`). What a kind *means* lives in a :class:`LayerKind`
registered in :data:`LAYER_KINDS`: which attributes it uses, the output shape it produces from
its input shapes (raising a named error when they do not fit), the shapes of its weight tensors and
its floating-point operations per example. Everything else (graph validation, parameter counts, the
torch compiler, the ONNX exporter, the tests) walks this registry, so a new kind is one new entry.

Shapes are channel-first and carry no batch axis: ``(C, H, W)`` for images, ``(C, L)`` for
sequences and ``(D,)`` for vectors. Convolutions, pooling and batch norm work on the rank they are
given (1-D on sequences, 2-D on images).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from morphnas.core.errors import (
    InvalidGraphError,
    ShapeMismatchError,
    SizeLimitError,
    UnknownLayerKindError,
)

Shape = tuple[int, ...]

#: Largest width of a conv or dense layer the graph accepts.
MAX_UNITS = 16_384
#: Largest kernel or pool size.
MAX_KERNEL = 15
#: Epsilon of every batch-norm layer (the torch default). Identity-initialised BN layers store
#: ``running_var = 1 - BN_EPS`` so that ``sqrt(var + eps) == 1`` exactly.
BN_EPS = 1e-5


@dataclass(frozen=True)
class Layer:
    """One layer of an architecture graph.

    ``inputs`` names the layers whose outputs this layer reads (``"input"`` is the graph input).
    Only the attributes a kind uses are meaningful; the others stay at their zero default:
    ``units`` (conv filters, dense units), ``kernel`` and ``stride`` (conv, pools) and ``rate``
    (dropout).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    units: int = 0
    kernel: int = 0
    stride: int = 0
    rate: float = 0.0

    def replace(self, **changes: object) -> Layer:
        """A copy with some fields changed."""
        values = {
            "name": self.name,
            "kind": self.kind,
            "inputs": self.inputs,
            "units": self.units,
            "kernel": self.kernel,
            "stride": self.stride,
            "rate": self.rate,
        }
        values.update(changes)
        return Layer(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LayerKind:
    """What one kind of layer means. See the module docstring."""

    name: str
    #: Attributes of :class:`Layer` this kind uses (others must stay zero).
    attrs: tuple[str, ...]
    #: (layer, input shapes) -> output shape; raises an :class:`InvalidGraphError` subclass.
    output_shape: Callable[[Layer, list[Shape]], Shape]
    #: (layer, input shapes) -> {suffix: tensor shape}, e.g. {"weight": (8, 3, 3, 3), "bias": (8,)}.
    weight_shapes: Callable[[Layer, list[Shape]], dict[str, Shape]] = lambda layer, shapes: {}
    #: Names of the weight tensors that are trained (the rest are buffers such as BN statistics).
    trainable: tuple[str, ...] = ()
    #: Number of inputs: an exact count, or None for "two or more" (Add, Concat).
    arity: int | None = 1
    #: (layer, input shapes, output shape) -> multiply-adds per example, times two.
    flops: Callable[[Layer, list[Shape], Shape], int] = field(default=lambda layer, shapes, out: 0)
    #: Whether ``out >= 0`` everywhere when every input is >= 0 (used to place ReLUs safely).
    keeps_non_negative: bool = True


def _spatial(shape: Shape, layer: Layer) -> Shape:
    if len(shape) not in (2, 3):
        raise ShapeMismatchError(
            f"{layer.kind} needs a (C, L) or (C, H, W) input, got {shape}", layer.name
        )
    return shape[1:]


def _check_window(layer: Layer) -> None:
    if not 1 <= layer.kernel <= MAX_KERNEL:
        raise SizeLimitError(f"kernel {layer.kernel} is outside 1..{MAX_KERNEL}", layer.name)
    if not 1 <= layer.stride <= layer.kernel:
        raise SizeLimitError(f"stride {layer.stride} is outside 1..kernel", layer.name)


def _check_units(layer: Layer) -> None:
    if not 1 <= layer.units <= MAX_UNITS:
        raise SizeLimitError(f"units {layer.units} is outside 1..{MAX_UNITS}", layer.name)


def _conv_out(layer: Layer, shapes: list[Shape]) -> Shape:
    _check_units(layer)
    _check_window(layer)
    if layer.kernel % 2 == 0:
        raise SizeLimitError(f"kernel {layer.kernel} must be odd (same padding)", layer.name)
    spatial = _spatial(shapes[0], layer)
    # Same padding k//2: out = floor((n + 2*(k//2) - k) / s) + 1 = floor((n - 1) / s) + 1.
    return (layer.units, *((n - 1) // layer.stride + 1 for n in spatial))


def _conv_weights(layer: Layer, shapes: list[Shape]) -> dict[str, Shape]:
    c_in, *spatial = shapes[0]
    kernel = (layer.kernel,) * len(spatial)
    return {"weight": (layer.units, c_in, *kernel), "bias": (layer.units,)}


def _conv_flops(layer: Layer, shapes: list[Shape], out: Shape) -> int:
    c_in, *spatial = shapes[0]
    return 2 * c_in * layer.kernel ** len(spatial) * math.prod(out)


def _pool_out(layer: Layer, shapes: list[Shape]) -> Shape:
    _check_window(layer)
    c, *spatial = shapes[0]
    _spatial(shapes[0], layer)
    if any(n < layer.kernel for n in spatial):
        raise SizeLimitError(
            f"pool size {layer.kernel} is larger than its input {tuple(spatial)}", layer.name
        )
    return (c, *((n - layer.kernel) // layer.stride + 1 for n in spatial))


def _dense_out(layer: Layer, shapes: list[Shape]) -> Shape:
    _check_units(layer)
    if len(shapes[0]) != 1:
        raise ShapeMismatchError(
            f"dense needs a vector input, got {shapes[0]} (add flatten or gap first)", layer.name
        )
    return (layer.units,)


def _dense_weights(layer: Layer, shapes: list[Shape]) -> dict[str, Shape]:
    return {"weight": (layer.units, shapes[0][0]), "bias": (layer.units,)}


def _same(layer: Layer, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _bn_out(layer: Layer, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _bn_weights(layer: Layer, shapes: list[Shape]) -> dict[str, Shape]:
    c = shapes[0][0]
    return {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,)}


def _dropout_out(layer: Layer, shapes: list[Shape]) -> Shape:
    if not 0.0 <= layer.rate < 1.0:
        raise SizeLimitError(f"dropout rate {layer.rate} is outside [0, 1)", layer.name)
    return shapes[0]


def _gap_out(layer: Layer, shapes: list[Shape]) -> Shape:
    _spatial(shapes[0], layer)
    return (shapes[0][0],)


def _flatten_out(layer: Layer, shapes: list[Shape]) -> Shape:
    return (math.prod(shapes[0]),)


def _add_out(layer: Layer, shapes: list[Shape]) -> Shape:
    for shape in shapes[1:]:
        if shape != shapes[0]:
            raise ShapeMismatchError(f"add inputs differ in shape: {shapes}", layer.name)
    return shapes[0]


def _concat_out(layer: Layer, shapes: list[Shape]) -> Shape:
    ranks = {len(s) for s in shapes}
    rest = {s[1:] for s in shapes}
    if len(ranks) != 1 or len(rest) != 1:
        raise ShapeMismatchError(
            f"concat inputs must agree in every axis but the first: {shapes}", layer.name
        )
    return (sum(s[0] for s in shapes), *shapes[0][1:])


LAYER_KINDS: dict[str, LayerKind] = {}


def register_layer_kind(kind: LayerKind) -> LayerKind:
    """Add a kind to the registry (tests parametrised over the registry pick it up)."""
    if kind.name in LAYER_KINDS:
        raise ValueError(f"layer kind {kind.name!r} is registered already")
    LAYER_KINDS[kind.name] = kind
    return kind


for _kind in (
    LayerKind(
        "conv",
        ("units", "kernel", "stride"),
        _conv_out,
        _conv_weights,
        trainable=("weight", "bias"),
        flops=_conv_flops,
        keeps_non_negative=False,
    ),
    LayerKind(
        "dense",
        ("units",),
        _dense_out,
        _dense_weights,
        trainable=("weight", "bias"),
        flops=lambda layer, shapes, out: 2 * shapes[0][0] * layer.units,
        keeps_non_negative=False,
    ),
    LayerKind(
        "bn",
        (),
        _bn_out,
        _bn_weights,
        trainable=("weight", "bias"),
        flops=lambda layer, shapes, out: 2 * math.prod(out),
        keeps_non_negative=False,
    ),
    LayerKind("relu", (), _same, flops=lambda layer, shapes, out: math.prod(out)),
    LayerKind("maxpool", ("kernel", "stride"), _pool_out),
    LayerKind("avgpool", ("kernel", "stride"), _pool_out),
    LayerKind("gap", (), _gap_out),
    LayerKind("dropout", ("rate",), _dropout_out),
    LayerKind("flatten", (), _flatten_out),
    LayerKind("add", (), _add_out, arity=None, flops=lambda layer, shapes, out: math.prod(out)),
    LayerKind("concat", (), _concat_out, arity=None),
):
    register_layer_kind(_kind)


def layer_kind(layer: Layer) -> LayerKind:
    """The registry entry of a layer's kind (a hot path: validation calls it for every layer)."""
    kind = LAYER_KINDS.get(layer.kind) if isinstance(layer.kind, str) else None
    if kind is None:
        known = ", ".join(sorted(LAYER_KINDS))
        raise UnknownLayerKindError(
            f"unknown layer kind {layer.kind!r} (known: {known})", layer.name
        )
    return kind


def check_layer(layer: Layer, shapes: list[Shape]) -> Shape:
    """Check one layer against its input shapes and return its output shape."""
    kind = layer_kind(layer)
    if kind.arity is None:
        if len(shapes) < 2:
            raise InvalidGraphError(f"{layer.kind} needs two or more inputs", layer.name)
    elif len(shapes) != kind.arity:
        raise InvalidGraphError(
            f"{layer.kind} takes {kind.arity} input(s), got {len(shapes)}", layer.name
        )
    _check_attribute_types(layer)
    for attr in ("units", "kernel", "stride", "rate"):
        if attr not in kind.attrs and getattr(layer, attr):
            raise InvalidGraphError(f"{layer.kind} has no attribute {attr!r}", layer.name)
    out = kind.output_shape(layer, shapes)
    if any(n < 1 for n in out):
        raise SizeLimitError(f"output shape {out} has an empty axis", layer.name)
    return out


def _check_attribute_types(layer: Layer) -> None:
    for attr in ("units", "kernel", "stride"):
        value = getattr(layer, attr)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidGraphError(f"{attr} must be an integer, got {value!r}", layer.name)
    rate = layer.rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise InvalidGraphError(f"rate must be a finite number, got {rate!r}", layer.name)
