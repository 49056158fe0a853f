from pathlib import Path

import pytest

from pipelines.settings import SettingsError, load_settings


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.storage.root == str(tmp_path / "t2v-data"), "relative roots are made absolute"
    assert settings.ray.address == ""
    assert settings.sources.roots == []


def test_precedence_cli_over_env_over_yaml(tmp_path: Path):
    config = tmp_path / "t2v.yaml"
    config.write_text("storage:\n  root: /from/yaml\nray:\n  num_cpus: 3\n  address: yaml:6379\n")
    env = {"T2V_RAY__NUM_CPUS": "4", "T2V_STORAGE__ROOT": "/from/env"}
    settings = load_settings(config, {"storage": {"root": "s3://bucket/cli"}}, environ=env)
    assert settings.storage.root == "s3://bucket/cli"
    assert load_settings(config, environ=env).storage.root == "/from/env"
    assert settings.ray.num_cpus == 4
    assert settings.ray.address == "yaml:6379"


def test_t2v_yaml_in_cwd_is_picked_up(tmp_path, monkeypatch):
    (tmp_path / "t2v.yaml").write_text("sources:\n  roots: [/data/a, /data/b]\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).sources.roots == ["/data/a", "/data/b"]


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("storage:\n  root: ftp://host/x\n", "storage.root"),
        ("ray:\n  num_cpus: 0\n", "ray.num_cpus"),
        ("ray:\n  num_cpus: many\n", "ray.num_cpus"),
        ("storage:\n  rooot: /x\n", "storage.rooot"),
    ],
)
def test_wrong_value_names_the_key_in_one_line(tmp_path, yaml_text, key):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError) as info:
        load_settings(config, environ={})
    message = str(info.value)
    assert message.startswith(f"{key}: ")
    assert "\n" not in message


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("storage: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(broken, environ={})


def test_config_hash_is_stable_and_sensitive():
    a = load_settings(overrides={"storage": {"root": "/a"}}, environ={})
    b = load_settings(overrides={"storage": {"root": "/a"}}, environ={})
    c = load_settings(overrides={"storage": {"root": "/b"}}, environ={})
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_t2v_variables_that_name_no_setting_are_ignored_but_yaml_keys_stay_strict(tmp_path):
    env = {"T2V_VENV": "/opt/venv", "T2V_RAY__NUM_CPUS": "2", "T2V_SOURCES__ROOTS": '["/data/a"]'}
    settings = load_settings(environ=env)
    assert settings.ray.num_cpus == 2 and settings.sources.roots == ["/data/a"]
    with pytest.raises(SettingsError, match=r"^ray.num_cpus: "):
        load_settings(environ={"T2V_RAY__NUM_CPUS": "0"})
    config = tmp_path / "t2v.yaml"
    config.write_text("venv: /opt/venv\n")
    with pytest.raises(SettingsError, match="^venv: unknown key$"):
        load_settings(config, environ=env)
    with pytest.raises(SettingsError, match="^venv: unknown key$"):
        load_settings(overrides={"venv": "/opt/venv"}, environ={})
