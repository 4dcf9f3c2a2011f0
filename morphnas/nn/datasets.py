"""Datasets for server-side training: built-ins, checked user uploads, splits, normalisation.

numpy only (no torch), so the server can check an upload without loading the training stack.

Notation: ``N`` examples, ``x`` float32 of shape ``(N, *input_shape)`` where ``input_shape`` is
``(C, H, W)`` for images, ``(C, L)`` for sequences and ``(D,)`` for vectors; ``y`` int64 of shape
``(N,)`` with labels in ``[0, num_classes)``. The "channel" axis is axis 1 of ``x`` (for vectors
every feature is its own channel). A dataset may carry an *official* test set: its last
``official_test`` examples, which :func:`dataset_split` always uses as the test split.

Uploads are parsed without ever executing code: ``.npz`` through ``np.load(allow_pickle=False)``,
safetensors through its JSON header. Every check failure raises
:class:`~morphnas.core.errors.InvalidArgumentError` (or ``ResourceExhaustedError`` for size)
with a message saying what to fix.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import random
import tokenize
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from morphnas.core.errors import InvalidArgumentError, ResourceExhaustedError
from morphnas.core.records import MAX_CLASSES

Shape = tuple[int, ...]

BUILTIN_DATASETS = ("digits", "mnist1d")
#: mnist1d's published dataset is generated with seed 42; ``builtin_dataset(seed=s)`` uses 42 + s.
MNIST1D_SEED = 42
MNIST1D_SAMPLES = 5000  # 4000 train / 1000 test, as in the mnist1d paper
MIN_EXAMPLES = 10
MAX_INPUT_RANK = 3
_STD_FLOOR = 1e-6
_CHECKSUM_FORMAT = "morphnas.dataset/1"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled classification dataset, immutable (its arrays are read-only).

    ``checksum`` is the sha256 of the canonical bytes (header, x as little-endian float32, y as
    little-endian int64); it identifies the content, not the name.
    """

    name: str
    x: np.ndarray  # (N, *input_shape) float32
    y: np.ndarray  # (N,) int64
    num_classes: int
    input_shape: Shape
    official_test: int = 0
    checksum: str = field(default="")

    def __post_init__(self) -> None:
        x = _frozen(self.x, np.float32)
        y = _frozen(self.y, np.int64)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "input_shape", tuple(int(n) for n in self.input_shape))
        _check_consistent(x, y, self.num_classes, self.input_shape, self.official_test)
        digest = dataset_checksum(x, y, self.num_classes, self.official_test)
        if self.checksum and self.checksum != digest:
            raise InvalidArgumentError(
                f"dataset checksum mismatch: given {self.checksum}, content hashes to {digest}"
            )
        object.__setattr__(self, "checksum", digest)

    def __len__(self) -> int:
        return int(self.y.shape[0])


def dataset_checksum(x: np.ndarray, y: np.ndarray, num_classes: int, official_test: int) -> str:
    """sha256 of the canonical bytes of a dataset's content."""
    header = json.dumps(
        {
            "format": _CHECKSUM_FORMAT,
            "x_shape": list(x.shape),
            "num_classes": num_classes,
            "official_test": official_test,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(header.encode())
    digest.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return digest.hexdigest()


def _frozen(array: np.ndarray, dtype: type) -> np.ndarray:
    """A read-only C-contiguous copy (a copy, so the caller's array never changes under us)."""
    result: np.ndarray = np.array(array, dtype=dtype, order="C", copy=True)
    result.flags.writeable = False
    return result


def _check_consistent(
    x: np.ndarray, y: np.ndarray, num_classes: int, input_shape: Shape, official_test: int
) -> None:
    if x.shape[1:] != input_shape:
        raise InvalidArgumentError(f"x has examples of shape {x.shape[1:]}, expected {input_shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise InvalidArgumentError(f"y must have shape ({x.shape[0]},), got {y.shape}")
    if num_classes < 2:
        raise InvalidArgumentError(f"a dataset needs at least 2 classes, got {num_classes}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise InvalidArgumentError(f"labels must lie in [0, {num_classes})")
    if not 0 <= official_test < x.shape[0]:
        raise InvalidArgumentError(f"official_test={official_test} is out of range")


# ------------------------------------------------------------------------------------ built-ins


def builtin_dataset(name: str, seed: int = 0) -> Dataset:
    """A built-in dataset, generated locally (never downloaded).

    ``digits``: scikit-learn's 8×8 digits as they come, pixel counts 0..16 as ``(N, 1, 8, 8)``,
    10 classes, no official test. No scaling here: the per-channel normalisation fitted on the
    training split (baked into the ONNX export) is all the scaling, so the exported model takes
    what ``load_digits()`` gives.
    ``mnist1d``: 5000 sequences ``(N, 1, 40)``, 10 classes, the last 1000 the official test set.
    ``seed`` changes the generation seed of synthetic datasets (mnist1d uses 42 + seed, so the
    default gives the published dataset); it does not affect digits.
    """
    if name == "digits":
        return _digits()
    if name == "mnist1d":
        return _mnist1d(MNIST1D_SEED + seed)
    known = list(BUILTIN_DATASETS)
    raise InvalidArgumentError(f"unknown built-in dataset {name!r} (known: {known})")


@functools.lru_cache(maxsize=1)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8), values 0..16
    return Dataset("digits", x, bunch.target.astype(np.int64), 10, (1, 8, 8))


@functools.lru_cache(maxsize=4)
def _mnist1d(generation_seed: int) -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = MNIST1D_SAMPLES
    args.seed = generation_seed
    with _global_rng_preserved():  # make_dataset reseeds the global numpy / random generators
        data = make_dataset(args)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None, :]  # (5000, 1, 40)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    name = "mnist1d" if generation_seed == MNIST1D_SEED else f"mnist1d-{generation_seed}"
    return Dataset(name, x, y, 10, tuple(x.shape[1:]), official_test=len(data["y_test"]))


class _global_rng_preserved:
    def __enter__(self) -> None:
        self._np = np.random.get_state()
        self._py = random.getstate()

    def __exit__(self, *exc: object) -> None:
        np.random.set_state(self._np)
        random.setstate(self._py)


# ------------------------------------------------------------------------------------ uploads


def load_npz(
    data: bytes,
    *,
    max_bytes: int,
    name: str = "upload",
    num_classes: int | None = None,
) -> Dataset:
    """Parse and check an uploaded ``.npz`` holding arrays ``x`` and ``y``.

    Optional ``x_test`` / ``y_test`` become the official test set. ``max_bytes`` bounds both the
    upload and the decompressed arrays. ``num_classes`` defaults to ``max(y) + 1``.
    """
    _check_upload_size(len(data), max_bytes)
    if not data.startswith((b"PK\x03\x04", b"\x93NUMPY")):
        raise InvalidArgumentError(
            "the upload is not an .npz file (an .npz is a zip of arrays; a text or CSV file?): "
            "save it with np.savez(f, x=x, y=y)"
        )
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except _ZIP_ERRORS as err:
        raise InvalidArgumentError(
            f"the upload is not a valid .npz file ({err}); save it with np.savez(f, x=x, y=y)"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidArgumentError(
            "the upload is a single .npy array; send an .npz with arrays x and y "
            "(np.savez(f, x=x, y=y))"
        )
    with archive:
        members = archive.zip.infolist() if archive.zip is not None else []
        unpacked = sum(int(info.file_size) for info in members)
        _check_upload_size(unpacked, max_bytes, what="the decompressed arrays")
        # A .npy header may declare far more data than its member holds; numpy would allocate
        # the declared size before finding out, so the declared sizes are checked first.
        declared = 0
        for info in members:
            declared += _declared_bytes(archive.zip, info)
            _check_upload_size(declared, max_bytes, what="the arrays as declared")
        arrays = {key: _npz_member(archive, key) for key in archive.files}
    return dataset_from_arrays(arrays, name=name, num_classes=num_classes)


#: What zipfile and numpy raise for a damaged archive or member: a bad header, a truncated or
#: corrupt stream (zlib.error), an unsupported zip version or compression method
#: (NotImplementedError), an encrypted member (RuntimeError), a .npy header numpy's parser
#: cannot read (tokenize.TokenError, SyntaxError).
_ZIP_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    tokenize.TokenError,
    SyntaxError,
)


def _declared_bytes(archive: zipfile.ZipFile | None, info: zipfile.ZipInfo) -> int:
    """Bytes the .npy header of a zip member declares (0 for a member that is not .npy)."""
    if archive is None or not info.filename.endswith(".npy"):
        return 0
    fmt = np.lib.format
    try:
        with archive.open(info) as member:
            version = fmt.read_magic(member)
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
    except _ZIP_ERRORS as err:
        raise InvalidArgumentError(
            f"member {info.filename!r} is not a valid .npy array: {err}"
        ) from None
    return math.prod(shape) * dtype.itemsize


def _npz_member(archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        value = archive[key]
    except _ZIP_ERRORS as err:
        if "pickle" in str(err).lower():  # object arrays need pickle, which is refused
            raise InvalidArgumentError(
                f"array {key!r} cannot be read without pickle; "
                "send numeric arrays (float for x, integer for y)"
            ) from None
        raise InvalidArgumentError(f"array {key!r} is not a valid .npy member: {err}") from None
    if not isinstance(value, np.ndarray):  # a zip member that is not .npy comes back as bytes
        raise InvalidArgumentError(f"member {key!r} of the upload is not a .npy array")
    return value


@dataclass(frozen=True)
class NpzLimits:
    """Ceilings on an uploaded .npz, checked while its members inflate (never after).

    ``max_ratio``: inflated bytes per compressed byte of a member, refused once the member has
    inflated past ``ratio_floor_bytes`` (real data deflates 2 to 10 times; a member of zeros
    about 1,000 times, which is what a zip bomb is made of).
    """

    max_inflated_bytes: int = 2 * 1024**3
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 16 * 1024**2


@dataclass(frozen=True)
class DatasetSummary:
    """What an upload holds, as :func:`inspect_npz` found it without materialising it."""

    input_shape: Shape
    num_classes: int
    num_examples: int
    official_test: int


#: Bytes of a member inflated and checked at a time by :func:`inspect_npz`.
INSPECT_CHUNK_BYTES = 1024 * 1024


def inspect_npz(
    file: IO[bytes],
    *,
    max_bytes: int,
    limits: NpzLimits | None = None,
    num_classes: int | None = None,
) -> DatasetSummary:
    """Check an uploaded ``.npz`` (a seekable file) by the rules of :func:`load_npz`, reading
    each member ``INSPECT_CHUNK_BYTES`` at a time: memory stays constant whatever the size.

    The members' declared sizes are checked first; then, while a member inflates, its running
    inflated size against ``limits.max_inflated_bytes`` and its ratio against
    ``limits.max_ratio`` (see :class:`NpzLimits`), so a zip bomb is refused after inflating at
    most ``max(ratio_floor_bytes, max_ratio x its compressed size)``.
    """
    limits = limits or NpzLimits()
    file.seek(0, io.SEEK_END)
    _check_upload_size(file.tell(), max_bytes)
    file.seek(0)
    if not file.read(4).startswith(b"PK\x03\x04"):
        raise InvalidArgumentError(
            "the upload is not an .npz file (an .npz is a zip of arrays; a text or CSV file?): "
            "save it with np.savez(f, x=x, y=y)"
        )
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
        members = archive.infolist()
    except _ZIP_ERRORS as err:
        raise InvalidArgumentError(
            f"the upload is not a valid .npz file ({err}); save it with np.savez(f, x=x, y=y)"
        ) from None
    with archive:
        declared = sum(int(info.file_size) for info in members)
        _check_upload_size(declared, limits.max_inflated_bytes, what="the decompressed arrays")
        forms: dict[str, tuple[np.dtype, Shape]] = {}
        highest = {"y": -1, "y_test": -1}
        for info in members:
            key = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy"):
                raise InvalidArgumentError(f"member {info.filename[:100]!r} is not a .npy array")
            if key not in ("x", "y", "x_test", "y_test"):
                raise InvalidArgumentError(
                    f"unexpected array {key[:100]!r}; send only x and y "
                    "(and optionally x_test, y_test)"
                )
            forms[key] = _inspect_member(archive, info, key, limits, highest)
    for key in ("x", "y"):
        if key not in forms:
            raise InvalidArgumentError(f"array {key!r} is missing; send arrays named x and y")
    if ("x_test" in forms) != ("y_test" in forms):
        raise InvalidArgumentError("send x_test and y_test together, or neither")
    x_shape, n = forms["x"][1], forms["x"][1][0]
    _check_pair_shapes(x_shape, forms["y"][1], "x", "y")
    official_test = 0
    if "x_test" in forms:
        x_test = forms["x_test"][1]
        _check_pair_shapes(x_test, forms["y_test"][1], "x_test", "y_test")
        if x_test[1:] != x_shape[1:]:
            raise InvalidArgumentError(
                f"x_test examples have shape {x_test[1:]} but x examples {x_shape[1:]}"
            )
        official_test = x_test[0]
    top = np.array([max(highest.values())], np.int64)
    classes = _num_classes(top, num_classes)
    return DatasetSummary(tuple(x_shape[1:]), classes, n + official_test, official_test)


def _inspect_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    key: str,
    limits: NpzLimits,
    highest: dict[str, int],
) -> tuple[np.dtype, Shape]:
    """Check one member's header and values as it inflates; returns its (dtype, shape)."""
    fmt = np.lib.format
    try:
        with archive.open(info) as raw:
            member = _Inflating(raw, info, limits)
            version = fmt.read_magic(member)  # type: ignore[no-untyped-call]
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
            shape = tuple(int(n) for n in shape)
            if dtype.hasobject:
                raise InvalidArgumentError(
                    f"array {key!r} cannot be read without pickle; "
                    "send numeric arrays (float for x, integer for y)"
                )
            if key.startswith("x"):
                _check_features_form(dtype, shape, key)
            else:
                _check_labels_form(dtype, shape, key)
            remaining = math.prod(shape) * dtype.itemsize
            step = INSPECT_CHUNK_BYTES - INSPECT_CHUNK_BYTES % dtype.itemsize
            while remaining:
                data = member.read(min(step, remaining))
                if len(data) == 0 or len(data) % dtype.itemsize:
                    raise InvalidArgumentError(f"array {key!r} holds fewer values than its shape")
                remaining -= len(data)
                values = np.frombuffer(data, dtype)
                if key.startswith("x"):
                    _features_values(values, key)
                else:
                    _check_labels_values(values, key)
                    highest[key] = max(highest[key], int(values.max()))
    except _ZIP_ERRORS as err:
        if isinstance(err, InvalidArgumentError):
            raise
        raise InvalidArgumentError(
            f"member {info.filename[:100]!r} is not a valid .npy array: {str(err)[:200]}"
        ) from None
    return dtype, shape


class _Inflating:
    """A zip member's reader that counts inflated bytes and refuses a bomb as it inflates."""

    def __init__(self, member: IO[bytes], info: zipfile.ZipInfo, limits: NpzLimits) -> None:
        self._member = member
        self._info = info
        self._limits = limits
        self.inflated = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:  # never inflate a whole member at once
            size = INSPECT_CHUNK_BYTES
        data = self._member.read(size)
        self.inflated += len(data)
        if self.inflated > self._limits.max_inflated_bytes:
            raise ResourceExhaustedError(
                f"member {self._info.filename[:100]!r} inflates past the limit of "
                f"{self._limits.max_inflated_bytes:,} bytes"
            )
        ratio = self.inflated / max(1, self._info.compress_size)
        if self.inflated > self._limits.ratio_floor_bytes and ratio > self._limits.max_ratio:
            raise ResourceExhaustedError(
                f"member {self._info.filename[:100]!r} inflates {ratio:,.0f} times its "
                f"compressed size, more than the limit of {self._limits.max_ratio:g} "
                "(a zip bomb?); send the arrays uncompressed or with real data"
            )
        return data


def _check_pair_shapes(x: Shape, y: Shape, x_key: str, y_key: str) -> None:
    """:func:`_check_pair` on shapes only."""
    _check_pair(np.empty((x[0], 0)), np.empty((y[0], 0)), x_key, y_key)


def load_safetensors(
    data: bytes, *, max_bytes: int, name: str = "upload", num_classes: int | None = None
) -> Dataset:
    """Parse and check an uploaded safetensors file holding tensors ``x`` and ``y``."""
    _check_upload_size(len(data), max_bytes)
    from safetensors.numpy import load

    try:
        arrays = dict(load(data))
    except Exception as err:  # safetensors raises several error types on malformed input
        raise InvalidArgumentError(f"the upload is not a valid safetensors file: {err}") from None
    return dataset_from_arrays(arrays, name=name, num_classes=num_classes)


def dataset_from_arrays(
    arrays: Mapping[str, np.ndarray], *, name: str = "upload", num_classes: int | None = None
) -> Dataset:
    """Check user arrays (``x``, ``y``, optional ``x_test``, ``y_test``) and build a Dataset."""
    allowed = {"x", "y", "x_test", "y_test"}
    unknown = sorted(set(arrays) - allowed)
    if unknown:
        raise InvalidArgumentError(
            f"unexpected arrays {unknown}; send only x and y (and optionally x_test, y_test)"
        )
    for key in ("x", "y"):
        if key not in arrays:
            raise InvalidArgumentError(f"array {key!r} is missing; send arrays named x and y")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise InvalidArgumentError("send x_test and y_test together, or neither")
    x, y = _features(arrays["x"], "x"), _labels(arrays["y"], "y")
    _check_pair(x, y, "x", "y")
    official_test = 0
    if "x_test" in arrays:
        x_test, y_test = _features(arrays["x_test"], "x_test"), _labels(arrays["y_test"], "y_test")
        _check_pair(x_test, y_test, "x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise InvalidArgumentError(
                f"x_test examples have shape {x_test.shape[1:]} but x examples {x.shape[1:]}"
            )
        x, y, official_test = np.concatenate([x, x_test]), np.concatenate([y, y_test]), len(y_test)
    classes = _num_classes(y, num_classes)
    return Dataset(name, x, y, classes, tuple(x.shape[1:]), official_test=official_test)


def _check_upload_size(size: int, max_bytes: int, what: str = "the upload") -> None:
    if size > max_bytes:
        raise ResourceExhaustedError(
            f"{what} holds {size} bytes, more than the limit of {max_bytes}; "
            "send fewer or smaller examples"
        )


def _features(array: np.ndarray, key: str) -> np.ndarray:
    _check_features_form(array.dtype, array.shape, key)
    return _features_values(array, key)


def _check_features_form(dtype: np.dtype, shape: Shape, key: str) -> None:
    """What ``x``'s dtype and shape must be (checked before any value is read)."""
    if dtype == np.bool_ or not (
        np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
    ):
        raise InvalidArgumentError(f"{key} has dtype {dtype}; send float or integer values")
    if not 2 <= len(shape) <= MAX_INPUT_RANK + 1:
        raise InvalidArgumentError(
            f"{key} has shape {shape}; expected (N, D), (N, C, L) or (N, C, H, W)"
        )
    if 0 in shape[1:]:
        raise InvalidArgumentError(f"{key} has shape {shape}: examples must not be empty")


def _features_values(array: np.ndarray, key: str) -> np.ndarray:
    """``array`` (all of x, or a run of its values) as float32, if every value is finite."""
    with np.errstate(over="ignore"):
        x = array.astype(np.float32)
    if not np.isfinite(x).all():
        raise InvalidArgumentError(f"{key} holds NaN or infinite values (or values beyond float32)")
    return x


def _labels(array: np.ndarray, key: str) -> np.ndarray:
    _check_labels_form(array.dtype, array.shape, key)
    _check_labels_values(array, key)
    return array.astype(np.int64)


def _check_labels_form(dtype: np.dtype, shape: Shape, key: str) -> None:
    if dtype == np.bool_ or not np.issubdtype(dtype, np.integer):
        raise InvalidArgumentError(
            f"{key} has dtype {dtype}; class labels must be integers (y.astype(np.int64))"
        )
    if len(shape) != 1:
        raise InvalidArgumentError(
            f"{key} has shape {shape}; expected one label per example, shape (N,)"
        )


def _check_labels_values(array: np.ndarray, key: str) -> None:
    """Labels (all of y, or a run of them) must lie in [0, MAX_CLASSES)."""
    if array.size and int(array.min()) < 0:
        raise InvalidArgumentError(f"{key} holds negative labels; use labels 0 .. num_classes-1")
    # Checked before the cast: a uint64 label beyond int64 would turn negative.
    if array.size and int(array.max()) >= MAX_CLASSES:
        raise InvalidArgumentError(
            f"{key} holds label {int(array.max()):,}; labels must lie in [0, {MAX_CLASSES:,}) "
            f"(a search has at most {MAX_CLASSES:,} classes)"
        )


def _check_pair(x: np.ndarray, y: np.ndarray, x_key: str, y_key: str) -> None:
    if x.shape[0] != y.shape[0]:
        raise InvalidArgumentError(
            f"{x_key} has {x.shape[0]} examples but {y_key} has {y.shape[0]} labels"
        )
    if x_key == "x" and x.shape[0] < MIN_EXAMPLES:
        raise InvalidArgumentError(f"x has {x.shape[0]} examples; send at least {MIN_EXAMPLES}")
    if x.shape[0] == 0:
        raise InvalidArgumentError(f"{x_key} is empty")


def _num_classes(y: np.ndarray, declared: int | None) -> int:
    highest = int(y.max())
    if declared is None:
        if highest < 1:
            raise InvalidArgumentError("y holds a single class; a classifier needs at least 2")
        return highest + 1
    if highest >= declared:
        raise InvalidArgumentError(
            f"y holds label {highest} but num_classes is {declared}; labels must lie in "
            f"[0, {declared})"
        )
    return declared


def validate_for(dataset: Dataset, input_shape: Sequence[int], num_classes: int) -> None:
    """Raise InvalidArgumentError unless ``dataset`` fits a search's input shape and classes."""
    check_fits(dataset.name, dataset.input_shape, int(dataset.y.max()), input_shape, num_classes)


def check_fits(
    name: str,
    data_shape: Sequence[int],
    highest_label: int,
    input_shape: Sequence[int],
    num_classes: int,
) -> None:
    """:func:`validate_for` on what a dataset's record says (its example shape, its highest
    label), so a stored upload is checked without loading it."""
    expected = tuple(int(n) for n in input_shape)
    if tuple(data_shape) != expected:
        raise InvalidArgumentError(
            f"dataset {name!r} has examples of shape {tuple(data_shape)} but the search "
            f"expects {expected}; reshape x to (N, {', '.join(map(str, expected))})"
        )
    if highest_label >= num_classes:
        raise InvalidArgumentError(
            f"dataset {name!r} holds label {highest_label} but the search has {num_classes} "
            f"classes; labels must lie in [0, {num_classes})"
        )


# ------------------------------------------------------------------------------------ splits


@dataclass(frozen=True, eq=False)
class Split:
    """Disjoint index arrays (int64, sorted) into a dataset."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            array = _frozen(np.sort(np.asarray(getattr(self, part), dtype=np.int64)), np.int64)
            object.__setattr__(self, part, array)
        if len(self.train) == 0 or len(self.val) == 0:
            raise InvalidArgumentError("a split needs training and validation examples")
        joined = np.concatenate([self.train, self.val, self.test])
        if len(np.unique(joined)) != len(joined):
            raise InvalidArgumentError("train, val and test indices overlap")


def split_dataset(
    n: int,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    *,
    official_test: int = 0,
) -> Split:
    """A seeded, deterministic random split of ``range(n)``.

    With ``official_test > 0`` the last ``official_test`` indices are the test split (as
    published) and ``val_fraction`` of the remaining examples form the validation split;
    ``test_fraction`` is then ignored.
    """
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InvalidArgumentError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
            "and sum to less than 1"
        )
    rng = np.random.default_rng(seed % 2**63)  # seeds of old searches may be negative
    if official_test:
        pool = n - official_test
        order = rng.permutation(pool)
        n_val = max(1, round(val_fraction * pool))
        test = np.arange(pool, n)
        return Split(train=order[n_val:], val=order[:n_val], test=test)
    order = rng.permutation(n)
    n_val = max(1, round(val_fraction * n))
    n_test = round(test_fraction * n)
    val, test = order[:n_val], order[n_val : n_val + n_test]
    return Split(train=order[n_val + n_test :], val=val, test=test)


def dataset_split(
    dataset: Dataset, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Split:
    """:func:`split_dataset` for ``dataset``, keeping its official test set when it has one."""
    return split_dataset(
        len(dataset), seed, val_fraction, test_fraction, official_test=dataset.official_test
    )


# ------------------------------------------------------------------------------------ normalisation

#: What the input of a model trained on a built-in dataset holds (for the ONNX metadata).
BUILTIN_INPUT_VALUES = {
    "digits": "pixel counts 0..16, as sklearn.datasets.load_digits().images[:, None] gives them",
    "mnist1d": "the signal values of mnist1d's make_dataset, unscaled",
}


def expected_input(input_shape: Sequence[int], dataset: str | None) -> str:
    """One line for an export's metadata: the layout, dtype and values its input takes."""
    dims = {1: "(N, D)", 2: "(N, C, L), channels first", 3: "(N, C, H, W), channels first"}
    layout = dims.get(len(input_shape), f"(N, {len(input_shape)} dims)")
    shape = "(N, " + ", ".join(str(n) for n in input_shape) + ")"
    if dataset is None:
        values = "what the worker fed its model (ask/tell: no normalisation is baked in)"
    else:
        values = BUILTIN_INPUT_VALUES.get(
            dataset, "raw values like the uploaded x; the normalisation is baked in"
        )
    return f"float32 {shape}, layout {layout}; values: {values}"


@dataclass(frozen=True)
class Normalisation:
    """Per-channel input statistics: the model sees ``(x - mean[c]) / std[c]``.

    It travels with the model (baked into the ONNX export, stored in its metadata).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise InvalidArgumentError("normalisation needs one mean and one std per channel")
        if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std) <= 0:
            raise InvalidArgumentError("normalisation statistics must be finite with std > 0")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def broadcast_shape(self, input_shape: Sequence[int]) -> Shape:
        """Shape of mean/std arrays that broadcast over a batch ``(N, *input_shape)``.

        A single-channel normalisation is a scalar pair and fits any input.
        """
        if self.channels == 1:
            return (1,) * (len(input_shape) + 1)
        if input_shape[0] != self.channels:
            raise InvalidArgumentError(
                f"normalisation has {self.channels} channels, input shape {tuple(input_shape)}"
            )
        return (1, self.channels) + (1,) * (len(input_shape) - 1)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` per channel, float32; ``x`` is a batch ``(N, *input_shape)``."""
        shape = self.broadcast_shape(x.shape[1:])
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.asarray(self.std, np.float32).reshape(shape)
        return ((x.astype(np.float32, copy=False) - mean) / std).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> Normalisation:
        try:
            return cls(tuple(data["mean"]), tuple(data["std"]))
        except (KeyError, TypeError) as err:
            raise InvalidArgumentError(f"malformed normalisation {data!r}: {err}") from None

    @classmethod
    def identity(cls, channels: int) -> Normalisation:
        return cls((0.0,) * channels, (1.0,) * channels)


def compute_normalisation(x: np.ndarray, indices: np.ndarray) -> Normalisation:
    """Per-channel mean and std of ``x[indices]`` (the training split only, never val/test).

    A channel that is constant gets std 1 so it passes through centred instead of exploding.
    """
    sample = x[indices].astype(np.float64)  # (n, C, ...)
    axes = (0,) + tuple(range(2, sample.ndim))
    mean = sample.mean(axis=axes)  # (C,)
    std = sample.std(axis=axes)  # (C,)
    std = np.where(std < _STD_FLOOR, 1.0, std)
    return Normalisation(tuple(mean.tolist()), tuple(std.tolist()))
