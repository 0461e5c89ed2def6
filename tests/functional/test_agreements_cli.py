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


def _edited(tmp_path: Path) -> Path:
    """Version 2 of the example without the triage release of the ED injury type."""
    new = tmp_path / "v2.yaml"
    text = EXAMPLE.read_text().replace("version: 1\n", "version: 2\n", 1)
    target = "      - {dataset: ed-attendances, field: injury_type}\n"
    assert target in text
    new.write_text(text.replace(target, "", 1))
    return new


def test_diff_speaks_of_fields_and_recipients_and_notes_stale_approvals(tmp_path: Path) -> None:
    new = _edited(tmp_path)
    result = run_broker(
        "agreements", "diff", str(EXAMPLE), str(new), env=_env(tmp_path), cwd=tmp_path
    )
    _no_traceback(result.stderr)
    assert result.returncode == 0, result.stderr
    assert "version 1 -> version 2" in result.stdout
    narrowing = [line for line in result.stdout.splitlines() if "[narrowing]" in line]
    assert len(narrowing) == 1
    assert "ed-attendances.injury_type" in narrowing[0]
    assert "no longer released" in narrowing[0]
    assert "[widening]" not in result.stdout
    assert "do not match this version" in result.stderr
    # Validation, which enforcement relies on, still refuses the stale approvals.
    refused = run_broker("agreements", "validate", str(new), env=_env(tmp_path), cwd=tmp_path)
    assert refused.returncode == 1


def test_a_failing_policy_test_fails_the_test_command(tmp_path: Path) -> None:
    new = _edited(tmp_path)
    result = run_broker("agreements", "test", str(new), env=_env(tmp_path), cwd=tmp_path)
    _no_traceback(result.stderr)
    assert result.returncode == 1
    failing = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert failing
    assert any("injury" in line.lower() for line in failing)


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
