"""The whole cascade built tiny in code, saved to a folder and loaded back with one call."""

import json
import string
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import modeling
from modeling.cascade import Cascade, CascadeConfig
from modeling.masked_frames import add_mask_channels
from modeling.prior import ImagePrior
from modeling.samplers.vidrd import VidRDConfig
from modeling.temporal_vae import TemporalVAE
from storage.media import probe_video
from tiny_vae import tiny_vae

PROMPTS = ["a cat runs", "a dog"]
MAX_TOKENS = 8


def tiny_tokenizer(directory: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters plus two merges, written offline."""
    tokens = ["<|startoftext|>", "<|endoftext|>", *string.ascii_lowercase]
    tokens += [letter + "</w>" for letter in string.ascii_lowercase] + ["ca", "cat</w>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    return CLIPTokenizer(
        vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"), model_max_length=MAX_TOKENS
    )


def tiny_text_encoder(vocab_size: int) -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def full_cascade(make_unet2d, tmp_path: Path) -> Cascade:
    """Base (with prior + image-embedding tokens) -> interpolation -> SR -> temporal VAE."""
    tokenizer = tiny_tokenizer(tmp_path / "vocab")
    torch.manual_seed(0)
    prior = ImagePrior(
        num_attention_heads=2, attention_head_dim=8, num_layers=1, embedding_dim=32, num_embeddings=MAX_TOKENS
    )
    return Cascade(
        tokenizer=tokenizer,
        text_encoder=tiny_text_encoder(len(tokenizer)),
        base=modeling.inflate(make_unet2d(seed=1), "make_a_video", head_dim=8, image_embed_dim=32).eval(),
        interpolation=add_mask_channels(modeling.inflate(make_unet2d(seed=2), "videoldm", head_dim=8)).eval(),
        superres=modeling.inflate(make_unet2d(seed=3, in_channels=8, num_class_embeds=100), "lavie", head_dim=8).eval(),
        vae=TemporalVAE.from_vae(tiny_vae(), norm_groups=4),
        prior=prior.eval(),
        config=CascadeConfig(interpolation_factor=2, superres_scale=2, prior_steps=2),
    )


def generate(cascade: Cascade, seed: int = 0, **overrides):
    settings = dict(num_frames=3, height=16, width=16, num_inference_steps=2, guidance_scale=3.0, seed=seed)
    return cascade(PROMPTS, **{**settings, **overrides})


def test_full_cascade_round_trip_shapes_and_determinism(make_unet2d, tmp_path: Path):
    cascade = full_cascade(make_unet2d, tmp_path)
    folder = tmp_path / "cascade"
    cascade.save_pretrained(folder)
    manifest = json.loads((folder / "cascade.json").read_text())
    assert set(manifest["parts"]) == {
        "tokenizer", "text_encoder", "base", "interpolation", "superres", "vae", "prior"
    }
    assert (folder / "scheduler" / "scheduler_config.json").exists()
    weights = [p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert weights and all(p.suffix == ".safetensors" for p in weights)

    loaded = Cascade.from_pretrained(folder)
    assert type(loaded.vae) is TemporalVAE and loaded.interpolation.in_channels == 9
    video = generate(cascade)
    # 3 base frames -> (3 - 1) * 2 + 1 = 5 after interpolation; 4x4 latents -> SR 8x8 -> VAE 16x16 pixels.
    assert video.frames.shape == (2, 5, 16, 16, 3) and video.frames.dtype.name == "uint8"
    assert video.fps == 8.0 * 2
    reloaded_video = generate(loaded)
    assert (reloaded_video.frames == video.frames).all()
    assert (generate(loaded).frames == video.frames).all()
    assert not (generate(loaded, seed=1).frames == video.frames).all()

    info = probe_video(video.save(tmp_path / "sample.mp4", index=1))
    assert (info.num_frames, info.width, info.height) == (5, 16, 16)
    # decord cannot measure GIFs, so the GIF is checked with Pillow.
    with Image.open(video.save(tmp_path / "sample.gif", index=1)) as gif:
        assert (gif.n_frames, gif.size) == (5, (16, 16))
    with pytest.raises(ValueError):
        video.save(tmp_path / "sample.avi")


def test_minimal_cascade_with_vidrd_long_video_and_plain_vae(make_unet2d, tmp_path: Path):
    tokenizer = tiny_tokenizer(tmp_path / "vocab")
    cascade = Cascade(
        tokenizer=tokenizer,
        text_encoder=tiny_text_encoder(len(tokenizer)),
        base=modeling.inflate(make_unet2d(seed=1), "make_a_video", head_dim=8).eval(),
        vae=tiny_vae(),
    )
    long_video = VidRDConfig(num_clips=3, overlap=2, num_inference_steps=2)
    video = generate(cascade, num_frames=4, height=8, width=8, long_video=long_video)
    assert video.frames.shape == (2, 4 + 2 * (4 - 2), 8, 8, 3) and video.fps == 8.0

    cascade.save_pretrained(tmp_path / "minimal")
    manifest = json.loads((tmp_path / "minimal" / "cascade.json").read_text())
    assert set(manifest["parts"]) == {"tokenizer", "text_encoder", "base", "vae"}
    loaded = Cascade.from_pretrained(tmp_path / "minimal")
    assert loaded.interpolation is None and loaded.superres is None and loaded.prior is None
    again = generate(loaded, num_frames=4, height=8, width=8, long_video=long_video)
    assert (again.frames == video.frames).all()

    manifest["parts"]["base"] = "os.system"
    (tmp_path / "minimal" / "cascade.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="unknown class"):
        Cascade.from_pretrained(tmp_path / "minimal")


def test_superres_samples_with_its_own_steps_and_guidance(make_unet2d, tmp_path: Path):
    cascade = full_cascade(make_unet2d, tmp_path)
    calls: list[int] = []  # the batch of every super-resolution forward: 2x prompts when guided
    cascade.superres.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    generate(cascade, num_inference_steps=3)
    assert calls == [2 * len(PROMPTS)] * 3
    calls.clear()
    generate(cascade, num_inference_steps=3, superres_steps=1, superres_guidance_scale=1.0)
    assert calls == [len(PROMPTS)]


def test_the_cascade_stops_after_the_stage_asked_and_decodes_there(make_unet2d, tmp_path: Path):
    cascade = full_cascade(make_unet2d, tmp_path)
    calls = {stage: 0 for stage in ("interpolation", "superres")}
    for stage in calls:
        getattr(cascade, stage).register_forward_pre_hook(lambda module, args, stage=stage: calls.update(
            {stage: calls[stage] + 1}))
    # the base alone: its 3 frames at its own size (8x8 pixels from 4x4 latents), no later stage runs
    base = generate(cascade, height=8, width=8, last_stage="base")
    assert base.frames.shape == (2, 3, 8, 8, 3) and calls == {"interpolation": 0, "superres": 0}
    # the same base frames the whole cascade starts from: the VAE decodes the base's latents
    interpolated = generate(cascade, height=8, width=8, last_stage="interpolation")
    assert interpolated.frames.shape == (2, 5, 8, 8, 3) and calls == {"interpolation": 2, "superres": 0}
    assert (interpolated.frames[:, ::2] == base.frames).all()
    assert generate(cascade).frames.shape == (2, 5, 16, 16, 3) and calls["superres"] == 2


def test_base_frames_follow_the_noise_prior_the_cascade_was_saved_with(make_unet2d, tmp_path: Path):
    """An inflated base is the 2D model on every frame: with independent noise its frames differ,
    under the mixed noise prior they share most of their noise and so most of their content."""
    tokenizer = tiny_tokenizer(tmp_path / "vocab")
    cascade = Cascade(tokenizer=tokenizer, text_encoder=tiny_text_encoder(len(tokenizer)),
                      base=modeling.inflate(make_unet2d(seed=1), "make_a_video", head_dim=8).eval(), vae=tiny_vae())
    change = {}
    for correlation in (0.0, 0.95):
        cascade.config = CascadeConfig(frame_noise_correlation={"base": correlation})
        cascade.save_pretrained(tmp_path / f"prior-{correlation}")
        loaded = Cascade.from_pretrained(tmp_path / f"prior-{correlation}")
        for name, options in {"clip": {}, "long": {"long_video": VidRDConfig(num_clips=2, overlap=2, num_inference_steps=2)}}.items():
            frames = generate(loaded, num_frames=4, height=8, width=8, **options).frames.astype(float)
            change[name, correlation] = abs(frames[:, 1:] - frames[:, :-1]).mean()
    for name in ("clip", "long"):
        assert change[name, 0.95] < 0.5 * change[name, 0.0], change
