"""Hostile blobs built cheaply: safetensors header bombs and npz zip bombs.

The builders write what a hostile client would send without holding the inflated data: a zip
bomb's zeros are deflated a megabyte at a time (``zipfile`` streaming a member).
"""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np

MIB = 1024**2


def header_bomb(tensors: int) -> bytes:
    """A safetensors file of ``tensors`` zero-size tensors: all header, no data (1.35 M
    tensors make the 79 MB header of issue 17)."""
    entry = '"t%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    header = ("{" + ",".join(entry % i for i in range(tensors)) + "}").encode()
    return struct.pack("<Q", len(header)) + header


def declared_header(length: int) -> bytes:
    """A safetensors file whose first 8 bytes declare a ``length``-byte header it lacks."""
    return struct.pack("<Q", length) + b"{}"


def deep_header(depth: int) -> bytes:
    """A header nested ``depth`` brackets deep (a RecursionError for a naive parser)."""
    header = b"[" * depth + b"]" * depth
    return struct.pack("<Q", len(header)) + header


def zip_bomb(inflated: int, rows: int = 20) -> bytes:
    """An ``.npz`` whose ``x`` is ``inflated`` bytes of float32 zeros (a valid shape) beside a
    valid ``y``: deflate shrinks the zeros about 1,000 times."""
    buffer = io.BytesIO()
    features = inflated // 4 // rows
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (rows, features)}
            )
            zeros = bytes(MIB)
            left = rows * features * 4
            while left:
                member.write(zeros[: min(MIB, left)])
                left -= min(MIB, left)
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.arange(rows) % 3)
    return buffer.getvalue()
