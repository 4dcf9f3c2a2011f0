"""Gaussian process on architectures with the edit-distance kernel, made positive semi-definite.

Notation (shapes in brackets; ``n_L`` landmarks, ``N`` GP points, ``Q`` query points, ``r`` kept
eigenvalues):

``d = D_l + λ·D_s``
    edit distance (see :mod:`morphnas.search.distance`); λ ≥ 0 weights skips.
``k(a, b) = exp(−ρ d(a, b)²)``
    the raw kernel (unit variance); ρ > 0 sets how fast similarity decays. It is symmetric and 1 on
    the diagonal but, the edit distance not being Euclidean, **not** PSD in general.
``K_L = V Λ Vᵀ`` [n_L × n_L]
    raw kernel matrix of the landmarks (the observed architectures). Only eigenpairs with
    ``Λ_j > τ·max Λ`` are kept (negative ones are the non-PSD part; tiny ones are numerical noise).
``z(x) = Λ^{-1/2} Vᵀ k_L(x)`` [r]
    the feature map (Nyström extension), ``k_L(x)`` [n_L] the raw kernel from x to the landmarks.
    For a landmark ``x_i``: ``z(x_i) = Λ^{1/2} Vᵀ e_i`` — exactly the factor of the projection of
    ``K_L`` onto the PSD cone (restricted to the kept eigenvalues).
``k̃(a, b) = σ² [z(a)·z(b) + 𝟙(a ≡ b)·ρ_res(a)]``, ``ρ_res(a) = max(c, 1 − |z(a)|²)``
    **the kernel actually used**, for fitting and predicting alike. It is PSD by construction (an
    inner product of explicit features plus a non-negative diagonal, i.e. white-noise, term), so
    every Gram matrix over any mix of training, fantasy and candidate architectures is PSD.
    On the landmarks its matrix is ``σ² (P_+(K_L) + c·I)`` — the eigen-projection of the raw
    matrix onto the PSD cone plus the nugget — whenever the projection left the diagonal ≥ 1,
    which it does (it removes an NSD part). Far from every landmark ``z → 0`` and the prior
    variance returns to σ² (a plain Nyström kernel would wrongly shrink it to 0 there).
    Why this and not a joint eigen-projection of train + test: projecting the joint matrix would
    change the training block with every batch of test points (so fit and predict would not use the
    same kernel); here the kernel is one fixed function once the landmarks are chosen.
``c`` (:data:`NUGGET`)
    a small independent per-architecture variance. The projection zeroes the negative
    directions, so without it the landmark Gram matrix is rank-deficient and the GP could not
    fit arbitrary scores (nor separate distinct architectures at edit distance 0).
``σ²`` (signal), ``σ_n²`` (noise)
    variances on z-scored scores; a point observed m times (same architecture) has noise σ_n²/m.
``D = σ² ρ_res + σ_n²/m`` [N], ``Z`` [N × r]
    the GP points in feature form: ``y = Z w + ε``, ``w ~ N(0, σ² I)``, ``ε ~ N(0, D)``.
``M = I/σ² + Zᵀ D⁻¹ Z`` [r × r], ``w̄ = M⁻¹ Zᵀ D⁻¹ y`` [r]
    the posterior of w (Woodbury form of ``G = σ² Z Zᵀ + D``, the Gram matrix with noise).
Prediction at a new x: ``μ = z·w̄``, ``s² = zᵀ M⁻¹ z + σ² ρ_res(x)``.
At a GP point i itself: ``μ_i = y_i − N_i β_i``, ``s_i² = N_i − N_i² (G⁻¹)_ii`` with
``β = G⁻¹ y = D⁻¹ (y − Z w̄)``, ``N_i`` the point's noise.

Hyperparameters ``θ = (ρ, λ, σ², σ_n²)`` maximise the log marginal likelihood (plus a weak
log-normal prior that keeps them away from degenerate corners), in log-space with L-BFGS-B.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.optimize import minimize

log = logging.getLogger(__name__)

#: Eigenvalues at or below ``EIG_TOL · max eigenvalue`` are dropped from the feature map.
EIG_TOL = 1e-6
#: Independent per-architecture share of the prior variance (see ``c`` above).
NUGGET = 1e-2
#: Bounds of the hyperparameters (natural units); they are optimised in log-space.
BOUNDS = {"rho": (1e-4, 10.0), "lam": (0.05, 20.0), "signal": (0.05, 20.0), "noise": (1e-6, 2.0)}
#: Centre and width (in log units) of the weak log-normal prior on each hyperparameter.
PRIOR_WIDTH = 3.0


@dataclass(frozen=True)
class Hyper:
    """Kernel hyperparameters: decay ρ, skip weight λ, signal variance σ², noise variance σ_n²."""

    rho: float = 0.05
    lam: float = 1.0
    signal: float = 1.0
    noise: float = 0.05

    def to_log(self) -> np.ndarray:
        return np.log([self.rho, self.lam, self.signal, self.noise])

    @classmethod
    def from_log(cls, values: np.ndarray) -> Hyper:
        rho, lam, signal, noise = (float(v) for v in np.exp(values))
        return cls(rho, lam, signal, noise)


DEFAULT_HYPER = Hyper()


def raw_kernel(dl: np.ndarray, ds: np.ndarray, hyper: Hyper) -> np.ndarray:
    """``exp(−ρ (D_l + λ D_s)²)``, elementwise (any shape)."""
    d = dl + hyper.lam * ds
    return np.exp(-hyper.rho * d * d)


def cholesky(matrix: np.ndarray, what: str, quiet: bool = False) -> np.ndarray:
    """Lower Cholesky factor, adding escalating jitter to the diagonal until it succeeds.

    Jitter starts at 1e-10 × mean diagonal and grows tenfold up to 1e-1 × mean diagonal; each
    escalation is logged. Nothing is ever dropped: a failure after that raises.
    """
    scale = float(np.mean(np.diag(matrix))) or 1.0
    jitter = 0.0
    for attempt in range(11):
        try:
            return np.linalg.cholesky(matrix + jitter * np.eye(len(matrix)))
        except np.linalg.LinAlgError:
            jitter = scale * 10.0 ** (attempt - 10)
            (log.debug if quiet else log.warning)(
                "cholesky of %s (%d×%d) failed; retrying with jitter %.3g",
                what,
                len(matrix),
                len(matrix),
                jitter,
            )
    raise np.linalg.LinAlgError(f"cholesky of {what} failed even with jitter {jitter:.3g}")


@dataclass(frozen=True)
class Basis:
    """The feature map ``z(x) = k_L(x) @ projection`` defined by a set of landmarks."""

    projection: np.ndarray  # (n_L, r) = V Λ^{-1/2}
    eigenvalues: np.ndarray  # (r,) kept Λ

    def features(self, k_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (Q, r) and residual variances (Q,) from raw kernel rows (Q, n_L)."""
        z = k_raw @ self.projection  # (Q, r)
        residual = np.maximum(NUGGET, 1.0 - np.einsum("qr,qr->q", z, z))
        return z, residual


def make_basis(k_landmarks: np.ndarray) -> Basis:
    """Eigen-decompose the raw landmark kernel matrix (n_L, n_L) and keep its PSD part."""
    eigenvalues, vectors = np.linalg.eigh(k_landmarks)  # ascending
    top = float(eigenvalues[-1]) if len(eigenvalues) else 0.0
    keep = eigenvalues > EIG_TOL * max(top, 1e-300)
    if int(np.count_nonzero(eigenvalues < -1e-8 * max(top, 1.0))):
        log.debug(
            "raw kernel has %d negative eigenvalues (min %.3g); projected out",
            int(np.count_nonzero(eigenvalues < 0)),
            float(eigenvalues[0]),
        )
    kept = eigenvalues[keep]
    return Basis(vectors[:, keep] / np.sqrt(kept), kept)


class Posterior:
    """GP posterior in feature form (see the module docstring for the formulas)."""

    def __init__(
        self,
        z: np.ndarray,  # (N, r)
        residual: np.ndarray,  # (N,)
        noise: np.ndarray,  # (N,) observation noise variance of each point
        y: np.ndarray,  # (N,) z-scored targets
        signal: float,
    ) -> None:
        self.z, self.residual, self.noise, self.y, self.signal = z, residual, noise, y, signal
        self.d = signal * residual + noise  # (N,)
        zd = z / self.d[:, None]  # (N, r)
        self._s = z.T @ zd  # (r, r) Zᵀ D⁻¹ Z
        self._b = zd.T @ y  # (r,)   Zᵀ D⁻¹ y
        self._factor()

    def _factor(self) -> None:
        r = self._s.shape[0]
        m = np.eye(r) / self.signal + self._s  # (r, r)
        self._chol = cholesky(m, "the GP posterior precision")
        self.w = scipy.linalg.cho_solve((self._chol, True), self._b)  # (r,)

    def with_points(
        self, z: np.ndarray, residual: np.ndarray, noise: np.ndarray, y: np.ndarray
    ) -> Posterior:
        """A new posterior with extra points (e.g. fantasies); an update, not a rebuild."""
        new = object.__new__(Posterior)
        new.z = np.vstack([self.z, z])
        new.residual = np.concatenate([self.residual, residual])
        new.noise = np.concatenate([self.noise, noise])
        new.y = np.concatenate([self.y, y])
        new.signal = self.signal
        d = self.signal * residual + noise
        new.d = np.concatenate([self.d, d])
        zd = z / d[:, None]
        new._s = self._s + z.T @ zd
        new._b = self._b + zd.T @ y
        new._factor()
        return new

    def predict(self, z: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (Q,) at new architectures given their features (Q, r) and residuals."""
        mean = z @ self.w
        v = scipy.linalg.solve_triangular(self._chol, z.T, lower=True)  # (r, Q)
        var = np.einsum("rq,rq->q", v, v) + self.signal * residual
        return mean, np.maximum(var, 0.0)

    def predict_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (N,) of the latent function at the GP points themselves."""
        beta = (self.y - self.z @ self.w) / self.d  # (N,) G⁻¹ y
        v = scipy.linalg.solve_triangular(self._chol, self.z.T, lower=True)  # (r, N)
        g_inv_diag = 1.0 / self.d - np.einsum("rn,rn->n", v, v) / self.d**2
        mean = self.y - self.noise * beta
        var = self.noise - self.noise**2 * g_inv_diag
        return mean, np.maximum(var, 0.0)


def fit_posterior(
    k_landmarks: np.ndarray, y: np.ndarray, counts: np.ndarray, hyper: Hyper
) -> tuple[Basis, Posterior]:
    """Basis and posterior when the GP points are the landmarks themselves."""
    basis = make_basis(k_landmarks)
    z, residual = basis.features(k_landmarks)
    return basis, Posterior(z, residual, hyper.noise / counts, y, hyper.signal)


# ----------------------------------------------------------------------------- hyperparameters


def log_marginal_likelihood(
    dl: np.ndarray, ds: np.ndarray, y: np.ndarray, counts: np.ndarray, hyper: Hyper
) -> float:
    """``log p(y | θ)`` of z-scored targets y (n,) under the kernel k̃ built on these n points."""
    k = raw_kernel(dl, ds, hyper)
    return _lml_from_kernel(make_basis(k), k, y, counts, hyper)


def _lml_from_kernel(
    basis: Basis, k: np.ndarray, y: np.ndarray, counts: np.ndarray, hyper: Hyper
) -> float:
    z, residual = basis.features(k)  # (n, r), (n,)
    gram = hyper.signal * (z @ z.T + np.diag(residual)) + np.diag(hyper.noise / counts)
    chol = cholesky(gram, "the kernel matrix", quiet=True)
    alpha = scipy.linalg.solve_triangular(chol, y, lower=True)
    n = len(y)
    return float(
        -0.5 * alpha @ alpha - np.log(np.diag(chol)).sum() - 0.5 * n * math.log(2 * math.pi)
    )


def _log_prior(values: np.ndarray) -> float:
    centre = DEFAULT_HYPER.to_log()
    return float(-0.5 * np.sum(((values - centre) / PRIOR_WIDTH) ** 2))


def fit_hyperparameters(
    dl: np.ndarray,
    ds: np.ndarray,
    y: np.ndarray,
    counts: np.ndarray,
    start: Hyper = DEFAULT_HYPER,
    max_iter: int = 30,
) -> Hyper:
    """Maximise log marginal likelihood + log prior over log θ (L-BFGS-B), starting at ``start``.

    ``dl``, ``ds`` (n, n) distances, ``y`` (n,) z-scored targets, ``counts`` (n,) observations
    per point. The eigendecomposition depends only on (ρ, λ), so it is memoised: the finite-
    difference steps in σ² and σ_n² reuse it.
    """
    bases: dict[tuple[float, float], tuple[Basis, np.ndarray]] = {}

    def objective(values: np.ndarray) -> float:
        hyper = Hyper.from_log(values)
        key = (hyper.rho, hyper.lam)
        if key not in bases:
            k = raw_kernel(dl, ds, hyper)
            bases[key] = (make_basis(k), k)
        basis, k = bases[key]
        try:
            value = _lml_from_kernel(basis, k, y, counts, hyper) + _log_prior(values)
        except np.linalg.LinAlgError:
            return 1e25
        return -value

    bounds = [
        tuple(math.log(b) for b in BOUNDS[name]) for name in ("rho", "lam", "signal", "noise")
    ]
    x0 = np.clip(start.to_log(), [b[0] for b in bounds], [b[1] for b in bounds])
    result = minimize(
        objective, x0, method="L-BFGS-B", bounds=bounds, options={"maxiter": max_iter}
    )
    best = result.x if result.fun <= objective(x0) else x0
    hyper = Hyper.from_log(best)
    log.debug("fitted %s on %d points (%d evaluations)", hyper, len(y), result.nfev)
    return hyper
