"""Properties of the synthetic town and the CSV adapter: whatever is written reads back the same."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.csv import read_extract
from broker.errors import IdentifierError
from broker.normalise import normalise_nhs_number, normalise_postcode, normalise_upn
from broker.synth import AGENCIES, AGENCY_COLUMNS, CANONICAL, PROFILES, generate_town, write_town

SEEDS = st.integers(min_value=0, max_value=2**64)
PEOPLE = st.integers(min_value=1, max_value=60)
PROFILE_NAMES = st.sampled_from(sorted(PROFILES))
# Cell text the csv module can carry: anything UTF-8 encodable except NUL.
CELL = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=30,
)


def _held(row: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if v.strip()}


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, people=PEOPLE, profile=PROFILE_NAMES)
def test_written_town_reads_back_row_for_row(seed: int, people: int, profile: str) -> None:
    town = generate_town(seed=seed, people=people, profile=profile)
    with tempfile.TemporaryDirectory() as folder:
        write_town(town, Path(folder))
        for agency in AGENCIES:
            extract = read_extract(Path(folder) / f"{agency}.csv")
            assert extract.dataset_name == agency
            assert extract.columns == (*CANONICAL, *AGENCY_COLUMNS[agency])
            assert extract.rows == [_held(row) for row in town.rows[agency]]
        truth = read_extract(Path(folder) / "truth.csv")
        assert [row["person_id"] for row in truth.rows] == [t["person_id"] for t in town.truth]


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, people=PEOPLE, profile=PROFILE_NAMES)
def test_same_arguments_same_town_and_identifiers_check_out(
    seed: int, people: int, profile: str
) -> None:
    town = generate_town(seed=seed, people=people, profile=profile)
    assert town == generate_town(seed=seed, people=people, profile=profile)
    assert len(town.people) == people
    for truth in town.truth:
        row = next(r for r in town.rows[truth["agency"]] if r["record_id"] == truth["record_id"])
        mistakes = truth["corruptions"].split(";")
        if row["postcode"]:
            normalise_postcode(row["postcode"])
        if row["upn"]:
            normalise_upn(row["upn"])
        if row["nhs_number"]:
            try:
                normalise_nhs_number(row["nhs_number"])
            except IdentifierError:
                assert "nhs_transposed" in mistakes
            else:
                assert "nhs_transposed" not in mistakes


@settings(max_examples=50, deadline=None)
@given(
    cells=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=8),
    bom=st.booleans(),
)
def test_any_cell_text_survives_a_write_and_read(cells: list[list[str]], bom: bool) -> None:
    columns = ("record_id", "given_name", "note")
    rows = [[f"R{i}", *values[1:]] for i, values in enumerate(cells)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "school.csv"
        with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
        extract = read_extract(path)
    assert extract.columns == columns
    assert extract.rows == [_held(dict(zip(columns, row, strict=True))) for row in rows]
