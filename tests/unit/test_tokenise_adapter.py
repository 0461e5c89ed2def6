"""Tokenising at source: the adapter, the linkage key file, and the broker's tokenised checks."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.progress import Progress
from typer.testing import CliRunner

from adapters.tokenise import (
    batch_body,
    read_tokenised,
    tokenise_extract,
    tokenise_rows,
    write_tokenised,
)
from agreements.models import Dataset
from broker.cli import adapter as adapter_cli
from broker.errors import BatchRejected, KeyFileError, NotFound, ValidationError
from broker.ingest import (
    IDENTIFIER_NAMES,
    validate_batch,
    validate_tokenised_batch,
)
from broker.keys import (
    LINKAGE_KEY_FILE_FORMAT,
    LinkageKey,
    load_linkage_key_file,
    write_linkage_key_file,
)
from broker.linkage import record_tokens
from tests.helpers import AGREEMENT, EXAMPLE_FILE, example_agreement

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class _OperatorKeys:
    """Per-agreement linkage keys as the broker's operator would export them."""

    master_key = bytes(range(32))

    def linkage(self, agreement_id: str) -> LinkageKey:
        key = hashlib.sha256(self.master_key + agreement_id.encode("utf-8")).digest()
        return LinkageKey(agreement_id, 1, key)

    def linkage_key(self, agreement_id: str) -> bytes:
        return self.linkage(agreement_id).key

    def linkage_check_value(self, agreement_id: str) -> str:
        return self.linkage(agreement_id).check_value

    def export_linkage_key(self, agreement_id: str, path: Path, *, at: datetime) -> LinkageKey:
        linkage = self.linkage(agreement_id)
        write_linkage_key_file(linkage, path, at=at)
        return linkage


RING = _OperatorKeys()
EXAMPLE = example_agreement()
MATCH_KEYS = EXAMPLE.linkage.match_keys
ED_ID = "ed-attendances"
NHS = "9434765919"
# Distinctive values that must never appear in a message or an output file.
GIVEN, FAMILY = "Quillonella", "Brackenshaw-Pike"
ED_COLUMNS = (
    "record_id,given_name,family_name,date_of_birth,sex,postcode,address_line,nhs_number,"
    "attendance_date,injury_type,arrival_mode"
)


def _ed(date_format: str = "iso") -> Dataset:
    dataset = EXAMPLE.dataset(ED_ID)
    assert dataset is not None
    return dataset.model_copy(update={"date_format": date_format})


def _linkage() -> LinkageKey:
    return RING.linkage(AGREEMENT)


def _row(ref: str, **values: str) -> dict[str, str]:
    row = {
        "record_id": ref,
        "given_name": GIVEN,
        "family_name": FAMILY,
        "date_of_birth": "2011-03-14",
        "postcode": "NS1 4AB",
        "nhs_number": NHS,
        "attendance_date": "2026-11-20",
        "injury_type": "sharps",
    }
    row.update(values)
    return {k: v for k, v in row.items() if v != ""}


def _broker_tokens(
    dataset: Dataset, row: dict[str, str], match_keys: tuple[str, ...] = MATCH_KEYS
) -> dict[str, str]:
    """What the broker computes for the same record sent in clear."""
    (valid,) = validate_batch(dataset, [row], max_field_length=1024)
    return record_tokens(RING.linkage_key(AGREEMENT), valid.identifiers, match_keys)


def _write_csv(path: Path, header: str, *lines: str) -> Path:
    path.write_text("\n".join((header, *lines)) + "\n", encoding="utf-8")
    return path


# -- tokens ------------------------------------------------------------------


def test_tokens_equal_the_brokers_for_the_same_person_however_typed() -> None:
    dataset = _ed("dmy")
    typed = [
        _row("A", date_of_birth="14/03/2011"),
        _row(
            "B",
            given_name="  quillonella ",
            family_name="BRACKENSHAW PIKE",
            date_of_birth="14-3-2011",
            postcode="ns14ab",
            nhs_number="943 476 5919",
        ),
        _row("C", given_name="Mrs Quillonella", family_name="brackenshaw\u2013pike"),
    ]
    typed[2]["date_of_birth"] = "14.03.2011"
    result = tokenise_rows(typed, dataset, _linkage(), MATCH_KEYS)
    assert result.rejected == ()
    expected = _broker_tokens(dataset, typed[0])
    assert set(expected) == {"nhs", "name_dob_postcode"}
    for row, written in zip(typed, result.rows, strict=True):
        assert _broker_tokens(dataset, row) == expected
        assert written["token_nhs"] == expected["nhs"]
        assert written["token_name_dob_postcode"] == expected["name_dob_postcode"]


ALL_KEYS = ("nhs", "upn", "name_dob_postcode", "variant_dob_postcode", "swapped_names_dob_postcode")


def test_tokens_equal_the_brokers_for_all_five_match_keys(tmp_path: Path) -> None:
    # A dataset with both national identifiers, under an agreement naming every key.
    dataset = _ed().model_copy(update={"identifiers": (*_ed().identifiers, "upn")})
    typed = [
        _row("A", given_name="William", upn="A123456789012"),
        _row("B", given_name=" BILL ", postcode="ns14ab", nhs_number="943 476 5919"),
        _row("C", given_name=FAMILY, family_name=GIVEN, upn="a123456789012"),
    ]
    result = tokenise_rows(typed, dataset, _linkage(), ALL_KEYS)
    assert result.rejected == ()
    assert result.columns[1:6] == tuple(f"token_{key}" for key in ALL_KEYS)
    broker = [_broker_tokens(dataset, row, ALL_KEYS) for row in typed]
    william, bill, swapped = broker
    assert set(william) == set(ALL_KEYS)
    assert bill["variant_dob_postcode"] == william["variant_dob_postcode"]
    assert bill["name_dob_postcode"] != william["name_dob_postcode"]
    unswapped = _broker_tokens(dataset, _row("D"), ALL_KEYS)
    assert swapped["swapped_names_dob_postcode"] == unswapped["swapped_names_dob_postcode"]
    # Through the output file and the broker's checks of a tokenised batch, unchanged.
    path = tmp_path / "tokens.csv"
    write_tokenised(path, result)
    body = batch_body(read_tokenised(path), _linkage())
    valid = validate_tokenised_batch(
        dataset, body["records"], match_keys=ALL_KEYS, max_field_length=1024
    )
    assert [v.tokens for v in valid] == broker


def test_date_format_of_the_dataset_is_applied() -> None:
    # 03/04/2011 is 3 April under dmy and 4 March under mdy: different people, different tokens.
    row = _row("A", date_of_birth="03/04/2011")
    dmy = tokenise_rows([row], _ed("dmy"), _linkage(), MATCH_KEYS).rows[0]
    mdy = tokenise_rows([row], _ed("mdy"), _linkage(), MATCH_KEYS).rows[0]
    iso = tokenise_rows([_row("A", date_of_birth="2011-04-03")], _ed(), _linkage(), MATCH_KEYS)
    assert dmy["token_name_dob_postcode"] == iso.rows[0]["token_name_dob_postcode"]
    assert mdy["token_name_dob_postcode"] != dmy["token_name_dob_postcode"]


def test_tokens_depend_on_the_agreement_key() -> None:
    other = RING.linkage("another-agreement")
    row = _row("A")
    mine = tokenise_rows([row], _ed(), _linkage(), MATCH_KEYS).rows[0]
    theirs = tokenise_rows([row], _ed(), other, MATCH_KEYS).rows[0]
    assert mine["token_nhs"] != theirs["token_nhs"]


def test_record_without_identifiers_for_a_key_has_an_empty_column() -> None:
    rows = [_row("A", nhs_number=""), _row("B", postcode="")]
    written = tokenise_rows(rows, _ed(), _linkage(), MATCH_KEYS).rows
    assert written[0]["token_nhs"] == ""
    assert len(written[0]["token_name_dob_postcode"]) == 64
    assert written[1]["token_name_dob_postcode"] == ""
    assert len(written[1]["token_nhs"]) == 64


def test_only_the_agreements_match_keys_get_columns() -> None:
    school = EXAMPLE.dataset("school-attendance")
    assert school is not None
    row = {
        "record_id": "S1",
        "given_name": GIVEN,
        "family_name": FAMILY,
        "date_of_birth": "2011-03-14",
        "postcode": "NS1 4AB",
        "upn": "A123456789012",
        "attendance_pct": "90",
        "persistent_absence": "false",
    }
    result = tokenise_rows([row], school, _linkage(), MATCH_KEYS)
    assert "token_upn" not in result.columns  # the example agreement does not link on UPN
    all_keys = tokenise_rows([row], school, _linkage(), ("nhs", "upn", "name_dob_postcode"))
    assert all_keys.columns[:4] == (
        "record_id",
        "token_nhs",
        "token_upn",
        "token_name_dob_postcode",
    )


# -- invalid rows ------------------------------------------------------------


def test_invalid_rows_are_reported_by_row_and_field_without_values_and_left_out() -> None:
    rows = [
        _row("A"),
        _row("B", date_of_birth="2011-02-30"),
        _row("C", given_name="\u200bQuillonella"),
        _row("D", nhs_number="9434765918"),  # fails its check digit: loses the NHS key only
    ]
    result = tokenise_rows(rows, _ed(), _linkage(), MATCH_KEYS)
    assert [r["record_id"] for r in result.rows] == ["A", "D"]
    assert [(p.row, p.field, p.code) for p in result.rejected] == [
        (2, "date_of_birth", "identifier_invalid"),
        (3, "given_name", "identifier_invalid"),
    ]
    assert result.rows_rejected == 2
    assert [(p.row, p.field) for p in result.unusable] == [(4, "nhs_number")]
    assert result.rows[1]["token_nhs"] == ""
    assert result.rows[1]["token_name_dob_postcode"]
    for problem in (*result.rejected, *result.unusable):
        line = problem.describe()
        assert line.startswith(f"row {problem.row}, field '{problem.field}': ")
        for value in (GIVEN.lower(), "2011-02-30", "9434765918", "quillonella"):
            assert value not in line.lower()


def test_progress_is_told_about_every_row() -> None:
    seen: list[int] = []
    rows = [_row(f"R{i}") for i in range(1203)]
    tokenise_rows(rows, _ed(), _linkage(), MATCH_KEYS, progress=seen.append)
    assert sum(seen) == 1203
    assert len(seen) == 3  # in chunks, not once per row


# -- files -------------------------------------------------------------------


def test_output_file_has_no_identifier_column_and_no_identifier_value(tmp_path: Path) -> None:
    source = _write_csv(
        tmp_path / "ed.csv",
        ED_COLUMNS,
        f"ED-1,{GIVEN},{FAMILY},2011-03-14,F,NS1 4AB,12 Mill Lane,{NHS},2026-11-20,sharps,self",
        f"ED-2,{GIVEN},{FAMILY},2011-02-30,F,NS1 4AB,12 Mill Lane,,2026-11-21,blunt,",
    )
    target = tmp_path / "out" / "ed-tokens.csv"
    target.parent.mkdir()
    result = tokenise_extract(EXAMPLE, ED_ID, _linkage(), source, target)
    assert result.rows_read == 2
    assert result.rows_rejected == 1
    with target.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        rows = list(reader)
    assert header == (
        "record_id",
        "token_nhs",
        "token_name_dob_postcode",
        "attendance_date",
        "injury_type",
        "arrival_mode",
        "safeguarding_referral_made",
    )
    assert not set(header) & (IDENTIFIER_NAMES | {"address_line"})
    assert [r["record_id"] for r in rows] == ["ED-1"]
    text = target.read_text(encoding="utf-8").lower()
    for value in (GIVEN, FAMILY, "2011-03-14", "ns1 4ab", NHS, "mill lane"):
        assert value.lower() not in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["ed-tokens.csv"]  # no temporary left


def test_tokenised_file_reads_back_as_a_tokenised_batch(tmp_path: Path) -> None:
    source = _write_csv(
        tmp_path / "ed.csv",
        ED_COLUMNS,
        f"ED-1,{GIVEN},{FAMILY},2011-03-14,F,NS1 4AB,,,2026-11-20,sharps,self",
    )
    target = tmp_path / "tokens.csv"
    tokenise_extract(EXAMPLE, ED_ID, _linkage(), source, target)
    records = read_tokenised(target)
    dataset = _ed()
    expected = _broker_tokens(dataset, _row("x", nhs_number=""))
    assert records == [
        {
            "record_id": "ED-1",
            "tokens": {"name_dob_postcode": expected["name_dob_postcode"]},
            "attendance_date": "2026-11-20",
            "injury_type": "sharps",
            "arrival_mode": "self",
        }
    ]
    body = batch_body(records, _linkage())
    assert body["tokenised"] == {"key_check": _linkage().check_value, "key_version": 1}
    (valid,) = validate_tokenised_batch(
        dataset, body["records"], match_keys=MATCH_KEYS, max_field_length=1024
    )
    assert valid.tokens == {"name_dob_postcode": expected["name_dob_postcode"]}
    assert valid.identifiers == {}


def test_a_clear_extract_is_not_read_as_tokenised(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "ed.csv", ED_COLUMNS, f"ED-1,{GIVEN},,,,,,,,,")
    with pytest.raises(ValidationError, match="no token_"):
        read_tokenised(source)


def test_wrong_agreement_key_and_unknown_dataset_write_nothing(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "ed.csv", ED_COLUMNS)
    target = tmp_path / "out.csv"
    with pytest.raises(KeyFileError, match="another agreement"):
        tokenise_extract(EXAMPLE, ED_ID, RING.linkage("mace-cohort"), source, target)
    with pytest.raises(NotFound, match="dataset 'ed' is not in agreement"):
        tokenise_extract(EXAMPLE, "ed", _linkage(), source, target)
    assert not target.exists()


# -- the linkage key file -----------------------------------------------------


def test_linkage_key_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sv.linkage.json"
    exported = RING.export_linkage_key(AGREEMENT, path, at=AT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == LINKAGE_KEY_FILE_FORMAT
    assert document["agreement_id"] == AGREEMENT
    assert document["key_version"] == 1
    assert base64.b64decode(document["linkage_key"]) == RING.linkage_key(AGREEMENT)
    assert document["key_check"] == RING.linkage_check_value(AGREEMENT)
    loaded = load_linkage_key_file(path, agreement_id=AGREEMENT)
    assert loaded == exported
    assert loaded.key == RING.linkage_key(AGREEMENT)
    assert document["linkage_key"] not in repr(loaded)
    assert RING.linkage_check_value(AGREEMENT) != RING.linkage_check_value("mace-cohort")
    # The master key never leaves: it is not in the file, in any encoding.
    text = path.read_text(encoding="utf-8")
    assert base64.b64encode(RING.master_key).decode() not in text
    assert RING.master_key.hex() not in text


def test_linkage_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "sv.json"
    path.write_text("keep me", encoding="utf-8")
    with pytest.raises(KeyFileError, match="never overwritten"):
        RING.export_linkage_key(AGREEMENT, path, at=AT)
    assert path.read_text(encoding="utf-8") == "keep me"


def _document(**changes: Any) -> dict[str, Any]:
    linkage = _linkage()
    document: dict[str, Any] = {
        "format": LINKAGE_KEY_FILE_FORMAT,
        "agreement_id": AGREEMENT,
        "key_version": 1,
        "linkage_key": base64.b64encode(linkage.key).decode("ascii"),
        "key_check": linkage.check_value,
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist; ask the broker operator"),
        (b"\xff\xfe not text", "could not be read"),
        (b"{not json", "corrupt"),
        (json.dumps(_document(format="accord-key-file")).encode(), "corrupt"),
        (json.dumps(_document(key_version=True)).encode(), "corrupt"),
        (json.dumps(_document(linkage_key="c2hvcnQ=")).encode(), "corrupt"),
        (json.dumps(_document(key_check="0" * 16)).encode(), "corrupt"),
        (
            json.dumps(_document(linkage_key=base64.b64encode(bytes(32)).decode())).encode(),
            "corrupt",
        ),
        (json.dumps(_document(agreement_id="mace-cohort")).encode(), "for agreement 'mace-cohort'"),
        (json.dumps(_document(agreement_id="Ada Lovelace 1815")).encode(), "another agreement"),
    ],
)
def test_linkage_key_file_errors_are_one_clear_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "linkage.json"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(KeyFileError) as raised:
        load_linkage_key_file(path, agreement_id=AGREEMENT)
    line = raised.value.one_line()
    assert message in line
    assert "\n" not in line
    assert base64.b64encode(_linkage().key).decode() not in line
    assert "Ada Lovelace" not in line


# -- the broker's checks of a tokenised batch ----------------------------------


def _token(seed: str) -> str:
    return (seed * 64)[:64]


def _tokenised(ref: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": ref,
        "tokens": {"nhs": _token("a1"), "name_dob_postcode": _token("b2")},
        "attendance_date": "2026-11-20",
        "injury_type": "sharps",
    }
    record.update(extra)
    return record


def _problems(records: list[Any]) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(BatchRejected) as rejected:
        validate_tokenised_batch(_ed(), records, match_keys=MATCH_KEYS, max_field_length=1024)
    return [(p.location.record, p.location.field, p.code) for p in rejected.value.problems]


def test_tokenised_batch_refuses_identifiers_mixing_and_bad_tokens() -> None:
    problems = _problems(
        [
            _tokenised("A"),
            _tokenised("B", given_name=GIVEN, upn="A123456789012"),
            _row("C"),
            _tokenised("D", tokens={"nhs": _token("A1"), "upn": _token("c3")}),
            _tokenised("E", tokens={"nhs": "ab" * 31}),
            _tokenised("F", tokens="ab"),
            _tokenised("G", tokens={f"{GIVEN} 2011": _token("d4")}, ward="A1"),
        ]
    )
    assert problems == [
        (1, "given_name", "identifier_not_allowed"),
        (1, "upn", "identifier_not_allowed"),
        (2, "date_of_birth", "identifier_not_allowed"),
        (2, "family_name", "identifier_not_allowed"),
        (2, "given_name", "identifier_not_allowed"),
        (2, "nhs_number", "identifier_not_allowed"),
        (2, "postcode", "identifier_not_allowed"),
        (2, "tokens", "record_not_tokenised"),
        (3, "tokens.nhs", "token_invalid"),
        (3, "tokens.upn", "token_key_unknown"),
        (4, "tokens.nhs", "token_invalid"),
        (5, "tokens", "wrong_type"),
        (6, "ward", "field_not_declared"),
        (6, "tokens", "token_key_unknown"),
    ]


def test_tokenised_problems_never_echo_a_value() -> None:
    with pytest.raises(BatchRejected) as rejected:
        validate_tokenised_batch(
            _ed(),
            [_tokenised("A", given_name=GIVEN, tokens={f"{GIVEN} 2011": _token("e5")})],
            match_keys=MATCH_KEYS,
            max_field_length=1024,
        )
    text = " ".join(p.message for p in rejected.value.problems) + rejected.value.message
    assert GIVEN not in text
    assert _token("e5") not in text


def test_a_clear_batch_holding_a_tokenised_record_is_refused_at_its_position() -> None:
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(_ed(), [_row("A"), _tokenised("B")], max_field_length=1024)
    assert [(p.location.record, p.location.field, p.code) for p in rejected.value.problems] == [
        (1, "tokens", "record_tokenised")
    ]
    assert rejected.value.location.record == 1


def test_a_record_without_match_key_may_carry_empty_tokens() -> None:
    (valid,) = validate_tokenised_batch(
        _ed(), [_tokenised("A", tokens={})], match_keys=MATCH_KEYS, max_field_length=1024
    )
    assert valid.tokens == {}


# -- the command ---------------------------------------------------------------


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(adapter_cli.adapter_app, list(args))


def test_tokenise_command_writes_the_file_and_a_summary(tmp_path: Path) -> None:
    key = tmp_path / "sv.json"
    RING.export_linkage_key(AGREEMENT, key, at=AT)
    source = _write_csv(
        tmp_path / "ed.csv",
        ED_COLUMNS,
        f"ED-1,{GIVEN},{FAMILY},2011-03-14,F,NS1 4AB,,{NHS},2026-11-20,sharps,self",
        f"ED-2,{GIVEN},{FAMILY},31/12/2011,F,NS1 4AB,,,2026-11-20,sharps,self",
    )
    target = tmp_path / "tokens.csv"
    args = ["tokenise", "--agreement", str(EXAMPLE_FILE), "--dataset", ED_ID, "--key", str(key)]
    result = _invoke(*args, str(source), str(target))
    assert result.exit_code == 0, result.output
    assert f"tokenised 1 of 2 row(s) of {source} into {target}" in result.output
    assert "row 2, field 'date_of_birth'" in result.output
    assert "31/12/2011" not in result.output
    assert len(read_tokenised(target)) == 1


def test_tokenise_command_shows_a_progress_bar_on_large_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter_cli, "PROGRESS_FROM_ROWS", 1)
    started: list[bool] = []
    real_start = Progress.start

    def start(self: Any) -> None:
        started.append(True)
        real_start(self)

    monkeypatch.setattr(Progress, "start", start)
    key = tmp_path / "sv.json"
    RING.export_linkage_key(AGREEMENT, key, at=AT)
    source = _write_csv(
        tmp_path / "ed.csv",
        ED_COLUMNS,
        f"ED-1,{GIVEN},{FAMILY},2011-03-14,F,NS1 4AB,,{NHS},2026-11-20,sharps,self",
    )
    args = ["tokenise", "--agreement", str(EXAMPLE_FILE), "--dataset", ED_ID, "--key", str(key)]
    result = _invoke(*args, str(source), str(tmp_path / "t.csv"))
    assert result.exit_code == 0, result.output
    assert started == [True]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_key", "linkage key file"),
        ("wrong_agreement", "is for agreement 'mace-cohort'"),
        ("unknown_dataset", "dataset 'nope' is not in agreement"),
        ("unreadable_csv", "file could not be read"),
    ],
)
def test_tokenise_command_bad_input_is_one_line_and_exit_1(
    tmp_path: Path, case: str, expected: str
) -> None:
    key = tmp_path / "sv.json"
    RING.export_linkage_key("mace-cohort" if case == "wrong_agreement" else AGREEMENT, key, at=AT)
    if case == "missing_key":
        key = tmp_path / "absent.json"
    source = tmp_path / ("absent.csv" if case == "unreadable_csv" else "ed.csv")
    if case != "unreadable_csv":
        _write_csv(source, ED_COLUMNS)
    dataset = "nope" if case == "unknown_dataset" else ED_ID
    target = tmp_path / "t.csv"
    args = ["tokenise", "--agreement", str(EXAMPLE_FILE), "--dataset", dataset, "--key", str(key)]
    result = _invoke(*args, str(source), str(target))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("broker: error: ")
    assert expected in lines[0]
    assert not target.exists()


def test_a_linkage_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "linkage.json"
    path.write_text("{}")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_linkage_key_file(path, agreement_id=AGREEMENT)
