"""``broker.link.files``: input CSVs read and checked, outputs written formula-safe and whole."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from broker.cli.link import chunked, encode_chunks
from broker.errors import ValidationError
from broker.link.config import DEFAULT_CONFIG
from broker.link.files import (
    InputRecord,
    OutputError,
    check_readable,
    check_sources,
    check_writable,
    read_input,
    write_clusters,
    write_pairs,
    write_text,
)
from broker.link.types import Band, Level, ScoredPair

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "link"


def _refused(path: Path) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        read_input(path)
    return caught.value


def test_reads_canonical_columns_prefixed_by_the_stem_and_ignores_others() -> None:
    read = read_input(CORPUS / "data-quality.csv")
    assert read.source == "data-quality"
    assert [r.ref for r in read.records] == ["data-quality:1", "data-quality:2", "data-quality:3"]
    assert [r.line for r in read.records] == [2, 3, 4]
    first = read.records[0].identifiers
    assert "favourite_colour" not in first
    assert "record_id" not in first
    assert first == {
        "given_name": "Amy",
        "family_name": "Shaw",
        "date_of_birth": "2012-03-04",
        "sex": "F",
        "postcode": "75001",
        "nhs_number": "",
    }


def test_a_byte_order_mark_is_accepted() -> None:
    read = read_input(CORPUS / "byte-order-mark.csv")
    assert [r.ref for r in read.records] == ["byte-order-mark:1", "byte-order-mark:2"]
    assert read.records[0].identifiers["given_name"] == "Amy"


def test_missing_record_id_column() -> None:
    error = _refused(CORPUS / "no-record-id.csv")
    assert error.code == "link_file_no_record_id"
    assert error.location.line == 1
    assert error.one_line().endswith("no-record-id.csv:1)")


def test_duplicate_record_id_names_the_second_line_and_the_first() -> None:
    error = _refused(CORPUS / "duplicate-record-id.csv")
    assert error.code == "link_file_duplicate_record_id"
    assert error.location.line == 4
    assert "line 2" in error.message


def test_not_utf8_names_the_line_of_the_bad_byte() -> None:
    error = _refused(CORPUS / "latin-1.csv")
    assert error.code == "link_file_not_utf8"
    assert error.location.line == 3


def test_ragged_row_names_its_line() -> None:
    error = _refused(CORPUS / "ragged-row.csv")
    assert error.code == "link_file_ragged_row"
    assert error.location.line == 3
    assert "5 cells but the header has 4" in error.message


def test_empty_file_and_missing_file() -> None:
    assert _refused(CORPUS / "empty.csv").code == "link_file_no_record_id"
    assert _refused(CORPUS / "no-such-file.csv").code == "link_file_missing"


def test_empty_record_id_and_repeated_canonical_column(tmp_path: Path) -> None:
    blank = tmp_path / "blank.csv"
    blank.write_text("record_id,given_name\n1,Amy\n ,Ben\n", encoding="utf-8")
    error = _refused(blank)
    assert (error.code, error.location.line) == ("link_file_empty_record_id", 3)
    twice = tmp_path / "twice.csv"
    twice.write_text("record_id,given_name,given_name\n1,Amy,Amy\n", encoding="utf-8")
    assert _refused(twice).code == "link_file_duplicate_column"


def test_a_quoted_line_break_keeps_line_numbers_and_blank_lines_are_skipped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(
        'record_id,address_line\n1,"Flat 1\n22 Cedar View"\n\n2,x\n2,y\n', encoding="utf-8"
    )
    error = _refused(path)
    assert (error.code, error.location.line) == ("link_file_duplicate_record_id", 6)
    path.write_text('record_id,address_line\n1,"Flat 1\n22 Cedar View"\n\n2,x\n', encoding="utf-8")
    read = read_input(path)
    assert [(r.ref, r.line) for r in read.records] == [("multi:1", 3), ("multi:2", 5)]
    assert read.records[0].identifiers["address_line"] == "Flat 1\n22 Cedar View"


def test_error_messages_never_hold_a_cell_value() -> None:
    for name in ("duplicate-record-id.csv", "latin-1.csv", "ragged-row.csv"):
        message = _refused(CORPUS / name).one_line()
        for value in ("Amy", "Shaw", "Ben", "Cara", "2012-03-04", "overflow"):
            assert value not in message


def test_two_files_with_one_stem_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        check_sources([tmp_path / "a" / "police.csv", tmp_path / "b" / "police.csv"])
    assert caught.value.code == "link_file_duplicate_name"
    check_sources([tmp_path / "police.csv", tmp_path / "school.csv"])


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "new.csv")
    with pytest.raises(OutputError) as caught:
        check_writable(tmp_path / "missing" / "out.csv")
    assert caught.value.code == "link_output_unwritable"
    with pytest.raises(OutputError):
        check_writable(tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError):
            check_writable(locked / "out.csv")


def test_clusters_are_written_formula_safe_with_crlf(tmp_path: Path) -> None:
    path = tmp_path / "clusters.csv"
    count = write_clusters(path, [("police:=1+1", "c_1"), ("police:2", "c_1")])
    assert count == 2
    assert path.read_bytes() == (b"record_id,cluster_id\r\npolice:=1+1,c_1\r\npolice:2,c_1\r\n")
    write_clusters(path, [("=cmd", "c_2")])
    assert path.read_text(encoding="utf-8").splitlines()[1] == "'=cmd,c_2"


def test_pairs_are_written_with_weight_band_and_rule(tmp_path: Path) -> None:
    levels = (Level.AGREE,) * 7
    pairs = [
        ScoredPair("ed:1", "police:9", 33.368412, 0.99999, Band.MATCH, "nhs", levels),
        ScoredPair("ed:2", "police:8", -1.23456, 0.4, Band.POSSIBLE, None, levels),
    ]
    path = tmp_path / "pairs.csv"
    assert write_pairs(path, pairs) == 2
    assert path.read_text(encoding="utf-8").splitlines() == [
        "left_record_id,right_record_id,score,band,rule",
        "ed:1,police:9,33.3684,match,nhs",
        "ed:2,police:8,-1.2346,possible,",
    ]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "clusters.csv"
    path.write_text("old\n", encoding="utf-8")

    def rows() -> list[tuple[str, str]]:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_clusters(path, (row for row in rows()))
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.csv"]


def test_write_into_a_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as caught:
        write_text(tmp_path / "gone" / "report.json", "{}")
    assert caught.value.code == "link_output_unwritable"


def _encoded_in_order(workers: int, records: list[InputRecord]) -> list[tuple[str, object]]:
    got: list[tuple[str, object]] = []

    def on_chunk(chunk: Sequence[InputRecord], encoded: Sequence[tuple[object, object]]) -> None:
        assert len(chunk) == len(encoded)
        got.extend((record.ref, result) for record, result in zip(chunk, encoded, strict=True))

    encode_chunks(
        chunked(records, 7), b"k" * 32, DEFAULT_CONFIG.encoder_cascade(), on_chunk, workers=workers
    )
    return got


def test_encoding_in_two_processes_equals_one_in_input_order() -> None:
    base = read_input(CORPUS / "data-quality.csv").records
    records = [
        InputRecord(f"t:{n}", "t", n + 2, {**base[n % 3].identifiers, "given_name": f"Amy{n % 5}"})
        for n in range(40)
    ]
    one = _encoded_in_order(1, records)
    assert [ref for ref, _ in one] == [r.ref for r in records]
    assert _encoded_in_order(2, records) == one
    assert [len(c) for c in chunked(records, 7)] == [7, 7, 7, 7, 7, 5]


def test_an_unclosed_quote_is_not_well_formed_csv() -> None:
    error = _refused(CORPUS / "stray-quote.csv")
    assert error.code == "link_file_not_csv"
    assert error.location.line == 4  # the quote opened at line 3 runs to the end of the file


def test_a_header_alone_is_a_file_of_no_records() -> None:
    read = read_input(CORPUS / "header-only.csv")
    assert read.records == []


def test_check_readable_fails_on_a_missing_file_before_reading(tmp_path: Path) -> None:
    check_readable([CORPUS / "data-quality.csv"])
    with pytest.raises(ValidationError) as caught:
        check_readable([CORPUS / "data-quality.csv", tmp_path / "gone.csv"])
    assert caught.value.code == "link_file_missing"
    with pytest.raises(ValidationError) as caught:
        check_readable([tmp_path])
    assert caught.value.code == "link_file_unreadable"
