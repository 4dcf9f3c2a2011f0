"""``inspect_npz`` (the server's streaming check of an upload) holds the rules of ``load_npz``:
the same uploads are refused for the same reasons, the same summaries come out of good ones,
and a zip bomb stops inflating at the ceiling."""

from __future__ import annotations

import io

import numpy as np
import pytest

from morphnas.core.errors import InvalidArgumentError, ResourceExhaustedError
from morphnas.nn.datasets import NpzLimits, inspect_npz, load_npz
from tests.nn.test_datasets import BAD_UPLOADS, MB, good_arrays, npz_bytes
from tests.reliability.hostile.bombs import zip_bomb


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_what_load_npz_refuses_inspect_npz_refuses_too(case: str) -> None:
    make, message = BAD_UPLOADS[case]
    with pytest.raises(InvalidArgumentError, match=message):
        inspect_npz(io.BytesIO(make()), max_bytes=MB)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("with_test", [False, True])
def test_a_good_upload_is_summarised_as_load_npz_reads_it(
    compressed: bool, with_test: bool
) -> None:
    arrays = good_arrays()
    if with_test:
        arrays |= {"x_test": arrays["x"][:7], "y_test": np.full(7, 4)}
    blob = npz_bytes(compressed=compressed, **arrays)
    summary = inspect_npz(io.BytesIO(blob), max_bytes=MB)
    data = load_npz(blob, max_bytes=MB)
    assert summary.input_shape == data.input_shape
    assert summary.num_classes == data.num_classes
    assert summary.num_examples == len(data)
    assert summary.official_test == data.official_test


def test_a_zip_bomb_stops_inflating_at_the_ratio_ceiling() -> None:
    blob = zip_bomb(8 * MB)
    limits = NpzLimits(max_ratio=50, ratio_floor_bytes=MB)
    with pytest.raises(ResourceExhaustedError, match="zip bomb"):
        inspect_npz(io.BytesIO(blob), max_bytes=MB, limits=limits)
    # Under a looser ratio the same zeros are a valid (if useless) dataset.
    summary = inspect_npz(io.BytesIO(blob), max_bytes=MB, limits=NpzLimits(max_ratio=10**6))
    assert summary.num_examples == 20


def test_the_inflated_size_is_capped_while_inflating() -> None:
    blob = zip_bomb(8 * MB)
    with pytest.raises(ResourceExhaustedError, match="decompressed|inflates past"):
        inspect_npz(io.BytesIO(blob), max_bytes=MB, limits=NpzLimits(max_inflated_bytes=4 * MB))
