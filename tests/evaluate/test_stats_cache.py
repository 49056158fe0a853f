"""Real-data statistics cache on a pyarrow filesystem."""

import numpy as np

from pipelines.evaluate.protocols import FVDProtocol
from pipelines.evaluate.stats_cache import RANDOM_INIT, FeatureStats, StatsCache, stats_key, weights_id


def test_cache_computes_once_and_reloads_the_same_stats(tmp_path):
    cache = StatsCache(str(tmp_path / "stats"))
    key = stats_key("ucf101@v3", FVDProtocol(), RANDOM_INIT)
    features = np.random.default_rng(0).standard_normal((50, 4))
    calls = []

    def compute():
        calls.append(1)
        return features

    first = cache.get_or_compute(key, compute)
    second = StatsCache(str(tmp_path / "stats")).get_or_compute(key, compute)
    assert len(calls) == 1 and second.count == 50
    np.testing.assert_array_equal(second.mean, first.mean)
    np.testing.assert_array_equal(second.cov, FeatureStats.from_features(features).cov)
    assert not list((tmp_path / "stats").rglob("*.partial"))


def test_key_changes_with_dataset_protocol_and_weights(tmp_path):
    weights = tmp_path / "i3d.safetensors"
    weights.write_bytes(b"weights")
    base = stats_key("ucf101@v3", FVDProtocol(), RANDOM_INIT)
    assert base.startswith("ucf101_v3/fvd2048_16f-")
    assert stats_key("ucf101@v3", FVDProtocol(input_range="signed_unit"), RANDOM_INIT) == base
    others = {
        stats_key("ucf101@v4", FVDProtocol(), RANDOM_INIT),
        stats_key("ucf101@v3", FVDProtocol(num_frames=32), RANDOM_INIT),
        stats_key("ucf101@v3", FVDProtocol(), weights_id(weights)),
    }
    assert base not in others and len(others) == 3
