"""A partner's witness against a real server: it cosigns growth and refuses a rewritten log.

The commands run as subprocesses. Until ``broker.cli.audit.register`` is wired into
``broker.cli.main``, they run through a small driver that registers them first.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from audit import checkpoint as notes
from audit.merkle import root_from_leaf_hashes, verify_consistency, verify_inclusion
from audit.witness import parse_public_key
from broker.cli.main import audit_app
from broker.client_auth import generate_client_key
from broker.token_client import ClientCredential, TokenClient, load_credential
from tests.auth_helpers import bearer_token, server_agency_credential, server_agency_headers
from tests.functional.conftest import BROKER, Server, free_port, run_broker
from tests.helpers import AGREEMENT, idempotent, school_record

WITNESS = "partner-witness"
_DRIVER = (
    "import sys\n"
    "from broker.cli import main\n"
    "from broker.cli.audit import register\n"
    "if not any(c.name == 'witness' for c in main.audit_app.registered_commands):\n"
    "    register(main.audit_app)\n"
    "sys.argv[0] = 'broker'\n"
    "main.main()\n"
)


def _wired() -> bool:
    return any(command.name == "witness" for command in audit_app.registered_commands)


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``broker ARGS`` (through the driver while the audit commands are not wired)."""
    if _wired():
        return run_broker(*args, env=env, cwd=cwd)
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("broker: error: ")
    return lines[0].removeprefix("broker: error: ")


def _post_batches(base_url: str, school_key: str, tag: str, count: int) -> None:
    for index in range(count):
        response = httpx.post(
            f"{base_url}/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches",
            json={"records": [school_record(f"SCH-{tag}-{index}", given=f"Pupil{tag}{index}")]},
            headers=idempotent({"Authorization": f"Bearer {school_key}"}),
        )
        assert response.status_code == 201, response.text


def _sql(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement (``?`` placeholders) on the test database; returns its rows."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            return connection.execute(statement, params).fetchall()
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def restart(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Servers a test starts itself; each is stopped at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        _stop(process)


def _serve(env: dict[str, str], cwd: Path, started: list[subprocess.Popen[str]]) -> str:
    port = free_port()
    log = (cwd / f"server-{port}.log").open("w")
    process = subprocess.Popen(
        [BROKER, "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log.close()
    started.append(process)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return base_url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the restarted server did not start")
        time.sleep(0.2)


def _fork_at(url: str, keep: int) -> None:
    """Cut the log back to ``keep`` entries, as a broker rewriting its history would."""
    _sql(url, "DELETE FROM audit_entry WHERE seq > ?", keep)
    _sql(url, "DELETE FROM cosignature WHERE checkpoint_size > ?", keep)
    _sql(url, "DELETE FROM audit_checkpoint WHERE size > ?", keep)
    for level, idx in _sql(url, "SELECT level, idx FROM merkle_node"):
        if (int(str(idx)) + 1) << int(str(level)) > keep:  # a subtree reaching past ``keep``
            _sql(url, "DELETE FROM merkle_node WHERE level = ? AND idx = ?", level, idx)
    leaves = _sql(url, "SELECT leaf_hash FROM audit_entry ORDER BY seq")
    assert len(leaves) == keep
    root = root_from_leaf_hashes([bytes.fromhex(str(leaf)) for (leaf,) in leaves]).hex()
    _sql(url, "UPDATE audit_head SET size = ?, head_hash = ? WHERE id = 1", keep, root)


def test_witness_cosigns_growth_and_refuses_a_rewritten_log(
    server: Server, tmp_path: Path, restart: list[subprocess.Popen[str]]
) -> None:
    env = server.env
    credential_file = server_agency_credential(env, tmp_path, "police")
    police = TokenClient(load_credential(credential_file), server.base_url)
    school = bearer_token(server_agency_headers(server.base_url, env, tmp_path, "school"))
    key_file = tmp_path / "w.pem"
    made = _ok(cli("audit", "witness-keygen", "--out", str(key_file), env=env, cwd=tmp_path))
    public = made.strip().splitlines()[-1].rsplit(" ", 1)[-1]
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = cli("audit", "witness-keygen", "--out", str(key_file), env=env, cwd=tmp_path)
    assert "already exists" in _one_line_error(again)
    _ok(cli("audit", "witness-key", "add", WITNESS, public, env=env, cwd=tmp_path))

    state = tmp_path / "witness.json"
    log_key = httpx.get(f"{server.base_url}/v1/audit/log-key").json()["public_key"]

    def witness(
        base_url: str, *extra: str, state_file: Path = state
    ) -> subprocess.CompletedProcess[str]:
        args = ["--url", base_url, "--credential-file", str(credential_file)]
        args += ["--key", str(key_file), "--name", WITNESS, "--state", str(state_file), *extra]
        return cli("audit", "witness", *args, env=env, cwd=tmp_path)

    _post_batches(server.base_url, school, "a", 3)
    first_size = int(_ok(cli("audit", "checkpoint", env=env, cwd=tmp_path)).split()[2])
    cosigned = _ok(witness(server.base_url, "--log-key", log_key))
    assert cosigned.startswith(f"cosigned checkpoint of {first_size} entries, root ")
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())["last_size"] == first_size

    _post_batches(server.base_url, school, "b", 4)
    second_size = int(_ok(cli("audit", "checkpoint", env=env, cwd=tmp_path)).split()[2])
    assert second_size > first_size
    assert _ok(witness(server.base_url)).startswith(f"cosigned checkpoint of {second_size} ")
    assert "already cosigned" in _ok(witness(server.base_url))  # nothing new signed since

    latest = httpx.get(f"{server.base_url}/v1/audit/checkpoint", headers=police.headers()).json()
    assert latest["size"] == second_size
    assert latest["witnesses"] == [WITNESS]
    verified = _ok(run_broker("audit", "verify", env=env, cwd=tmp_path))
    assert "2 cosignature(s)" in verified

    # A log key other than the one pinned is refused before anything is signed.
    wrong = base64.b64encode(bytes(range(32))).decode()
    stranger = tmp_path / "stranger.json"
    refused = witness(server.base_url, "--log-key", wrong, state_file=stranger)
    assert "different log key" in _one_line_error(refused)
    assert not stranger.exists()

    # The broker rewrites its history below what the witness saw, then grows past it.
    _stop(server.process)
    url = env["BROKER_DATABASE_URL"]
    _fork_at(url, first_size - 2)
    base_url = _serve(env, tmp_path, restart)
    _post_batches(base_url, school, "c", second_size - first_size + 4)
    forked_size = int(_ok(cli("audit", "checkpoint", env=env, cwd=tmp_path)).split()[2])
    assert forked_size > second_size
    # The forked log is consistent in itself, so the broker's own check passes...
    _ok(run_broker("audit", "verify", env=env, cwd=tmp_path))
    # ...but the witness remembers what it saw, and will not sign.
    before = state.read_text()
    refusal = _one_line_error(witness(base_url))
    assert refusal == (
        f"the witness refuses to cosign: the log at size {forked_size} is not an extension "
        f"of the log this witness saw at size {second_size}: it has been rewritten"
    )
    assert state.read_text() == before
    latest = httpx.get(f"{base_url}/v1/audit/checkpoint", headers=police.headers()).json()
    assert latest["size"] == forked_size
    assert latest["witnesses"] == []


def test_prove_and_consistency_print_proofs_that_verify(server: Server, tmp_path: Path) -> None:
    env = server.env
    school = bearer_token(server_agency_headers(server.base_url, env, tmp_path, "school"))
    _post_batches(server.base_url, school, "a", 2)
    old_size = int(_ok(cli("audit", "checkpoint", env=env, cwd=tmp_path)).split()[2])
    _post_batches(server.base_url, school, "b", 3)
    signed = _ok(cli("audit", "checkpoint", env=env, cwd=tmp_path))
    new_size = int(signed.split()[2])
    note = signed.split("\n", 1)[1]
    log = httpx.get(f"{server.base_url}/v1/audit/log-key").json()
    log_key = parse_public_key(log["public_key"])
    assert notes.verify(note, log["origin"], log_key).size == new_size

    for entry in (1, old_size, new_size):
        prove = ("audit", "prove", str(entry), "--size", str(new_size))
        proof = json.loads(_ok(cli(*prove, env=env, cwd=tmp_path)))
        checkpoint = notes.verify(proof["checkpoint"], log["origin"], log_key)
        assert (proof["entry"], proof["leaf_index"], proof["size"]) == (entry, entry - 1, new_size)
        verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            proof["leaf_index"],
            proof["size"],
            [bytes.fromhex(p) for p in proof["path"]],
            checkpoint.root_hash,
        )
    covering = json.loads(_ok(cli("audit", "prove", "1", env=env, cwd=tmp_path)))
    assert 1 <= covering["size"] <= new_size

    printed = _ok(cli("audit", "consistency", str(old_size), str(new_size), env=env, cwd=tmp_path))
    proof = json.loads(printed)
    assert proof["verified_against_checkpoints"] is True
    old_root = bytes.fromhex(
        httpx.get(
            f"{server.base_url}/v1/audit/checkpoints/{old_size}",
            headers={"Authorization": f"Bearer {school}"},
        ).json()["root_hash"]
    )
    verify_consistency(
        old_size,
        new_size,
        old_root,
        notes.parse(note)[0].root_hash,
        [bytes.fromhex(p) for p in proof["path"]],
    )

    bad = {
        ("audit", "prove", "0"): "numbered from 1",
        ("audit", "prove", "100000"): f"holds {new_size} entries",
        ("audit", "prove", "1", "--size", "100000"): "size must be between",
        ("audit", "consistency", "5", "3"): "old size 5 exceeds the new size 3",
        ("audit", "consistency", "0", "3"): "at least 1",
        ("audit", "consistency", "1", "100000"): f"holds {new_size} entries",
        ("audit", "witness-key", "add", "x", "not-a-key"): "not an Ed25519 public key",
    }
    for args, message in bad.items():
        assert message in _one_line_error(cli(*args, env=env, cwd=tmp_path)), args


def test_witness_failures_are_one_line(server: Server, tmp_path: Path) -> None:
    env = server.env
    key_file = tmp_path / "w.pem"
    _ok(cli("audit", "witness-keygen", "--out", str(key_file), env=env, cwd=tmp_path))
    # A well-formed credential of a client the broker never registered.
    private_pem, _ = generate_client_key()
    unknown = ClientCredential("police-000000000000", "0" * 16, "EdDSA", private_pem)
    api_key_file = tmp_path / "unknown.json"
    api_key_file.write_text(json.dumps(unknown.as_document()))

    def witness(url: str, key: Path = key_file, api: Path = api_key_file) -> str:
        args = ["--url", url, "--credential-file", str(api), "--key", str(key), "--name", WITNESS]
        args += ["--state", str(tmp_path / "s.json")]
        return _one_line_error(cli("audit", "witness", *args, env=env, cwd=tmp_path))

    assert "could not be read" in witness(server.base_url, key=tmp_path / "missing.pem")
    assert "could not be read" in witness(server.base_url, api=tmp_path / "missing.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("garbage")
    assert "not a readable Ed25519 PEM private key" in witness(server.base_url, key=garbage)
    assert "refused a token (HTTP 401)" in witness(server.base_url)
    assert "could not reach the broker" in witness(f"http://127.0.0.1:{free_port()}")
    assert not (tmp_path / "s.json").exists()
