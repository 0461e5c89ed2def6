"""Adapters send only the columns a dataset declares."""

from __future__ import annotations

from adapters.base import declared_columns, select_declared
from tests.helpers import example_agreement


def test_undeclared_columns_never_leave_the_agency() -> None:
    dataset = example_agreement().dataset("school-attendance")
    assert dataset is not None
    rows = [{"record_id": "S1", "given_name": "Ann", "address_line": "1 Elm Road", "upn": "X"}]
    assert select_declared(rows, dataset) == [{"record_id": "S1", "given_name": "Ann", "upn": "X"}]
    assert "address_line" not in declared_columns(dataset)
    assert {"record_id", "attendance_pct", "date_of_birth"} <= declared_columns(dataset)
