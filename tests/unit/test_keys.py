"""The key file and the keys derived from it."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.errors import KeyFileError
from broker.keys import (
    KEY_BYTES,
    KEY_FILE_FORMAT,
    KeyRing,
    create_key_file,
    load_key_file,
    master_key_from_environment,
    open_or_create_key_file,
)

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MASTER = bytes(range(100, 132))


def _write_key_document(path: Path, **changes: object) -> None:
    document: dict[str, object] = {
        "format": KEY_FILE_FORMAT,
        "version": 1,
        "created": AT.isoformat(),
        "master_key": base64.b64encode(MASTER).decode("ascii"),
    }
    document.update(changes)
    path.write_text(json.dumps(document), encoding="utf-8")


def _assert_clean_error(error: KeyFileError, *secrets: bytes) -> None:
    line = error.one_line()
    assert error.code == "key_file_invalid"
    assert "\n" not in line
    assert line
    for secret in secrets:
        assert secret.hex() not in line
        assert base64.b64encode(secret).decode("ascii") not in line
        assert base64.b64encode(secret).decode("ascii")[:12] not in line


def test_create_key_file_writes_mode_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "broker.key"
    ring = create_key_file(path, at=AT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(ring.master_key) == KEY_BYTES
    assert ring.version == 1
    loaded = load_key_file(path)
    assert loaded.master_key == ring.master_key
    assert loaded.version == 1
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == KEY_FILE_FORMAT
    assert document["created"] == AT.isoformat()


def test_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        create_key_file(tmp_path / "broker.key", at=AT)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "broker.key").stat().st_mode) == 0o600


def test_two_new_key_files_hold_different_keys(tmp_path: Path) -> None:
    first = create_key_file(tmp_path / "a.key", at=AT)
    second = create_key_file(tmp_path / "b.key", at=AT)
    assert first.master_key != second.master_key


def test_create_key_file_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "broker.key"
    ring = create_key_file(path, at=AT)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="never overwritten") as caught:
        create_key_file(path, at=AT)
    assert path.read_bytes() == before
    _assert_clean_error(caught.value, ring.master_key)


def test_create_refuses_to_overwrite_even_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broker.key"
    path.write_text("garbage", encoding="utf-8")
    with pytest.raises(KeyFileError):
        create_key_file(path, at=AT)
    with pytest.raises(KeyFileError):
        open_or_create_key_file(path, at=AT)
    assert path.read_text(encoding="utf-8") == "garbage"


def test_open_or_create_creates_once_then_loads(tmp_path: Path) -> None:
    path = tmp_path / "broker.key"
    created = open_or_create_key_file(path, at=AT)
    again = open_or_create_key_file(path, at=AT)
    assert again.master_key == created.master_key


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist") as caught:
        load_key_file(tmp_path / "absent.key")
    _assert_clean_error(caught.value)


def test_key_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="could not be read") as caught:
        load_key_file(tmp_path)
    _assert_clean_error(caught.value)


def test_key_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "broker.key"
    path.write_bytes(b"\xff\xfe" + MASTER)
    with pytest.raises(KeyFileError, match="could not be read") as caught:
        load_key_file(path)
    _assert_clean_error(caught.value, MASTER)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2, 3]",
        '"accord-key-file"',
        "{}",
        json.dumps({"format": KEY_FILE_FORMAT}),
        json.dumps({"format": "other", "version": 1, "master_key": "AAAA"}),
        base64.b64encode(MASTER).decode("ascii"),
    ],
)
def test_key_file_that_is_not_an_accord_key_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broker.key"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(KeyFileError, match="corrupt") as caught:
        load_key_file(path)
    _assert_clean_error(caught.value, MASTER)


@pytest.mark.parametrize(
    "changes",
    [
        {"master_key": base64.b64encode(MASTER[:31]).decode("ascii")},
        {"master_key": base64.b64encode(MASTER + b"\x00").decode("ascii")},
        {"master_key": base64.b64encode(MASTER).decode("ascii")[:-4]},
        {"master_key": base64.b64encode(MASTER).decode("ascii") + "!"},
        {"master_key": MASTER.hex()},
        {"master_key": 12345},
        {"master_key": None},
        {"version": 0},
        {"version": -1},
        {"version": "1"},
        {"version": 1.5},
        {"version": True},  # would derive keys from "True", not "1"
        {"version": None},
    ],
)
def test_key_file_with_wrong_shape(tmp_path: Path, changes: dict[str, object]) -> None:
    path = tmp_path / "broker.key"
    _write_key_document(path, **changes)
    with pytest.raises(KeyFileError, match="corrupt") as caught:
        load_key_file(path)
    _assert_clean_error(caught.value, MASTER)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_key_file_with_later_version_loads(tmp_path: Path) -> None:
    path = tmp_path / "broker.key"
    _write_key_document(path, version=3)
    ring = load_key_file(path)
    assert ring.version == 3
    assert ring.master_key == MASTER


def test_wrap_round_trips_and_binds_the_slot() -> None:
    ring = KeyRing(master_key=MASTER, version=1)
    key = bytes(range(100, 132))
    wrapped = ring.wrap(key, b"slot-a")
    assert key not in wrapped
    assert ring.unwrap(wrapped, b"slot-a") == key
    assert ring.wrap(key, b"slot-a") != wrapped  # a fresh nonce every time
    with pytest.raises(KeyFileError, match="could not be unwrapped"):
        ring.unwrap(wrapped, b"slot-b")
    with pytest.raises(KeyFileError, match="could not be unwrapped"):
        KeyRing(master_key=bytes(32), version=1).unwrap(wrapped, b"slot-a")
    with pytest.raises(KeyFileError, match="known wrapped format"):
        ring.unwrap(b"\x02" + wrapped[1:], b"slot-a")
    with pytest.raises(KeyFileError, match="known wrapped format"):
        ring.unwrap(wrapped[:20], b"slot-a")


def test_legacy_keys_differ_per_agreement_kind_recipient_and_version() -> None:
    ring = KeyRing(master_key=MASTER, version=1)
    keys = [
        ring.legacy_key("linkage", "agreement-a"),
        ring.legacy_key("linkage", "agreement-b"),
        ring.legacy_key("data", "agreement-a"),
        ring.legacy_key("pseudonym", "agreement-a", "police"),
        ring.legacy_key("pseudonym", "agreement-a", "school"),
        ring.legacy_key("pseudonym", "a", "bc"),
        ring.legacy_key("pseudonym", "ab", "c"),
        KeyRing(master_key=MASTER, version=2).legacy_key("linkage", "agreement-a"),
        KeyRing(master_key=bytes(32), version=1).legacy_key("linkage", "agreement-a"),
        MASTER,
    ]
    assert len(set(keys)) == len(keys)
    assert all(len(k) == 32 for k in keys)


def test_the_master_key_from_the_environment() -> None:
    encoded = base64.b64encode(MASTER).decode("ascii")
    ring = master_key_from_environment(f" {encoded}\n")
    assert ring.master_key == MASTER
    assert ring.source == "BROKER_MASTER_KEY"
    for bad in ("", "not base64!", base64.b64encode(b"short").decode(), encoded + encoded):
        with pytest.raises(KeyFileError, match="32 random bytes") as error:
            master_key_from_environment(bad)
        assert (bad.strip() or "@@") not in str(error.value)


def test_check_value_differs_per_key_and_hides_it() -> None:
    ring = KeyRing(master_key=MASTER, version=1)
    other = KeyRing(master_key=bytes(32), version=1)
    assert ring.check_value() != other.check_value()
    assert ring.check_value() not in MASTER.hex()


def test_repr_and_str_of_key_ring_hold_no_key_material() -> None:
    ring = KeyRing(master_key=MASTER, version=7)
    for text in (repr(ring), str(ring), f"{ring!r}", repr([ring]), repr({"k": ring})):
        assert MASTER.hex() not in text
        assert MASTER.hex()[:16] not in text
        assert base64.b64encode(MASTER).decode("ascii") not in text
        assert base64.b64encode(MASTER).decode("ascii")[:12] not in text
        assert repr(MASTER) not in text
        assert repr(MASTER)[:20] not in text
        assert "version=7" in text
