"""``broker keys`` as an operator runs it: a table, audited changes, one-line errors."""

from __future__ import annotations

from pathlib import Path

from tests.functional.conftest import broker_env, run_broker

AGREEMENT = "sv-early-identification"


def _env(tmp_path: Path) -> dict[str, str]:
    return broker_env(f"sqlite:///{tmp_path / 'accord.db'}", tmp_path)


def test_list_rotate_and_destroy_keys(tmp_path: Path) -> None:
    env = _env(tmp_path)
    listed = run_broker("keys", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("│") for line in listed.stdout.splitlines() if "│" in line]
    cells = [[cell.strip() for cell in row[1:-1]] for row in rows]
    assert [AGREEMENT, "data", "1", "active"] in [c[:4] for c in cells]
    assert [AGREEMENT, "pseudonym for police", "1", "active"] in [c[:4] for c in cells]
    assert ["(broker)", "log-signing", "1", "active"] in [c[:4] for c in cells]
    rotated = run_broker("keys", "rotate", "data", "--agreement", AGREEMENT, env=env, cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert f"data/{AGREEMENT} v2 active: 0 payloads resealed" in rotated.stdout
    unconfirmed = run_broker(
        "keys", "destroy", "data", "--agreement", AGREEMENT, "--version", "1",
        "--reason", "rotated", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert unconfirmed.returncode != 0
    assert "--yes" in unconfirmed.stderr
    destroyed = run_broker(
        "keys", "destroy", "data", "--agreement", AGREEMENT, "--version", "1",
        "--reason", "rotated", "--yes", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert destroyed.returncode == 0, destroyed.stderr
    assert "destroyed" in destroyed.stdout
    after = run_broker("keys", "list", env=env, cwd=tmp_path)
    assert "destroyed" in after.stdout
    verified = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr


def test_key_command_errors_are_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    cases = [
        (("keys", "rotate", "data", "--agreement", "nope"), "is not loaded"),
        (("keys", "rotate", "master", "--agreement", AGREEMENT), "key kind must be one of"),
        (("keys", "complete-rotation", "--agreement", AGREEMENT), "no rotation"),
        (
            ("keys", "destroy", "data", "--agreement", AGREEMENT, "--reason", "x", "--yes"),
            "terminate it before shredding",
        ),
    ]
    for args, expected in cases:
        result = run_broker(*args, env=env, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stdout)
        assert expected in result.stderr, (args, result.stderr)
        assert result.stderr.strip().count("\n") == 0
        assert "Traceback" not in result.stderr
