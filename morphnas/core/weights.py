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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from morphnas.core.errors import WeightsError
from morphnas.core.graph import Graph
from morphnas.core.layers import BN_EPS

Weights = dict[str, np.ndarray]

#: ``read(offset, size)``: ``size`` bytes of a blob from ``offset`` (bytes, a memoryview, a file).
ReadAt = Callable[[int, int], bytes | memoryview]
#: Bytes of tensor data checked at a time by :func:`check_weights_blob` (a multiple of 4).
CHECK_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SafetensorsLimits:
    """Ceilings on a safetensors header, checked on its raw bytes before it is parsed.

    A morphnas model has at most 2,000 layers of at most 4 tensors, each described in about
    100 bytes of JSON, so the defaults hold any morphnas model with room to spare while a
    crafted header (millions of zero-size tensors) is refused before it costs memory.
    """

    max_header_bytes: int = 2 * 1024**2
    max_tensors: int = 10_000


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header: dtype, shape and its byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


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


def weights_from_bytes(data: bytes, limits: SafetensorsLimits | None = None) -> Weights:
    """Parse safetensors bytes (no code is ever executed); raises WeightsError when malformed.

    The header's size and tensor count are checked against ``limits`` first (the defaults when
    None), so a crafted header is refused before the library parses it."""
    from safetensors.numpy import load

    read_header(_reader(data), len(data), limits or SafetensorsLimits())

    try:
        return dict(load(data))
    except Exception as err:  # safetensors raises several error types on malformed input
        raise WeightsError(f"weights are not a valid safetensors file: {err}") from None


def _reader(data: bytes | memoryview) -> ReadAt:
    view = memoryview(data)
    return lambda offset, size: view[offset : offset + size]


def read_header(
    read: ReadAt, size: int, limits: SafetensorsLimits
) -> tuple[dict[str, TensorEntry], int]:
    """The tensors a safetensors blob of ``size`` bytes declares, and where its data starts.

    Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
    (``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then the
    data; offsets count from the end of the header. The length and the tensor count are checked
    on the raw bytes *before* the JSON is parsed: every tensor entry is a JSON object, and an
    object needs a literal ``{`` (it cannot be escaped), so ``count("{") - 1`` bounds the tensor
    count from above; every ``[`` likewise bounds arrays and nesting depth.
    """
    if size < 8:
        raise WeightsError(f"weights are not a valid safetensors file: {size} bytes, no header")
    (length,) = struct.unpack("<Q", bytes(read(0, 8)))
    if length > limits.max_header_bytes:
        raise WeightsError(
            f"the safetensors header declares {length:,} bytes, more than the limit of "
            f"{limits.max_header_bytes:,}"
        )
    if 8 + length > size:
        raise WeightsError(
            f"weights are not a valid safetensors file: a header of {length:,} bytes "
            f"in {size:,} bytes"
        )
    raw = bytes(read(8, length))
    objects, arrays = raw.count(b"{") - 1, raw.count(b"[")
    if objects > limits.max_tensors + 1 or arrays > 2 * (limits.max_tensors + 1):
        raise WeightsError(
            f"the safetensors header describes more than {limits.max_tensors:,} tensors, the limit"
        )
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as err:
        raise WeightsError(f"weights are not a valid safetensors file: {err}") from None
    if not isinstance(header, dict):
        raise WeightsError("weights are not a valid safetensors file: the header is not a map")
    header.pop("__metadata__", None)
    return {name: _entry(name, value) for name, value in header.items()}, 8 + length


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("the header names a tensor twice")
    return result


def _entry(name: str, value: object) -> TensorEntry:
    """A tensor's header entry, checked for form (not yet against any architecture)."""
    dtype = shape = offsets = None
    if isinstance(value, dict):
        dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not (
        isinstance(dtype, str)
        and isinstance(shape, list)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(n) is int and n >= 0 for n in (*shape, *offsets))
        and offsets[0] <= offsets[1]
    ):
        raise WeightsError(
            f"weights are not a valid safetensors file: tensor {name[:100]!r} has a malformed "
            "entry (dtype, shape, data_offsets)"
        )
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def check_weights_blob(
    graph: Graph, read: ReadAt, size: int, limits: SafetensorsLimits | None = None
) -> None:
    """Raise WeightsError unless the safetensors blob of ``size`` bytes holds exactly ``graph``'s
    weights as float32 (F32), every value finite, and nothing else.

    The same rules as ``check_weights(graph, require_float32(weights_from_bytes(blob)))``, but
    read ``CHECK_CHUNK_BYTES`` at a time through ``read``: no tensor is materialised, so a blob
    spooled to a file is checked in constant memory. The tensors must tile the data exactly (no
    gap, no overlap, nothing after), as the safetensors library requires when it loads them.
    """
    tensors, start = read_header(read, size, limits or SafetensorsLimits())
    expected = graph.weight_shapes()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = [f"missing {_few(missing)}"] if missing else []
        parts += [f"unexpected {_few([n[:100] for n in extra])}"] if extra else []
        raise WeightsError("weights do not match the architecture: " + "; ".join(parts))
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: item[1].begin):
        if entry.dtype != "F32":
            raise WeightsError(
                f"tensor {name!r} has dtype {entry.dtype[:20]}; weights travel as float32 (F32) only"
            )
        if entry.shape != expected[name]:
            raise WeightsError(
                f"tensor {name!r} has shape {entry.shape}, expected {expected[name]}"
            )
        if entry.begin != position or entry.end - entry.begin != 4 * math.prod(entry.shape):
            raise WeightsError(
                f"weights are not a valid safetensors file: the data of tensor {name!r} "
                f"does not follow the previous tensor's (offsets {entry.begin}..{entry.end})"
            )
        position = entry.end
    if start + position != size:
        raise WeightsError(
            f"weights are not a valid safetensors file: the tensors hold {position:,} bytes "
            f"of data, the file {size - start:,}"
        )
    for offset in range(start, size, CHECK_CHUNK_BYTES):
        values = np.frombuffer(read(offset, min(CHECK_CHUNK_BYTES, size - offset)), "<f4")
        if not np.isfinite(values).all():
            name = _tensor_at(tensors, offset - start + 4 * int(np.argmin(np.isfinite(values))))
            raise WeightsError(f"tensor {name!r} holds NaN or infinite values")


def _tensor_at(tensors: Mapping[str, TensorEntry], position: int) -> str:
    return next(n for n, e in tensors.items() if e.begin <= position < e.end)


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
