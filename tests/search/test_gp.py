"""The GP: a PSD kernel on architectures, interpolation, variance, hyperparameter fitting."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from morphnas.core.seeds import seed_graph
from morphnas.search.cache import SearchCache
from morphnas.search.descriptors import descriptor
from morphnas.search.distance import DistanceCache
from morphnas.search.gp import (
    Hyper,
    cholesky,
    fit_hyperparameters,
    log_marginal_likelihood,
    make_basis,
    raw_kernel,
)
from morphnas.search.surrogate import Surrogate, zscore
from tests.search import synthetic


@pytest.fixture(scope="module")
def graphs() -> list:
    return synthetic.history(synthetic.config(), 200, rng_seed=1)


@pytest.fixture(scope="module")
def search_cache() -> SearchCache:
    return SearchCache()


@pytest.fixture(scope="module")
def cache(search_cache: SearchCache) -> DistanceCache:
    return search_cache.distances


def full_kernel(basis, k_raw: np.ndarray, hyper: Hyper, same: np.ndarray) -> np.ndarray:
    """k̃ between query rows (features from raw kernel rows) — the kernel actually used."""
    z, residual = basis.features(k_raw)
    return hyper.signal * (z @ z.T + np.diag(residual) * same)


def test_kernel_is_psd_over_200_architectures(graphs: list, cache: DistanceCache) -> None:
    descs = [descriptor(g) for g in graphs]
    landmarks = descs[:150]
    hyper = Hyper(rho=0.5, lam=1.0, signal=1.0, noise=1e-6)
    dl, ds = cache.block(landmarks, landmarks)
    raw = raw_kernel(dl, ds, hyper)
    basis = make_basis(raw)
    # Gram matrix of k̃ over landmarks AND new architectures together.
    dl_all, ds_all = cache.block(descs, landmarks)
    gram = full_kernel(basis, raw_kernel(dl_all, ds_all, hyper), hyper, np.ones(len(descs)))
    assert np.allclose(gram, gram.T, atol=1e-10)
    assert np.linalg.eigvalsh(gram)[0] >= -1e-8
    np.linalg.cholesky(gram + 1e-6 * np.eye(len(gram)))
    # On the landmarks it is the eigen-projection of the raw matrix (diagonal restored to ≥ 1).
    eigenvalues, vectors = np.linalg.eigh(raw)
    projected = (vectors * np.maximum(eigenvalues, 0)) @ vectors.T
    off = ~np.eye(len(raw), dtype=bool)
    assert np.allclose(gram[:150, :150][off], projected[off], atol=1e-4)
    assert np.all(np.diag(gram) >= 1.0 - 1e-9)


def test_gp_interpolates_with_tiny_noise(graphs: list, search_cache: SearchCache) -> None:
    descs = [descriptor(g) for g in graphs[:60]]
    scores = np.array([synthetic.score(g) for g in graphs[:60]])
    hyper = Hyper(rho=0.2, lam=1.0, signal=1.0, noise=1e-8)
    model = Surrogate(descs, scores, np.ones(60), cache=search_cache, hyper=hyper)
    mean, std = model.predict_points()
    target, _, _ = zscore(scores)
    assert np.max(np.abs(mean - target)) < 1e-3
    assert np.max(std) < 1e-2


def test_variance_smaller_near_observations_than_far(
    graphs: list, search_cache: SearchCache
) -> None:
    descs = [descriptor(g) for g in graphs[:40]]
    scores = np.array([synthetic.score(g) for g in graphs[:40]])
    model = Surrogate(descs, scores, np.ones(40), cache=search_cache)
    near = [descriptor(g) for g in graphs[40:60]]  # one or two morphs from observed ones
    far = [descriptor(seed_graph((3, 32, 32), 100, 512, 12))]
    _, std_near = model.predict(near)
    _, std_far = model.predict(far)
    _, std_points = model.predict_points()
    prior = np.sqrt(model.hyper.signal)
    assert std_far[0] == pytest.approx(prior, rel=1e-3)  # back to the prior far away
    assert np.median(std_near) < std_far[0]
    assert np.max(std_points) < std_far[0]


def test_fantasies_shrink_variance_and_keep_mean(graphs: list, search_cache: SearchCache) -> None:
    descs = [descriptor(g) for g in graphs[:30]]
    scores = np.array([synthetic.score(g) for g in graphs[:30]])
    model = Surrogate(descs, scores, np.ones(30), cache=search_cache)
    query = [descriptor(g) for g in graphs[30:40]]
    mean0, std0 = model.predict(query)
    model.add_fantasies(query[:1])
    mean1, std1 = model.predict(query)
    assert np.allclose(mean0, mean1, atol=1e-8)
    assert std1[0] < std0[0]
    assert np.all(std1 <= std0 + 1e-12)


def test_fitting_improves_the_marginal_likelihood(graphs: list, cache: DistanceCache) -> None:
    descs = [descriptor(g) for g in graphs[:50]]
    y, _, _ = zscore(np.array([synthetic.score(g) for g in graphs[:50]]))
    dl, ds = cache.block(descs, descs)
    counts = np.ones(50)
    start = Hyper()
    fitted = fit_hyperparameters(dl, ds, y, counts, start)
    assert log_marginal_likelihood(dl, ds, y, counts, fitted) >= log_marginal_likelihood(
        dl, ds, y, counts, start
    )


def test_cholesky_jitter_escalation_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    matrix = np.ones((3, 3))  # PSD but singular
    matrix[0, 1] = matrix[1, 0] = 1.0 + 1e-12
    with caplog.at_level(logging.WARNING, logger="morphnas.search.gp"):
        factor = cholesky(matrix - 1e-9 * np.eye(3), "a test matrix")
    assert np.all(np.isfinite(factor))
    assert "jitter" in caplog.text
