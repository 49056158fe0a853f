"""The training loop in one process on real decoded clips: every stage, overfitting, resuming."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.train.checkpoint import latest_checkpoint
from pipelines.train.config import STAGES
from pipelines.train.data import SampleSpec, local_batches, training_rows, training_sources
from pipelines.train.encoders import FrozenEncoders, pixels_to_video
from pipelines.train.export import PART_LOADERS
from pipelines.train.loop import TrainJob, local_context, train_stage
from pipelines.train.objectives import build_objective, encoder_needs
from pipelines.train.preflight import check_pretrained, with_folder_defaults
from pipelines.train.tiny import tiny_train_config
from storage.catalog import Catalog


def stage_batches(job: TrainJob, start: int = 0, image_ratio: float = 0.0):
    config = job.config
    data = config.data.model_copy(update={"image_ratio": image_ratio})
    sources = training_sources(job.location, data, captioned_only=job.stage == "prior", with_images=image_ratio > 0)
    rows = training_rows(job.location, sources)
    total = job.total_steps * data.batch_size
    spec = SampleSpec.from_config(data, config.stage(job.stage), total, config.seed)
    return local_batches(job.location, rows, spec, start, total, data.batch_size)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_trains_checkpoints_and_exports(train_data, stage):
    # the base also runs with gradient checkpointing and joint image-video batches
    config = tiny_train_config(
        train_data.pretrained, name=f"stages-{stage}", gradient_checkpointing=stage == "base",
        data={"cache": ["text", "latents"]},
    )
    job = TrainJob(stage, config, train_data.location, train_data.clips_version)
    result = train_stage(job, local_context(stage_batches(job, image_ratio=0.5 if stage == "base" else 0.0)))
    assert result["step"] == 3 and result["loss"] == pytest.approx(result["loss"])  # finite
    assert latest_checkpoint(job.paths).step == 3
    exported = PART_LOADERS[stage].from_pretrained(result["export"])
    assert sum(p.numel() for p in exported.parameters()) > 0
    row = next(r for r in Catalog(train_data.location).read("runs").to_pylist() if r["id"] == f"stages-{stage}/{stage}")
    assert row["status"] == "finished" and row["step"] == 3 and row["samples_per_second"] > 0
    events = list((train_data.root / "runs" / f"stages-{stage}" / stage / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_a_stage_of_its_own_lr_starts_there_and_the_others_at_optims(train_data):
    config = tiny_train_config(train_data.pretrained, name="stage-lr", base={"steps": 1},
                               interpolation={"steps": 1, "lr": 5e-2})
    peaks = {}
    for stage in ("base", "interpolation"):
        job = TrainJob(stage, config, train_data.location, train_data.clips_version)
        train_stage(job, local_context(stage_batches(job)))
        directory = Path(job.paths.path("checkpoints", latest_checkpoint(job.paths).directory))
        peaks[stage] = torch.load(directory / "optimizer.pt", weights_only=True)["lr_schedule"]["base_lrs"]
    assert peaks == {"base": [config.optim.lr], "interpolation": [5e-2]}


def test_base_overfits_one_fixed_batch(train_data):
    config = tiny_train_config(train_data.pretrained, base={"freeze": "all"})
    encoders = FrozenEncoders.load(config.pretrained, torch.device("cpu"), **encoder_needs("base", config))
    torch.manual_seed(0)
    objective = build_objective("base", config, encoders)
    job = TrainJob("base", config, train_data.location)
    inputs = objective.prepare(next(iter(stage_batches(job))), encoders)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(15):
        torch.manual_seed(0)  # the same noise and timesteps: one fixed batch
        loss = objective(**inputs)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


class Crash(RuntimeError):
    pass


def crash_after(batches, count: int):
    for index, batch in enumerate(batches):
        if index == count:
            raise Crash("worker died")
        yield batch


def test_resumed_run_matches_an_uninterrupted_one(train_data):
    def config_for(name):
        return tiny_train_config(train_data.pretrained, name=name, base={"steps": 4})

    straight = TrainJob("base", config_for("straight"), train_data.location)
    train_stage(straight, local_context(stage_batches(straight)))

    crashed = TrainJob("base", config_for("crashed"), train_data.location)
    with pytest.raises(Crash):
        train_stage(crashed, local_context(crash_after(stage_batches(crashed), 3)))
    checkpoint = latest_checkpoint(crashed.paths)
    assert (checkpoint.step, checkpoint.samples_seen) == (2, 4)
    killed_save = train_data.root / "runs" / "crashed" / "base" / "checkpoints" / "step_00000002" / ".tmp-999-dead"
    killed_save.write_bytes(b"half a file")  # what a save killed with -9 leaves behind
    result = train_stage(crashed, local_context(stage_batches(crashed, start=checkpoint.samples_seen)))
    assert result["step"] == 4
    assert not list((train_data.root / "runs" / "crashed").rglob(".tmp-*"))

    def final(job, name):
        return load_file(f"{job.paths.path('checkpoints', 'step_00000004')}/{name}")

    for name in ("trainable.safetensors", "ema.safetensors"):
        for key, value in final(straight, name).items():
            torch.testing.assert_close(final(crashed, name)[key], value)
    optimizer = torch.load(io.BytesIO(open(f"{crashed.paths.path('checkpoints', 'step_00000004')}/optimizer.pt", "rb").read()))
    adam_steps = {float(s["step"]) for s in optimizer["optimizer"]["state"].values()}
    assert adam_steps == {4.0}  # the optimizer state came back: it counts every step, not just those after resuming
    runs = {r["id"]: r for r in Catalog(train_data.location).read("runs").to_pylist()}
    assert runs["crashed/base"]["resumed_from"] == 2 and runs["straight/base"]["resumed_from"] == 0


def test_cached_encoder_outputs_are_read_back(train_data):
    needs = dict(text=True, vae=True, image=False)
    encoders = FrozenEncoders.load(
        str(train_data.pretrained), torch.device("cpu"), **needs, cache_location=train_data.location, cache=["text", "latents"]
    )
    job = TrainJob("base", tiny_train_config(train_data.pretrained), train_data.location)
    raw = next(iter(stage_batches(job)))
    video = pixels_to_video(raw["pixels"], encoders.device)
    captions = ["a cat", "a dog"]
    keys = [f"cache-test|{key}" for key in raw["key"]]
    torch.manual_seed(0)
    text, latents = encoders.encode_text(captions), encoders.encode_video(video, keys)
    with torch.no_grad():  # a changed model would give other outputs: equal ones come from the cache
        for p in [*encoders.text_encoder.parameters(), *encoders.vae.parameters()]:
            p.mul_(0.5)
    torch.manual_seed(0)
    torch.testing.assert_close(encoders.encode_text(captions).tokens, text.tokens)
    torch.testing.assert_close(encoders.encode_video(video, keys), latents)
    torch.manual_seed(0)
    assert not torch.allclose(encoders.encode_video(video), latents)  # no keys: computed afresh
    assert len(list((train_data.root / "cache" / "text").rglob("*.safetensors"))) >= 2


def test_defaults_train_the_base_from_a_stable_diffusion_folder(train_data, sd_folders):
    # SD 1.5's layout as downloaded, at reduced width: only the run's size is set, the rest are defaults
    config = tiny_train_config(sd_folders["1.5"], name="sd15", base={"steps": 1, "width": 64, "height": 64})
    check_pretrained(config, "base")
    config = with_folder_defaults(config)
    job = TrainJob("base", config, train_data.location, train_data.clips_version)
    result = train_stage(job, local_context(stage_batches(job)))
    assert result["step"] == 1 and result["loss"] == pytest.approx(result["loss"])  # finite
    base = PART_LOADERS["base"].from_pretrained(result["export"])
    assert base.image_projector is None  # SD 1.5 has no image encoder: no image conditioning
