"""Does the t2i job learn the shapes world? Colour and shape accuracy of its samples over training.

Trains ``pipelines.train.t2i`` (its default settings unless overridden) on shapes-world images
and, every ``--eval-every`` UNet steps, samples one image per prompt (every colour x shape,
``--repeats`` times, DDIM with classifier-free guidance), decodes it and reads it back with the
shapes judge, whose chance levels are 25 % (colour) and 33 % (shape). Before the UNet phase the
judge reads the VAE's reconstructions: the ceiling the UNet can reach. The last row samples the
final model with empty prompts: what the text adds (chance when nothing does).

    python benchmarks/t2i_learning.py                       # default schedule, ~570 CPU s (~5-9 min on 2 cores)
    python benchmarks/t2i_learning.py --unet-steps 400 --eval-every 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.samplers.ddim import (  # noqa: E402
    VideoDenoiser,
    ddim_sample,
    gaussian_noise,
    make_generator,
)
from pipelines.evaluate.shapes_judge import judge  # noqa: E402
from pipelines.shapes.world import COLOURS, SHAPES, random_scene  # noqa: E402
from pipelines.train.t2i import T2IConfig, T2IProgress, t2i_schedule, train_t2i  # noqa: E402


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(n, 3, h, w)`` in [-1, 1] -> uint8 ``(n, h, w, 3)``."""
    return rearrange(((images.clamp(-1, 1) + 1) * 127.5).round().byte(), "n c h w -> n h w c").cpu().numpy()


@torch.no_grad()
def sample(state: T2IProgress, prompts: list[str], config: T2IConfig, guidance: float, steps: int,
           seed: int = 1) -> np.ndarray:
    """One decoded uint8 image per prompt, the UNet run as in ``StableDiffusionPipeline``."""
    tokenizer, device = state.tokenizer, state.vae.device

    def embed(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        return state.text_encoder(ids).last_hidden_state

    side = config.size // 2
    noise = gaussian_noise((len(prompts), 4, side, side), make_generator(seed), device)
    denoiser = VideoDenoiser(state.unet, embed(prompts), embed([""] * len(prompts)), guidance)
    latents = ddim_sample(denoiser, noise, scheduler_config=t2i_schedule(config), num_inference_steps=steps)
    return to_uint8(state.vae.decode(latents / state.vae.config.scaling_factor).sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="shapes-world training images")
    parser.add_argument("--vae-steps", type=int)
    parser.add_argument("--unet-steps", type=int)
    parser.add_argument("--eval-every", type=int, default=200, help="UNet steps between judged samples")
    parser.add_argument("--repeats", type=int, default=2, help="samples of every colour x shape prompt")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = {k: v for k, v in (("vae_steps", args.vae_steps), ("unet_steps", args.unet_steps)) if v is not None}
    config = T2IConfig(seed=args.seed, **overrides)

    rng = np.random.default_rng(args.seed)
    scenes = [random_scene(rng, moving=False) for _ in range(args.images)]
    images = np.stack([s.render(config.size, config.size) for s in scenes])
    held_out = [random_scene(rng, moving=False) for _ in range(64)]
    prompts = [f"a {c} {s}" for _ in range(args.repeats) for c in COLOURS for s in SHAPES]
    rows: list[tuple[str, int, float, float, float | None, float | None]] = []
    start = time.process_time()

    def report(state: T2IProgress) -> None:
        last = state.step + 1
        if state.phase == "vae" and last == config.vae_steps:
            with torch.no_grad():
                truth = torch.tensor(np.stack([s.render(config.size, config.size) for s in held_out]))
                pixels = rearrange(truth.float() / 127.5 - 1, "n h w c -> n c h w")
                decoded = to_uint8(state.vae.decode(state.vae.encode(pixels).latent_dist.mean).sample)
            scores = judge([s.caption for s in held_out], list(decoded))
        elif state.phase == "unet" and (last % args.eval_every == 0 or last == config.unet_steps):
            scores = judge(prompts, list(sample(state, prompts, config, args.guidance, args.sampling_steps)))
        else:
            return
        rows.append((state.phase, last, time.process_time() - start, state.loss, scores.colour_accuracy,
                     scores.shape_accuracy))
        print(f"{state.phase:>5} step {last:5d}  cpu {rows[-1][2]:6.0f}s  loss {state.loss:.4f}  "
              f"colour {scores.colour_accuracy:.0%}  shape {scores.shape_accuracy:.0%}", flush=True)
        if state.phase == "unet" and last == config.unet_steps:
            empty = judge(prompts, list(sample(state, [""] * len(prompts), config, 1.0, args.sampling_steps)))
            print(f"empty prompts (text cut off): colour {empty.colour_accuracy:.0%}  shape {empty.shape_accuracy:.0%}"
                  "  (chance 25 % / 33 %)")

    with tempfile.TemporaryDirectory() as folder:
        train_t2i(images, [s.caption for s in scenes], folder, config, progress=report)
    print(f"\nt2i: {config.vae_steps} VAE + {config.unet_steps} UNet steps, {len(prompts)} prompts judged "
          f"(vae row: reconstructions of {len(held_out)} held-out images)")
    print("| phase | step | CPU s | loss | colour | shape |\n|---|---|---|---|---|---|")
    for phase, step, seconds, loss, colour, shape in rows:
        print(f"| {phase} | {step} | {seconds:.0f} | {loss:.4f} | {colour:.0%} | {shape:.0%} |")


if __name__ == "__main__":
    main()
