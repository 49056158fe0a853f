"""The README's quick start must stay true: CI runs exactly its test command (after Debian packages)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    # before the test command, only the Debian packages the tests need (chromium for the browser tests)
    assert ci[-1] == "pip install -e '.[dev]' && python -m pytest -q"
    assert all(line.strip().startswith(("if ", "apt-get ", "fi")) for line in ci[:-1]), ci
    assert ci[-1] in commands
    assert "pip install -e '.[demo]' && t2v demo" in commands
