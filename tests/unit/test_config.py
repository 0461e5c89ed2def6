"""Settings: defaults, environment, TOML file, and errors that name the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import agreements
from broker.config import load_settings
from broker.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BROKER_* variable from the surrounding shell, except the test database URL."""
    for variable in list(os.environ):
        if variable.startswith("BROKER_") and variable != "BROKER_TEST_POSTGRES_URL":
            monkeypatch.delenv(variable)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/accord.db"
    assert settings.key_file == Path("var/broker.key")
    assert settings.agreements_dir == Path(agreements.__file__).parent / "examples"
    assert any(settings.agreements_dir.glob("*.yaml"))
    assert settings.environment == "development"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.log_level == "INFO"
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.max_batch_records == 10_000
    assert settings.max_field_length == 1024


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 9000  # type: ignore[misc]


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_PORT", "9100")
    monkeypatch.setenv("BROKER_ENVIRONMENT", "production")
    monkeypatch.setenv("BROKER_DATABASE_URL", "postgresql://broker@db:5432/accord")
    settings = load_settings()
    assert settings.port == 9100
    assert settings.environment == "production"
    assert settings.database_url == "postgresql://broker@db:5432/accord"


def test_explicit_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_PORT", "9100")
    assert load_settings(port=9200).port == 9200


@pytest.mark.parametrize("value", ["eighty", "0", "65536", "-1", "80.5", ""])
def test_bad_port_names_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BROKER_PORT", value)
    with pytest.raises(ConfigError, match="BROKER_PORT") as caught:
        load_settings()
    assert caught.value.code == "config_invalid"
    assert "'port'" in caught.value.message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BROKER_DATABASE_URL", "mysql://root@localhost/accord"),
        ("BROKER_LOG_LEVEL", "TRACE"),
        ("BROKER_ENVIRONMENT", "staging"),
        ("BROKER_MAX_BODY_BYTES", "10"),
        ("BROKER_MAX_FIELD_LENGTH", "many"),
    ],
)
def test_other_bad_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_unknown_broker_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_FOO", "1")
    with pytest.raises(ConfigError, match="BROKER_FOO"):
        load_settings()


def test_misspelt_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_PROT", "9000")
    with pytest.raises(ConfigError, match="unknown setting BROKER_PROT"):
        load_settings()


def test_test_postgres_url_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert load_settings().port == 8000


def test_unknown_argument_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(colour="blue")


def _config_file(monkeypatch: pytest.MonkeyPatch, path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("BROKER_CONFIG_FILE", str(path))


def test_config_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(
        monkeypatch,
        tmp_path / "broker.toml",
        'port = 9000\nlog_level = "DEBUG"\nkey_file = "/srv/accord/broker.key"\n',
    )
    settings = load_settings()
    assert settings.port == 9000
    assert settings.log_level == "DEBUG"
    assert settings.key_file == Path("/srv/accord/broker.key")
    assert settings.host == "127.0.0.1"


def test_environment_wins_over_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(monkeypatch, tmp_path / "broker.toml", "port = 9000\n")
    monkeypatch.setenv("BROKER_PORT", "9100")
    assert load_settings().port == 9100


def test_unknown_key_in_config_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _config_file(monkeypatch, tmp_path / "broker.toml", "prot = 9000\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings()


def test_bad_value_in_config_file_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _config_file(monkeypatch, tmp_path / "broker.toml", 'port = "eighty"\n')
    with pytest.raises(ConfigError, match="BROKER_PORT"):
        load_settings()


def test_config_file_that_is_not_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(monkeypatch, tmp_path / "broker.toml", "port = = 9000\n[[[\n")
    with pytest.raises(ConfigError, match="could not be read"):
        load_settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BROKER_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="BROKER_CONFIG_FILE"):
        load_settings()


def test_config_file_that_is_a_directory_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BROKER_CONFIG_FILE", str(tmp_path))
    with pytest.raises(ConfigError, match="BROKER_CONFIG_FILE"):
        load_settings()
