"""One validated settings model for every job.

Precedence, highest first: CLI overrides, ``T2V_*`` environment variables
(nested keys with ``__``: ``T2V_STORAGE__ROOT``, ``T2V_RAY__ADDRESS``; lists and mappings as
JSON), the YAML file (``--config FILE`` or ``./t2v.yaml`` when present), defaults. pydantic-settings
merges them. YAML and CLI keys are checked strictly; a ``T2V_*`` variable whose first part names no
section (``T2V_VENV``, set by other tools) is not a setting and is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextvars import ContextVar
from pathlib import Path
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, InitSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from pipelines.curate.config import CurateConfig
from pipelines.rate.config import RateSettings
from pipelines.train.config import TrainConfig
from storage.errors import T2VError
from storage.location import StorageLocation

DEFAULT_CONFIG_FILE = "t2v.yaml"
SUPPORTED_SCHEMES = ("file", "s3")


class SettingsError(T2VError, ValueError):
    """A setting has a wrong value; the message is one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    root: str = Field(
        "./t2v-data", description="Storage root: a local folder, file://... or s3://bucket/prefix", validate_default=True
    )
    s3_endpoint: str | None = Field(
        None, description="S3-compatible endpoint URL (MinIO, moto, ...); AWS when empty"
    )
    s3_region: str = "us-east-1"

    @field_validator("root")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if "://" in value:
            scheme = value.split("://", 1)[0].lower()
            if scheme not in SUPPORTED_SCHEMES:
                raise ValueError(f"unsupported scheme {scheme!r}; use a local path, file:// or s3://")
            return value
        # absolute now: Ray Train workers run in other working directories
        return str(Path(value).expanduser().resolve())


class RaySettings(_Section):
    address: str = Field("", description="Ray cluster address (ray://host:10001 or host:6379); empty starts local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the local Ray instance; all when empty")


class SourceSettings(_Section):
    roots: list[str] = Field(
        default_factory=list,
        description="Folders that ingest may read; empty means the folders of the sources given",
    )


class IngestSettings(_Section):
    batch_size: int = Field(8, ge=1, description="Most files per Ray task (tasks shrink towards the end of a job)")


class CronSettings(_Section):
    cron: str = Field(description="cron string, e.g. '0 3 * * *' (03:00 every day)")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=value)
        except ValidationError:
            raise ValueError(f"invalid cron string {value!r}") from None
        return value


class TrainScheduleSettings(CronSettings):
    stage: str = Field("all", description="stage the scheduled run trains")


class EvaluateScheduleSettings(CronSettings):
    spec: str = Field(description="YAML file of the evaluation (what `t2v evaluate --spec` reads)")


class RatingsScheduleSettings(CronSettings):
    runs: list[str] = Field(min_length=2, max_length=2, description="the two runs whose ratings are summarised")


class CatalogScheduleSettings(CronSettings):
    keep_days: float = Field(30.0, ge=0, description="vacuum catalog versions older than this; pinned versions stay")


class ScheduleSettings(_Section):
    """What `t2v serve` registers with Prefect; a flow without a schedule is not deployed."""

    timezone: str = Field("UTC", description="IANA time zone of the cron strings")
    curate: CronSettings | None = None
    train: TrainScheduleSettings | None = None
    evaluate: EvaluateScheduleSettings | None = None
    ratings: RatingsScheduleSettings | None = None
    catalog: CatalogScheduleSettings | None = None
    new_samples_seconds: int = Field(
        300, ge=0, description="how often to look for a new samples version and curate it; 0 turns it off"
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from None
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", env_prefix="T2V_", env_nested_delimiter="__")

    storage: StorageSettings = Field(default_factory=StorageSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    rate: RateSettings = Field(default_factory=RateSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        yaml_data, environ = _SOURCES.get()
        return (
            init_settings,
            _MappingEnvSource(settings_cls, os.environ if environ is None else environ),
            InitSettingsSource(settings_cls, yaml_data),
        )

    def location(self) -> StorageLocation:
        return StorageLocation(self.storage.root, self.storage.s3_endpoint, self.storage.s3_region)

    def config_hash(self) -> str:
        """Stable short hash of the effective settings, recorded in table manifests."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class _MappingEnvSource(EnvSettingsSource):
    """The ``T2V_*`` variables of a given environment (``load_settings(environ=...)``), not only ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


# The YAML mapping and environment of the load_settings call in progress; the defaults are what
# a plain Settings(...) reads.
_SOURCES: ContextVar[tuple[dict[str, Any], Mapping[str, str] | None]] = ContextVar("t2v_settings_sources", default=({}, None))


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return data


def format_validation_error(exc: ValidationError) -> str:
    """One line per wrong key, e.g. ``storage.root: unsupported scheme 'ftp'``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def load_settings(
    config_file: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build settings from YAML, environment and CLI overrides; raise :class:`SettingsError`."""
    data: dict[str, Any] = {}
    if config_file is not None:
        data = _read_yaml(Path(config_file))
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        data = _read_yaml(Path(DEFAULT_CONFIG_FILE))
    token = _SOURCES.set((data, environ))
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None
    finally:
        _SOURCES.reset(token)


JobConfig = TypeVar("JobConfig", bound=BaseModel)


def load_job_config(model: type[JobConfig], spec_file: str | os.PathLike | None, overrides: dict[str, Any]) -> JobConfig:
    """A job's own config (what to evaluate, what to generate): the YAML spec file, then the
    command line's options that were given (``None`` values are left out)."""
    data = _read_yaml(Path(spec_file)) if spec_file is not None else {}
    try:
        return model(**_deep_merge(data, _given(overrides)))
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None


def _given(values: dict[str, Any]) -> dict[str, Any]:
    given = {key: _given(value) if isinstance(value, dict) else value for key, value in values.items() if value is not None}
    return {key: value for key, value in given.items() if value != {}}
