"""The one CSV writer: OWASP's examples quoted, genuine numbers kept, every export through it."""

from __future__ import annotations

import csv
import inspect
import io

import pytest

import audit.export
from broker.csv_safe import safe_cell, to_csv_text
from broker.web.routes import aggregates


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1:A2)", "'+SUM(A1:A2)"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(1,1)", "'@SUM(1,1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ('  =HYPERLINK("http://x")', '\'  =HYPERLINK("http://x")'),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("-5", "'-5"),  # text that looks like a number came from outside: quoted
        (-5, "-5"),  # a number the broker computed: kept
        (-2.5, "-2.5"),
        (0, "0"),
        (True, "True"),
        (None, ""),
        ("Northshire", "Northshire"),
        ("a=b", "a=b"),
    ],
)
def test_cells(value: object, written: str) -> None:
    assert safe_cell(value) == written


def test_rows_round_trip_through_a_csv_reader() -> None:
    text = to_csv_text([["area", "count"], ["=evil()", 5], ['quo"te, comma', -1]])
    assert text.endswith("\r\n")
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["area", "count"],
        ["'=evil()", "5"],
        ['quo"te, comma', "-1"],
    ]


def test_every_broker_csv_export_uses_the_one_writer() -> None:
    # The aggregate route and the audit export (HTTP search and CLI reports) write no
    # CSV of their own: they call broker.csv_safe.
    for module in (aggregates, audit.export):
        source = inspect.getsource(module)
        assert "to_csv_text" in source
        assert "csv.writer(" not in source
        assert "csv.DictWriter(" not in source
