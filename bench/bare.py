"""The raw limit each figure is compared with: the same work, done directly, with no broker.

A bare row is what any pseudonymising store must do at the least: normalise
the identifiers, make the match-key tokens with HMAC-SHA256, seal the fields
with AES-256-GCM, and keep one row per record with its tokens indexed. No
validation beyond normalising, no linkage, no audit, no ORM.
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.workload import FIELDS
from broker.normalise import (
    normalise_date,
    normalise_name,
    normalise_postcode,
    normalise_sex,
    normalise_upn,
)
from broker.pseudonymise import encode_parts

BareRow = tuple[str, str | None, str, bytes]

SQLITE_SCHEMA = """
CREATE TABLE bare_record (
    id INTEGER PRIMARY KEY,
    source_ref TEXT NOT NULL UNIQUE,
    upn_token TEXT,
    ndp_token TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX bare_record_upn ON bare_record (upn_token);
CREATE INDEX bare_record_ndp ON bare_record (ndp_token);
"""
POSTGRES_SCHEMA = (
    "CREATE TABLE bare_record ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " source_ref TEXT NOT NULL UNIQUE,"
    " upn_token TEXT,"
    " ndp_token TEXT NOT NULL,"
    " payload BYTEA NOT NULL);"
    "CREATE INDEX bare_record_upn ON bare_record (upn_token);"
    "CREATE INDEX bare_record_ndp ON bare_record (ndp_token)"
)
INSERT = "INSERT INTO bare_record (source_ref, upn_token, ndp_token, payload) VALUES (?, ?, ?, ?)"
COPY = "COPY bare_record (source_ref, upn_token, ndp_token, payload) FROM STDIN"
SELECT_BY_NDP = "SELECT source_ref, payload FROM bare_record WHERE ndp_token = ?"


class BareKit:
    """The keys and the AEAD object a bare loader holds, and the work it does per record."""

    def __init__(self, linkage_key: bytes, data_key: bytes) -> None:
        self.linkage_key = linkage_key
        self.aead = AESGCM(data_key)

    def ndp_token(self, identifiers: Mapping[str, str]) -> str:
        """The name + date of birth + postcode token of raw identifiers."""
        message = encode_parts(
            "token:name_dob_postcode",
            [
                normalise_name(identifiers["given_name"]),
                normalise_name(identifiers["family_name"]),
                normalise_date(identifiers["date_of_birth"]),
                normalise_postcode(identifiers["postcode"]),
            ],
        )
        return hmac.digest(self.linkage_key, message, "sha256").hex()

    def row(self, record: Mapping[str, str]) -> BareRow:
        """Normalise, tokenise and seal one record."""
        normalise_sex(record["sex"])  # the broker normalises every identifier it is sent
        upn = record.get("upn")
        upn_token = (
            hmac.digest(
                self.linkage_key, encode_parts("token:upn", [normalise_upn(upn)]), "sha256"
            ).hex()
            if upn
            else None
        )
        payload = json.dumps({f: record[f] for f in FIELDS if f in record}, sort_keys=True)
        nonce = os.urandom(12)
        source_ref = record["record_id"]
        sealed = nonce + self.aead.encrypt(
            nonce, payload.encode("utf-8"), source_ref.encode("utf-8")
        )
        return (source_ref, upn_token, self.ndp_token(record), sealed)


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A bare SQLite file with the broker's pragmas (WAL, synchronous NORMAL)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection
