"""Weights: a mapping ``"<layer>.<suffix>" -> float32 numpy array``, stored as safetensors.

Never pickle: :func:`weights_to_bytes` / :func:`weights_from_bytes` use the safetensors format,
which holds raw tensors and a JSON header only, and :func:`check_weights` refuses anything that
does not match the architecture exactly (missing, extra, wrong shape, not finite).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping

import numpy as np

from morphnas.core.errors import WeightsError
from morphnas.core.graph import Graph
from morphnas.core.layers import BN_EPS

Weights = dict[str, np.ndarray]

#: Tensor names that JSON writes as they are (morphnas's own: ``<layer>.<suffix>``).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]+")


def init_weights(graph: Graph, seed: int) -> Weights:
    """Fresh weights as torch initialises them (Kaiming-uniform with a=sqrt(5)), seeded.

    Conv/dense: W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default reduces to this), bias the
    same bound. BN: gamma 1, beta 0, running mean 0, running var 1.
    """
    # New searches have seeds >= 0; a search stored before that was checked may not.
    rng = np.random.default_rng(seed % 2**63)
    weights: Weights = {}
    shapes = graph.weight_shapes()
    for name, shape in shapes.items():
        layer, suffix = name.rsplit(".", 1)
        kind = graph.by_name[layer].kind
        if kind == "bn":
            value = 1.0 if suffix in ("weight", "running_var") else 0.0
            weights[name] = np.full(shape, value, dtype=np.float32)
        else:
            w_shape = shapes[f"{layer}.weight"]
            fan_in = math.prod(w_shape[1:])
            bound = 1.0 / math.sqrt(fan_in)
            weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return weights


def identity_bn(channels: int) -> dict[str, np.ndarray]:
    """BN parameters that are exactly the identity in eval mode (running_var = 1 - eps)."""
    return {
        "weight": np.ones(channels, np.float32),
        "bias": np.zeros(channels, np.float32),
        "running_mean": np.zeros(channels, np.float32),
        "running_var": np.full(channels, 1.0 - BN_EPS, np.float32),
    }


def check_weights(graph: Graph, weights: Mapping[str, np.ndarray]) -> Weights:
    """``weights`` as float32 arrays if they fit ``graph`` exactly, else raise WeightsError."""
    expected = graph.weight_shapes()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if extra:
            parts.append(f"unexpected {_few(extra)}")
        raise WeightsError("weights do not match the architecture: " + "; ".join(parts))
    result: Weights = {}
    for name, shape in expected.items():
        array = np.asarray(weights[name])
        if array.shape != shape:
            raise WeightsError(f"tensor {name!r} has shape {array.shape}, expected {shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise WeightsError(f"tensor {name!r} has dtype {array.dtype}, expected a float type")
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            raise WeightsError(f"tensor {name!r} holds NaN or infinite values")
        result[name] = array
    return result


def require_float32(weights: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """``weights`` if every tensor is float32, else WeightsError.

    The wire contract's dtype is F32 (little-endian float32) and nothing else: weights a worker
    uploads are stored and handed back byte for byte, so the server refuses F64, F16, BF16 and
    integer tensors instead of converting them (the worker converts before it uploads).
    """
    for name, array in weights.items():
        if array.dtype != np.float32:
            raise WeightsError(
                f"tensor {name!r} has dtype {array.dtype}; weights travel as float32 (F32) only"
            )
    return weights


def weights_to_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """Serialise as safetensors.

    All-float32 mappings (what morphnas makes) are written here directly, byte for byte what the
    safetensors library writes (tested): an 8-byte little-endian header length, the JSON header
    (tensors by name, offsets into the data, padded with spaces to a multiple of 8), the data.
    Anything else goes through the library.
    """
    if not all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in weights.values()):
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in weights.items()})
    names = sorted(weights)
    entries = []
    offset = 0
    for name in names:
        array = weights[name]
        end = offset + array.nbytes
        shape = ",".join(str(n) for n in array.shape)
        key = f'"{name}"' if _PLAIN_NAME.fullmatch(name) else json.dumps(name, ensure_ascii=False)
        entries.append(f'{key}:{{"dtype":"F32","shape":[{shape}],"data_offsets":[{offset},{end}]}}')
        offset = end
    header = ("{" + ",".join(entries) + "}").encode()
    header += b" " * (-len(header) % 8)
    parts = [struct.pack("<Q", len(header)), header]
    parts.extend(np.ascontiguousarray(weights[name], dtype="<f4").tobytes() for name in names)
    return b"".join(parts)


def weights_from_bytes(data: bytes) -> Weights:
    """Parse safetensors bytes (no code is ever executed); raises WeightsError when malformed."""
    from safetensors.numpy import load

    try:
        return dict(load(data))
    except Exception as err:  # safetensors raises several error types on malformed input
        raise WeightsError(f"weights are not a valid safetensors file: {err}") from None


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
