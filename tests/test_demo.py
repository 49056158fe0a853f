"""The main job in a reduced size (4 base steps with 2 checkpoints, 2 steps per later stage, 2 shapes
prompts), in-process on the session's Ray and Prefect: every phase's output is checked in the
catalog, and a phase re-run from the CLI with the configs the demo wrote gives the same videos."""

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.curate import uncurated_samples_version
from flows.demo import DEMO_LONG_PROMPT, DemoSchedule, demo_flow
from pipelines.settings import load_settings
from pipelines.shapes.samples import ShapesWorldConfig
from pipelines.shapes.world import label_templates, shape_prompts
from pipelines.train.job import run_stages
from pipelines.train.t2i import T2IConfig
from storage.catalog import Catalog

pytestmark = pytest.mark.usefixtures("ray_local", "prefect_server")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "data"
    settings = load_settings(overrides={"storage": {"root": str(root)},
                                        "curate": {"transcode": {"size": [128, 96]}}}, environ={})
    shapes, t2i = ShapesWorldConfig(num_images=4, num_videos=4), T2IConfig(vae_steps=2, unet_steps=2, batch_size=4)
    schedule = DemoSchedule(base_steps=4, stage_steps=2, interpolation_steps=2, evaluations=2, batch_size=1, sampling_steps=2)
    summary = demo_flow(settings=settings, schedule=schedule, prompts=2, shapes=shapes, t2i=t2i)
    return summary, Catalog(settings.location()), root


def test_data_phases_ingest_and_curate_the_sample_media(demo):
    summary, catalog, _ = demo
    samples = catalog.read("samples").to_pylist()
    assert summary.ingested.quarantined == 0 and len(samples) == 10 + 8  # sample media + shapes world
    assert {r["kind"] for r in samples} == {"video", "image"}
    clips = catalog.read("clips").to_pylist()
    assert len(clips) == summary.curated.clips.row_counts["total"] >= 5
    assert any(c["pseudo"] for c in clips) and any(not c["pseudo"] for c in clips)
    # shapes videos carry labels; the captioner writes their captions from the label templates
    assert {"green triangle moving up", "yellow square moving right"} <= {r["label"] for r in samples}
    assert {c["caption"] for c in clips} & set(label_templates().values())
    funnel = {r["stage"]: r for r in catalog.read("funnel").to_pylist()}
    assert list(funnel)[0] == "cut"
    # model filters without weights are reported as skipped, with the setting that would enable them
    assert "watermark.weights_path" in funnel["watermark"]["skipped_reason"]
    assert "aesthetic.weights_path" in funnel["aesthetic"]["skipped_reason"]


def test_train_phase_trains_every_stage_on_two_workers(demo):
    summary, catalog, root = demo
    runs = {r["stage"]: r for r in catalog.read("runs").to_pylist() if r["name"] == "default"}
    # no prior: the base is not conditioned on the untrained image encoder's embeddings
    assert set(runs) == {"base", "interpolation", "superres", "vae_decoder"}
    assert all(r["status"] == "finished" and r["num_workers"] == 2 for r in runs.values())
    assert {stage: r["step"] for stage, r in runs.items()} == {"base": 4, **{s: 2 for s in set(runs) - {"base"}}}
    assert summary.trained.cascade and (root / "runs" / "default" / "cascade" / "cascade.json").is_file()
    # the stages inflate the text-to-image model the demo trained on the shapes stills, and train on
    # the clips of the shapes world's files only: a selection on the clips table by source
    written = load_settings(config_file=root / "demo" / "t2v.yaml", environ={})
    assert written.train.pretrained == str(root / "models" / "shapes-t2i")
    assert written.train.data.select.sources == [str(root / "demo" / "shapes")]
    # the folder's v-prediction is written out, so a re-run from t2v.yaml (every field set) keeps it
    assert {written.train.stage(s).prediction_type for s in ("base", "interpolation", "superres")} == {"v_prediction"}
    # the same command again starts no workers: every stage is finished, and its row stays as it was
    again = run_stages(written, sorted(runs))
    assert [result.step for result in again] == [runs[stage]["step"] for stage in sorted(runs)]
    rows = {r["stage"]: r["updated_at"] for r in catalog.read("runs").to_pylist() if r["name"] == "default"}
    assert rows == {stage: r["updated_at"] for stage, r in runs.items()}


def test_generate_phase_makes_short_clips_and_one_long_vidrd_video(demo):
    summary, catalog, _ = demo
    rows = catalog.read("generations").to_pylist()
    assert len(rows) == 3 and rows == summary.generated.rows
    long = [r for r in rows if r["long_video"]]
    assert [r["prompt"] for r in long] == [DEMO_LONG_PROMPT]
    short = [r for r in rows if not r["long_video"]]
    assert sorted(r["prompt"] for r in short) == sorted(shape_prompts()[:2])
    # three base clips of 8 frames sharing 4 -> 16 base frames, against 8 for a short clip
    assert long[0]["num_frames"] > max(r["num_frames"] for r in short)


def test_evaluate_phase_writes_metrics_and_a_report_with_the_samples(demo):
    summary, catalog, root = demo
    rows = catalog.read("eval_results").to_pylist()
    judged = ("colour_accuracy", "shape_accuracy", "direction_accuracy", "consistency")
    assert {r["metric"] for r in rows} == {"fvd", "is", "clipsim", *judged}
    # every metric at both kept base checkpoints: the report's curves have two points
    assert {(r["metric"], r["step"]) for r in rows} == {(m, step) for m in {r["metric"] for r in rows} for step in (2, 4)}
    assert all(0 <= r["value"] <= 1 for r in rows if r["metric"] in judged)
    # the judged clips stop after interpolation, at the base's size: the curves read what the base learnt
    spec = yaml.safe_load((root / "demo" / "evaluate.yaml").read_text())["generation"]
    base = load_settings(config_file=root / "demo" / "t2v.yaml", environ={}).train.base
    assert (spec["last_stage"], spec["height"], spec["width"]) == ("interpolation", base.height, base.width)
    page = open(summary.report).read()
    assert "colour_accuracy" in page and "direction_accuracy" in page
    assert "long video (VidRD)" in page and DEMO_LONG_PROMPT in page


def test_a_phase_reruns_from_the_cli_with_the_demo_configs(demo):
    summary, catalog, root = demo
    command = summary.commands["generate"].split()
    assert command[:2] == ["t2v", "generate"]
    out = root.parent / "samples"
    result = CliRunner().invoke(app, [*command[1:], "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = shape_prompts()[0].replace(" ", "-")
    assert sorted(path.name for path in out.iterdir())[:2] == [f"00-{first}.gif", f"00-{first}.mp4"]
    assert len(list(out.glob("*.mp4"))) == len(list(out.glob("*.gif"))) == 3
    rows = catalog.read("generations").to_pylist()
    # same prompts, seeds and settings -> the same ids and the very same mp4 blobs
    assert sorted((r["id"], r["blob"]) for r in rows) == sorted((r["id"], r["blob"]) for r in summary.generated.rows)
    assert set(summary.commands) == {"ingest", "curate", "train", "generate", "evaluate"}


def test_generate_command_fails_in_one_line_before_loading_anything(demo):
    _, _, root = demo
    no_prompt = CliRunner().invoke(app, ["generate", "--run", "default", "--root", str(root)])
    assert no_prompt.exit_code == 2 and "give at least one prompt or long prompt" in no_prompt.output
    untrained = CliRunner().invoke(app, ["generate", "--run", "nobody", "-p", "a cat", "--root", str(root)])
    assert untrained.exit_code == 2 and "run 'nobody' has no exported cascade" in untrained.output
    overlap = CliRunner().invoke(app, ["generate", "--run", "default", "--long-prompt", "a cat", "--frames", "4",
                                       "--root", str(root)])
    assert overlap.exit_code == 2 and "long_video.overlap (4) must be below generation.num_frames (4)" in overlap.output


def test_a_new_samples_version_is_what_triggers_curation(demo):
    _, catalog, _ = demo
    assert uncurated_samples_version(catalog) is None  # the demo curated the latest samples version
    sample = catalog.read("samples").to_pylist()[0]
    version = catalog.write("samples", [{**sample, "caption": "a new caption"}], run_id="test").version
    assert uncurated_samples_version(catalog) == version
