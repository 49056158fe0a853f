"""Metric math against references and known answers."""

from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluate.metrics import (
    RankDeficientError,
    clipsim,
    frechet_distance,
    frechet_from_stats,
    frechet_from_stats_sqrtm,
    gaussian_stats,
    inception_score,
)


def _gaussian_features(seed: int, n: int, d: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)  # correlated features, like real embeddings
    return rng.standard_normal((n, d)) @ mixing * scale + shift


@pytest.mark.parametrize("n, d", [(300, 64), (600, 256)])
def test_frechet_matches_scipy_sqrtm(n, d):
    features_a = _gaussian_features(0, n, d)
    features_b = _gaussian_features(1, n, d, scale=1.3, shift=0.2)
    reference = frechet_from_stats_sqrtm(*gaussian_stats(features_a), *gaussian_stats(features_b))
    assert reference > 1.0
    assert abs(frechet_distance(features_a, features_b) - reference) / reference < 1e-6


def test_frechet_of_identical_sets_is_zero():
    features = _gaussian_features(2, 400, 32)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_mean_shift_alone_gives_squared_distance():
    features = _gaussian_features(3, 400, 32)
    shift = np.linspace(-1.0, 2.0, 32)
    assert frechet_distance(features, features + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_frechet_from_stats_accepts_precomputed_statistics():
    mu, sigma = np.zeros(3), np.diag([1.0, 4.0, 9.0])
    # Both diagonal: sum of (sqrt(a) - sqrt(b))^2 = (1 - 2)^2 * 3 for sigma vs 4 * sigma.
    assert frechet_from_stats(mu, sigma, mu, 4 * sigma) == pytest.approx(1 + 4 + 9, rel=1e-12)


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.ones((1, 8)), np.ones((5, 8)))


@pytest.mark.parametrize("n", [16, 64])
def test_fewer_samples_than_dims_is_rank_deficient(n):
    features_a, features_b = _gaussian_features(4, n, 64), _gaussian_features(5, n, 64)
    with pytest.raises(RankDeficientError, match="allow_singular"):
        frechet_distance(features_a, features_b)
    with pytest.raises(RankDeficientError):
        frechet_from_stats(*gaussian_stats(features_a), *gaussian_stats(features_b))
    value = frechet_distance(features_a, features_b, allow_singular=True)
    assert np.isfinite(value) and value > 0


def test_constant_feature_is_rank_deficient_even_with_many_samples():
    features = _gaussian_features(6, 500, 16)
    features[:, 3] = 1.0
    with pytest.raises(RankDeficientError):
        frechet_distance(features, _gaussian_features(7, 500, 16))


def test_singular_stats_with_allow_singular_match_scipy():
    # The original FVD code's example shape: 16 videos per set, far fewer than 400 dims.
    features_a, features_b = _gaussian_features(8, 16, 400), _gaussian_features(9, 16, 400, shift=0.1)
    stats = (*gaussian_stats(features_a), *gaussian_stats(features_b))
    reference = frechet_from_stats_sqrtm(*stats)
    assert frechet_from_stats(*stats, allow_singular=True) == pytest.approx(reference, rel=1e-6)


def test_inception_score_of_identical_predictions_is_one():
    probs = np.tile([0.1, 0.6, 0.3], (50, 1))
    mean, std = inception_score(probs, splits=5)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 10, 101])
def test_inception_score_of_equally_used_one_hot_classes_is_n(num_classes):
    probs = np.eye(num_classes)[np.arange(4 * num_classes) % num_classes]
    assert inception_score(probs, splits=4) == pytest.approx((num_classes, 0.0), abs=1e-9)


def test_inception_score_rejects_logits():
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.random.default_rng(0).standard_normal((20, 5)), splits=2)


def test_clipsim_is_mean_cosine_without_logit_scale():
    frames = np.array([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # one video, 3 frames
    text = np.array([[0.0, 5.0]])
    expected = np.mean([0.0, 1.0, np.sqrt(0.5)])
    np.testing.assert_allclose(clipsim(frames, text), [expected])


def test_inception_score_splits_and_shuffle_follow_tganv2_and_stylegan_v():
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=23)
    # Groups are rows i*n//splits .. (i+1)*n//splits, StyleGAN-V shuffling them with RandomState(42) first.
    shuffled = probs.copy()
    np.random.RandomState(42).shuffle(shuffled)
    groups = [shuffled[i * 23 // 4 : (i + 1) * 23 // 4] for i in range(4)]
    by_hand = [np.exp((g * (np.log(g) - np.log(g.mean(axis=0)))).sum(axis=1).mean()) for g in groups]
    assert inception_score(probs, splits=4, shuffle_seed=42) == pytest.approx((np.mean(by_hand), np.std(by_hand)))
    assert inception_score(probs, splits=4) != pytest.approx(inception_score(probs, splits=4, shuffle_seed=42))


def test_frechet_equals_pytorch_fid_on_recorded_cases():
    # fixtures/frechet_pytorch_fid.npz: pytorch-fid's calculate_frechet_distance (scipy sqrtm) on features
    # drawn, in a scratch space, by this generator rule; each case is (seed, n, d, value).
    cases = np.load(Path(__file__).parent / "fixtures" / "frechet_pytorch_fid.npz")["cases"]
    for seed, n, d, expected in cases:
        rng = np.random.default_rng(int(seed))
        features = []
        for scale, shift in ((1.0, 0.0), (1.3, 0.2)):
            mixing = rng.standard_normal((int(d), int(d))) / np.sqrt(d)
            features.append(rng.standard_normal((int(n), int(d))) @ mixing * scale + shift)
        assert frechet_distance(*features) == pytest.approx(expected, rel=4e-8)
