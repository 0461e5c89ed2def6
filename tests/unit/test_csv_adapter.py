"""Reading agency extracts: strings kept, empty cells absent, problems located, no values echoed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.csv import (
    CANONICAL_COLUMNS,
    MAX_PROBLEMS,
    OPTIONAL_COLUMNS,
    iter_batches,
    read_extract,
)
from broker.errors import Problem, ValidationError

# A value planted in the files below; no error may ever repeat it.
SECRET = "Zebedee"


def _write(tmp_path: Path, text: str, *, name: str = "police.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _refused(path: Path, **kwargs: int) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        read_extract(path, **kwargs)
    error = raised.value
    assert SECRET not in str(error)
    assert SECRET not in error.one_line()
    assert error.problems
    assert len(error.problems) <= MAX_PROBLEMS
    for problem in error.problems:
        assert SECRET not in repr(problem.as_dict())
        assert problem.location.file == str(path)
    return error


def _where(error: ValidationError) -> set[tuple[int | None, str | None]]:
    return {(p.location.line, p.location.field) for p in error.problems}


def test_canonical_columns_are_the_nine_identity_columns_in_order() -> None:
    assert CANONICAL_COLUMNS == (
        "record_id",
        "given_name",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
        "address_line",
        "nhs_number",
        "upn",
    )
    assert OPTIONAL_COLUMNS == ("locality",)


def test_reads_strings_drops_empty_cells_and_strips_a_bom(tmp_path: Path) -> None:
    text = (
        "\ufeffrecord_id,given_name,upn,locality,note\r\n"
        f"P1,{SECRET},,  ,007\r\n"
        'P2,"Smith, Jo",X,North,\r\n'
    )
    extract = read_extract(_write(tmp_path, text))
    assert extract.dataset_name == "police"
    assert extract.columns == ("record_id", "given_name", "upn", "locality", "note")
    assert extract.agency_columns == ("note",)
    assert extract.rows == [
        {"record_id": "P1", "given_name": SECRET, "note": "007"},
        {"record_id": "P2", "given_name": "Smith, Jo", "upn": "X", "locality": "North"},
    ]


def test_quoted_cells_keep_newlines_and_odd_characters(tmp_path: Path) -> None:
    text = 'record_id,note\nP1,"two\r\nlines"\nP2,"O\'Brien \u2028 Zoë, ""quoted"""\n\nP3,x\n'
    extract = read_extract(_write(tmp_path, text))
    assert [row["note"] for row in extract.rows] == [
        "two\r\nlines",
        'O\'Brien \u2028 Zoë, "quoted"',
        "x",
    ]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    extract = read_extract(_write(tmp_path, "record_id,given_name\n", name="ed.csv"))
    assert extract.rows == []
    assert extract.dataset_name == "ed"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, f"record_id,given_name\nP1,{SECRET}\nP2,Zoë\n", encoding="latin-1")
    error = _refused(path)
    assert "UTF-8" in error.message
    assert _where(error) == {(3, None)}


def test_missing_record_id_column(tmp_path: Path) -> None:
    error = _refused(_write(tmp_path, f"given_name,family_name\n{SECRET},Smith\n"))
    assert _where(error) == {(1, "record_id")}


def test_a_file_without_a_header_does_not_echo_its_first_record(tmp_path: Path) -> None:
    error = _refused(_write(tmp_path, f"P1,{SECRET},{SECRET}\nP2,Amy,Amy\n"))
    assert (1, "record_id") in _where(error)
    assert "header" in error.message


def test_duplicate_and_unnamed_columns(tmp_path: Path) -> None:
    error = _refused(_write(tmp_path, f"record_id,upn,upn,,\nP1,a,b,{SECRET},c\n"))
    assert _where(error) == {(1, "upn"), (1, None)}
    assert len(error.problems) == 3  # the repeat, and two columns without names


def test_ragged_rows_report_where_the_record_starts(tmp_path: Path) -> None:
    text = f'record_id,given_name\nP1,{SECRET}\nP2,"{SECRET}\nstill P2",extra\nP3\n'
    error = _refused(_write(tmp_path, text))
    assert _where(error) == {(3, None), (5, None)}
    assert "3 cells but the header has 2" in error.problems[0].message


def test_duplicate_record_ids_name_both_lines(tmp_path: Path) -> None:
    text = f"record_id,given_name\nP1,{SECRET}\nP2,Amy\n P1 ,{SECRET}\n"
    error = _refused(_write(tmp_path, text))
    assert _where(error) == {(4, "record_id")}
    assert "line 2" in error.problems[0].message


def test_empty_record_id(tmp_path: Path) -> None:
    error = _refused(_write(tmp_path, f"record_id,given_name\n,{SECRET}\n  ,{SECRET}\n"))
    assert _where(error) == {(2, "record_id"), (3, "record_id")}


def test_empty_file(tmp_path: Path) -> None:
    error = _refused(_write(tmp_path, ""))
    assert "empty" in error.message


def test_too_many_rows_is_refused_not_truncated(tmp_path: Path) -> None:
    path = _write(tmp_path, "record_id\nP1\nP2\nP3\n")
    assert len(read_extract(path, max_rows=3).rows) == 3
    error = _refused(path, max_rows=2)
    assert _where(error) == {(4, None)}
    with pytest.raises(ValidationError):
        read_extract(path, max_rows=-1)


def test_at_most_fifty_problems_are_listed_but_all_are_counted(tmp_path: Path) -> None:
    text = "record_id,given_name\n" + f"P1,{SECRET},x\n" * 120
    error = _refused(_write(tmp_path, text))
    assert len(error.problems) == MAX_PROBLEMS
    assert "120 problem" in error.message
    assert [p.location.line for p in error.problems] == list(range(2, 52))
    assert all(isinstance(p, Problem) and p.code == "extract_invalid" for p in error.problems)


def test_unreadable_quoting_is_located(tmp_path: Path) -> None:
    # A cell past the csv module's field size limit cannot be read as CSV.
    text = "record_id,note\nP1,ok\nP2," + "x" * 200_000 + "\n"
    error = _refused(_write(tmp_path, text))
    assert _where(error) == {(3, None)}


def test_batches_are_consecutive_and_the_last_may_be_short() -> None:
    assert list(iter_batches([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(iter_batches([], 3)) == []
    rows = ({"record_id": str(i)} for i in range(7))
    assert [len(b) for b in iter_batches(rows, 3)] == [3, 3, 1]


def test_a_bad_batch_size_fails_before_any_row_is_read() -> None:
    def rows() -> Iterator[dict[str, str]]:
        raise AssertionError("read too early")
        yield {}

    with pytest.raises(ValidationError):
        iter_batches(rows(), 0)
