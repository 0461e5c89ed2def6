"""The ``broker`` command as a user runs it: exit codes, one-line errors, the demo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.functional.conftest import broker_env, free_port, run_broker

EXAMPLE = EXAMPLES / "sv-early-identification.yaml"


def _env(tmp_path: Path) -> dict[str, str]:
    return broker_env(f"sqlite:///{tmp_path / 'accord.db'}", tmp_path)


def test_validate_accepts_the_example(tmp_path: Path) -> None:
    result = run_broker("agreements", "validate", str(EXAMPLE), env=_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid (sv-early-identification version 1)" in result.stdout


def test_validate_reports_each_problem_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = EXAMPLE.read_text()
    target = "field: injury_type}\n      - {dataset: ed-attendances, field: safeguarding"
    assert text.count(target) == 1
    broken.write_text(text.replace(target, target.replace("injury_type", "injury_typ")))
    result = run_broker(
        "agreements", "validate", str(broken), str(EXAMPLE), env=_env(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "did you mean 'injury_type'?" in lines[0]
    # The edit also breaks every party's approval, and each says so on its own line.
    assert sum("approve it again" in line for line in lines[1:]) == 4
    assert all(line.startswith(f"{broken}:") for line in lines)
    assert "valid (sv-early-identification" in result.stdout  # the good file still reported


def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "BROKER_MAX_BODY_BYTES": "lots"}
    result = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "BROKER_MAX_BODY_BYTES" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_key_file_stops_start_up_and_is_not_replaced(tmp_path: Path) -> None:
    env = _env(tmp_path)
    key_file = Path(env["BROKER_KEY_FILE"])
    key_file.write_text("not a key")
    key_file.chmod(0o600)
    result = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "key file is corrupt" in result.stderr
    assert key_file.read_text() == "not a key"


def test_the_key_file_is_created_private(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_broker("audit", "verify", env=env, cwd=tmp_path).returncode == 0
    assert os.stat(env["BROKER_KEY_FILE"]).st_mode & 0o777 == 0o600


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_broker("synth", env=_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2


@pytest.mark.e2e
def test_demo_runs_the_scenario_and_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    result = run_broker(
        "demo", "--no-serve", "--port", str(free_port()), env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "audit verified" in result.stdout
    assert "FAILED" not in result.stdout
    assert (tmp_path / "var" / "demo" / "accord.db").exists()
    assert (tmp_path / "var" / "broker.key").exists()


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_broker("audit", "verify", env=env, cwd=tmp_path).returncode == 0
    Path(env["BROKER_KEY_FILE"]).chmod(0o644)
    result = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "readable by other users" in result.stderr
