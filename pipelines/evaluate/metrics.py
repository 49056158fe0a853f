"""Metric math on extracted features: Frechet distance (FVD/FID), Inception Score, CLIPSIM.

Pure NumPy in float64; no networks here.

Frechet distance between N(mu1, S1) and N(mu2, S2)::

    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

The classic code takes ``scipy.linalg.sqrtm(S1 @ S2)``: a Schur decomposition of
a non-symmetric matrix, slow and prone to complex or NaN results. Here each
covariance is factored as F F^T (Cholesky, which also tells whether it is
positive definite; a symmetric square root when singular) and the eigenvalues of
S1 S2 come from the similar symmetric matrix C^T C, C = F2^T F1, with one
symmetric eigenvalue solve: the trace is real by construction, and tiny negative
eigenvalues from rounding are clipped.

Rank-deficient covariances (fewer samples than feature dimensions, n <= d, or
constant features) raise :class:`RankDeficientError` by default: the estimate is
then dominated by missing directions and not comparable to published numbers.
``allow_singular=True`` computes it anyway; the symmetric formulation stays
finite for any positive semi-definite covariances (this is how the original FVD
code's 16-vs-16-video example works).
"""

from __future__ import annotations

import numpy as np

from storage.errors import T2VError

ArrayLike = np.ndarray


class RankDeficientError(T2VError, ValueError):
    """A covariance matrix is singular, so the Frechet distance is not well estimated."""


def gaussian_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of (n, d) features, in float64."""
    samples = _as_samples(features)
    return samples.mean(axis=0), np.cov(samples, rowvar=False).reshape(samples.shape[1], samples.shape[1])


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike, allow_singular: bool = False) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets."""
    samples_a, samples_b = _as_samples(features_a), _as_samples(features_b)
    if samples_a.shape[1] != samples_b.shape[1]:
        raise ValueError(f"feature dims differ: {samples_a.shape[1]} vs {samples_b.shape[1]}")
    if not allow_singular:
        for label, samples in (("first", samples_a), ("second", samples_b)):
            n, d = samples.shape
            if n <= d:
                raise RankDeficientError(
                    f"{label} set has {n} samples of {d}-d features: its covariance has rank <= {n - 1} < {d}. "
                    f"Use more than {d} samples, or pass allow_singular=True (value not comparable to papers)."
                )
    return frechet_from_stats(*gaussian_stats(samples_a), *gaussian_stats(samples_b), allow_singular=allow_singular)


def frechet_from_stats(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, allow_singular: bool = False
) -> float:
    """Frechet distance from Gaussian statistics (see the module docstring)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = _symmetric(sigma1, mu1.shape), _symmetric(sigma2, mu2.shape)
    if mu1.shape != mu2.shape:
        raise ValueError(f"means differ in shape: {mu1.shape} vs {mu2.shape}")
    factors = [_cholesky(sigma) for sigma in (sigma1, sigma2)]
    if not allow_singular:
        for label, factor in zip(("first", "second"), factors):
            if factor is None:
                raise RankDeficientError(
                    f"{label} covariance is singular or nearly so: too few samples or constant features. "
                    "Use more samples, or pass allow_singular=True (value not comparable to papers)."
                )
    f1, f2 = (_psd_sqrt(sigma) if factor is None else factor for factor, sigma in zip(factors, (sigma1, sigma2)))
    # With S = F F^T: S1 S2 is similar to F1^T F2 F2^T F1 = C^T C, C = F2^T F1, so
    # tr sqrt(S1 S2) is the sum of sqrt of the eigenvalues of the symmetric C^T C.
    cross = f2.T @ f1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(cross.T @ cross), 0.0, None)).sum()
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    # Mathematically >= 0; rounding can leave -1e-13 for identical sets.
    return max(float(distance), 0.0)


def frechet_from_stats_sqrtm(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """The classic ``scipy.linalg.sqrtm`` formulation: the slow reference we test and benchmark against."""
    from scipy.linalg import sqrtm  # dev dependency; only the reference needs it

    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    covmean = sqrtm(np.asarray(sigma1, np.float64) @ np.asarray(sigma2, np.float64))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean).real)


def inception_score(probs: ArrayLike, splits: int = 10, shuffle_seed: int | None = None) -> tuple[float, float]:
    """Mean and std over ``splits`` groups of exp(E_x KL(p(y|x) || p(y))).

    ``probs``: (n, classes) softmax outputs. Identical predictions give 1; n
    classes used equally with one-hot predictions give n. Group i is rows
    ``i*n//splits`` to ``(i+1)*n//splits``, as in TGANv2's and StyleGAN-V's code;
    ``shuffle_seed`` shuffles the rows first with ``np.random.RandomState`` (StyleGAN-V: 42).
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, classes), got shape {p.shape}")
    if p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("rows must be class probabilities (apply softmax to logits first)")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must be in 1..{len(p)}, got {splits}")
    if shuffle_seed is not None:
        p = p.copy()
        np.random.RandomState(shuffle_seed).shuffle(p)
    n = len(p)
    scores = []
    for part in (p[i * n // splits : (i + 1) * n // splits] for i in range(splits)):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (_log_or_zero(part) - _log_or_zero(marginal))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def clipsim(frame_embeddings: ArrayLike, text_embeddings: ArrayLike) -> np.ndarray:
    """Mean over frames of cosine(frame, text), on the 0..1 scale (no logit scale).

    ``frame_embeddings``: (..., frames, d); ``text_embeddings``: (..., d). Returns
    shape (...): one score per video. Inputs need not be normalised.
    """
    frames = _unit(np.asarray(frame_embeddings, np.float64))
    text = _unit(np.asarray(text_embeddings, np.float64))
    return np.einsum("...fd,...d->...f", frames, text).mean(axis=-1)


def _as_samples(features: ArrayLike) -> np.ndarray:
    samples = np.asarray(features, np.float64)
    if samples.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {samples.shape}")
    if samples.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to estimate a covariance, got {samples.shape[0]}")
    if not np.isfinite(samples).all():
        raise ValueError("features contain NaN or inf")
    return samples


def _symmetric(sigma: ArrayLike, mean_shape: tuple[int, ...]) -> np.ndarray:
    sigma = np.asarray(sigma, np.float64)
    if sigma.shape != mean_shape * 2:
        raise ValueError(f"covariance shape {sigma.shape} does not match mean shape {mean_shape}")
    return (sigma + sigma.T) / 2


def _cholesky(sigma: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor, or None when ``sigma`` is not numerically positive definite."""
    try:
        factor = np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return None
    # A singular PSD matrix can still factor with rounding-sized pivots; use the
    # relative tolerance of numpy.linalg.matrix_rank on the pivots.
    tolerance = np.diag(sigma).max() * len(sigma) * np.finfo(np.float64).eps
    return factor if np.diag(factor).min() ** 2 > tolerance else None


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (negative rounding clipped)."""
    eigvals, eigvecs = np.linalg.eigh(sigma)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def _log_or_zero(x: np.ndarray) -> np.ndarray:
    """log(x) where x > 0 and 0 elsewhere, so that 0 * log 0 counts as 0."""
    return np.log(np.where(x > 0, x, 1.0))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
