"""What a thief who takes only the database learns, on SQLite and PostgreSQL.

After records are ingested and lookups run, everything a copy of the database
holds (every row of every table; on SQLite the backup file itself, made as
docs/operator.md section 9 makes it) is searched for the identifiers and field
values that were sent. None is there. The sealed payloads do not open, and the
tokens cannot be reproduced, with keys derived from any other master key, and
the tokens are not unkeyed SHA-256 digests a dictionary could reverse.
docs/pseudonymisation.md describes the threat model these tests back.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from adapters.tokenise import Tokenised, read_tokenised, tokenise_rows, write_tokenised
from broker.bootstrap import Runtime
from broker.clock import FixedClock
from broker.errors import KeyFileError
from broker.ingest import IDENTIFIER_NAMES, AtSource
from broker.keys import KeyRing, create_key_file, load_key_file, load_linkage_key_file
from broker.keystore import KeySlot, wrapping_context
from broker.linkage import MATCH_KEYS, record_tokens
from broker.normalise import (
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_upn,
)
from broker.pseudonymise import encode_parts
from broker.sealing import SealBroken, associated_data, unseal
from tests.helpers import AGREEMENT, example_agreement

Stolen = dict[str, list[dict[str, Any]]]

# Three young people, as their agencies typed them. The NHS numbers pass their
# check digit (two from the 999 test range); the UPNs pass their check letter.
PEOPLE: list[dict[str, str]] = [
    {
        "given_name": "Amira",
        "family_name": "Okafor",
        "date_of_birth": "2011-03-14",
        "postcode": "NS1 4AB",
        "nhs_number": "943 476 5919",
        "upn": "Q801200110001",
    },
    {
        "given_name": "Bilal",
        "family_name": "Hussain",
        "date_of_birth": "2009-12-02",
        "postcode": "ns27cd",
        "nhs_number": "9990000018",
        "upn": "E801200110002",
    },
    {
        "given_name": "Zoë Anaïs",
        "family_name": "O'Brien-Castellano",
        "date_of_birth": "2010-07-29",
        "postcode": "NS3  9EF",
        "nhs_number": "999-000-0026",
        "upn": "X20112001234A",
    },
]
# Someone no agency holds, asked about in a lookup that matches nothing.
STRANGER = {
    "given_name": "Tobias",
    "family_name": "Wrenfield",
    "date_of_birth": "2012-05-06",
    "postcode": "NS9 1ZZ",
}

# Field values sent by the providers: the payloads a thief must not read.
TEAM = "Riverside Exploitation Team"
PAYLOAD_VALUES = [
    "sharps",
    "blunt",
    "ambulance",
    "2026-11-20",
    "2026-10-31",
    "possession_of_weapon",
    "missing_person",
    "child_protection",
    "significant",
    TEAM.lower(),
    "82.5",
]


def _date_forms(iso: str) -> list[str]:
    """One date of birth as a store might hold it: ISO, UK and US orders, with and without marks."""
    year, month, day = iso.split("-")
    return [
        iso,
        f"{year}{month}{day}",
        f"{year}/{month}/{day}",
        f"{day}/{month}/{year}",
        f"{day}-{month}-{year}",
        f"{day}.{month}.{year}",
        f"{day}{month}{year}",
        f"{month}/{day}/{year}",
    ]


def _identifier_values() -> list[str]:
    """Every planted identifier, lower-cased, as typed and as normalised."""
    values: set[str] = set()
    for person in [*PEOPLE, STRANGER]:
        values.update(_date_forms(person["date_of_birth"]))
        postcode = normalise_postcode(person["postcode"])
        values.update({postcode, postcode.replace(" ", ""), person["postcode"]})
        for name in ("given_name", "family_name"):
            values.update({person[name], normalise_name(person[name])})
        if "nhs_number" in person:
            nhs = normalise_nhs_number(person["nhs_number"])
            values.update({nhs, f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}", person["nhs_number"]})
        if "upn" in person:
            values.add(normalise_upn(person["upn"]))
    # The name parts alone too, so a store of "obrien" or "castellano" would be caught.
    values.update({"obrien", "o'brien", "castellano", "anais"})
    # Five characters or more: a shorter value could turn up by chance in ciphertext bytes.
    assert min(len(v) for v in values) >= 5
    return sorted(v.lower() for v in values)


def _normalised(person: Mapping[str, str]) -> dict[str, str]:
    """A person's identifiers normalised exactly as the broker normalises them."""
    normalisers = {
        "given_name": normalise_name,
        "family_name": normalise_name,
        "date_of_birth": normalise_date,
        "postcode": normalise_postcode,
        "nhs_number": normalise_nhs_number,
        "upn": normalise_upn,
    }
    return {name: normalisers[name](value) for name, value in person.items()}


def _read_back(path: Path, tokenised: Tokenised) -> list[dict[str, Any]]:
    """The tokenised file the agency writes and posts, read back as its batch."""
    write_tokenised(path, tokenised)
    return read_tokenised(path)


def _ingest_and_look_up(runtime: Runtime, tmp_path: Path) -> list[str]:
    """Every provider sends its records and recipients look people up; returns pseudonyms.

    The emergency department sends one batch in clear and one tokenised at source.
    """
    broker = runtime.broker
    amira, bilal, zoe = PEOPLE
    school_ids = ("given_name", "family_name", "date_of_birth", "postcode", "upn")
    health_ids = ("given_name", "family_name", "date_of_birth", "postcode", "nhs_number")

    def ids(person: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
        return {name: person[name] for name in names}

    broker.ingest_batch(
        agency="school",
        agreement_id=AGREEMENT,
        dataset_id="school-attendance",
        records=[
            {
                "record_id": f"SCH-{n}",
                **ids(person, school_ids),
                "sex": "F",
                "attendance_pct": "82.5",
                "persistent_absence": "true",
                "excluded": "true",
                "sen_support": "true",
            }
            for n, person in enumerate(PEOPLE, start=1)
        ],
    )
    broker.ingest_batch(
        agency="ed",
        agreement_id=AGREEMENT,
        dataset_id="ed-attendances",
        records=[
            {
                "record_id": "ED-1",
                **ids(amira, health_ids),
                "attendance_date": "2026-11-20",
                "injury_type": "sharps",
                "arrival_mode": "ambulance",
                "safeguarding_referral_made": True,
            }
        ],
    )
    # A second attendance the emergency department tokenised in its own building.
    key_file = tmp_path / "ed.linkage.json"
    broker.export_linkage_key(AGREEMENT, key_file)
    linkage = load_linkage_key_file(key_file, agreement_id=AGREEMENT)
    agreement = example_agreement()
    dataset = agreement.dataset("ed-attendances")
    assert dataset is not None
    row = {
        "record_id": "ED-2",
        **ids(zoe, health_ids),
        "attendance_date": "2026-10-31",
        "injury_type": "blunt",
    }
    tokenised = tokenise_rows([row], dataset, linkage, agreement.linkage.match_keys)
    assert tokenised.rejected == ()
    broker.ingest_batch(
        agency="ed",
        agreement_id=AGREEMENT,
        dataset_id="ed-attendances",
        records=_read_back(tmp_path / "ed-tokens.csv", tokenised),
        at_source=AtSource(linkage.check_value, linkage.version),
    )
    broker.ingest_batch(
        agency="police",
        agreement_id=AGREEMENT,
        dataset_id="police-incidents",
        records=[
            {
                "record_id": "POL-1",
                **ids(amira, health_ids),
                "incident_date": "2026-10-31",
                "incident_type": "possession_of_weapon",
                "role_in_incident": "missing_person",
                "missing_episodes_12m": 3,
            }
        ],
    )
    broker.ingest_batch(
        agency="social-care",
        agreement_id=AGREEMENT,
        dataset_id="csc-involvement",
        records=[
            {
                "record_id": "CSC-1",
                **ids(bilal, health_ids),
                "csc_status": "child_protection",
                "allocated_team": TEAM,
                "exploitation_screening": "significant",
            }
        ],
    )
    triage = broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers={
            k: amira[k] for k in ("given_name", "family_name", "date_of_birth", "postcode")
        },
    )
    police = broker.lookup(
        agency="police",
        agreement_id=AGREEMENT,
        purpose="violence-reduction",
        identifiers={"nhs_number": zoe["nhs_number"]},
    )
    school = broker.lookup(
        agency="school",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers={"nhs_number": bilal["nhs_number"]},
    )
    unknown = broker.lookup(
        agency="social-care",
        agreement_id=AGREEMENT,
        purpose="safeguarding-triage",
        identifiers=STRANGER,
    )
    # The data really was there to leak: each lookup found (or missed) what it should.
    assert triage.matched
    assert {h.agency for h in triage.holdings} == {"school", "ed", "police"}
    assert police.matched
    # The record tokenised at source linked with the school's, sent in clear.
    assert {h.agency for h in police.holdings} == {"ed", "school"}
    assert school.matched
    assert not unknown.matched
    return [p for p in (triage.pseudonym, police.pseudonym, school.pseudonym) if p is not None]


def _steal(runtime: Runtime, tmp_path: Path) -> tuple[Stolen, bytes | None]:
    """Every row of every table, as a thief with the database holds them.

    On SQLite the thief takes a backup file (made as the operator guide makes
    it) and reads it with nothing but the sqlite3 module; the raw bytes of the
    backup and of the live database and its write-ahead log are returned too.
    On PostgreSQL every table is read, as ``pg_dump`` would read it.
    """
    engine = runtime.engine
    if engine.dialect.name == "sqlite":
        source = make_url(runtime.settings.database_url).database
        assert source is not None
        copy = tmp_path / "stolen.db"
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(copy)) as backup:
            live.backup(backup)
        with closing(sqlite3.connect(copy)) as thief:
            thief.row_factory = sqlite3.Row
            listed = thief.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            names = [row[0] for row in listed if not row[0].startswith("sqlite_")]
            tables = {
                name: [dict(row) for row in thief.execute(f'SELECT * FROM "{name}"')]  # noqa: S608
                for name in names
            }
        files = [copy, Path(source), Path(f"{source}-wal")]
        return tables, b"".join(f.read_bytes() for f in files if f.exists())
    with engine.connect() as connection:
        names = inspect(connection).get_table_names()
        tables = {
            name: [
                dict(row._mapping)
                for row in connection.execute(text(f'SELECT * FROM "{name}"'))  # noqa: S608
            ]
            for name in names
        }
    return tables, None


def _cells(rows: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """Each cell as lower-case text; bytes as Latin-1, so every byte is one character."""
    for row in rows:
        for cell in row.values():
            if isinstance(cell, bytes | bytearray | memoryview):
                yield bytes(cell).decode("latin-1").lower()
            else:
                yield str(cell).lower()


@pytest.fixture
def stolen(runtime: Runtime, tmp_path: Path) -> tuple[Stolen, bytes | None, list[str]]:
    """The database after a working day, as stolen, with the pseudonyms recipients were given."""
    pseudonyms = _ingest_and_look_up(runtime, tmp_path)
    tables, raw = _steal(runtime, tmp_path)
    return tables, raw, pseudonyms


@pytest.fixture
def other_keys(tmp_path: Path, clock: FixedClock) -> KeyRing:
    """Keys from a new key file: all a thief without the broker's key file can make."""
    return create_key_file(tmp_path / "thief" / "broker.key", at=clock.now())


def test_the_stolen_copy_holds_the_working_tables(stolen: tuple[Stolen, bytes | None, Any]) -> None:
    tables, _, _ = stolen
    # Not vacuous: the copy holds the records, tokens, subjects and audit entries.
    assert len(tables["record"]) == 7
    assert len(tables["match_token"]) >= 7
    assert tables["subject"]
    assert tables["audit_entry"]
    assert tables["agreement_document"]


def test_no_identifier_appears_in_any_table(stolen: tuple[Stolen, bytes | None, Any]) -> None:
    tables, raw, _ = stolen
    planted = _identifier_values()
    # The agreement documents are searched too: they name contacts and code lists, no subject.
    for table, rows in tables.items():
        for blob in _cells(rows):
            for value in planted:
                assert value not in blob, f"table {table} holds an identifier in clear"
    if raw is not None:
        # SQLite: the files themselves, byte for byte, free pages and the log included.
        files = raw.decode("latin-1").lower()
        for value in [*planted, TEAM.lower()]:
            assert value not in files, "a database file holds a planted value in clear"


def test_no_payload_value_appears_outside_the_agreement_documents(
    stolen: tuple[Stolen, bytes | None, Any],
) -> None:
    tables, _, _ = stolen
    # The agreement names code values such as "sharps" in its code lists; it holds no one's data.
    for table, rows in tables.items():
        if table == "agreement_document":
            continue
        for blob in _cells(rows):
            for value in PAYLOAD_VALUES:
                assert value not in blob, f"table {table} holds a field value in clear"


def test_no_pseudonym_a_recipient_was_given_is_stored(
    stolen: tuple[Stolen, bytes | None, list[str]],
) -> None:
    tables, _, pseudonyms = stolen
    assert len(pseudonyms) == 3
    for table, rows in tables.items():
        for blob in _cells(rows):
            for value in pseudonyms:
                assert value not in blob, f"table {table} holds a recipient's pseudonym"


def _working_key(ring: KeyRing, tables: Any, kind: str) -> bytes:
    """A working key unwrapped from the stolen copy's wrapped_key table with ``ring``."""
    row = next(r for r in tables["wrapped_key"] if r["kind"] == kind and r["version"] == 1)
    return ring.unwrap(bytes(row["wrapped"]), wrapping_context(KeySlot(kind, AGREEMENT), 1))


def test_payloads_do_not_open_with_keys_from_another_master_key(
    runtime: Runtime, stolen: tuple[Stolen, bytes | None, Any], other_keys: KeyRing
) -> None:
    tables, _, _ = stolen
    records = tables["record"]
    # Another master key cannot unwrap the stolen data key, and its own key opens nothing.
    with pytest.raises(KeyFileError):
        _working_key(other_keys, tables, "data")
    wrong = other_keys.legacy_key("data", AGREEMENT)
    for row in records:
        aad = associated_data(row["agreement_id"], row["id"])
        with pytest.raises(SealBroken) as broken:
            unseal(wrong, bytes(row["payload"]), aad)
        # One opaque error: it says the payload is unreadable and nothing about why.
        assert broken.value.code == "payload_unreadable"
        assert str(broken.value) == "stored payload failed authentication"
    # Not vacuous: the broker's own key opens every one, and "sharps" is inside one of them.
    right = _working_key(load_key_file(runtime.settings.key_file), tables, "data")
    opened = [
        json.loads(
            unseal(right, bytes(row["payload"]), associated_data(row["agreement_id"], row["id"]))
        )
        for row in records
    ]
    assert any(payload.get("injury_type") == "sharps" for payload in opened)
    # The example agreement releases no identifier in any form, so none is kept even sealed.
    assert not any(set(payload) & IDENTIFIER_NAMES for payload in opened)


def test_tokens_from_another_master_key_match_none_stored(
    runtime: Runtime, stolen: tuple[Stolen, bytes | None, Any], other_keys: KeyRing
) -> None:
    tables, _, _ = stolen
    stored = {row["token"] for row in tables["match_token"]}
    everyone = [_normalised(person) for person in [*PEOPLE, STRANGER]]
    guessed = {
        token
        for person in everyone
        for token in record_tokens(other_keys.legacy_key("linkage", AGREEMENT), person).values()
    }
    assert len(guessed) >= 9
    assert not guessed & stored
    # Not vacuous: the same identifiers under the broker's own linkage key do match.
    right = _working_key(load_key_file(runtime.settings.key_file), tables, "linkage")
    genuine = {t for person in everyone for t in record_tokens(right, person).values()}
    assert genuine & stored
    assert stored <= genuine


def test_tokens_are_not_unkeyed_sha256_of_the_identifiers(
    stolen: tuple[Stolen, bytes | None, Any],
) -> None:
    tables, _, _ = stolen
    stored = {row["token"] for row in tables["match_token"]}
    candidates: set[str] = set()

    def digest(data: str | bytes) -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        candidates.add(hashlib.sha256(raw).hexdigest())

    for person in [*PEOPLE, STRANGER]:
        normalised = _normalised(person)
        for value in [*normalised.values(), *person.values()]:
            digest(value)
            digest(value.lower())
            digest(value.upper())
        for key in MATCH_KEYS:
            values = [normalised.get(name) for name in key.identifiers]
            if not all(values):
                continue
            parts = [v for v in values if v]
            for separator in ("", " ", "|", ",", ":", "\x00", "\n"):
                digest(separator.join(parts))
                digest(separator.join([key.name, *parts]))
            # The broker's exact framed encoding, hashed without the key.
            digest(encode_parts(f"token:{key.name}", parts))
    assert len(candidates) > 50
    assert not candidates & stored
