"""Built-in datasets, checked uploads, splits and normalisation statistics."""

from __future__ import annotations

import io
import pickle
import random
import socket
import zipfile

import numpy as np
import pytest

from morphnas.core.errors import InvalidArgumentError, ResourceExhaustedError
from morphnas.nn import datasets
from morphnas.nn.datasets import (
    Dataset,
    Normalisation,
    builtin_dataset,
    compute_normalisation,
    dataset_from_arrays,
    dataset_split,
    load_npz,
    load_safetensors,
    split_dataset,
    validate_for,
)

MB = 1 << 20


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def good_arrays(n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(n, 2, 6)).astype(np.float32),
        "y": rng.integers(0, 3, n).astype(np.int64),
    }


# ------------------------------------------------------------------------------------ built-ins


def test_digits_shape_and_range(digits: Dataset) -> None:
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == np.float32
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int64
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)
    assert digits.x.min() == 0.0 and digits.x.max() == 16.0  # as load_digits() gives (issue 16)
    assert set(np.unique(digits.y)) == set(range(10))
    assert digits.official_test == 0


def test_digits_is_deterministic_and_read_only(digits: Dataset) -> None:
    datasets._digits.cache_clear()
    again = builtin_dataset("digits")
    assert again is not digits and again.checksum == digits.checksum
    with pytest.raises(ValueError):
        digits.x[0, 0, 0, 0] = 5.0


@pytest.fixture(scope="module")
def mnist1d_offline(monkeypatch_module: pytest.MonkeyPatch) -> Dataset:
    """mnist1d generated with every socket refused: it must never touch the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("mnist1d tried to open a network connection")

    monkeypatch_module.setattr(socket, "socket", refuse)
    monkeypatch_module.setattr(socket, "create_connection", refuse)
    datasets._mnist1d.cache_clear()
    return builtin_dataset("mnist1d")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_mnist1d_offline_shapes_and_official_split(mnist1d_offline: Dataset) -> None:
    data = mnist1d_offline
    assert data.x.shape == (5000, 1, 40) and data.input_shape == (1, 40)
    assert data.num_classes == 10 and set(np.unique(data.y)) == set(range(10))
    assert data.official_test == 1000
    split = dataset_split(data, seed=3)
    np.testing.assert_array_equal(split.test, np.arange(4000, 5000))
    assert len(split.train) + len(split.val) == 4000
    assert len(split.val) == round(0.15 * 4000)


def test_mnist1d_is_deterministic_and_keeps_global_rng(mnist1d_offline: Dataset) -> None:
    np.random.seed(7)
    random.seed(7)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(7)
    random.seed(7)
    datasets._mnist1d.cache_clear()
    again = builtin_dataset("mnist1d")
    assert again.checksum == mnist1d_offline.checksum
    assert np.random.random() == expected_np and random.random() == expected_py


def test_unknown_builtin() -> None:
    with pytest.raises(InvalidArgumentError, match="known"):
        builtin_dataset("cifar10")


# ------------------------------------------------------------------------------------ uploads


def test_npz_upload_converts_dtypes() -> None:
    arrays = good_arrays()
    data = load_npz(
        npz_bytes(x=(arrays["x"] * 10).astype(np.int16), y=arrays["y"].astype(np.uint8)),
        max_bytes=MB,
        name="mine",
    )
    assert data.name == "mine" and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.input_shape == (2, 6) and data.num_classes == 3 and len(data) == 40


def test_npz_upload_checksum_is_content_only() -> None:
    arrays = good_arrays()
    a = load_npz(npz_bytes(**arrays), max_bytes=MB, name="a")
    b = load_npz(npz_bytes(compressed=True, **arrays), max_bytes=MB, name="b")
    assert a.checksum == b.checksum == dataset_from_arrays(arrays).checksum
    changed = dict(arrays, y=(arrays["y"] + 1) % 3)
    assert dataset_from_arrays(changed).checksum != a.checksum


def test_npz_upload_with_official_test_set() -> None:
    arrays = good_arrays()
    test = good_arrays(12)
    data = load_npz(
        npz_bytes(**arrays, x_test=test["x"], y_test=test["y"]), max_bytes=MB, num_classes=5
    )
    assert len(data) == 52 and data.official_test == 12 and data.num_classes == 5
    split = dataset_split(data, seed=0)
    np.testing.assert_array_equal(split.test, np.arange(40, 52))


def test_safetensors_upload() -> None:
    from safetensors.numpy import save

    arrays = good_arrays()
    data = load_safetensors(save(arrays), max_bytes=MB)
    assert data.checksum == dataset_from_arrays(arrays).checksum
    with pytest.raises(InvalidArgumentError, match="safetensors"):
        load_safetensors(b"not a safetensors file", max_bytes=MB)


def _object_array_npz() -> bytes:
    x = np.empty((40,), dtype=object)
    x[:] = [np.zeros(3)] * 40
    return npz_bytes(x=x, y=good_arrays()["y"])


def _with(**changes: np.ndarray) -> bytes:
    return npz_bytes(**{**good_arrays(), **changes})


def _without(key: str) -> bytes:
    arrays = good_arrays()
    del arrays[key]
    return npz_bytes(**arrays)


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, good_arrays()["x"])
    return buffer.getvalue()


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


x40 = good_arrays()["x"]
y40 = good_arrays()["y"]
nan_x = x40.copy()
nan_x[3, 1, 2] = np.nan
inf_x = x40.copy()
inf_x[0, 0, 0] = np.inf

BAD_UPLOADS = {
    "pickled object array": (_object_array_npz, "pickle"),
    "a pickle, not an npz": (lambda: pickle.dumps(good_arrays()), "npz"),
    "a single npy array": (_npy, "npz"),
    "random bytes": (lambda: b"\x00\x01 definitely not a zip", "npz"),
    "empty upload": (lambda: b"", "npz"),
    "x of strings": (lambda: _with(x=np.full((40, 2, 6), "a")), "dtype"),
    "x of bools": (lambda: _with(x=np.ones((40, 2, 6), bool)), "dtype"),
    "x complex": (lambda: _with(x=x40.astype(np.complex64)), "dtype"),
    "y float": (lambda: _with(y=y40.astype(np.float32)), "integer"),
    "x one-dimensional": (lambda: _with(x=np.zeros(40, np.float32)), "shape"),
    "x rank five": (lambda: _with(x=np.zeros((40, 1, 2, 2, 2), np.float32)), "shape"),
    "y two-dimensional": (lambda: _with(y=y40[:, None]), "shape"),
    "length mismatch": (lambda: _with(y=y40[:30]), "40 examples but y has 30"),
    "negative labels": (lambda: _with(y=y40 - 1), "negative"),
    "single class": (lambda: _with(y=np.zeros(40, np.int64)), "2"),
    "NaN": (lambda: _with(x=nan_x), "NaN"),
    "inf": (lambda: _with(x=inf_x), "NaN or infinite"),
    "beyond float32": (lambda: _with(x=np.full((40, 2, 6), 1e39)), "float32"),
    "missing x": (lambda: _without("x"), "'x' is missing"),
    "missing y": (lambda: _without("y"), "'y' is missing"),
    "extra array": (lambda: _with(z=y40), "unexpected"),
    "x_test without y_test": (lambda: _with(x_test=x40), "together"),
    "x_test of another shape": (
        lambda: _with(x_test=np.zeros((5, 3, 6), np.float32), y_test=y40[:5]),
        "x_test examples",
    ),
    "too few examples": (lambda: npz_bytes(x=x40[:5], y=y40[:5]), "at least"),
    "zip member not .npy": (lambda: _zip(**{"x": b"hello", "y.npy": b"junk"}), "npy"),
    "corrupt .npy member": (lambda: _zip(**{"x.npy": b"\x93NUMPY junk", "y.npy": b""}), "npy"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_refused_with_a_reason(case: str) -> None:
    make, message = BAD_UPLOADS[case]
    with pytest.raises(InvalidArgumentError, match=message):
        load_npz(make(), max_bytes=MB)


def test_labels_beyond_declared_classes() -> None:
    with pytest.raises(InvalidArgumentError, match=r"\[0, 2\)"):
        load_npz(npz_bytes(**good_arrays()), max_bytes=MB, num_classes=2)


def test_upload_too_large() -> None:
    data = npz_bytes(**good_arrays())
    with pytest.raises(ResourceExhaustedError, match="limit"):
        load_npz(data, max_bytes=len(data) - 1)


def test_upload_that_decompresses_too_large() -> None:
    bomb = npz_bytes(compressed=True, x=np.zeros((4000, 1, 256), np.float32), y=np.arange(4000) % 2)
    assert len(bomb) < 64 * 1024
    with pytest.raises(ResourceExhaustedError, match="decompressed"):
        load_npz(bomb, max_bytes=64 * 1024)


def test_upload_declaring_huge_arrays_is_refused_before_reading() -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 1, 10)}
    )
    lying = _zip(**{"x.npy": header.getvalue(), "y.npy": b""})
    with pytest.raises(ResourceExhaustedError, match="declared"):
        load_npz(lying, max_bytes=MB)


def test_validate_for() -> None:
    data = dataset_from_arrays(good_arrays())
    validate_for(data, (2, 6), 3)
    validate_for(data, [2, 6], 7)
    with pytest.raises(InvalidArgumentError, match="reshape"):
        validate_for(data, (12,), 3)
    with pytest.raises(InvalidArgumentError, match="label 2"):
        validate_for(data, (2, 6), 2)


def test_dataset_refuses_inconsistent_arrays() -> None:
    arrays = good_arrays()
    with pytest.raises(InvalidArgumentError):
        Dataset("d", arrays["x"], arrays["y"], 2, (2, 6))  # labels reach 2
    with pytest.raises(InvalidArgumentError):
        Dataset("d", arrays["x"], arrays["y"], 3, (12,))
    with pytest.raises(InvalidArgumentError, match="checksum"):
        Dataset("d", arrays["x"], arrays["y"], 3, (2, 6), checksum="0" * 64)


def test_dataset_copies_the_callers_arrays() -> None:
    arrays = good_arrays()
    data = dataset_from_arrays(arrays)
    arrays["x"][:] = 0.0
    assert data.x.any()


# ------------------------------------------------------------------------------------ splits


def test_split_is_seeded_disjoint_and_complete() -> None:
    a, b, c = split_dataset(100, 1), split_dataset(100, 1), split_dataset(100, 2)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.val, c.val)
    joined = np.sort(np.concatenate([a.train, a.val, a.test]))
    np.testing.assert_array_equal(joined, np.arange(100))
    assert (len(a.train), len(a.val), len(a.test)) == (70, 15, 15)


def test_split_fractions_and_errors() -> None:
    split = split_dataset(200, 0, val_fraction=0.1, test_fraction=0.0)
    assert (len(split.train), len(split.val), len(split.test)) == (180, 20, 0)
    for val, test in ((0.0, 0.1), (0.6, 0.5), (1.0, 0.0), (0.2, -0.1)):
        with pytest.raises(InvalidArgumentError):
            split_dataset(100, 0, val, test)


def test_official_test_is_kept_whatever_the_seed() -> None:
    for seed in range(3):
        split = split_dataset(50, seed, test_fraction=0.3, official_test=10)
        np.testing.assert_array_equal(split.test, np.arange(40, 50))
        assert np.all(split.train < 40) and np.all(split.val < 40)


# ------------------------------------------------------------------------------------ normalisation


def test_normalisation_uses_the_train_split_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3, 5, 5)).astype(np.float32) * [[[2.0]], [[3.0]], [[4.0]]] + 1.0
    split = split_dataset(300, 0)
    x[split.val] += 1000.0  # leaking val/test into the statistics would show at once
    x[split.test] -= 1000.0
    norm = compute_normalisation(x, split.train)
    train = x[split.train].astype(np.float64)
    np.testing.assert_allclose(norm.mean, train.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(norm.std, train.std(axis=(0, 2, 3)), rtol=1e-6)
    normalised = norm.apply(x[split.train])
    np.testing.assert_allclose(normalised.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(axis=(0, 2, 3)), 1.0, atol=1e-4)


def test_normalisation_of_vectors_is_per_feature_and_constant_features_pass() -> None:
    x = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1).astype(np.float32)  # (10, 2)
    norm = compute_normalisation(x, np.arange(10))
    assert norm.mean == pytest.approx((4.5, 3.0)) and norm.std[1] == 1.0
    assert np.isfinite(norm.apply(x)).all()


def test_normalisation_value_object() -> None:
    norm = Normalisation((0.5, 1.0), (2.0, 4.0))
    assert Normalisation.from_dict(norm.to_dict()) == norm
    assert norm.broadcast_shape((2, 8, 8)) == (1, 2, 1, 1)
    assert Normalisation.identity(3) == Normalisation((0, 0, 0), (1, 1, 1))
    for mean, std in (((0.0,), (0.0,)), ((0.0,), (1.0, 1.0)), ((np.nan,), (1.0,)), ((), ())):
        with pytest.raises(InvalidArgumentError):
            Normalisation(mean, std)
    with pytest.raises(InvalidArgumentError):
        norm.broadcast_shape((3, 8, 8))
    scalar = Normalisation((1.0,), (2.0,))  # one pair fits any input
    assert scalar.broadcast_shape((5,)) == (1, 1)
    np.testing.assert_allclose(scalar.apply(np.full((2, 5), 3.0)), 1.0)
