"""Compile an architecture graph (plus weights) into a torch module, once.

The module holds one torch layer per graph layer in a ``ModuleDict`` keyed by layer name, and a
precomputed execution plan: for each step, the slot indices it reads and the slot it writes, and
which slots can be freed afterwards. ``forward`` just runs the plan: no graph walking, no
copying, no replay of operations by name.

Weight names match :meth:`morphnas.core.graph.Graph.weight_shapes` (``conv3.weight``), so
:func:`load_weights` / :func:`module_weights` convert between a module and the framework-free
mapping that travels as safetensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from morphnas.core.graph import INPUT, Graph
from morphnas.core.layers import BN_EPS, Layer
from morphnas.core.weights import check_weights


def _conv_cls(rank: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d}[rank]


def _torch_layer(layer: Layer, in_shapes: list[tuple[int, ...]]) -> nn.Module:
    shape = in_shapes[0]
    rank = len(shape) - 1  # spatial rank: 0 for vectors
    if layer.kind == "conv":
        return _conv_cls(rank)(shape[0], layer.units, layer.kernel, layer.stride, layer.kernel // 2)
    if layer.kind == "dense":
        return nn.Linear(shape[0], layer.units)
    if layer.kind == "bn":
        cls = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[rank]
        return cls(shape[0], eps=BN_EPS)
    if layer.kind == "relu":
        return nn.ReLU()
    if layer.kind == "maxpool":
        return {1: nn.MaxPool1d, 2: nn.MaxPool2d}[rank](layer.kernel, layer.stride)
    if layer.kind == "avgpool":
        return {1: nn.AvgPool1d, 2: nn.AvgPool2d}[rank](layer.kernel, layer.stride)
    if layer.kind == "gap":
        return (
            nn.Flatten(1)
            if rank == 0
            else nn.Sequential(
                {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[rank](1), nn.Flatten(1)
            )
        )
    if layer.kind == "dropout":
        return nn.Dropout(layer.rate)
    if layer.kind == "flatten":
        return nn.Flatten(1)
    if layer.kind == "add":
        return _Add()
    if layer.kind == "concat":
        return _Concat()
    raise NotImplementedError(f"no torch layer for kind {layer.kind!r}")


class _Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _Concat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class GraphModule(nn.Module):
    """A torch module compiled from a :class:`Graph`. Input (N, *graph.input_shape) → logits."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleDict(
            {layer.name: _torch_layer(layer, graph.input_shapes(layer)) for layer in graph.layers}
        )
        slot = {INPUT: 0}
        for i, layer in enumerate(graph.layers, start=1):
            slot[layer.name] = i
        last_use: dict[str, int] = {}
        for step, layer in enumerate(graph.layers):
            for source in layer.inputs:
                last_use[source] = step
        # Plan: (module, input slots, output slot, slots to free after this step).
        self._plan: list[tuple[nn.Module, tuple[int, ...], int, tuple[int, ...]]] = []
        for step, layer in enumerate(graph.layers):
            free = tuple(sorted({slot[s] for s in layer.inputs if last_use[s] == step}))
            self._plan.append(
                (
                    self.layers[layer.name],
                    tuple(slot[s] for s in layer.inputs),
                    slot[layer.name],
                    free,
                )
            )
        self._slots = len(graph.layers) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[torch.Tensor | None] = [None] * self._slots
        values[0] = x
        for module, inputs, output, free in self._plan:
            values[output] = module(*[values[i] for i in inputs])
            for i in free:
                values[i] = None
        out = values[-1]
        assert out is not None
        return out


def build_module(graph: Graph, weights: Mapping[str, np.ndarray] | None = None) -> GraphModule:
    """Compile ``graph``; load ``weights`` when given (else torch's default initialisation)."""
    module = GraphModule(graph)
    if weights is not None:
        load_weights(module, weights)
    return module


def _param_name(name: str) -> str:
    layer, suffix = name.rsplit(".", 1)
    return f"layers.{layer}.{suffix}"


def load_weights(module: GraphModule, weights: Mapping[str, np.ndarray]) -> None:
    """Copy a weight mapping into the module (checked against the graph first)."""
    checked = check_weights(module.graph, weights)
    state = module.state_dict()
    with torch.no_grad():
        for name, array in checked.items():
            target = state[_param_name(name)]
            target.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype))


def module_weights(module: GraphModule) -> dict[str, np.ndarray]:
    """The module's weights as the framework-free mapping (float32, on the CPU)."""
    state = module.state_dict()
    return {
        name: state[_param_name(name)].detach().to("cpu", torch.float32).numpy().copy()
        for name in module.graph.weight_shapes()
    }
