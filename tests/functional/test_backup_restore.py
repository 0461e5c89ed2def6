"""A backup taken as docs/operator.md section 9 says restores into a new database and carries on.

On SQLite and on PostgreSQL: a broker ingests linked records from two
agencies, answers lookups, rotates its data key (so the backup holds two
versions of it) and signs a checkpoint. The backup is the operator's commands
run for real (``sqlite3 .backup`` or ``pg_dump --format=custom``) plus a copy
of the key file kept apart; the restore is a new empty database, the backup
put into it (a copy of the file, or ``pg_restore``) and the key file fetched
back. On the restored copy ``broker audit verify`` reports the same size and
root, a lookup finds the same providers, pseudonym and released fields, and a
new record links to the old subject; the wrong master key, or none, is refused
at start-up with one line and writes nothing.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from audit.merkle import verify_consistency
from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import load_settings
from broker.keys import create_key_file
from broker.service import LookupResult
from tests.conftest import _fresh_postgres
from tests.functional.conftest import free_port, run_broker
from tests.helpers import AGREEMENT, IDENTIFIERS, ed_record, school_record

VERIFIED = re.compile(
    r"^audit verified: (\d+) entries, root ([0-9a-f]{64}), (\d+) signed checkpoint\(s\), "
    r"0 cosignature\(s\)\n$"
)


@pytest.fixture
def empty_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the same kind as the test's, to restore into."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'accord.db'}"
        return
    yield from _fresh_postgres()


def _ingest(runtime: Runtime, agency: str, record: dict[str, Any]) -> None:
    dataset = {"school": "school-attendance", "ed": "ed-attendances"}[agency]
    runtime.broker.ingest_batch(
        agency=agency, agreement_id=AGREEMENT, dataset_id=dataset, records=[record]
    )


def _lookup(runtime: Runtime) -> LookupResult:
    return runtime.broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=IDENTIFIERS,
    )


def _subject_of(runtime: Runtime, source_ref: str) -> str:
    with runtime.engine.connect() as connection:
        found = connection.execute(
            text("SELECT subject_id FROM record WHERE source_ref = :ref"), {"ref": source_ref}
        ).scalar_one()
    return str(found)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{command[0]}: {done.stderr}"


def _back_up_database(database_url: str, backups: Path) -> Path:
    """Section 9's command for the database, run as an operator would."""
    stamp = date.today().isoformat()
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        backup = backups / f"accord-{stamp}.db"
        _run("sqlite3", str(url.database), f".backup '{backup}'")
    else:
        backup = backups / f"accord-{stamp}.dump"
        _run("pg_dump", "--format=custom", f"--file={backup}", database_url)
    return backup


def _restore_database(backup: Path, empty_url: str) -> None:
    """Put a backup into a new, empty database (the steps section 9 lacked)."""
    url = make_url(empty_url)
    if url.get_backend_name() == "sqlite":
        target = Path(str(url.database))
        target.parent.mkdir(parents=True)
        shutil.copyfile(backup, target)
    else:
        _run("pg_restore", "--exit-on-error", "--no-owner", f"--dbname={empty_url}", str(backup))


def _env(database_url: str, key_file: Path, agreements_dir: Path) -> dict[str, str]:
    # The same agreements folder as the server that made the backup: another folder would
    # install its agreements at start-up and append to the restored log before verifying.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update(
        BROKER_DATABASE_URL=database_url,
        BROKER_KEY_FILE=str(key_file),
        BROKER_AGREEMENTS_DIR=str(agreements_dir),
    )
    return env


def _refused_at_start_up(env: dict[str, str], cwd: Path) -> str:
    """Start ``broker serve``; it must stop with one line before serving. Returns the line."""
    started = run_broker("serve", "--port", str(free_port()), env=env, cwd=cwd, timeout=60)
    assert started.returncode == 1, started.stdout + started.stderr
    assert started.stderr.count("\n") == 1, started.stderr
    return started.stderr


def test_a_restored_backup_verifies_keeps_its_links_and_links_new_records(
    runtime: Runtime, empty_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    settings = runtime.settings
    _ingest(runtime, "school", school_record("SCH-1"))
    _ingest(runtime, "school", school_record("SCH-2", given="Other"))
    _ingest(runtime, "ed", ed_record("ED-1"))
    assert sorted(h.agency for h in _lookup(runtime).holdings) == ["ed", "school"]
    # Two data key versions in the backup: the retired one, and the one sealing every payload.
    assert runtime.broker.rotate_key("data", AGREEMENT).version == 2
    runtime.broker.audit.checkpoint_now()
    before = _lookup(runtime)
    signed = runtime.broker.verify_audit()
    assert signed.checkpoints >= 1

    # Backup, while the broker still has the database open: the database, and apart from
    # it the key file (a vault returns the file's bytes, not its mode).
    backups, vault = tmp_path / "backups", tmp_path / "vault"
    backups.mkdir()
    vault.mkdir()
    backup = _back_up_database(settings.database_url, backups)
    (vault / "broker.key").write_bytes(settings.key_file.read_bytes())

    _restore_database(backup, empty_url)
    restored_key = tmp_path / "restored-keys" / "broker.key"
    restored_key.parent.mkdir()
    restored_key.write_bytes((vault / "broker.key").read_bytes())
    os.chmod(restored_key, 0o644)  # as a file fetched back with the default mode
    env = _env(empty_url, restored_key, settings.agreements_dir)
    assert _refused_at_start_up(env, tmp_path) == (
        "broker: error: key file is readable by other users; restrict it with chmod 600\n"
    )
    os.chmod(restored_key, 0o600)
    verified = run_broker("audit", "verify", env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    found = VERIFIED.match(verified.stdout)
    assert found is not None, verified.stdout
    assert (int(found[1]), found[2], int(found[3])) == (
        signed.size,
        signed.root_hash,
        signed.checkpoints,
    )
    # The checkpoints name the log's origin, so a restore must keep BROKER_LOG_ORIGIN too.
    renamed = run_broker(
        "audit", "verify", env={**env, "BROKER_LOG_ORIGIN": "restored.example/audit"}, cwd=tmp_path
    )
    assert renamed.returncode == 1
    assert "is not signed by the log's key" in renamed.stderr

    restored = build_runtime(
        load_settings(
            database_url=empty_url, key_file=restored_key, agreements_dir=settings.agreements_dir
        ),
        clock=clock,
    )
    try:
        versions = {
            k.version: k.state for k in restored.broker.list_keys() if k.name == f"data/{AGREEMENT}"
        }
        assert versions == {1: "retired", 2: "active"}
        after = _lookup(restored)
        assert after.pseudonym == before.pseudonym
        assert after.holdings == before.holdings  # the same records, unsealed under version 2
        old_subject = _subject_of(restored, "SCH-1")
        assert _subject_of(restored, "ED-1") == old_subject

        _ingest(restored, "ed", ed_record("ED-2", attendance_date="2026-11-25"))
        assert _subject_of(restored, "ED-2") == old_subject
        now = _lookup(restored)
        assert now.pseudonym == before.pseudonym
        ed_refs = [r for h in now.holdings if h.agency == "ed" for r in h.records]
        assert len(ed_refs) == 2
        grown = restored.broker.verify_audit()
        assert grown.size > signed.size
        proof = restored.broker.audit.consistency_proof(signed.size, grown.size)
        verify_consistency(
            signed.size,
            grown.size,
            bytes.fromhex(signed.root_hash),
            bytes.fromhex(grown.root_hash),
            [bytes.fromhex(p) for p in proof.path],
        )
    finally:
        restored.engine.dispose()


def test_a_restore_without_its_master_key_is_refused_at_start_up(
    runtime: Runtime, empty_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    settings = runtime.settings
    _ingest(runtime, "school", school_record("SCH-1"))
    _ingest(runtime, "ed", ed_record("ED-1"))
    size, root = runtime.broker.audit_head()
    backups = tmp_path / "backups"
    backups.mkdir()
    _restore_database(_back_up_database(settings.database_url, backups), empty_url)
    elsewhere = tmp_path / "elsewhere"

    other_key = elsewhere / "other.key"
    create_key_file(other_key, at=clock.now())
    wrong_file = _env(empty_url, other_key, settings.agreements_dir)
    assert _refused_at_start_up(wrong_file, tmp_path) == (
        "broker: error: the master key from the key file does not match the database; "
        "restore the master key it was written with\n"
    )
    wrong_variable = _env(empty_url, elsewhere / "unused.key", settings.agreements_dir)
    wrong_variable.update(
        BROKER_KEY_PROVIDER="env",
        BROKER_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
    )
    assert _refused_at_start_up(wrong_variable, tmp_path) == (
        "broker: error: the master key from BROKER_MASTER_KEY does not match the database; "
        "restore the master key it was written with\n"
    )
    missing = elsewhere / "missing.key"
    assert _refused_at_start_up(_env(empty_url, missing, settings.agreements_dir), tmp_path) == (
        "broker: error: BROKER_KEY_FILE does not exist but the database was written with a "
        "key; restore the key file\n"
    )
    assert not missing.exists()  # no new key is made beside restored data

    restored = build_runtime(
        load_settings(
            database_url=empty_url,
            key_file=settings.key_file,
            agreements_dir=settings.agreements_dir,
        ),
        clock=clock,
    )
    try:
        assert restored.broker.audit_head() == (size, root)  # the refusals wrote nothing
    finally:
        restored.engine.dispose()
