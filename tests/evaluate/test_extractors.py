"""Batch extractors: output columns, ragged batches, and 2 Ray actors equal to one process."""

import numpy as np
import pytest
from ray.data import ActorPoolStrategy

from pipelines.evaluate.features import ClipSimScorer, VideoFeatureExtractor, extractor_class
from pipelines.evaluate.metrics import frechet_distance
from pipelines.evaluate.protocols import CLIPSIMProtocol, FIDProtocol, FVDProtocol, ISProtocol

# A small input keeps I3D cheap on CPU; the layers are the same as at 16x224x224.
PROTOCOL = FVDProtocol(name="fvd_test", num_frames=8, size=32)


def _videos(seed: int, count: int = 6, frames: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, frames, 24, 24, 3), dtype=np.uint8)


def test_videos_of_different_sizes_in_one_batch_match_separate_calls():
    extractor = VideoFeatureExtractor(PROTOCOL, device="cpu")
    small = _videos(2, count=1)[0]
    large = np.random.default_rng(3).integers(0, 256, (10, 40, 28, 3), dtype=np.uint8)
    ragged = np.empty(2, dtype=object)
    ragged[:] = [small, large]
    together = extractor({"video": ragged, "id": np.array([7, 8])})
    assert list(together["id"]) == [7, 8] and "video" not in together
    alone = extractor({"video": large[None]})["features"][0]
    np.testing.assert_allclose(together["features"][1], alone, rtol=1e-5, atol=1e-6)


def test_is_gives_probabilities_and_fid_gives_per_frame_features():
    video = _videos(4, count=1, frames=16)
    probs = VideoFeatureExtractor(ISProtocol(), device="cpu")({"video": video})
    assert probs["features"].shape == (1, 101) and probs["random_init"].all()
    np.testing.assert_allclose(probs["features"].sum(axis=1), 1.0)
    frames = VideoFeatureExtractor(FIDProtocol(num_frames=2), device="cpu")({"video": video})
    assert frames["features"].shape == (1, 2, 2048)


def test_two_ray_workers_match_one_process(ray_local):
    real, fake = _videos(0), _videos(1)
    single = VideoFeatureExtractor(PROTOCOL, device="cpu")
    expected = {name: single({"video": videos})["features"] for name, videos in (("real", real), ("fake", fake))}
    assert expected["real"].shape == (6, 400)

    rows = [
        {"set": name, "index": i, "video": video}
        for name, videos in (("real", real), ("fake", fake))
        for i, video in enumerate(videos)
    ]
    output = (
        ray_local.data.from_items(rows)
        .map_batches(
            VideoFeatureExtractor,
            fn_constructor_kwargs={"protocol": PROTOCOL, "device": "cpu"},
            batch_size=2,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=2),
            num_cpus=1,
        )
        .take_all()
    )
    assert len(output) == 12 and all(row["random_init"] for row in output)
    distributed = {
        name: np.stack([row["features"] for row in sorted(output, key=lambda r: r["index"]) if row["set"] == name])
        for name in ("real", "fake")
    }
    # float32 convolutions summed in another order (other thread counts) differ by ~1e-6
    for name in ("real", "fake"):
        np.testing.assert_allclose(distributed[name], expected[name], rtol=1e-4, atol=1e-5)
    fvd = frechet_distance(distributed["real"], distributed["fake"], allow_singular=True)
    assert fvd == pytest.approx(frechet_distance(expected["real"], expected["fake"], allow_singular=True), rel=1e-4)


def test_extractor_class_follows_the_protocol():
    assert extractor_class(PROTOCOL) is VideoFeatureExtractor
    assert extractor_class(CLIPSIMProtocol()) is ClipSimScorer
