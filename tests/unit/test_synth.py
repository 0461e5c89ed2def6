"""The synthetic town: deterministic, valid identifiers, honest truth, realistic coverage."""

from __future__ import annotations

import csv
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from broker.errors import IdentifierError, ValidationError
from broker.normalise import (
    normalise_date,
    normalise_nhs_number,
    normalise_postcode,
    normalise_upn,
)
from broker.synth import (
    AGENCIES,
    AGENCY_COLUMNS,
    CANONICAL,
    REFERENCE_DATE,
    TRUTH_COLUMNS,
    Person,
    Town,
    address_variant,
    age_on_reference_date,
    generate_town,
    write_town,
)
from broker.synth_profiles import CORRUPTIONS, PROFILES, CorruptionProfile

FILES = ("school.csv", "police.csv", "social-care.csv", "ed.csv", "truth.csv")
GIVEN_CHANGES = {"nickname", "name_typo", "name_swap"}
FAMILY_CHANGES = {
    "name_typo",
    "diacritics_dropped",
    "apostrophe_variant",
    "hyphen_variant",
    "name_swap",
}


def _records(town: Town) -> list[tuple[dict[str, str], dict[str, str], Person, set[str]]]:
    """Each record with its truth row, the real person and the mistakes it lists."""
    people = {p.person_id: p for p in town.people}
    rows = {(a, r["record_id"]): r for a in AGENCIES for r in town.rows[a]}
    return [
        (
            rows[(t["agency"], t["record_id"])],
            t,
            people[t["person_id"]],
            set(filter(None, t["corruptions"].split(";"))),
        )
        for t in town.truth
    ]


def _agencies_by_person(town: Town) -> dict[str, set[str]]:
    known: dict[str, set[str]] = defaultdict(set)
    for truth in town.truth:
        known[truth["person_id"]].add(truth["agency"])
    return known


# Determinism


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first = write_town(generate_town(seed=42, people=200), tmp_path / "a")
    again = write_town(generate_town(seed=42, people=200), tmp_path / "b")
    other = write_town(generate_town(seed=43, people=200), tmp_path / "c")
    assert [p.name for p in first] == list(FILES)
    for mine, same, different in zip(first, again, other, strict=True):
        assert mine.read_bytes() == same.read_bytes()
        assert mine.read_bytes() != different.read_bytes()


def test_files_do_not_depend_on_string_hashing(tmp_path: Path) -> None:
    # Iterating a set of strings would make output depend on PYTHONHASHSEED.
    script = (
        "import sys; from pathlib import Path; from broker.synth import generate_town, write_town;"
        "write_town(generate_town(seed=5, people=150, profile='hard'), Path(sys.argv[1]))"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = tmp_path / hash_seed
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
    for name in FILES:
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()


# Arguments


@pytest.mark.parametrize("people", [0, -3, 1_000_001])
def test_people_out_of_range_is_refused(people: int) -> None:
    with pytest.raises(ValidationError):
        generate_town(people=people)


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ValidationError) as raised:
        generate_town(profile="awful")
    assert "clean, moderate, hard" in raised.value.message


def test_profile_rates_must_be_probabilities() -> None:
    with pytest.raises(ValidationError):
        CorruptionProfile(name_typo=1.5)
    assert all(rate == 0 for rate in vars(PROFILES["clean"]).values())
    assert set(CORRUPTIONS) == set(vars(PROFILES["hard"]))


def test_one_person_is_enough() -> None:
    town = generate_town(seed=9, people=1)
    assert [p.person_id for p in town.people] == ["P00001"]


def test_three_hundred_people_take_well_under_a_second() -> None:
    started = time.perf_counter()
    generate_town(seed=1, people=300)
    assert time.perf_counter() - started < 1.0


# People


def test_people_are_young_and_identifiers_are_valid_and_unique() -> None:
    town = generate_town(seed=4, people=2000)
    assert len(town.people) == 2000
    assert {10, 24} <= {age_on_reference_date(p.date_of_birth) for p in town.people}
    for person in town.people:
        assert 10 <= age_on_reference_date(person.date_of_birth) <= 24
        assert normalise_nhs_number(person.nhs_number) == person.nhs_number
        assert person.nhs_number.startswith(("999", "998"))  # never a real patient's
        assert normalise_upn(person.upn) == person.upn
        assert normalise_postcode(person.postcode) == person.postcode
        assert re.fullmatch(r"NS[1-9] [1-9][A-Z]{2}", person.postcode)
        assert person.sex in ("F", "M", "X")
    assert len({p.nhs_number for p in town.people}) == 2000
    assert len({p.upn for p in town.people}) == 2000
    homes = {p.household_id: p.address_line for p in town.people}
    assert len(set(homes.values())) == len(homes)  # no two households share a home


def test_twins_share_family_birthday_and_home_but_not_name_or_numbers() -> None:
    town = generate_town(seed=1, people=1000)
    pairs: dict[str, list[Person]] = defaultdict(list)
    for person in town.people:
        if person.twin:
            pairs[person.household_id].append(person)
    share = sum(len(pair) for pair in pairs.values()) / len(town.people)
    assert 0.005 <= share <= 0.04
    for first, second in pairs.values():
        assert first.family_name == second.family_name
        assert first.date_of_birth == second.date_of_birth
        assert (first.address_line, first.postcode) == (second.address_line, second.postcode)
        assert first.given_name != second.given_name
        assert first.nhs_number != second.nhs_number
        assert first.upn != second.upn


def test_strangers_share_a_name_and_birthday_in_different_households() -> None:
    town = generate_town(seed=1, people=3000)
    people = {p.person_id: p for p in town.people}
    namesakes = [p for p in town.people if p.namesake_of]
    assert namesakes
    for person in namesakes:
        other = people[person.namesake_of or ""]
        assert person.household_id != other.household_id
        assert (person.given_name, person.family_name, person.date_of_birth) == (
            other.given_name,
            other.family_name,
            other.date_of_birth,
        )


def test_names_are_varied_and_include_awkward_characters() -> None:
    town = generate_town(seed=1, people=3000)
    names = [f"{p.given_name} {p.family_name}" for p in town.people]
    assert len({p.family_name for p in town.people}) > 100
    assert any("'" in name for name in names)
    assert any("-" in name for name in names)
    assert any(not name.isascii() for name in names)
    siblings = Counter(p.household_id for p in town.people)
    assert max(siblings.values()) >= 3


# Records and truth


def test_clean_profile_records_are_the_truth() -> None:
    town = generate_town(seed=3, people=800, profile="clean")
    for row, truth, person, mistakes in _records(town):
        assert mistakes == set()
        assert truth["twin"] == ("true" if person.twin else "false")
        assert row["given_name"] == person.given_name
        assert row["family_name"] == person.family_name
        assert row["date_of_birth"] == person.date_of_birth.isoformat()
        assert row["sex"] == person.sex
        assert row["postcode"] == person.postcode
        assert row["address_line"] == person.address_line
        assert row["nhs_number"] in ("", person.nhs_number)
        if row["nhs_number"]:
            normalise_nhs_number(row["nhs_number"])
        if truth["agency"] == "school":
            assert normalise_upn(row["upn"]) == person.upn
        else:
            assert row["upn"] == ""


@pytest.mark.parametrize("profile", ["moderate", "hard"])
def test_every_difference_is_a_listed_mistake_and_every_mistake_shows(profile: str) -> None:
    town = generate_town(seed=11, people=3000, profile=profile)
    seen: Counter[str] = Counter()
    for row, _, person, mistakes in _records(town):
        seen.update(mistakes)
        assert mistakes <= set(CORRUPTIONS)
        if row["given_name"] != person.given_name:
            assert mistakes & GIVEN_CHANGES
        if row["family_name"] != person.family_name:
            assert mistakes & FAMILY_CHANGES
        if row["date_of_birth"] != person.date_of_birth.isoformat():
            assert mistakes & {"dob_swap", "dob_typo", "dob_missing"}
        assert (row["date_of_birth"] == "") == ("dob_missing" in mistakes)
        if row["date_of_birth"]:
            normalise_date(row["date_of_birth"])
        assert (row["address_line"] != person.address_line) == bool(
            mistakes & {"postcode_old", "address_variant"}
        )
        if "address_variant" in mistakes:
            home = person.old_address_line if "postcode_old" in mistakes else person.address_line
            assert row["address_line"] != home
            # The same doors: every number (flat and house) kept, only the writing differs.
            numbers = sorted(re.findall(r"\d+", row["address_line"]))
            assert numbers == sorted(re.findall(r"\d+", home))
        assert (row["sex"] == "") == ("sex_missing" in mistakes)
        assert (row["sex"] not in ("", person.sex)) == ("sex_miscoded" in mistakes)
        assert (row["postcode"] == "") == ("postcode_missing" in mistakes)
        if row["postcode"]:
            expected = person.old_postcode if "postcode_old" in mistakes else person.postcode
            assert normalise_postcode(row["postcode"]) == expected
            assert (row["postcode"] != expected) == ("postcode_format" in mistakes)
        if "nhs_missing" in mistakes:
            assert row["nhs_number"] == ""
        if row["nhs_number"] and row["nhs_number"] != person.nhs_number:
            assert "nhs_transposed" in mistakes
        if "nhs_transposed" in mistakes:
            assert sorted(row["nhs_number"]) == sorted(person.nhs_number)
            with pytest.raises(IdentifierError):
                normalise_nhs_number(row["nhs_number"])
        if "nickname" in mistakes and "name_swap" not in mistakes:
            assert row["given_name"] != person.given_name
        if mistakes & {"dob_swap", "dob_typo", "dob_missing"}:
            assert row["date_of_birth"] != person.date_of_birth.isoformat()
    assert set(CORRUPTIONS) <= set(seen)


def test_moderate_mistake_rates_are_what_the_profile_says() -> None:
    town = generate_town(seed=21, people=20_000, profile="moderate")
    records = len(town.truth)
    counts = Counter(m for t in town.truth for m in t["corruptions"].split(";") if m)
    rates = PROFILES["moderate"]
    # Unconditional mistakes should land near their rate (binomial spread is ~0.2 points).
    for name in (
        "name_typo", "name_swap", "postcode_old", "postcode_missing", "address_variant",
        "dob_missing", "sex_missing", "sex_miscoded",
    ):  # fmt: skip
        assert abs(counts[name] / records - getattr(rates, name)) < 0.006, name
    assert counts["postcode_format"] / records == pytest.approx(0.2 * 0.97, abs=0.02)


def test_truth_covers_every_record_once() -> None:
    town = generate_town(seed=2, people=500)
    keys = [(t["agency"], t["record_id"]) for t in town.truth]
    assert len(keys) == len(set(keys)) == sum(len(rows) for rows in town.rows.values())
    people = {p.person_id: p for p in town.people}
    for truth in town.truth:
        assert truth["household_id"] == people[truth["person_id"]].household_id


# Agencies


def test_each_agency_row_has_its_columns_and_vocabulary() -> None:
    town = generate_town(seed=6, people=1500)
    vocab = {
        "incident_type": {
            "violence_with_injury",
            "possession_of_weapon",
            "robbery",
            "drugs_supply",
            "missing_episode",
            "other",
        },
        "role_in_incident": {"victim", "suspect", "witness", "missing_person"},
        "csc_status": {"early_help", "child_in_need", "child_protection", "looked_after", "closed"},
        "exploitation_screening": {"none", "emerging", "moderate", "significant"},
        "injury_type": {"sharps", "blunt", "assault_other", "self_harm", "other"},
        "arrival_mode": {"ambulance", "police", "self", "other"},
    }
    flags = {
        "persistent_absence",
        "excluded",
        "alternative_provision",
        "sen_support",
        "exploitation_concern",
        "safeguarding_referral_made",
    }
    dates = {"incident_date", "attendance_date", "last_contact_date"}
    prefixes = {"school": "SCH", "police": "POL", "social-care": "CSC", "ed": "ED"}
    for agency in AGENCIES:
        assert town.rows[agency]
        for row in town.rows[agency]:
            assert tuple(row) == (*CANONICAL, *AGENCY_COLUMNS[agency])
            assert re.fullmatch(rf"{prefixes[agency]}-\d{{6}}", row["record_id"])
            for column, value in row.items():
                if column in vocab:
                    assert value in vocab[column]
                if column in flags:
                    assert value in ("true", "false")
                if column in dates:
                    day = date.fromisoformat(value)
                    assert day <= REFERENCE_DATE
                    if column != "last_contact_date":
                        assert day > REFERENCE_DATE - timedelta(days=365)
            if agency == "school":
                pct = float(row["attendance_pct"])
                assert 0 <= pct <= 100
                assert re.fullmatch(r"\d{1,3}\.\d", row["attendance_pct"])
                assert row["persistent_absence"] == ("true" if pct < 90 else "false")
                assert int(row["suspensions_this_year"]) >= 0
            if agency == "police":
                assert int(row["missing_episodes_12m"]) >= 0
                if row["incident_type"] == "missing_episode":
                    assert row["role_in_incident"] == "missing_person"
                    assert int(row["missing_episodes_12m"]) >= 1
            if agency in ("police", "ed"):
                assert row["upn"] == ""


def test_coverage_looks_like_a_partnership() -> None:
    for seed in (1, 2, 3):
        town = generate_town(seed=seed, people=1000)
        known = _agencies_by_person(town)
        share = {a: sum(a in s for s in known.values()) / 1000 for a in AGENCIES}
        assert 0.25 <= share["police"] <= 0.35
        assert 0.20 <= share["social-care"] <= 0.30
        assert 0.10 <= share["ed"] <= 0.20
        pupils = [p for p in town.people if 11 <= age_on_reference_date(p.date_of_birth) <= 15]
        on_roll = sum("school" in known[p.person_id] for p in pupils) / len(pupils)
        assert on_roll >= 0.9
        adults = [p for p in town.people if age_on_reference_date(p.date_of_birth) >= 18]
        assert not any("school" in known[p.person_id] for p in adults)
        assert sum(len(s) >= 2 for s in known.values()) >= 150


def test_at_risk_cohort_is_known_to_three_agencies_and_looks_at_risk() -> None:
    town = generate_town(seed=1, people=3000)
    known = _agencies_by_person(town)
    at_risk = {p.person_id for p in town.people if p.at_risk}
    assert 0.03 * 3000 <= len(at_risk) <= 0.12 * 3000
    assert all(len(known[person]) >= 3 for person in at_risk)
    by_person = {(t["agency"], t["record_id"]): t["person_id"] for t in town.truth}

    def share(agency: str, test: str, value: str, risky: bool) -> float:
        rows = [
            r
            for r in town.rows[agency]
            if (by_person[(agency, r["record_id"])] in at_risk) == risky
        ]
        return sum(r[test] == value for r in rows) / len(rows)

    assert share("school", "persistent_absence", "true", True) > 2 * share(
        "school", "persistent_absence", "true", False
    )
    assert share("ed", "injury_type", "sharps", True) > 2 * share(
        "ed", "injury_type", "sharps", False
    )
    assert share("police", "exploitation_concern", "true", True) > 0.5
    significant = share("social-care", "exploitation_screening", "significant", True)
    assert significant > 0.2
    assert share("social-care", "exploitation_screening", "significant", False) == 0


def test_some_people_appear_twice_in_one_agency() -> None:
    town = generate_town(seed=1, people=1000)
    for agency in AGENCIES:
        per_person = Counter(t["person_id"] for t in town.truth if t["agency"] == agency)
        assert max(per_person.values()) == 2, agency


def test_record_order_does_not_follow_person_order() -> None:
    town = generate_town(seed=1, people=1000)
    order = [t["person_id"] for t in town.truth if t["agency"] == "police"]
    assert order != sorted(order)


# Files


def test_written_files_have_exact_headers_and_match_the_town(tmp_path: Path) -> None:
    town = generate_town(seed=8, people=300)
    paths = write_town(town, tmp_path / "new" / "dir")
    assert [p.name for p in paths] == list(FILES)
    for path in paths:
        raw = path.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")
        with path.open(encoding="utf-8", newline="") as handle:
            table = list(csv.reader(handle))
        agency = path.stem
        expected = TRUTH_COLUMNS if agency == "truth" else (*CANONICAL, *AGENCY_COLUMNS[agency])
        assert tuple(table[0]) == expected
        count = len(town.truth) if agency == "truth" else len(town.rows[agency])
        assert len(table) == count + 1


def test_namesakes_often_live_in_the_same_postcode_sector() -> None:
    town = generate_town(seed=5, people=20_000, profile="clean")
    people = {p.person_id: p for p in town.people}
    namesakes = [p for p in town.people if p.namesake_of]
    near = sum(p.postcode[:-2] == people[p.namesake_of or ""].postcode[:-2] for p in namesakes)
    # Half are placed in the sector on purpose; the rest land there only by chance (1 in 81).
    assert len(namesakes) > 100
    assert 0.35 <= near / len(namesakes) <= 0.65


@pytest.mark.parametrize("line", ["12 Mill Road", "Flat 3, 12 Mill Road", "7 Oak View"])
def testaddress_variants_differ_in_writing_but_keep_every_door_number(line: str) -> None:
    rng = random.Random(7)
    variants = {address_variant(rng, line) for _ in range(200)}
    assert line not in variants
    assert len(variants) >= 2
    for variant in variants:
        assert sorted(re.findall(r"\d+", variant)) == sorted(re.findall(r"\d+", line))
