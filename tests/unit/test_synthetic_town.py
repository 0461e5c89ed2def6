"""The synthetic town: deterministic, valid identifiers, realistic coverage and mistakes."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from broker.errors import IdentifierError, ValidationError
from broker.normalise import normalise_nhs_number, normalise_postcode, normalise_upn
from broker.synth import AGENCIES, CANONICAL, Person, generate_town, write_town


def test_same_seed_same_files_and_different_seed_different_files(tmp_path: Path) -> None:
    first = write_town(generate_town(seed=7, people=120), tmp_path / "a")
    second = write_town(generate_town(seed=7, people=120), tmp_path / "b")
    other = write_town(generate_town(seed=8, people=120), tmp_path / "c")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]


def test_clean_profile_identifiers_all_pass_their_checks() -> None:
    town = generate_town(seed=3, people=400, profile="clean")
    assert all(t["corruptions"] == "" for t in town.truth)
    for agency, rows in town.rows.items():
        for row in rows:
            normalise_postcode(row["postcode"])
            if row["nhs_number"]:
                normalise_nhs_number(row["nhs_number"])
            if row["upn"]:
                assert agency == "school"
                normalise_upn(row["upn"])


def test_transposed_nhs_numbers_fail_their_check() -> None:
    town = generate_town(seed=5, people=3000, profile="hard")
    rows = {(a, r["record_id"]): r for a in AGENCIES for r in town.rows[a]}
    transposed = [t for t in town.truth if "nhs_transposed" in t["corruptions"]]
    assert transposed
    for truth in transposed:
        with pytest.raises(IdentifierError):
            normalise_nhs_number(rows[(truth["agency"], truth["record_id"])]["nhs_number"])


def test_mistakes_recorded_in_truth_are_what_differs() -> None:
    town = generate_town(seed=11, people=2000, profile="moderate")
    people = {p.person_id: p for p in town.people}
    rows = {(a, r["record_id"]): r for a in AGENCIES for r in town.rows[a]}
    for truth in town.truth:
        person, row = people[truth["person_id"]], rows[(truth["agency"], truth["record_id"])]
        mistakes = set(filter(None, truth["corruptions"].split(";")))
        if not mistakes & {"name_typo", "nickname", "name_swap"}:
            assert row["given_name"] == person.given_name
        if not mistakes & {"dob_swap", "dob_typo", "dob_missing"}:
            assert row["date_of_birth"] == person.date_of_birth.isoformat()
        if not mistakes & {"postcode_old", "postcode_missing"}:
            assert normalise_postcode(row["postcode"]) == person.postcode
    counts = Counter(m for t in town.truth for m in t["corruptions"].split(";") if m)
    assert {"name_typo", "postcode_old", "nhs_missing"} <= set(counts)


def test_twins_share_birthday_and_home_but_not_name_or_nhs_number() -> None:
    town = generate_town(seed=2, people=3000)
    by_household: dict[str, list[Person]] = defaultdict(list)
    for person in town.people:
        if person.twin:
            by_household[person.household_id].append(person)
    assert by_household
    for pair in by_household.values():
        first, second = pair[0], pair[1]
        assert first.date_of_birth == second.date_of_birth
        assert first.postcode == second.postcode
        assert first.given_name != second.given_name
        assert first.nhs_number != second.nhs_number


def test_coverage_looks_like_a_partnership() -> None:
    town = generate_town(seed=1, people=1000)
    known: dict[str, set[str]] = defaultdict(set)
    for truth in town.truth:
        known[truth["person_id"]].add(truth["agency"])
    police = sum("police" in a for a in known.values()) / 1000
    care = sum("social-care" in a for a in known.values()) / 1000
    assert 0.2 <= police <= 0.4
    assert 0.15 <= care <= 0.35
    at_risk = [p for p in town.people if p.at_risk]
    assert sum(len(known[p.person_id]) >= 3 for p in at_risk) >= len(at_risk) / 2


def test_files_have_the_canonical_columns_first(tmp_path: Path) -> None:
    for path in write_town(generate_town(seed=1, people=50), tmp_path)[:-1]:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle))
        assert tuple(header[: len(CANONICAL)]) == CANONICAL


@pytest.mark.parametrize(("people", "profile"), [(0, "moderate"), (10, "awful")])
def test_bad_arguments_are_clear_errors(people: int, profile: str) -> None:
    with pytest.raises(ValidationError):
        generate_town(seed=1, people=people, profile=profile)
