"""DDIM with classifier-free guidance, VidRD and autoregressive long videos, on a tiny inflated UNet."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

import pytest
import torch

from modeling.freeze import temporal_parameters
from modeling.masked_frames import add_mask_channels
from modeling.samplers.autoregressive import AutoregressiveConfig, autoregressive_sample
from modeling.samplers.ddim import VideoDenoiser, ddim_sample, gaussian_noise, make_generator
from modeling.samplers.vidrd import VidRDConfig, VidRDTrace, next_clip_noise, staged_guidance_frames, vidrd_sample

SHAPE = (1, 4, 4, 8, 8)  # (b, c, f, h, w) latents


class RecordingUNet:
    """Passes calls to the real UNet and keeps what it was called with."""

    def __init__(self, unet):
        self.unet, self.calls = unet, []

    def __call__(self, sample, timestep, encoder_hidden_states, **kwargs):
        self.calls.append({"sample": sample, "encoder_hidden_states": encoder_hidden_states, **kwargs})
        return self.unet(sample, timestep, encoder_hidden_states, **kwargs)


def text_pair(seed: int = 0, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 5, 32, generator=generator), torch.randn(batch, 5, 32, generator=generator)


def run_ddim(unet, seed: int, eta: float = 0.5, steps: int = 4) -> torch.Tensor:
    cond, uncond = text_pair()
    denoiser = VideoDenoiser(unet, cond, uncond, guidance_scale=5.0)
    generator = make_generator(seed)
    noise = gaussian_noise(SHAPE, generator)
    return ddim_sample(denoiser, noise, num_inference_steps=steps, eta=eta, generator=generator)


def test_ddim_same_seed_same_video(tiny_video_unet):
    first, second = run_ddim(tiny_video_unet, seed=3), run_ddim(tiny_video_unet, seed=3)
    assert first.shape == SHAPE
    assert torch.equal(first, second)
    assert not torch.allclose(first, run_ddim(tiny_video_unet, seed=4))


@torch.no_grad()
def test_guidance_batches_both_halves_in_one_forward(tiny_video_unet):
    cond, uncond = text_pair(batch=2)
    recorder = RecordingUNet(tiny_video_unet)
    conditioning, dropped = torch.randn(2, 1, 4, 8, 8), torch.zeros(2, 1, 4, 8, 8)
    denoiser = VideoDenoiser(recorder, cond, uncond, 3.0, {"fps": torch.tensor([8, 8])}, {})
    latents, t = torch.randn(2, *SHAPE[1:]), torch.tensor(500)
    guided = denoiser(latents, t)
    assert len(recorder.calls) == 1 and recorder.calls[0]["sample"].shape[0] == 4
    assert torch.equal(recorder.calls[0]["encoder_hidden_states"], torch.cat([uncond, cond]))
    uncond_out = tiny_video_unet(latents, t, uncond, fps=torch.tensor([8, 8])).sample
    cond_out = tiny_video_unet(latents, t, cond, fps=torch.tensor([8, 8])).sample
    assert (guided - (uncond_out + 3.0 * (cond_out - uncond_out))).abs().max() < 1e-4

    # Extra kwargs reach the UNet; the unconditional half may override them.
    assert torch.equal(recorder.calls[0]["fps"], torch.tensor([8, 8, 8, 8]))
    tiny_video_unet.widen_input(1)
    recorder = RecordingUNet(tiny_video_unet)
    VideoDenoiser(recorder, cond, uncond, 3.0, {"conditioning": conditioning}, {"conditioning": dropped})(latents, t)
    assert torch.equal(recorder.calls[0]["conditioning"], torch.cat([dropped, conditioning]))


def test_scale_one_runs_unguided_and_callback_can_replace_latents(tiny_video_unet):
    cond, uncond = text_pair()
    recorder = RecordingUNet(tiny_video_unet)
    seen: list[int] = []

    def zero_last_frame(step_index, timestep, latents):
        seen.append(int(timestep))
        latents = latents.clone()
        latents[:, :, -1] = 0
        return latents

    noise = gaussian_noise(SHAPE, make_generator(0))
    unguided = VideoDenoiser(recorder, cond, uncond, 1.0)
    out = ddim_sample(unguided, noise, num_inference_steps=3, callback=zero_last_frame)
    assert all(call["sample"].shape[0] == 1 for call in recorder.calls) and len(recorder.calls) == 3
    assert seen == sorted(seen, reverse=True) and len(seen) == 3
    assert torch.equal(out[:, :, -1], torch.zeros_like(out[:, :, -1]))


def test_pns_keeps_unit_variance_and_fnr_reverses_frames():
    overlap, alpha = 4, 4.0
    previous = gaussian_noise((4, 4, 16, 32, 32), make_generator(0))
    noise = next_clip_noise(previous, overlap, alpha, make_generator(1))
    reversed_previous = previous.flip(2)
    assert torch.equal(noise[:, :, :overlap], reversed_previous[:, :, :overlap])
    assert torch.equal(noise[:, :, 0], previous[:, :, -1])
    fresh = noise[:, :, overlap:] - alpha / math.sqrt(1 + alpha**2) * reversed_previous[:, :, overlap:]
    assert abs(noise[:, :, overlap:].var().item() - 1.0) < 0.02
    assert abs(fresh.var().item() - 1 / (1 + alpha**2)) < 0.002
    assert abs(fresh.mean().item()) < 0.01
    correlation = torch.corrcoef(torch.stack([noise[:, :, overlap:].flatten(), fresh.flatten()]))[0, 1]
    assert abs(correlation.item() - 1 / math.sqrt(1 + alpha**2)) < 0.02


@torch.no_grad()
def mix_frames(unet) -> None:
    """Move the temporal layers off identity, as training would, so frames influence each other:
    otherwise a copied frame would keep matching its source after DSG stops copying it."""
    torch.manual_seed(0)
    for _, parameter in temporal_parameters(unet):
        parameter.add_(0.05 * torch.randn_like(parameter))


FIXTURES = Path(__file__).parent / "fixtures"


def toy_denoiser(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Frame-mixing and timestep-dependent, as in the fixture's note (tests/modeling/fixtures/README.md)."""
    mixed = 0.6 * latents + 0.3 * latents.roll(1, dims=2) + 0.1 * latents.mean(dim=2, keepdim=True)
    return torch.tanh(mixed) * (0.5 + float(t) / 2000.0)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest difference over the largest value: the DDIM loop grows the toy's latents to ~30,
    where float32 spacing alone is ~2e-6, and a different summation order moves the last bits."""
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("steps", [25, 50, 7])
def test_vidrd_equals_the_official_loop(steps):
    """Fixture: the official pipeline's loop on the toy denoiser (3 clips of 7 frames, M = 4)."""
    reference = np.load(FIXTURES / "vidrd_reference.npz")
    expected = torch.from_numpy(reference[f"video_S{steps}"])
    whole = VidRDConfig(num_clips=3, overlap=4, alpha=4.0, beta=0.4, num_inference_steps=steps, output="whole_clips")
    shape = (1, 2, 7, 3, 3)
    video = vidrd_sample(toy_denoiser, shape, whole, generator=make_generator(0))
    assert video.shape[2] == 21 == whole.num_frames(7)
    assert relative_error(video, expected) < 1e-6
    # Default: clip 1 whole, then only the frames each later clip adds.
    new_frames = vidrd_sample(toy_denoiser, shape, replace(whole, output="new_frames"), generator=make_generator(0))
    kept = torch.cat([expected[:, :, :7], expected[:, :, 11:14], expected[:, :, 18:21]], dim=2)
    assert new_frames.shape[2] == 13 == replace(whole, output="new_frames").num_frames(7)
    assert relative_error(new_frames, kept) < 1e-6
    guided = [sum(j in staged_guidance_frames(i, 4, 0.4, steps) for i in range(steps)) for j in range(4)]
    assert guided == reference[f"guided_steps_S{steps}"].tolist()


def test_staged_guidance_schedule_at_25_steps():
    guided = [sum(j in staged_guidance_frames(i, 4, 0.4, 25) for i in range(25)) for j in range(4)]
    assert guided == [10, 8, 5, 3]


def test_vidrd_overlap_frame_j_follows_frame_n_minus_1_minus_j(tiny_video_unet):
    clip_len, steps, overlap = 6, 10, 2
    config = VidRDConfig(num_clips=3, overlap=overlap, alpha=4.0, beta=0.4, num_inference_steps=steps)
    cond, uncond = text_pair()
    mix_frames(tiny_video_unet)
    trace = VidRDTrace()
    shape = (1, 4, clip_len, 8, 8)
    video = vidrd_sample(VideoDenoiser(tiny_video_unet, cond, uncond, 4.0), shape, config,
                         generator=make_generator(0), trace=trace)
    assert video.shape[2] == clip_len + 2 * (clip_len - overlap) == config.num_frames(clip_len)
    copied = 0
    for clip in (1, 2):
        previous, current = trace.step_inputs[clip - 1], trace.step_inputs[clip]
        for step in range(steps):
            for j in range(overlap):
                same = torch.equal(current[step][:, :, j], previous[step][:, :, clip_len - 1 - j])
                assert same == (step < (overlap - j) * steps * 0.4 / overlap), (clip, step, j)
                copied += same
        start = clip_len + (clip - 1) * (clip_len - overlap)
        assert torch.equal(video[:, :, start : start + clip_len - overlap], trace.clips[clip][:, :, overlap:])
    assert copied == 2 * (4 + 2)  # j = 0 at steps 0-3, j = 1 at steps 0-1
    assert torch.equal(video[:, :, :clip_len], trace.clips[0])


def test_vidrd_single_clip_is_plain_ddim_and_is_deterministic(tiny_video_unet):
    cond, _ = text_pair()
    denoiser = VideoDenoiser(tiny_video_unet, cond)
    one_clip = VidRDConfig(num_clips=1, num_inference_steps=3)
    shape = (1, 4, 5, 8, 8)
    sampled = vidrd_sample(denoiser, shape, one_clip, generator=make_generator(7))
    generator = make_generator(7)
    expected = ddim_sample(denoiser, gaussian_noise(shape, generator), num_inference_steps=3, generator=generator)
    assert torch.equal(sampled, expected)
    two = VidRDConfig(num_clips=2, num_inference_steps=3)
    assert torch.equal(
        vidrd_sample(denoiser, shape, two, generator=make_generator(1)),
        vidrd_sample(denoiser, shape, two, generator=make_generator(1)),
    )
    with pytest.raises(ValueError):
        vidrd_sample(denoiser, shape, VidRDConfig(overlap=5), generator=make_generator(1))


def test_autoregressive_extends_from_the_last_context_frames(tiny_video_unet):
    mix_frames(tiny_video_unet)
    predictor = add_mask_channels(tiny_video_unet)
    with torch.no_grad():  # let the (zero-initialised) context channels matter, as after training
        torch.manual_seed(0)
        predictor.unet.conv_in.weight[:, 4:].normal_(0, 0.2)
    cond, uncond = text_pair()
    recorder = RecordingUNet(predictor)
    config = AutoregressiveConfig(num_clips=3, context_frames=2, num_inference_steps=2)
    shape = (1, 4, 5, 8, 8)
    video = autoregressive_sample(
        VideoDenoiser(recorder, cond, uncond, 2.0), shape, config, generator=make_generator(0)
    )
    assert video.shape[2] == 5 + 2 * 3 == config.num_frames(5)
    assert len(recorder.calls) == 3 * 2
    first_clip_conditioning = recorder.calls[0]["conditioning"]
    assert not first_clip_conditioning.any()  # clip 1 comes from no context
    second = recorder.calls[2]["conditioning"]  # [uncond half, cond half] of clip 2's first step
    assert not second[:1].any()
    context = second[1:]
    assert torch.equal(context[:, :4, :2], video[:, :, 3:5]) and not context[:, :4, 2:].any()
    assert torch.equal(context[:, 4, :, 0, 0], torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]))

    again = autoregressive_sample(
        VideoDenoiser(predictor, cond, uncond, 2.0), shape, config, generator=make_generator(0)
    )
    assert torch.equal(again, video)
    # Given a first clip (e.g. from the base model), the continuation depends on its last frames.
    base_clip = torch.randn(shape)
    two = replace(config, num_clips=2)
    def continue_clip(first_clip: torch.Tensor) -> torch.Tensor:
        unguided = VideoDenoiser(predictor, cond)
        return autoregressive_sample(unguided, shape, two, first_clip=first_clip, generator=make_generator(1))

    continued = continue_clip(base_clip)
    assert torch.equal(continued[:, :, :5], base_clip)
    base_clip[:, :, -1] += 1.0
    changed = continue_clip(base_clip)
    assert not torch.allclose(changed[:, :, 5:], continued[:, :, 5:])
