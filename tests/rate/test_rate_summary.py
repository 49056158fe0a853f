"""Win / tie / loss with Wilson intervals checked against a hand computation, rater agreement, the report's
Human preference section, the ratings-summary flow, and the clear errors of `t2v rate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipelines.evaluate.report import write_report
from pipelines.rate.pairs import RatingError, build_pairs, missing_prompts
from pipelines.rate.summary import human_preference, summarise, wilson
from pipelines.settings import SettingsError, load_settings
from storage.catalog import Catalog
from storage.location import StorageLocation

# (rater, pair, winner on quality, winner on text); A = alpha, B = beta, "=" = same.
VERDICTS = [
    ("ann", "p0", "A", "A"), ("ann", "p1", "A", "="), ("ann", "p2", "A", "B"), ("ann", "p3", "A", "B"),
    ("ann", "p4", "A", "B"), ("ann", "p5", "=", "A"), ("ann", "p6", "=", "B"), ("ann", "p7", "B", "B"),
    ("bob", "p0", "A", "B"), ("bob", "p1", "A", "="),
]


def _ratings() -> list[dict]:
    """The verdicts as a rater gives them: on alternating sides, bob's second with the runs named B A."""
    rows = []
    for number, (rater, pair, quality, text) in enumerate(VERDICTS):
        run_a, run_b = ("beta", "alpha") if (rater, pair) == ("bob", "p1") else ("alpha", "beta")
        left = ("alpha", "beta")[number % 2]

        def side(verdict: str) -> str:
            if verdict == "=":
                return "same"
            return "left" if {"A": "alpha", "B": "beta"}[verdict] == left else "right"

        rows.append({"id": f"{rater}-{pair}", "pair_id": pair, "rater": rater, "run_a": run_a, "run_b": run_b,
                     "generation_a": f"{run_a}-{pair}", "generation_b": f"{run_b}-{pair}", "prompt": pair,
                     "left_run": left, "quality": side(quality), "text": side(text),
                     "shown_at": float(number), "answered_at": number + 0.5})
    rows.append({**rows[0], "id": "other", "run_b": "gamma", "generation_b": "gamma-p0", "pair_id": "q0",
                 "left_run": "gamma"})  # another pair of runs: not in alpha vs beta
    return rows


def test_wilson_interval_matches_a_hand_computation():
    # 7 of 10, z = 1.959964: centre = (0.7 + z²/20) / (1 + z²/10) = 0.892073 / 1.384146 = 0.644494;
    # half = z * sqrt(0.7 * 0.3 / 10 + z²/400) / 1.384146 = 0.342876 / 1.384146 = 0.247716.
    assert wilson(7, 10) == pytest.approx((0.396778, 0.892209), abs=1e-6)
    assert wilson(0, 4)[0] == 0.0 and wilson(4, 4)[1] == 1.0 and wilson(0, 0) is None


def test_win_tie_loss_and_agreement_from_the_sides_raters_picked():
    summary = summarise(_ratings(), "alpha", "beta")
    assert (summary["n"], summary["raters"], summary["pairs"]) == (10, 2, 8)
    quality, text = summary["questions"]["quality"], summary["questions"]["text"]
    assert [quality[k]["count"] for k in ("win", "tie", "loss")] == [7, 2, 1]
    assert [text[k]["count"] for k in ("win", "tie", "loss")] == [2, 2, 6]
    # scipy.stats.binomtest(k, 10).proportion_ci(method="wilson") for k = 7, 2, 1, 6
    assert (quality["win"]["low"], quality["win"]["high"]) == pytest.approx((0.396778, 0.892209), abs=1e-6)
    assert (quality["tie"]["low"], quality["tie"]["high"]) == pytest.approx((0.056682, 0.509838), abs=1e-6)
    assert (quality["loss"]["low"], quality["loss"]["high"]) == pytest.approx((0.017876, 0.404150), abs=1e-6)
    assert (text["loss"]["low"], text["loss"]["high"]) == pytest.approx((0.312674, 0.831820), abs=1e-6)
    # ann and bob both rated p0 and p1: they agree twice on quality, once of twice on the text
    assert (quality["agreement"]["pairs"], quality["agreement"]["comparisons"], quality["agreement"]["count"]) == (2, 2, 2)
    assert (text["agreement"]["comparisons"], text["agreement"]["count"]) == (2, 1)
    assert (text["agreement"]["low"], text["agreement"]["high"]) == pytest.approx((0.094531, 0.905469), abs=1e-6)
    reverse = summarise(_ratings(), "beta", "alpha")["questions"]["quality"]
    assert [reverse[k]["count"] for k in ("win", "tie", "loss")] == [1, 2, 7]


def _eval_row(run: str) -> dict:
    return {"id": f"{run}-fvd", "run": run, "checkpoint": f"runs/{run}/cascade", "step": 10, "prompt_set": "ucf101",
            "protocol": "fvd-proto", "metric": "fvd", "value": 500.0, "std": None, "num_samples": 8, "num_real": 8,
            "clips_version": 1, "random_init": True, "prompts": [], "seeds": [], "clip_blobs": [], "fps": 8.0,
            "config": "{}", "eval_run_id": "test", "created_at": 1.0}


def test_the_report_gains_a_human_preference_section(tmp_path):
    location = StorageLocation(str(tmp_path / "root"))
    catalog = Catalog(location)
    catalog.write("eval_results", [_eval_row("alpha"), _eval_row("beta")], run_id="test")
    paths = write_report(location, ["alpha", "beta"])
    assert "Human preference" not in Path(paths.markdown).read_text()  # no ratings yet: no section
    catalog.write("ratings", _ratings(), run_id="test")
    paths = write_report(location, ["alpha", "beta"])
    markdown = Path(paths.markdown).read_text()
    assert "## Human preference" in markdown and "### alpha vs beta: 10 ratings by 2 rater(s) of 8 pairs" in markdown
    assert "| which looks better | 10 | 70% [40%, 89%] (7) | 20% [6%, 51%] (2) | 10% [2%, 40%] (1) | " \
           "100% [34%, 100%] (2) over 2 shared pairs |" in markdown
    assert "<h2>Human preference</h2>" in Path(paths.html).read_text()
    document = json.loads(Path(paths.json).read_text())
    assert document["human_preference"][0]["questions"]["text"]["loss"]["count"] == 6
    assert human_preference(catalog, ["alpha", "gamma"])[0]["n"] == 1


@pytest.mark.usefixtures("prefect_server")
def test_ratings_summary_flow_writes_the_summary(tmp_path):
    from flows.rate import ratings_summary_flow
    from flows.serve import deployments

    settings = load_settings(overrides={"storage": {"root": str(tmp_path / "root")}}, environ={})
    with pytest.raises(RatingError, match="no ratings of alpha vs beta yet"):
        ratings_summary_flow(settings=settings, runs=["alpha", "beta"])
    Catalog(settings.location()).write("ratings", _ratings(), run_id="test")
    summaries = ratings_summary_flow(settings=settings, runs=["alpha", "beta"])
    assert summaries[0]["questions"]["quality"]["win"]["count"] == 7
    written = json.loads((tmp_path / "root" / "reports" / "alpha+beta" / "ratings.json").read_text())
    assert written["human_preference"] == summaries

    scheduled = load_settings(overrides={"storage": {"root": str(tmp_path / "root")}, "schedules": {
        "ratings": {"cron": "0 6 * * *", "runs": ["alpha", "beta"]}, "new_samples_seconds": 0}}, environ={})
    [deployment] = deployments(scheduled)
    assert deployment.name == "t2v-ratings-summary" and deployment.parameters["runs"] == ["alpha", "beta"]
    assert deployment.schedules[0].schedule.cron == "0 6 * * *"


def test_settings_keep_the_page_off_the_network_without_a_token():
    with pytest.raises(SettingsError, match="rate: host '0.0.0.0' is reachable from the network: set rate.token"):
        load_settings(overrides={"rate": {"host": "0.0.0.0"}}, environ={})
    assert load_settings(overrides={"rate": {"host": "0.0.0.0", "token": "a-long-secret"}}, environ={}).rate.port == 8765
    with pytest.raises(SettingsError, match="schedules.ratings.runs: List should have at least 2 items"):
        load_settings(overrides={"schedules": {"ratings": {"cron": "0 6 * * *", "runs": ["alpha"]}}}, environ={})


def _generation(run: str, prompt: str, created_at: float, long_video: bool = False) -> dict:
    return {"id": f"{run}-{prompt}-{created_at}", "run": run, "checkpoint": "c", "prompt": prompt, "seed": 0,
            "long_video": long_video, "num_frames": 4, "width": 8, "height": 8, "fps": 4.0, "blob": f"blob-{created_at}",
            "config": "{}", "generate_run_id": "test", "created_at": created_at}


def test_pairs_take_each_runs_newest_clip_and_errors_are_clear(tmp_path):
    location = StorageLocation(str(tmp_path / "root"))
    catalog = Catalog(location)
    catalog.write("generations", [
        _generation("alpha", "cat", 1.0), _generation("alpha", "cat", 2.0), _generation("beta", "cat", 1.5),
        _generation("alpha", "dog", 1.0), _generation("beta", "dog", 1.0, long_video=True),
    ], run_id="test")
    [pair] = build_pairs(catalog, ("alpha", "beta"))  # a long and a short clip of "dog" are no pair
    assert (pair.prompt, pair.generation_a, pair.generation_b) == ("cat", "alpha-cat-2.0", "beta-cat-1.5")
    assert missing_prompts(catalog, "beta", ["cat", "dog", "cow"]) == ["dog", "cow"]
    with pytest.raises(RatingError, match="two different runs"):
        build_pairs(catalog, ("alpha", "alpha"))
    result = CliRunner().invoke(app, ["rate", "--runs", "alpha", "gamma", "--root", str(tmp_path / "root")])
    assert result.exit_code == 2 and "no generations of any prompt in common" in result.output
