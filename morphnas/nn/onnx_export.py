"""Export a trained architecture as a self-contained ONNX model, and check it against torch.

The exported graph is ``input (N, *input_shape) float32 → (x - mean) / std → network → logits``
(or ``probabilities`` with ``softmax=True``), with a dynamic batch axis, a fixed opset and the
search's facts as ``metadata_props``. It runs in onnxruntime with neither morphnas nor torch.

The legacy TorchScript-based exporter (``dynamo=False``) is used: it ships with torch itself,
while the dynamo exporter needs ``onnxscript``, which the server does not otherwise depend on.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import threading
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.nn.datasets import Normalisation
from morphnas.nn.module import GraphModule, build_module

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
LOGITS_NAME = "logits"
PROBABILITIES_NAME = "probabilities"
EXPORT_BATCH = 2  # exporting with batch 1 can let a tracer specialise the batch axis


class _Exported(nn.Module):
    """Normalisation → network → optional softmax, as one module to trace."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network: GraphModule, norm: Normalisation, softmax: bool) -> None:
        super().__init__()
        shape = norm.broadcast_shape(network.graph.input_shape)
        self.network = network
        self.softmax = softmax
        self.register_buffer("mean", torch.tensor(norm.mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(norm.std, dtype=torch.float32).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network((x - self.mean) / self.std)  # (N, K)
        return torch.softmax(logits, dim=1) if self.softmax else logits


_EXPORT_LOCK = threading.Lock()


def morphnas_version() -> str:
    try:
        return importlib.metadata.version("morphnas")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_metadata(
    graph: Graph, norm: Normalisation, metadata: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``metadata_props`` of an export: the caller's entries plus the model's own facts."""
    own = {
        "input_shape": json.dumps(list(graph.input_shape)),
        "classes": str(graph.shape_of(graph.output.name)[0]),
        "normalisation": norm.to_json(),
        "morphnas_version": morphnas_version(),
        "architecture": graph.to_json(),
    }
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgumentError(f"ONNX metadata must map str to str, got {key!r}: {value!r}")
    clash = sorted(set(extra) & set(own))
    if clash:
        raise InvalidArgumentError(f"metadata keys {clash} are set by the exporter itself")
    return {**extra, **own}


def export_onnx(
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    norm: Normalisation,
    *,
    softmax: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The ONNX model (serialised bytes) of ``graph`` with ``weights``, normalisation baked in.

    ``metadata`` (e.g. search, trial, score) is stored with the model's own facts (input_shape,
    classes, normalisation, morphnas_version, architecture). The result passes
    ``onnx.checker.check_model``.
    """
    import onnx

    props = export_metadata(graph, norm, metadata)
    model = _Exported(build_module(graph, weights), norm, softmax).eval()
    output = PROBABILITIES_NAME if softmax else LOGITS_NAME
    example = torch.zeros((EXPORT_BATCH, *graph.input_shape), dtype=torch.float32)
    buffer = io.BytesIO()
    # torch.onnx.export keeps global state (and so does warnings.catch_warnings): one at a time.
    with _EXPORT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its own deprecation
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects too
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[output],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "morphnas"
    proto.producer_version = morphnas_version()
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    return bytes(proto.SerializeToString())


def onnx_metadata(onnx_bytes: bytes) -> dict[str, str]:
    """The ``metadata_props`` of a serialised ONNX model."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    return {entry.key: entry.value for entry in proto.metadata_props}


def run_onnx(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run the exported model in onnxruntime (CPU) on a raw, unnormalised batch."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(result)


def torch_reference(
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    norm: Normalisation,
    x: np.ndarray,
    *,
    softmax: bool = False,
) -> np.ndarray:
    """What the export should compute, evaluated by torch (eval mode, CPU, float32)."""
    module = build_module(graph, weights).eval()
    with torch.inference_mode():
        out = module(torch.from_numpy(norm.apply(x)))  # (N, K)
        if softmax:
            out = torch.softmax(out, dim=1)
    return out.numpy()


def check_onnx_matches(
    onnx_bytes: bytes,
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    norm: Normalisation,
    x: np.ndarray,
) -> tuple[float, float]:
    """(fraction of examples whose argmax agrees, max |onnx - torch|) on the raw batch ``x``.

    Whether the export ends in a softmax is read from its output name.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    softmax = session.get_outputs()[0].name == PROBABILITIES_NAME
    (got,) = session.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
    expected = torch_reference(graph, weights, norm, x, softmax=softmax)
    if got.shape != expected.shape:
        raise InvalidArgumentError(f"ONNX output shape {got.shape}, torch {expected.shape}")
    agreement = float((got.argmax(1) == expected.argmax(1)).mean()) if len(x) else 1.0
    max_abs_diff = float(np.abs(got - expected).max()) if got.size else 0.0
    return agreement, max_abs_diff
