"""CLIPSIM with a tiny open_clip model saved to disk and loaded back by path."""

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from modeling.features.clip import RANDOM_INIT_MARKER, load_clip, tag_uses_quick_gelu
from pipelines.evaluate.features import ClipSimScorer
from pipelines.evaluate.protocols import CLIPSIMProtocol

IMAGE_SIZE = 32
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # The real BPE vocabulary and 77-token context, so the tokenizer is the one CLIPSIM uses.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.CLIP(
        TINY_CONFIG["embed_dim"],
        open_clip.model.CLIPVisionCfg(**TINY_CONFIG["vision_cfg"]),
        open_clip.model.CLIPTextCfg(**TINY_CONFIG["text_cfg"]),
    )
    directory = tmp_path_factory.mktemp("tiny_clip")
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, str(directory / "open_clip_model.safetensors"))
    return directory


@pytest.fixture(scope="module")
def videos():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)


def test_clipsim_equals_cosine_mean_computed_by_hand(tiny_clip_dir, videos):
    prompts = np.array(["a dog runs on the beach", "timelapse of clouds"], dtype=object)
    scorer = ClipSimScorer(CLIPSIMProtocol(num_frames=3, clip_pretrained=None), tiny_clip_dir, device="cpu")
    scores = scorer({"video": videos, "prompt": prompts, "id": np.arange(2)})
    assert scores["clipsim"].shape == (2,) and not scores["random_init"].any()
    assert "video" not in scores and list(scores["id"]) == [0, 1]

    # By hand with open_clip's own loader: frames already at 32 px, so only normalise.
    model = open_clip.create_model(f"local-dir:{tiny_clip_dir}").eval()
    tokens = open_clip.get_tokenizer(f"local-dir:{tiny_clip_dir}")(list(prompts))
    mean, std = torch.tensor(open_clip.OPENAI_DATASET_MEAN), torch.tensor(open_clip.OPENAI_DATASET_STD)
    with torch.no_grad():
        text = model.encode_text(tokens)
        for i, video in enumerate(videos):
            frames = (torch.from_numpy(video).float() / 255 - mean) / std
            image = model.encode_image(frames.permute(0, 3, 1, 2))
            cosines = torch.nn.functional.cosine_similarity(image, text[i : i + 1])
            assert scores["clipsim"][i] == pytest.approx(cosines.mean().item(), abs=1e-5)


def test_encoder_is_in_eval_mode_and_truncates_long_prompts(tiny_clip_dir):
    encoder = load_clip(tiny_clip_dir)
    assert not encoder.model.training and not encoder.random_init
    long_prompt = " ".join(["word"] * 200)
    assert encoder.tokenizer([long_prompt]).shape == (1, 77)
    embedding = encoder.encode_text([long_prompt])
    assert embedding.shape == (1, 16)
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(1))  # normalised; no logit scale


def test_frames_of_other_sizes_are_resized_and_cropped_like_open_clip(tiny_clip_dir):
    encoder = load_clip(tiny_clip_dir)
    assert encoder.prepare(np.zeros((2, 48, 64, 3), np.uint8)).shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_openai_tag_turns_on_quick_gelu():
    assert tag_uses_quick_gelu("ViT-B-32", "openai")
    assert not tag_uses_quick_gelu("ViT-B-32", "laion2b_s34b_b79k")
    assert not tag_uses_quick_gelu("ViT-B-32", None)


def test_weights_saved_from_a_random_init_are_labelled_random(tmp_path):
    from pipelines.evaluate.tiny import write_tiny_clip

    folder = write_tiny_clip(tmp_path / "clip")
    assert load_clip(folder).random_init, "the tiny demo CLIP must not pass for trained weights"
    (folder / RANDOM_INIT_MARKER).unlink()
    assert not load_clip(folder).random_init


def test_clipsim_follows_open_clip_own_pil_preprocessing_on_recorded_fixture(tmp_path):
    # fixtures/clipsim_open_clip.npz: open_clip's create_model_and_transforms (PIL resize, crop, normalise)
    # on a local-dir model with seeded weights (reference_weights.py), smooth 40x56 frames; PIL's uint8
    # output pixels and the CLIPSIM it gives.
    from reference_weights import recorded_layout, seeded_state_dict

    with np.load(Path(__file__).parent / "fixtures" / "clipsim_open_clip.npz", allow_pickle=False) as fixture:
        weights = seeded_state_dict(recorded_layout(fixture), int(fixture["seed"]))
        videos, prompts, expected = fixture["videos"], fixture["prompts"], fixture["clipsim"]
        pil_pixels = fixture["pil_pixels"].astype(np.float64)
        (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": json.loads(str(fixture["model_cfg"]))}))
    save_file(weights, str(tmp_path / "open_clip_model.safetensors"))
    scorer = ClipSimScorer(CLIPSIMProtocol(num_frames=3, clip_pretrained=None), tmp_path, device="cpu")
    encoder = scorer.encoder
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    for video, pil in zip(videos, pil_pixels):
        prepared = encoder.prepare(CLIPSIMProtocol(num_frames=3).preprocess(video[None]))
        levels = ((prepared * std + mean) * 255).double().numpy()
        np.testing.assert_allclose(levels, pil, rtol=0, atol=1e-3)
    scores = scorer({"video": videos, "prompt": prompts.astype(object)})["clipsim"]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=3e-5)  # measured: 6e-9
