"""Settings: one frozen object, built by the caller (app factory or CLI), never at import.

Sources, highest first: explicit arguments, ``BROKER_*`` environment variables,
an optional TOML file named by ``BROKER_CONFIG_FILE``, then defaults. Unknown
settings are errors, so a misspelt variable in the file is caught at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

import agreements
from broker.errors import ConfigError

DEFAULT_VAR_DIR = Path("var")


def default_agreements_dir() -> Path:
    """The example agreements shipped with the package."""
    return Path(agreements.__file__).parent / "examples"


class Settings(BaseSettings):
    """Everything the broker can be configured with; see README "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="BROKER_", extra="forbid", frozen=True, validate_default=True
    )

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_VAR_DIR / 'accord.db'}",
        description="SQLAlchemy URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )
    key_provider: Literal["file", "env"] = Field(
        default="file",
        description="Where the master key comes from: the local key file, or BROKER_MASTER_KEY",
    )
    key_file: Path = Field(
        default=DEFAULT_VAR_DIR / "broker.key",
        description="The local key file; created with mode 0600 on first run",
    )
    # A secret: pydantic never prints it, and it is read only when key_provider is env.
    master_key: SecretStr | None = Field(
        default=None,
        description="The master key, 32 random bytes in base64 (key_provider env only)",
    )
    agreements_dir: Path = Field(
        default_factory=default_agreements_dir,
        description="Folder of agreement YAML files loaded at start-up",
    )
    environment: Literal["development", "production"] = "development"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    max_batch_records: int = Field(default=10_000, ge=1, le=1_000_000)
    max_field_length: int = Field(default=1024, ge=16, le=1_000_000)
    # broker.rate_limit: API worker processes sharing the load (each enforces its share).
    workers: int = Field(default=1, ge=1, le=256)
    # broker.web.json_guard: limits on every JSON body, before any route parses it.
    max_json_depth: int = Field(default=32, ge=2, le=256)
    max_json_string_chars: int = Field(default=4096, ge=64, le=1024 * 1024 * 1024)
    # Set when a proxy or uvicorn terminates TLS for the broker: responses then carry HSTS.
    served_over_tls: bool = False
    # Identity (broker.identity): the broker's own access tokens.
    token_issuer: str = Field(default="accord", pattern=r"^[A-Za-z0-9._/:-]{1,256}$")
    access_token_seconds: int = Field(default=300, ge=30, le=3600)
    # Set by a proxy that terminates mutual TLS: the client certificate's SHA-256 (hex).
    client_cert_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    # An external OpenID Connect provider for people (broker.oidc); unset: local accounts only.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_file: Path | None = None
    oidc_jwks_url: str | None = None
    oidc_role_claim: str = "accord_role"
    oidc_agency_claim: str = "accord_agency"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The audit log's name in its signed checkpoints; partners' witnesses pin it.
    log_origin: str = Field(default="accord.local/audit", pattern=r"^[A-Za-z0-9._/:-]{1,256}$")
    checkpoint_every_entries: int = Field(default=100, ge=1, le=1_000_000)
    checkpoint_every_seconds: float = Field(default=60.0, ge=1.0, le=86_400.0)
    # Background jobs (broker.jobs): every worker polls; each scheduled run happens once.
    jobs_enabled: bool = True
    job_poll_seconds: float = Field(default=5.0, ge=0.05, le=3600.0)
    retention_every_seconds: float = Field(default=3600.0, ge=1.0, le=604_800.0)
    # How long an ingest Idempotency-Key is remembered (broker.idempotency); the retention
    # job forgets older ones, and a retry after that is processed as a new batch.
    idempotency_key_days: int = Field(default=7, ge=1, le=365)
    # How long `broker serve` waits, with backoff, for a database that does not answer yet.
    database_wait_seconds: float = Field(default=30.0, ge=0.0, le=600.0)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "sqlite+pysqlite:///", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - signature fixed by pydantic-settings
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - as above
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("BROKER_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


# Variables with the BROKER_ prefix that are not settings but are read elsewhere.
_NOT_SETTINGS = frozenset({"BROKER_CONFIG_FILE", "BROKER_TEST_POSTGRES_URL"})


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; a bad one raises ConfigError naming the setting.

    ``BROKER_CONFIG_FILE`` is not itself a setting: it only says where the
    optional TOML file is. An unknown ``BROKER_*`` variable is an error, because
    a misspelt one would otherwise be silently ignored.
    """
    config_file = os.environ.get("BROKER_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        raise ConfigError("BROKER_CONFIG_FILE names a file that does not exist")
    known = {f"BROKER_{name.upper()}" for name in Settings.model_fields}
    for variable in sorted(os.environ):
        if variable.startswith("BROKER_") and variable not in known | _NOT_SETTINGS:
            raise ConfigError(f"unknown setting {variable}: remove it or check its spelling")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"unknown setting '{name}': remove it or check its spelling"
            ) from None
        raise ConfigError(
            f"setting '{name}' (BROKER_{name.upper()}) is invalid: {first['msg']}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"configuration file could not be read: {type(exc).__name__}") from None
