"""Does the demo's cascade learn the shapes world? The shapes judge on the base stage of each
inflation variant, over training, with the same budget for each.

Every variant (``make_a_video``, ``videoldm``, ``lavie``) trains the demo's base-stage settings
(``flows.demo.demo_train_settings`` with ``DemoSchedule``'s defaults unless overridden) through
the real training loop (``pipelines.train.loop.train_stage``, one process) on shapes-world shots
rendered as the demo's sample writer renders them, sampled at the demo's 3-6 fps. It inflates the
demo's text-to-image folder (trained here with ``T2IConfig``'s defaults, unless ``--pretrained``
names one). At every checkpoint the base alone (a cascade of the base and the 2D VAE) samples the
16 shapes prompts once per seed (``--seeds``) and the judge reads them all (chance: colour 25 %,
shape 33 %, direction 25 %).

Then the demo's interpolation stage trains its budget on the same shots, and fills in the
keyframes of 16 held-out shots (4 per direction): does it keep their direction? The judge reads the
in-between frames alone and the whole output, and their centroids are compared with the shot's own.

Targets (issue 13): colour >= 90 %, direction >= 80 % after the default schedule; the
interpolation keeps the direction of its input.
``--ablate text`` trains on empty captions; ``--ablate temporal`` keeps the temporal layers at
their identity init and trains the spatial layers instead (freeze ``all`` but the temporal
layers; the default policy would leave nothing to train): what each accuracy falls to without them.

    python benchmarks/learning.py                                  # 3 variants, default schedule
    python benchmarks/learning.py --variants videoldm --steps 100 --ablate temporal
    python benchmarks/learning.py --variants make_a_video --freeze temporal_and_attention
    python benchmarks/learning.py --variants videoldm --text-cross-attention
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.demo import DemoSchedule, demo_train_settings  # noqa: E402
from modeling.cascade import Cascade, SamplingRun, to_uint8_frames  # noqa: E402
from modeling.freeze import FreezePolicy, temporal_parameters  # noqa: E402
from modeling.masked_frames import interpolation_mask  # noqa: E402
from modeling.samplers.ddim import make_generator  # noqa: E402
from modeling.temporal_vae import decode_video  # noqa: E402
from pipelines.evaluate.shapes_judge import ShapesScores, judge, read_clip  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402
from pipelines.shapes.batches import shapes_batches  # noqa: E402
from pipelines.shapes.samples import ShapesWorldConfig  # noqa: E402
from pipelines.shapes.world import COLOURS, DIRECTIONS, random_scene, shape_prompts  # noqa: E402
from pipelines.train import loop  # noqa: E402
from pipelines.train.checkpoint import RunPaths, kept_checkpoints, load_trained_weights  # noqa: E402
from pipelines.train.config import TrainConfig  # noqa: E402
from pipelines.train.export import assemble_cascade  # noqa: E402
from pipelines.train.data import clip_frame_indices  # noqa: E402
from pipelines.train.encoders import FrozenEncoders, pixels_to_video  # noqa: E402
from pipelines.train.loop import TrainJob, build_objective, local_context, train_stage  # noqa: E402
from pipelines.train.objectives import encoder_needs  # noqa: E402
from pipelines.train.probes import ProbeScores, probe  # noqa: E402
from pipelines.train.t2i import T2IConfig, train_t2i  # noqa: E402
from storage.location import StorageLocation  # noqa: E402

def judge_checkpoints(location: StorageLocation, config: TrainConfig, prompts: list[str], guidance: float,
                      steps: int, seeds: int) -> list[tuple[int, ShapesScores]]:
    """(step, scores) of every kept base checkpoint: the base alone (no later stage) with that
    checkpoint's weights, as ``t2v evaluate --base-checkpoint all`` loads them, samples the prompts
    once per seed 1..``seeds``, judged together (one seed's 16 clips read 56 to 81 % colour on
    the same checkpoint)."""
    cascade = Cascade.from_pretrained(assemble_cascade(location, config, ["base"]), device="cpu")
    paths, base = RunPaths(location, config.name, "base"), config.base
    ema = config.export_ema and config.optim.ema_decay is not None
    results = []
    for state in kept_checkpoints(paths):
        load_trained_weights(paths, state, cascade.base, ema)
        clips = [clip for seed in range(1, seeds + 1) for clip in cascade(
            prompts, num_frames=base.num_frames, height=base.height, width=base.width,
            num_inference_steps=steps, guidance_scale=guidance, seed=seed).frames]
        results.append((state.step, judge(prompts * seeds, clips)))
    return results


def probe_last_checkpoint(location: StorageLocation, config: TrainConfig) -> tuple[ProbeScores, ProbeScores]:
    """The loss probes (``pipelines.train.probes``) of the last kept checkpoint on 32 held-out
    shots: by colour word, then by direction word (the coherence probe comes with both)."""
    encoders = FrozenEncoders.load(config.pretrained, torch.device("cpu"), **encoder_needs("base", config))
    objective = build_objective("base", config, encoders)
    paths = RunPaths(location, config.name, "base")
    ema = config.export_ema and config.optim.ema_decay is not None
    load_trained_weights(paths, kept_checkpoints(paths)[-1], objective.unet, ema)
    data = config.data.model_copy(update={"batch_size": 32})
    held_out = next(shapes_batches(config.model_copy(update={"data": data}), 999))
    return probe(objective, encoders, held_out, list(COLOURS)), probe(objective, encoders, held_out, list(DIRECTIONS))


def judge_interpolation(location: StorageLocation, config: TrainConfig, guidance: float, steps: int,
                        shots_per_direction: int = 4) -> dict[str, float]:
    """The trained interpolation stage between the VAE latents of held-out shots' keyframes (as
    many as the base makes, at the demo's lowest fps: the most motion per frame), as the cascade
    runs it. Direction: the judge's reading of the in-between frames alone, of the whole output,
    and of the keyframes, against the shot's. Centroid error: the in-between frames' distance
    to the shot's own centroids (share of the frame side), beside repeating the last keyframe."""
    cascade = Cascade.from_pretrained(assemble_cascade(location, config, ["base", "interpolation"]), device="cpu")
    factor, world, base = config.interpolation.factor, ShapesWorldConfig(), config.base
    num_frames = (base.num_frames - 1) * factor + 1
    rng = np.random.default_rng(5)
    scenes = [random_scene(rng, moving=True, direction=d) for d in DIRECTIONS for _ in range(shots_per_direction)]
    truth = []
    for scene in scenes:
        indices, _ = clip_frame_indices(world.frames_per_shot, world.fps, num_frames, factor * config.data.fps_min,
                                        rng.random())
        truth.append(scene.frames(base.width, base.height, world.frames_per_shot)[indices])
    truth = np.stack(truth)
    known = interpolation_mask(base.num_frames, factor).numpy()
    with torch.no_grad():
        frames = rearrange(pixels_to_video(truth[:, known], cascade.device), "b c f h w -> (b f) c h w")
        latents = cascade.vae.encode(frames).latent_dist.mode() * cascade.vae.config.scaling_factor
        latents = rearrange(latents, "(b f) c h w -> b c f h w", b=len(scenes))
        text = cascade.encode_prompt([scene.caption for scene in scenes], "")
        run = SamplingRun(make_generator(1), steps, guidance, 0.0, factor * config.data.fps_min)
        filled = to_uint8_frames(decode_video(cascade.vae, cascade.interpolate(latents, text, factor, run)))
    directions = {"in-between": [], "whole": [], "keyframes": []}
    errors, repeat_errors, found = [], [], []
    last_known = np.maximum.accumulate(np.where(known, np.arange(num_frames), 0))
    for scene, clip, shot in zip(scenes, filled, truth):
        for part, frames in (("in-between", clip[~known]), ("whole", clip), ("keyframes", shot[known])):
            directions[part].append(read_clip(frames).direction == scene.direction)
        made, real = read_clip(clip).frames, read_clip(shot).frames
        for i in np.flatnonzero(~known):
            found.append(made[i].centroid is not None)
            if found[-1]:
                errors.append(math.dist(made[i].centroid, real[i].centroid))
                repeat_errors.append(math.dist(real[last_known[i]].centroid, real[i].centroid))
    return {**{f"direction {part}": float(np.mean(hits)) for part, hits in directions.items()},
            "in-between frames with a shape": float(np.mean(found)),
            "centroid error": float(np.mean(errors)) if errors else math.nan,
            "repeated keyframe's error": float(np.mean(repeat_errors)) if repeat_errors else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["make_a_video", "videoldm", "lavie"])
    parser.add_argument("--steps", type=int, default=DemoSchedule().base_steps, help="base steps")
    parser.add_argument("--interpolation-steps", type=int, default=DemoSchedule().interpolation_steps)
    parser.add_argument("--evaluations", type=int, default=DemoSchedule().evaluations, help="judged checkpoints")
    parser.add_argument("--batch-size", type=int, default=2 * DemoSchedule().batch_size,
                        help="clips per step (the demo: 2 workers x its batch size)")
    parser.add_argument("--pretrained", help="text-to-image folder; default: train one with T2IConfig()")
    parser.add_argument("--ablate", choices=["text", "temporal"])
    parser.add_argument("--freeze", choices=list(get_args(FreezePolicy)), help="base freeze policy; default: the demo's")
    parser.add_argument("--text-cross-attention", action="store_true",
                        help="videoldm's temporal attention also reads the caption (the other variants have no such layer)")
    parser.add_argument("--no-interpolation", action="store_true", help="skip the interpolation stage's check")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=4,
                        help="samples of each of the 16 prompts per checkpoint (4: 64 clips, a standard error of <= 6 points)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.ablate == "temporal" and args.freeze:
        parser.error("--ablate temporal sets the freeze policy itself (all but the temporal layers train)")
    torch.set_num_threads(1)  # no oversubscription when two benchmarks share the cores

    work = Path(tempfile.mkdtemp(prefix="t2v-learning-"))
    pretrained = args.pretrained
    if pretrained is None:
        rng = np.random.default_rng(0)
        scenes = [random_scene(rng, moving=False) for _ in range(256)]
        started = time.process_time()
        pretrained = str(train_t2i(np.stack([s.render(32, 32) for s in scenes]), [s.caption for s in scenes],
                                   work / "shapes-t2i", T2IConfig()))
        print(f"text-to-image folder: {time.process_time() - started:.0f} CPU s", flush=True)
    prompts = shape_prompts()
    schedule = DemoSchedule(base_steps=args.steps, interpolation_steps=args.interpolation_steps,
                            evaluations=args.evaluations, batch_size=args.batch_size)
    settings = load_settings(overrides={"storage": {"root": str(work / "root")}}, environ={})
    if args.ablate == "temporal":  # never trained: the temporal layers stay the identity they start as
        build = loop.build_objective

        def frozen_temporal(stage, config, encoders):
            objective = build(stage, config, encoders)
            for _, parameter in temporal_parameters(objective.unet):
                parameter.requires_grad_(False)
            return objective

        loop.build_objective = frozen_temporal

    table: list[tuple[str, int, float, ShapesScores]] = []
    probes: list[tuple[str, ProbeScores, ProbeScores]] = []
    for variant in args.variants:
        config = demo_train_settings(settings, pretrained, work / "shapes", schedule).train
        config = config.model_copy(update={"name": variant, "num_workers": 1, "base": config.base.model_copy(
            update={"variant": variant, **({"head_dim": 64} if variant == "lavie" else {}),
                    **({"text_cross_attention": True} if variant == "videoldm" and args.text_cross_attention else {})})})
        freeze = "all" if args.ablate == "temporal" else args.freeze
        if freeze:
            config = config.model_copy(update={"base": config.base.model_copy(update={"freeze": freeze})})
        config = TrainConfig.model_validate(config.model_dump())
        location = StorageLocation(str(work / "root"))
        started = time.process_time()
        train_stage(TrainJob("base", config, location), local_context(shapes_batches(config, 0, args.ablate != "text")))
        seconds = time.process_time() - started
        for step, scores in judge_checkpoints(location, config, prompts, args.guidance, args.sampling_steps, args.seeds):
            table.append((variant, step, seconds, scores))
            print(f"{variant:>12} step {step:4d}  colour {scores.colour_accuracy:.0%}  shape {scores.shape_accuracy:.0%}  "
                  f"direction {scores.direction_accuracy:.0%}  consistency {scores.consistency:.2f}", flush=True)
        colour, direction = probe_last_checkpoint(location, config)
        probes.append((variant, colour, direction))
        if variant == args.variants[0] and not args.no_interpolation:  # its own variant, whatever the base's
            batches = shapes_batches(config, 1, args.ablate != "text", stage="interpolation")
            train_stage(TrainJob("interpolation", config, location), local_context(batches))
            interpolation = judge_interpolation(location, config, args.guidance, args.sampling_steps)

    extra = ", videoldm's temporal attention reads the caption" if args.text_cross_attention else ""
    print(f"\nbase stage, {args.batch_size} clips/step, ablation: {args.ablate or 'none'}{extra}; "
          f"{len(prompts) * args.seeds} clips judged per checkpoint ({args.seeds} seeds x {len(prompts)} prompts); "
          "chance 25 % / 33 % / 25 %; targets colour >= 90 %, direction >= 80 %")
    print("| variant | step | training CPU s | colour | shape | direction | consistency |\n|---|---|---|---|---|---|---|")
    for variant, step, seconds, s in table:
        print(f"| {variant} | {step} | {seconds:.0f} | {s.colour_accuracy:.0%} | {s.shape_accuracy:.0%} | "
              f"{s.direction_accuracy:.0%} | {s.consistency:.2f} |")
    print("\nloss probes of the last checkpoint on 32 held-out shots (chance 25 % / 25 % / 50 %, gap 0)")
    print("| variant | colour by loss | direction by loss | coherence | coherence gap |\n|---|---|---|---|---|")
    for variant, colour, direction in probes:
        print(f"| {variant} | {colour.caption_accuracy:.0%} | {direction.caption_accuracy:.0%} | "
              f"{colour.coherence_accuracy:.0%} | {colour.coherence_gap:.2f} |")
    if not args.no_interpolation:
        print(f"\ninterpolation stage ({config.interpolation.steps} steps, x{config.interpolation.factor}) between the "
              "keyframes of 16 held-out shots; centroid errors are shares of the frame side")
        print("| " + " | ".join(interpolation) + " |\n|" + "---|" * len(interpolation))
        print("| " + " | ".join(f"{v:.3f}" if "error" in k else f"{v:.0%}" for k, v in interpolation.items()) + " |")


if __name__ == "__main__":
    main()
