"""The t2i job: a small SD-layout text-to-image folder trained on shape image-caption pairs that
loads through the same code path as a real Stable Diffusion folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from pipelines.shapes.world import random_scene
from pipelines.train.encoders import FrozenEncoders, pixels_to_video
from pipelines.train.preflight import with_folder_defaults
from pipelines.train.t2i import T2IConfig, train_t2i
from pipelines.train.tiny import tiny_train_config

# open_clip's tokenizer on "a red circle moving left" (recorded with open_clip.get_tokenizer("ViT-B-32"))
CLIP_IDS = [49406, 320, 736, 7117, 3584, 1823, 49407]


@pytest.fixture(scope="module")
def shape_images():
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng, moving=False) for _ in range(8)]
    return np.stack([s.render(32, 32) for s in scenes]), [s.caption for s in scenes]


def test_t2i_folder_loads_like_a_stable_diffusion_folder(tmp_path, shape_images):
    images, captions = shape_images
    losses, first_text_encoder = [], {}

    def seen(state):
        losses.append(state.phase)
        if state.text_encoder is not None and not first_text_encoder:
            first_text_encoder.update({k: v.clone() for k, v in state.text_encoder.state_dict().items()})

    folder = train_t2i(images, captions, tmp_path / "t2i", T2IConfig(vae_steps=3, unet_steps=3, batch_size=4),
                       progress=seen)
    assert losses == ["vae"] * 3 + ["unet"] * 3
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder", "model_index.json"):
        assert (folder / part).exists(), part
    # the loaders train.pretrained uses
    encoders = FrozenEncoders.load(str(folder), torch.device("cpu"), text=True, vae=True, image=True)
    assert encoders.tokenizer("a red circle moving left").input_ids == CLIP_IDS
    # frozen, as SD's: words no still caption holds ("moving left") keep their own embeddings
    saved = encoders.text_encoder.state_dict()
    assert first_text_encoder and all(torch.equal(saved[name], value) for name, value in first_text_encoder.items())
    states = encoders.encode_text(["a red circle", "a blue square"])
    assert states.tokens.shape == (2, encoders.tokenizer.model_max_length, 32)
    latents = encoders.encode_video(pixels_to_video(images[:, None], torch.device("cpu")))
    assert latents.shape == (8, 4, 1, 16, 16)
    assert 0.3 < float(latents.std()) < 3.0  # scaled to about unit variance, as SD's latents are
    # zero terminal SNR: the schedule the UNet learnt is the folder's, so the video stages inflating it
    # train and sample with it, and sampling starts from pure noise at the last step
    fitted = with_folder_defaults(tiny_train_config(str(folder))).noise_schedule
    assert fitted.rescale_betas_zero_snr and fitted.timestep_spacing == "trailing"
    unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet")
    assert unet.config.cross_attention_dim == encoders.text_encoder.config.hidden_size
    # and diffusers' own Stable Diffusion pipeline runs it
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(["a red circle"], height=32, width=32, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_t2i_rejects_images_of_the_wrong_size(tmp_path, shape_images):
    images, captions = shape_images
    with pytest.raises(ValueError, match="t2i trains on"):
        train_t2i(images[:, :16], captions, tmp_path, T2IConfig(vae_steps=1, unet_steps=1))
    with pytest.raises(ValueError, match="captions"):
        train_t2i(images, captions[:3], tmp_path, T2IConfig(vae_steps=1, unet_steps=1))
    with pytest.raises(ValueError, match="zero_terminal_snr leaves no signal"):
        T2IConfig(prediction_type="epsilon")
    assert T2IConfig(prediction_type="epsilon", zero_terminal_snr=False).prediction_type == "epsilon"
