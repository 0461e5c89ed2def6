"""``broker agreements ...`` as a DPO and an operator run it: files in, decisions out."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXAMPLES
from tests.functional.conftest import broker_env, run_broker

EXAMPLE = EXAMPLES / "sv-early-identification.yaml"


def _env(tmp_path: Path) -> dict[str, str]:
    return broker_env(f"sqlite:///{tmp_path / 'accord.db'}", tmp_path)


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr


def test_every_example_tests_and_checks_clean(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        tested = run_broker("agreements", "test", str(path), env=env, cwd=tmp_path)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "FAIL" not in tested.stdout
        assert "policy tests passed" in tested.stdout
        checked = run_broker(
            "agreements", "check", str(path), "--on", "2026-11-26", env=env, cwd=tmp_path
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert " 0 error(s)" in checked.stdout


def test_schema_is_json_and_keygen_never_overwrites(tmp_path: Path) -> None:
    env = _env(tmp_path)
    printed = run_broker("agreements", "schema", env=env, cwd=tmp_path)
    assert printed.returncode == 0
    assert json.loads(printed.stdout)["title"] == "Agreement"
    key = tmp_path / "dpo.pem"
    made = run_broker("agreements", "keygen", "--out", str(key), env=env, cwd=tmp_path)
    assert made.returncode == 0
    assert key.stat().st_mode & 0o777 == 0o600
    again = run_broker("agreements", "keygen", "--out", str(key), env=env, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0
    assert "never overwritten" in again.stderr


def test_operator_lifecycle_suspend_resume_and_approver_keys(tmp_path: Path) -> None:
    env = _env(tmp_path)
    listed = run_broker("agreements", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "sv-early-identi" in listed.stdout
    suspended = run_broker(
        "agreements",
        "suspend",
        "sv-early-identification",
        "--reason",
        "breach under investigation",
        env=env,
        cwd=tmp_path,
    )
    assert suspended.returncode == 0, suspended.stderr
    twice = run_broker(
        "agreements", "suspend", "sv-early-identification", "--reason", "x", env=env, cwd=tmp_path
    )
    assert twice.returncode == 1
    assert "no version that is active" in twice.stderr
    resumed = run_broker("agreements", "resume", "sv-early-identification", env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    key = tmp_path / "dpo.pem"
    made = run_broker("agreements", "keygen", "--out", str(key), env=env, cwd=tmp_path)
    public = made.stdout.strip().rsplit(" ", 1)[-1]
    added = run_broker("agreements", "approver-key", "add", "police", public, env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    bad = run_broker(
        "agreements", "approver-key", "add", "police", "not-a-key", env=env, cwd=tmp_path
    )
    assert bad.returncode == 1
    _no_traceback(bad.stderr)
    verified = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
