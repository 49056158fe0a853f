"""Reports from eval_results rows written directly: paper references, plots over checkpoints, labels."""

import json
import re
from pathlib import Path

import pytest

from pipelines.evaluate.report import RANDOM_INIT_LABEL, latest_clips, write_report
from storage.catalog import Catalog
from storage.location import StorageLocation
from storage.errors import T2VError


def _row(run: str, step: int, metric: str, value: float, random_init: bool = False) -> dict:
    return {
        "id": f"{run}-{step}-{metric}", "run": run, "checkpoint": f"runs/{run}/step-{step}", "step": step,
        "prompt_set": "ucf101", "protocol": f"{metric}-proto", "metric": metric, "value": value,
        "std": None, "num_samples": 2048, "num_real": 2048, "clips_version": 1, "random_init": random_init,
        "prompts": [], "seeds": [], "clip_blobs": [], "fps": 8.0, "config": "{}", "eval_run_id": "test",
        "created_at": float(step),
    }


def test_two_runs_over_checkpoints_with_paper_numbers(tmp_path):
    location = StorageLocation(str(tmp_path / "root"))
    rows = [_row("a", 100, "fvd", 900.0), _row("a", 200, "fvd", 700.0), _row("b", 100, "fvd", 800.0),
            _row("b", 100, "is", 12.5, random_init=True)]
    Catalog(location).write("eval_results", rows, run_id="test")
    paths = write_report(location, ["a", "b"])

    page = Path(paths.html).read_text()
    plots = re.findall(r"<svg.*?</svg>", page)
    assert len(plots) == 2  # fvd and is over steps
    fvd_lines = re.findall(r'points="([^"]+)"', plots[0])
    assert [len(points.split()) for points in fvd_lines] == [2, 1]  # run a: 2 checkpoints, run b: 1
    assert "Make-A-Video 367.23" in page and "VidRD 39.37" in page
    assert page.count('<tr class="random-init">') == 1 and page.count('<tr class="weights">') == 3

    document = json.loads(Path(paths.json).read_text())
    assert [(m["run"], m["step"], m["metric"]) for m in document["metrics"]] == [
        ("a", 100, "fvd"), ("a", 200, "fvd"), ("b", 100, "fvd"), ("b", 100, "is")]
    assert document["metrics"][3]["network"] == RANDOM_INIT_LABEL
    assert "| b | 100 | ucf101 | is | is-proto | 12.5 | 2048 | " + RANDOM_INIT_LABEL in Path(paths.markdown).read_text()


def test_unknown_run_is_a_clear_error(tmp_path):
    location = StorageLocation(str(tmp_path / "root"))
    Catalog(location).write("eval_results", [_row("a", 1, "fvd", 1.0)], run_id="test")
    with pytest.raises(T2VError, match="no evaluation results for run\\(s\\): z"):
        write_report(location, ["a", "z"])


def test_clips_of_many_checkpoints_are_spread_over_training():
    rows = [{**_row("a", step, "fvd", 1.0), "checkpoint": f"c{step}", "prompts": ["p", "q"], "seeds": [0, 1],
             "clip_blobs": [f"p{step}", f"q{step}"]} for step in range(10, 70, 10)]
    clips = latest_clips(rows, max_prompts=1)
    assert [(c["prompt"], c["step"]) for c in clips] == [("p", 10), ("p", 30), ("p", 40), ("p", 60)]
