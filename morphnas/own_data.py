"""A user's ``--dataset PATH.npz`` checked on this machine before anything is uploaded.

The server checks uploads too (:func:`morphnas.nn.datasets.load_npz`); here the command catches
the mistakes a person makes with their own arrays and says what to do: a file that is not an
.npz archive, and images saved channels last ``(N, H, W, C)`` where morphnas reads channels
first ``(N, C, H, W)`` (``--layout nhwc`` transposes them).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from morphnas.options import UsageError

#: ``--layout`` choices: channels first (what morphnas trains on) or channels last.
LAYOUTS = ("nchw", "nhwc")
_ZIP_MAGIC = b"PK\x03\x04"
#: A last axis this small next to a larger second axis is almost surely channels.
_MAX_CHANNELS_LAST = 4


@dataclass(frozen=True)
class Upload:
    """What ``morphnas run`` uploads, and the line that tells the user what it holds."""

    data: bytes
    note: str


def prepare_upload(path: str, layout: str = "nchw") -> Upload:
    """The .npz at ``path`` checked (and transposed to channels first for ``nhwc``)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(_ZIP_MAGIC):
        raise UsageError(
            f"--dataset {path!r} is not an .npz file (an .npz is a zip of arrays; a text or CSV "
            "file?): save your arrays with numpy.savez(PATH, x=x, y=y)"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(f"--dataset {path!r}: cannot read it as .npz ({err})") from None
    if "x" not in arrays or "y" not in arrays:
        raise UsageError(
            f"--dataset {path!r} holds {sorted(arrays)}: it needs arrays named x and y "
            "(numpy.savez(PATH, x=x, y=y))"
        )
    x = arrays["x"]
    if layout == "nhwc":
        if x.ndim not in (3, 4):
            raise UsageError(f"--layout nhwc: x has shape {x.shape}; it needs (N, H, W, C)")
        arrays = {k: _channels_first(v) if k.startswith("x") else v for k, v in arrays.items()}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        data = buffer.getvalue()
    elif x.ndim in (3, 4) and x.shape[-1] <= _MAX_CHANNELS_LAST < x.shape[1]:
        first = ", ".join(str(n) for n in (x.shape[0], x.shape[-1], *x.shape[1:-1]))
        raise UsageError(
            f"--dataset {path!r}: x has shape {x.shape}, which looks channels-last "
            f"(N, H, W, C); morphnas reads channels first ({first}): add --layout nhwc, "
            "or save x.transpose(0, 3, 1, 2)"
        )
    return Upload(data, _describe(arrays["x"]))


def _channels_first(x: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` → ``(N, C, H, W)`` (and ``(N, L, C)`` → ``(N, C, L)``)."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _describe(x: np.ndarray) -> str:
    layout = {2: "(N, D)", 3: "(N, C, L)", 4: "(N, C, H, W)"}.get(x.ndim, "")
    values = f"values {float(x.min()):g}..{float(x.max()):g}" if x.size else "no values"
    return (
        f"x {x.shape} {layout} {x.dtype}, {values}; scaling: each channel is standardised with "
        "its training-split mean and std (baked into the ONNX file), nothing else"
    )
