"""Hypothesis against every parser: any input parses or raises an Accord error with a code.

Never another exception, never a hang (Hypothesis's deadline). Inputs are both
unstructured (random text and bytes) and near-misses (a valid input with a
slice replaced), because near-misses reach the deeper branches.

``ACCORD_FUZZ=1`` (``make fuzz``) runs ten times as many examples.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings

from adapters.csv import read_extract
from adapters.tokenise import read_tokenised
from agreements.loader import parse_agreement
from audit import checkpoint as notes
from audit import merkle, witness
from broker import normalise
from broker.errors import AccordError
from broker.ingest import validate_batch, validate_tokenised_batch
from broker.web.json_guard import JsonLimits, check_json_body
from tests.helpers import EXAMPLE_FILE, example_agreement, school_record

LONG = os.environ.get("ACCORD_FUZZ") == "1"
FUZZ = settings(
    max_examples=1000 if LONG else 100,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
AGREEMENT = example_agreement()
SCHOOL = next(d for d in AGREEMENT.datasets if d.id == "school-attendance")
YAML_TEXT = EXAMPLE_FILE.read_text()
HEADER = ",".join(school_record("x"))
CSV_ROW = ",".join(str(v) for v in school_record("S-1").values())
# Characters that matter to CSV, JSON and YAML, and Unicode that breaks naive code.
NASTY = st.sampled_from(
    [
        *",\"\n\r\t\x00\\:{}[]-#&*!|>'%@`=+",
        *("\ufeff", "\u202e", "\u200b", "\ud800", "\u0410", "\u2028", "\x85", "9" * 30),
    ]
)
TEXT = st.lists(st.one_of(st.characters(), NASTY), max_size=100).map("".join)
LEAF = merkle.hash_leaf(b"entry")


def _refuses_cleanly(call: Callable[[], Any]) -> None:
    """Run ``call``: success, or an Accord error with a code; anything else fails the test."""
    code = "parsed"
    try:
        call()
    except AccordError as refused:
        code = refused.code
    assert code
    assert code != "accord_error"


@st.composite
def near_miss(draw: st.DrawFn, valid: str) -> str:
    """``valid`` with one slice replaced by hostile text."""
    start = draw(st.integers(0, len(valid)))
    end = draw(st.integers(start, min(len(valid), start + 40)))
    return valid[:start] + draw(TEXT) + valid[end:]


def _write(data: bytes, name: str = "school-attendance.csv") -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(st.one_of(st.binary(max_size=400), TEXT, near_miss(f"{HEADER}\n{CSV_ROW}\n")))
def test_csv_extract_reader(data: str | bytes) -> None:
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    _refuses_cleanly(lambda: read_extract(_write(raw)))


@FUZZ
@given(
    st.one_of(
        TEXT,
        near_miss(f"record_id,token_name_dob,attendance_pct\nS-1,{'a' * 64},82.5\n"),
    )
)
def test_tokenised_extract_reader(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    _refuses_cleanly(lambda: read_tokenised(_write(raw)))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(
    st.lists(
        st.one_of(
            JSON_VALUES, st.dictionaries(st.sampled_from(list(school_record("x"))), JSON_VALUES)
        ),
        max_size=5,
    )
)
def test_batch_records(records: list[Any]) -> None:
    """What the JSON batch body becomes: records of any shape."""
    _refuses_cleanly(lambda: validate_batch(SCHOOL, records, max_field_length=1024))


@FUZZ
@given(
    st.lists(
        st.one_of(JSON_VALUES, st.fixed_dictionaries({"record_id": TEXT, "tokens": JSON_VALUES})),
        max_size=5,
    )
)
def test_tokenised_batch_records(records: list[Any]) -> None:
    keys = AGREEMENT.linkage.match_keys
    _refuses_cleanly(
        lambda: validate_tokenised_batch(SCHOOL, records, match_keys=keys, max_field_length=1024)
    )


@FUZZ
@given(st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_json_guard(body: bytes) -> None:
    _refuses_cleanly(lambda: check_json_body(body, JsonLimits()))


@settings(FUZZ, max_examples=200 if LONG else 40)
@given(st.one_of(TEXT, near_miss(YAML_TEXT)))
@example("\ud800")  # was UnicodeEncodeError in the size check (found by this test)
def test_agreement_yaml(text: str) -> None:
    _refuses_cleanly(lambda: parse_agreement(text, source="fuzz.yaml"))


IDENTIFIER_PARSERS: dict[str, Callable[[str], object]] = {
    "nhs_number": normalise.normalise_nhs_number,
    "upn": normalise.normalise_upn,
    "postcode": normalise.normalise_postcode,
    "name": normalise.normalise_name,
    "name_parts": normalise.name_parts,
    "date_iso": normalise.normalise_date,
    "date_dmy": lambda raw: normalise.normalise_date(raw, "dmy"),
    "date_mdy": lambda raw: normalise.normalise_date(raw, "mdy"),
    "sex": normalise.normalise_sex,
}
IDENTIFIER_SEEDS = ["9434765919", "A12345678901B", "NS1 4AB", "Amira O'Neil-Okafor", "2011-03-14"]


@FUZZ
@given(
    st.sampled_from(sorted(IDENTIFIER_PARSERS)),
    st.one_of(TEXT, *(near_miss(seed) for seed in IDENTIFIER_SEEDS)),
)
def test_identifiers(parser: str, raw: str) -> None:
    _refuses_cleanly(lambda: IDENTIFIER_PARSERS[parser](raw))


_LOG_KEY = Ed25519PrivateKey.generate()
_NOTE = notes.sign(notes.Checkpoint("accord.local/audit", 3, LEAF), "accord.local/audit", _LOG_KEY)
_LOG_KEY_TEXT = base64.b64encode(_LOG_KEY.public_key().public_bytes_raw()).decode()


@FUZZ
@given(st.one_of(TEXT, near_miss(_NOTE)))
@example("\ud800" + _NOTE)  # was UnicodeEncodeError in verify (found by this test)
def test_signed_checkpoints(note: str) -> None:
    _refuses_cleanly(lambda: notes.parse(note))
    _refuses_cleanly(lambda: notes.verify(note, "accord.local/audit", _LOG_KEY.public_key()))
    _refuses_cleanly(lambda: witness.decide_cosign(None, note, _LOG_KEY_TEXT, []))


@FUZZ
@given(st.one_of(TEXT, near_miss(_LOG_KEY_TEXT)))
def test_witness_public_keys(text: str) -> None:
    _refuses_cleanly(lambda: witness.parse_public_key(text))


HASHES = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))
SIZES = st.one_of(st.integers(-3, 70), st.integers())


@FUZZ
@given(HASHES, SIZES, SIZES, st.lists(HASHES, max_size=70), HASHES)
def test_inclusion_proofs(
    leaf: bytes, index: int, size: int, path: list[bytes], root: bytes
) -> None:
    _refuses_cleanly(lambda: merkle.verify_inclusion(leaf, index, size, path, root))


@FUZZ
@given(SIZES, SIZES, HASHES, HASHES, st.lists(HASHES, max_size=70))
def test_consistency_proofs(
    old: int, new: int, old_root: bytes, new_root: bytes, path: list[bytes]
) -> None:
    _refuses_cleanly(lambda: merkle.verify_consistency(old, new, old_root, new_root, path))
