import cv2
import numpy as np
import pytest

from pipelines.curate.config import DedupConfig
from pipelines.curate.dedup import dhash, hamming, hash_frames, phash, select_unique
from storage.media import read_image


@pytest.fixture(scope="module")
def images(skimage_dir):
    return {name: read_image(skimage_dir / f"{name}.png") for name in ("astronaut", "coffee", "chelsea")}


def _jpeg(image: np.ndarray, quality: int = 40) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("hash_fn", [phash, dhash])
def test_hash_survives_resize_and_compression_but_separates_images(images, hash_fn):
    a = images["astronaut"]
    variant = _jpeg(cv2.resize(a, (300, 300), interpolation=cv2.INTER_AREA))
    h = lambda img: np.array([[hash_fn(img)]], dtype=np.uint64)
    assert hamming(h(a), h(variant))[0, 0] <= 6
    assert hamming(h(a), h(images["coffee"]))[0, 0] > 16
    assert hamming(h(images["coffee"]), h(images["chelsea"]))[0, 0] > 16


def test_select_unique_keeps_the_longest_then_smallest_id(images):
    a, b = images["astronaut"], images["coffee"]
    frames = {"a1": a[None], "a2": _jpeg(a)[None], "a3": cv2.resize(a, (256, 256))[None], "b1": b[None]}
    hashes = np.stack([hash_frames(f, 1) for f in frames.values()])
    result = select_unique(list(frames), hashes, DedupConfig(), priority=[1, 1, 5, 1])
    assert list(result.keep) == [False, False, True, True]
    assert result.reasons() == ["near_duplicate_of:a3", "near_duplicate_of:a3", None, None]
    # order of the input does not change the outcome
    shuffled = select_unique(["b1", "a3", "a2", "a1"], hashes[[3, 2, 1, 0]], DedupConfig(), priority=[1, 5, 1, 1])
    assert list(shuffled.keep) == [True, True, False, False]


def test_dedup_against_rows_kept_earlier(images):
    a = images["astronaut"]
    earlier = hash_frames(a[None], 1)[None]
    result = select_unique(["new"], hash_frames(_jpeg(a)[None], 1)[None], DedupConfig(), kept_features=earlier, kept_ids=["old"])
    assert result.reasons() == ["near_duplicate_of:old"]


def test_many_rows_in_blocks_match_pairwise_greedy():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(40, 2), dtype=np.uint64)
    # 200 rows, each a base hash with up to 3 bits flipped
    rows = base[rng.integers(0, 40, 200)] ^ (np.uint64(1) << rng.integers(0, 64, (200, 2)).astype(np.uint64))
    ids = [f"{i:03d}" for i in range(200)]
    result = select_unique(ids, rows, DedupConfig(max_hamming=4))
    kept = rows[result.keep]
    d = hamming(kept, kept)
    assert (d[~np.eye(len(kept), dtype=bool)] > 4).all()  # no two kept rows are near
    assert (hamming(rows[~result.keep], kept).min(axis=1) <= 4).all()  # every dropped row has a kept twin
    assert result.keep.sum() <= 40


def test_cosine_mode_on_embeddings():
    e = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0]], dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    result = select_unique(["x", "y", "z"], e, DedupConfig(method="clip", min_cosine=0.95))
    assert list(result.keep) == [True, False, True]

