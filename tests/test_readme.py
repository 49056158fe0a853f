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


def test_the_config_reference_names_every_training_key():
    from pydantic import BaseModel

    from pipelines.train.config import TrainConfig

    text = (ROOT / "README.md").read_text()
    reference = text[text.index("\ntrain:\n", text.index("## Configuration")):]
    reference = reference[: reference.index("\nschedules:")]

    def keys(model: type[BaseModel], prefix: str) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            found.append(f"{prefix}{name}")
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found += keys(field.annotation, f"{prefix}{name}.")
        return found

    missing = [key for key in keys(TrainConfig, "train.") if not re.search(rf"\b{key.rsplit('.', 1)[-1]}:", reference)]
    assert not missing, f"README's train: reference lacks {missing}"
