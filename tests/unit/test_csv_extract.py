"""Reading agency extracts: values kept as strings, problems located, values never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.csv import iter_batches, read_extract
from broker.errors import ValidationError

SECRET = "Zebedee"


def _write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "police.csv"
    path.write_bytes(text.encode(encoding))
    return path


def _problems(path: Path) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        read_extract(path)
    assert SECRET not in str(raised.value)
    assert all(SECRET not in p.message for p in raised.value.problems)
    return raised.value


def test_reads_rows_and_drops_empty_cells(tmp_path: Path) -> None:
    path = _write(tmp_path, f'\ufeffrecord_id,given_name,upn\nP1,{SECRET},\nP2,"Smith, Jo",X\n')
    extract = read_extract(path)
    assert extract.dataset_name == "police"
    assert extract.columns == ("record_id", "given_name", "upn")
    assert extract.rows == [
        {"record_id": "P1", "given_name": SECRET},
        {"record_id": "P2", "given_name": "Smith, Jo", "upn": "X"},
    ]


def test_missing_record_id_column(tmp_path: Path) -> None:
    error = _problems(_write(tmp_path, f"given_name\n{SECRET}\n"))
    assert error.problems[0].location.field == "record_id"


def test_ragged_rows_and_duplicate_ids_name_their_lines(tmp_path: Path) -> None:
    error = _problems(_write(tmp_path, f"record_id,given_name\nP1,{SECRET}\nP1,{SECRET}\nP3\n"))
    found = {(p.location.line, p.location.field) for p in error.problems}
    assert (3, "record_id") in found
    assert (4, None) in found


def test_not_utf8(tmp_path: Path) -> None:
    error = _problems(_write(tmp_path, "record_id,given_name\nP1,Zoë\n", encoding="utf-16"))
    assert "UTF-8" in error.message


def test_duplicate_columns_and_empty_file(tmp_path: Path) -> None:
    _problems(_write(tmp_path, "record_id,upn,upn\nP1,a,b\n"))
    _problems(_write(tmp_path, ""))


def test_embedded_newlines_in_quoted_cells(tmp_path: Path) -> None:
    extract = read_extract(_write(tmp_path, 'record_id,note\nP1,"two\nlines"\n'))
    assert extract.rows == [{"record_id": "P1", "note": "two\nlines"}]


def test_batches() -> None:
    assert list(iter_batches([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValidationError):
        list(iter_batches([1], 0))
