"""``broker agencies`` and ``broker users`` as an operator runs them, against a live server."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.bootstrap import build_runtime
from broker.config import load_settings
from broker.token_client import TokenClient, load_credential
from tests.functional.conftest import BROKER, Server, broker_env, run_broker

PASSWORD = "a long enough passphrase"
NEW_PASSWORD = "another long passphrase"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _cli(
    env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return run_broker(*args, env=env, cwd=cwd)
    return subprocess.run(
        [BROKER, *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _token_status(server: Server, credential: Path) -> int:
    try:
        TokenClient(load_credential(credential), server.base_url).token()
    except Exception:
        return 401
    return 200


def _sign_in(server: Server, username: str, password: str) -> int:
    response = httpx.post(
        f"{server.base_url}/v1/sessions",
        json={"username": username, "password": password},
        timeout=30,
    )
    return response.status_code


def _ec_public_key(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def test_clients_and_accounts_through_their_life(server: Server, tmp_path: Path) -> None:
    env, cwd = server.env, tmp_path
    first = tmp_path / "police.json"
    client_id = _ok(
        _cli(env, cwd, "agencies", "add", "police", "--generate-credential", str(first))
    )
    assert client_id.startswith("police-")
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    document = json.loads(first.read_text())
    assert {"client_id", "key_id", "alg", "private_key_pem"} <= set(document)
    assert (document["client_id"], document["alg"]) == (client_id, "EdDSA")
    headers = TokenClient(load_credential(first), server.base_url).headers()
    assert httpx.get(f"{server.base_url}/v1/agreements", headers=headers).status_code == 200

    second = tmp_path / "police-2.json"
    rotated = _cli(
        env, cwd, "agencies", "rotate-key", client_id, "--generate-credential", str(second)
    )
    assert f"client {client_id}: new key" in _ok(rotated)
    assert _token_status(server, first) == 401  # no grace: replaced at once
    assert _token_status(server, second) == 200

    unbound = _cli(env, cwd, "agencies", "add", "school", "--generate-credential", str(cwd / "s"),
                   "--cert-thumbprint", "ab" * 32)  # fmt: skip
    assert "BROKER_CLIENT_CERT_HEADER" in unbound.stderr
    assert unbound.returncode == 1
    proxied = {**env, "BROKER_CLIENT_CERT_HEADER": "X-Client-Cert-SHA256"}
    school = _ok(
        _cli(
            proxied, cwd, "agencies", "add", "school",
            "--public-key", str(_ec_public_key(tmp_path / "school.pem")),
            "--cert-thumbprint", "ab" * 32,
        )
    )  # fmt: skip
    listed = _ok(_cli(env, cwd, "agencies", "list"))
    assert client_id in listed
    assert school in listed
    assert "bound" in listed
    assert "PRIVATE" not in listed

    disabled = _cli(env, cwd, "agencies", "disable", client_id, "--reason", "key left on a laptop")
    assert "disabled" in _ok(disabled)
    assert _token_status(server, second) == 401
    assert httpx.get(f"{server.base_url}/v1/agreements", headers=headers).status_code == 401

    added = _cli(env, cwd, "users", "add", "dpo.police", "--role", "dpo", "--agency", "police",
                 "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert "dpo.police (dpo of agency 'police') created" in _ok(added)
    admin = _cli(
        env, cwd, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD
    )
    _ok(admin)
    assert _sign_in(server, "dpo.police", PASSWORD) == 200
    assert _sign_in(server, "root", PASSWORD) == 200
    _ok(
        _cli(
            env, cwd, "users", "set-password", "dpo.police", "--password-stdin", stdin=NEW_PASSWORD
        )
    )
    assert _sign_in(server, "dpo.police", PASSWORD) == 401
    assert _sign_in(server, "dpo.police", NEW_PASSWORD) == 200
    _ok(_cli(env, cwd, "users", "disable", "dpo.police", "--reason", "moved on"))
    assert _sign_in(server, "dpo.police", NEW_PASSWORD) == 401
    users = _ok(_cli(env, cwd, "users", "list"))
    assert "dpo.police" in users
    assert "disabled" in users
    assert "scrypt" not in users

    runtime = build_runtime(
        load_settings(
            database_url=env["BROKER_DATABASE_URL"],
            key_file=Path(env["BROKER_KEY_FILE"]),
            agreements_dir=Path(env["BROKER_AGREEMENTS_DIR"]),
        )
    )
    try:
        entries = runtime.broker.audit_page(actor="operator", after=0, limit=1000)
    finally:
        runtime.engine.dispose()
    mine = {"client_registered", "client_key_rotated", "client_disabled"}
    mine |= {"account_created", "account_password_set", "account_disabled"}
    actions = [e.event.action for e in entries if e.event.action in mine]
    assert actions == [
        "client_registered",
        "client_key_rotated",
        "client_registered",
        "client_disabled",
        "account_created",
        "account_created",
        "account_password_set",
        "account_disabled",
    ]
    assert all(PASSWORD not in repr(e) and NEW_PASSWORD not in repr(e) for e in entries)
    assert _ok(run_broker("audit", "verify", env=env, cwd=cwd))


def test_identity_command_errors_are_one_line(tmp_path: Path) -> None:
    env = broker_env(f"sqlite:///{tmp_path / 'accord.db'}", tmp_path)
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    rsa_pem = tmp_path / "rsa.pem"
    rsa_pem.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    fresh = str(tmp_path / "fresh.json")
    _ok(_cli(env, tmp_path, "users", "add", "ig.police", "--role", "ig_lead", "--agency", "police",
             "--password-stdin", stdin=PASSWORD))  # fmt: skip
    add, users = ("agencies", "add", "police"), ("users", "add", "bob", "--password-stdin")
    missing = str(tmp_path / "missing.pem")
    cases: list[tuple[tuple[str, ...], str | None, str]] = [
        (("agencies", "add", "nowhere", "--generate-credential", fresh), None, "not a party"),
        (add, None, "exactly one of --public-key"),
        ((*add, "--public-key", missing), None, "could not be read"),
        ((*add, "--public-key", str(rsa_pem)), None, "Ed25519 or ECDSA P-256"),
        ((*add, "--generate-credential", str(existing)), None, "already exists"),
        ((*add, "--generate-credential", fresh, "--cert-thumbprint", "zz"), None, "64 hex digits"),
        (("agencies", "rotate-key", "p-0", "--generate-credential", fresh), None, "no client has"),
        (("agencies", "disable", "police-0", "--reason", "x"), None, "no client has that id"),
        ((*users, "--role", "dpo"), PASSWORD, "give --agency"),
        ((*users, "--role", "root"), PASSWORD, "dpo, ig_lead or admin"),
        ((*users, "--role", "admin"), "short", "at least 12"),
        (("users", "add", "ig.police", "--role", "admin", "--password-stdin"), PASSWORD, "exists"),
        (("users", "set-password", "nobody", "--password-stdin"), PASSWORD, "no account"),
        (("users", "disable", "nobody", "--reason", "x"), None, "no account"),
        (("users", "disable", "ig.police", "--reason", "  "), None, "give a reason"),
    ]
    for args, stdin, expected in cases:
        result = _cli(env, tmp_path, *args, stdin=stdin)
        assert result.returncode == 1, (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("broker: error: "), (args, lines)
        assert expected in lines[0], (args, lines)
    assert not (tmp_path / "fresh.json").exists()
    assert existing.read_text() == "{}"
    assert run_broker("agencies", "key", "police", env=env, cwd=tmp_path).returncode == 2
