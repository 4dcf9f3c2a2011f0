"""A reference forward pass of the architecture format in plain numpy, float64 inside.

It is the executable form of docs/architecture-format.md, ~100 lines another language can port
line by line: no torch, no morphnas. ``scripts/gen_conformance.py`` computes the expected logits
of the conformance vectors with it (float64, rounded to float32 at the end, so the vectors do
not depend on one framework's kernels), and the tests check it against morphnas's torch module.

Notation: N batch, C channels, L length, H height, W width, k kernel, s stride, p = k // 2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BN_EPS = 1e-5

Layer = Mapping[str, Any]
Params = Mapping[str, np.ndarray]


def forward(architecture: Mapping[str, Any], weights: Params, x: np.ndarray) -> np.ndarray:
    """Logits (N, classes) float32 of ``architecture`` (the parsed JSON) on ``x`` (N, *input_shape),
    inference mode: BatchNorm uses its running statistics and dropout is the identity."""
    values: dict[str, np.ndarray] = {"input": np.asarray(x, np.float64)}
    for layer in architecture["layers"]:
        inputs = [values[name] for name in layer["inputs"]]
        params = {
            key.rsplit(".", 1)[1]: np.asarray(value, np.float64)
            for key, value in weights.items()
            if key.rsplit(".", 1)[0] == layer["name"]
        }
        values[layer["name"]] = LAYERS[layer["kind"]](layer, inputs, params)
    return values[architecture["layers"][-1]["name"]].astype(np.float32)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """(N, C, *S) -> (N, C, *S_out, *k...): every k-window along each spatial axis, step s."""
    axes = tuple(range(2, x.ndim))
    view = sliding_window_view(x, (k,) * len(axes), axis=axes)
    return view[(slice(None), slice(None), *(slice(None, None, s) for _ in axes))]


def conv(layer: Layer, inputs: list[np.ndarray], p: Params) -> np.ndarray:
    """Cross-correlation (no kernel flip), zero padding k // 2 on both sides of each spatial
    axis, stride s: out[n, o, i] = b[o] + sum_{c, t} W[o, c, t] * x_pad[n, c, i*s + t]."""
    (x,) = inputs
    k, s = layer["kernel"], layer["stride"]
    pad = [(0, 0), (0, 0)] + [(k // 2, k // 2)] * (x.ndim - 2)
    win = _windows(np.pad(x, pad), k, s)  # (N, C, *S_out, k[, k])
    if x.ndim == 3:  # (N, C, L): W (O, C, k)
        out = np.einsum("nclt,oct->nol", win, p["weight"])
    else:  # (N, C, H, W): W (O, C, k, k)
        out = np.einsum("nchwij,ocij->nohw", win, p["weight"])
    return out + p["bias"].reshape(1, -1, *([1] * (x.ndim - 2)))


def dense(layer: Layer, inputs: list[np.ndarray], p: Params) -> np.ndarray:
    """y = x W^T + b with W (units, D)."""
    (x,) = inputs
    return np.einsum("ni,oi->no", x, p["weight"]) + p["bias"]


def bn(layer: Layer, inputs: list[np.ndarray], p: Params) -> np.ndarray:
    """Per channel (axis 1 of the batch): (x - mean) / sqrt(var + eps) * weight + bias."""
    (x,) = inputs
    shape = (1, -1, *([1] * (x.ndim - 2)))
    scale = p["weight"] / np.sqrt(p["running_var"] + BN_EPS)
    return (x - p["running_mean"].reshape(shape)) * scale.reshape(shape) + p["bias"].reshape(shape)


def _pool(reduce: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def pool(layer: Layer, inputs: list[np.ndarray], p: Params) -> np.ndarray:
        """No padding; out = floor((n - k) / s) + 1 along each spatial axis."""
        (x,) = inputs
        win = _windows(x, layer["kernel"], layer["stride"])
        return reduce(win, axis=tuple(range(x.ndim, win.ndim)))

    return pool


LAYERS: dict[str, Callable[[Layer, list[np.ndarray], Params], np.ndarray]] = {
    "conv": conv,
    "dense": dense,
    "bn": bn,
    "relu": lambda layer, xs, p: np.maximum(xs[0], 0.0),
    "maxpool": _pool(np.max),
    "avgpool": _pool(np.mean),
    "gap": lambda layer, xs, p: xs[0].mean(axis=tuple(range(2, xs[0].ndim))),
    "dropout": lambda layer, xs, p: xs[0],  # inference: the identity
    "flatten": lambda layer, xs, p: xs[0].reshape(xs[0].shape[0], -1),  # row-major (C order)
    "add": lambda layer, xs, p: sum(xs[1:], xs[0]),
    "concat": lambda layer, xs, p: np.concatenate(xs, axis=1),  # channels, in input order
}
