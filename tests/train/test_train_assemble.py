"""A base-only run: its export holds what training changed, ``t2v cascade assemble`` builds a
cascade of it, and generation (which assembles on its own when needed) runs in the dtype asked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.cli import app
from modeling.adapters import ADAPTER_FILE
from pipelines.generate import ClipGenerator, GenerateConfig, GenerationConfig, cascade_source
from pipelines.train.export import PART_LOADERS
from pipelines.train.loop import TrainJob, local_context, train_stage
from pipelines.train.tiny import tiny_train_config
from tests.train.test_train_stages import stage_batches


def folder_bytes(folder) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def base_run(train_data):
    config = tiny_train_config(train_data.pretrained, name="base-only", base={"steps": 1})
    job = TrainJob("base", config, train_data.location, train_data.clips_version)
    return train_stage(job, local_context(stage_batches(job)))


def test_export_holds_only_what_training_changed(base_run, train_data):
    model = PART_LOADERS["base"].from_pretrained(base_run["export"])
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    export = train_data.root / "runs" / "base-only" / "base" / "export"
    assert (export / ADAPTER_FILE).is_file() and folder_bytes(export) < 0.5 * full_bytes


def test_assemble_and_generate_from_a_base_only_run(base_run, train_data, tmp_path):
    runner = CliRunner()
    root = str(train_data.root)
    missing = runner.invoke(app, ["cascade", "assemble", "--run", "never-trained", "--root", root])
    assert missing.exit_code == 2 and "no finished base stage" in missing.output
    moved = shutil.copytree(train_data.pretrained, tmp_path / "moved-sd")
    assembled = runner.invoke(app, ["cascade", "assemble", "--run", "base-only", "--root", root, "--pretrained", str(moved)])
    assert assembled.exit_code == 0, assembled.output
    cascade = train_data.root / "runs" / "base-only" / "cascade"
    assert json.loads((cascade / "base" / ADAPTER_FILE).read_text())["pretrained"] == str(moved.resolve())
    manifest = json.loads((cascade / "cascade.json").read_text())
    assert "interpolation" not in manifest["parts"] and manifest["config"]["interpolation_factor"] == 1

    shutil.rmtree(cascade)  # generate --run assembles the cascade it lacks
    path, location = cascade_source("base-only", None, train_data.location)
    assert (cascade / "cascade.json").is_file()
    generation = GenerationConfig(num_frames=4, height=32, width=32, num_inference_steps=2)
    generator = ClipGenerator(path, location, generation, dtype="bf16")
    assert str(generator.cascade.base.dtype) == "torch.bfloat16"
    out = generator({"prompt": np.asarray(["a cat runs"]), "seed": np.asarray([0])})
    assert out["video"].shape == (1, 4, 32, 32, 3) and out["fps"][0] > 0
    with pytest.raises(ValidationError, match="fp16 needs a GPU"):
        GenerateConfig(run="base-only", prompts=["a cat"], dtype="fp16")
