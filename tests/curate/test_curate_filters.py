import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modeling.scorers import AestheticMLP, ClipImageEmbedder, ClipNSFWHead, build_watermark_model, load_watermark_model, watermark_probability
from pipelines.curate.config import SizeConfig
from pipelines.curate.filters import AestheticFilter, NSFWFilter, SizeFilter, ToxicityFilter, WatermarkFilter
from pipelines.curate.frames import rgb_to_bgr
from pipelines.curate.stage import set_up
from storage.media import read_image


def _ready(stage):
    return set_up([stage])[0]


def _keyframes_column(*stacks: np.ndarray) -> np.ndarray:
    column = np.empty(len(stacks), dtype=object)
    column[:] = list(stacks)
    return column


@pytest.fixture(scope="module")
def photos(skimage_dir) -> list[np.ndarray]:
    return [read_image(skimage_dir / name) for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]


def test_nsfw_scores_safe_photos_low(nsfw_filter, photos):
    out = nsfw_filter.process({"keyframes": _keyframes_column(*[p[None] for p in photos])})
    assert out["nsfw_score"].shape == (4,)
    assert (out["nsfw_score"] < 0.2).all()
    assert np.isnan(out["nsfw_clip_score"]).all()  # no head configured
    assert nsfw_filter.head_skipped_reason and "clip_head_path" in nsfw_filter.head_skipped_reason
    assert all(nsfw_filter.keep({"nsfw_score": s}) is None for s in out["nsfw_score"])


def test_nsfw_score_is_the_max_over_keyframes_of_the_watched_classes(photos):
    # watching a class the detector does find proves the real model's scores reach the decision
    face_watch = _ready(NSFWFilter({"exposed_classes": ["FACE_FEMALE"], "num_keyframes": 3}))
    astronaut, coffee = photos[0], photos[1]
    clip = np.stack([coffee[:, :512], astronaut[:400], coffee[:, :512]])  # the face is in one keyframe
    out = face_watch.process({"keyframes": _keyframes_column(clip, coffee[None])})
    assert out["nsfw_score"][0] > 0.5 and out["nsfw_score"][1] == 0.0
    assert face_watch.keep({"nsfw_score": out["nsfw_score"][0]}) == "nsfw"


def test_disabled_filter_says_so_and_writes_nan(photos):
    stage = _ready(NSFWFilter({"enabled": False}))
    out = stage.process({"keyframes": _keyframes_column(photos[0][None])})
    assert stage.skipped_reason == "NSFW filter disabled in config"
    assert np.isnan(out["nsfw_score"]).all()


def test_toxicity_on_captions_and_labels():
    stage = _ready(ToxicityFilter())
    batch = {
        "caption": np.array(["a person playing the guitar", "you are a stupid idiot", None, ""], dtype=object),
        "label": np.array(["PlayingGuitar", None, "fuck this shit", None], dtype=object),
    }
    scores = stage.process(batch)["toxicity_score"]
    assert scores[0] < 0.5 < scores[1] and scores[2] > 0.5 and scores[3] == 0.0
    assert [stage.keep({"toxicity_score": s}) for s in scores] == [None, "toxic_text", "toxic_text", None]


def test_toxicity_model_loads_with_the_first_text():
    stage = _ready(ToxicityFilter())
    no_text = {"caption": np.array([None, " "], dtype=object), "label": np.array([None, None], dtype=object)}
    assert stage.process(no_text)["toxicity_score"].tolist() == [0.0, 0.0] and stage._predict_prob is None
    assert stage.process({"caption": np.array(["you are a stupid idiot"], dtype=object)})["toxicity_score"][0] > 0.5


@pytest.fixture(scope="module")
def watermark_weights(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("watermark")
    model = build_watermark_model()
    torch.save(model.state_dict(), folder / "watermark_model_v1.pt")  # LAION's format
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "watermark.safetensors"))
    return folder


def test_watermark_filter_from_laion_pth_and_safetensors(watermark_weights, photos):
    small = [p[:128, :128] for p in photos[:2]]
    batch = {"keyframes": _keyframes_column(np.stack(small), small[1][None])}
    scores = {}
    for name in ("watermark_model_v1.pt", "watermark.safetensors"):
        stage = _ready(WatermarkFilter({"weights_path": watermark_weights / name, "num_keyframes": 2}))
        assert stage.skipped_reason is None
        scores[name] = stage.process(batch)["watermark_score"]
    np.testing.assert_allclose(scores["watermark_model_v1.pt"], scores["watermark.safetensors"], rtol=1e-5)
    model = load_watermark_model(watermark_weights / "watermark.safetensors")
    expected = watermark_probability(model, np.stack(small))
    assert scores["watermark.safetensors"][0] == pytest.approx(expected.max(), rel=1e-5)
    assert ((0 <= expected) & (expected <= 1)).all()


def test_watermark_without_weights_is_skipped_plainly():
    stage = _ready(WatermarkFilter())
    out = stage.process({"keyframes": _keyframes_column(np.zeros((1, 8, 8, 3), np.uint8))})
    assert "no weights configured" in stage.skipped_reason
    assert math.isnan(out["watermark_score"][0])
    assert stage.keep({"watermark_score": out["watermark_score"][0]}) is None
    assert stage.keep({"watermark_score": 0.7}) == "watermark"


def test_aesthetic_uses_clip_and_laion_mlp(tiny_clip_dir, tmp_path, photos):
    torch.manual_seed(0)
    mlp = AestheticMLP()
    torch.save(mlp.state_dict(), tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    config = {"clip_model": f"local-dir:{tiny_clip_dir}", "weights_path": tmp_path / "sac+logos+ava1-l14-linearMSE.pth", "num_keyframes": 2, "min_score": 0.0}
    stage = _ready(AestheticFilter(config))
    clip = np.stack([photos[0][:300, :400], photos[1][:300, :400]])
    score = stage.process({"keyframes": _keyframes_column(clip)})["aesthetic_score"][0]
    embeddings = ClipImageEmbedder(f"local-dir:{tiny_clip_dir}")(clip)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        expected = mlp.eval()(torch.from_numpy(embeddings)).mean().item()
    assert score == pytest.approx(expected, rel=1e-4)
    assert stage.keep({"aesthetic_score": score - 1}) == (None if score - 1 >= 0 else "low_aesthetic")


def test_aesthetic_without_weights_is_skipped():
    assert "no MLP weights" in AestheticFilter().skipped_reason
    assert "no CLIP weights" in AestheticFilter({"weights_path": "x.pth"}).skipped_reason


def test_nsfw_clip_head(tiny_clip_dir, tmp_path, photos):
    torch.manual_seed(0)
    head = ClipNSFWHead()
    save_file(head.state_dict(), str(tmp_path / "nsfw_head.safetensors"))
    stage = _ready(NSFWFilter({"clip_head_path": tmp_path / "nsfw_head.safetensors", "clip_model": f"local-dir:{tiny_clip_dir}", "num_keyframes": 1}))
    assert stage.head_skipped_reason is None
    score = stage.process({"keyframes": _keyframes_column(photos[2][None])})["nsfw_clip_score"][0]
    assert 0.0 < score < 1.0
    assert stage.keep({"nsfw_score": 0.0, "nsfw_clip_score": 0.99}) == "nsfw"


def test_size_rules():
    stage = SizeFilter(SizeConfig(min_short_side=128, min_seconds=2, max_seconds=20, max_aspect_ratio=2.5))
    rows = [
        (640, 360, 5.0, False),
        (176, 100, 5.0, False),
        (1000, 200, 5.0, False),
        (640, 360, 1.0, False),
        (640, 360, 30.0, False),
        (640, 360, 1.0, True),  # a pseudo-video: its duration is made up, the image is judged by size
    ]
    rows = [{"source_width": w, "source_height": h, "duration": d, "pseudo": p} for w, h, d, p in rows]
    assert [stage.keep(r) for r in rows] == [None, "too_small", "bad_aspect_ratio", "too_short", "too_long", None]


def test_nudenet_detections_are_unchanged_by_the_anchor_prefilter(nsfw_filter, photos):
    from nudenet import NudeDetector

    astronaut, coffee = photos[0], photos[1]
    images = [rgb_to_bgr(p) for p in (astronaut, coffee, astronaut[:400], photos[2], photos[3])]
    plain = NudeDetector()
    # a face in some images; coffee alone has one anchor over nudenet's 0.2; chelsea and rocket none
    for batch in (images, images[1:2], images[3:]):
        assert nsfw_filter.detector.detect_batch(batch, batch_size=len(batch)) == plain.detect_batch(batch, batch_size=len(batch))
    assert any(plain.detect_batch(images, batch_size=len(images)))
