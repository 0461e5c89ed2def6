"""Loading agreements: the example is valid, and each kind of mistake is reported where it is."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import agreements
from agreements.loader import MAX_AGREEMENT_BYTES, MAX_NESTING, load_agreement, parse_agreement
from agreements.models import Agreement
from broker.errors import AgreementError, Problem

EXAMPLES = Path(agreements.__file__).resolve().parent / "examples"
EXAMPLE = next(
    path
    for path in sorted(EXAMPLES.glob("*.yaml"))
    if "\nid: sv-early-identification\n" in path.read_text(encoding="utf-8")
)
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
SOURCE = "broken.yaml"

Mutation = Callable[[dict[str, Any]], None]


EXAMPLE_DOCUMENT = yaml.safe_load(EXAMPLE_TEXT)


def _document() -> dict[str, Any]:
    assert isinstance(EXAMPLE_DOCUMENT, dict)
    return copy.deepcopy(EXAMPLE_DOCUMENT)


def _rejected(text: str) -> AgreementError:
    with pytest.raises(AgreementError) as caught:
        parse_agreement(text, source=SOURCE)
    error = caught.value
    assert error.code == "agreement_invalid"
    assert error.location.file == SOURCE
    return error


def _problem_with(error: AgreementError, fragment: str) -> Problem:
    matching = [p for p in error.problems if fragment in p.message]
    assert matching, f"no problem mentions {fragment!r}: {[p.message for p in error.problems]}"
    return matching[0]


def _line(text: str, number: int | None) -> str:
    assert number is not None
    assert number >= 1
    return text.splitlines()[number - 1]


def test_example_agreement_loads() -> None:
    agreement = load_agreement(EXAMPLE)
    assert isinstance(agreement, Agreement)
    assert agreement.id == "sv-early-identification"
    assert agreement.status == "active"
    assert {p.id for p in agreement.parties} == {"school", "police", "social-care", "ed"}
    assert {d.id for d in agreement.datasets} == {
        "school-attendance",
        "police-incidents",
        "csc-involvement",
        "ed-attendances",
    }
    assert len(agreement.releases) == 3
    assert agreement.effective_from <= agreement.review_by <= agreement.expires_on


def test_example_round_trips_through_safe_dump() -> None:
    # The mutation tests below rely on dumped YAML meaning the same as the example.
    assert parse_agreement(yaml.safe_dump(_document(), sort_keys=False)) == load_agreement(EXAMPLE)


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _append(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path:
            target = target[part]
        target.append(value)

    return mutate


def _delete(path: tuple[Any, ...]) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


# (mutation, fragment of the expected problem, text expected on the problem's line)
BROKEN: dict[str, tuple[Mutation, str, str]] = {
    "unknown key": (_set(("colour",), "blue"), "colour: Extra inputs are not permitted", "colour"),
    "unknown nested key": (
        _set(("parties", 0, "email"), "dpo@example.org"),
        "parties[0].email: Extra inputs",
        "email",
    ),
    "wrong type": (_set(("version",), "one"), "version: Input should be a valid integer", "one"),
    "wrong status": (_set(("status",), "live"), "status: Input should be", "live"),
    "missing section": (_delete(("purposes",)), "purposes: Field required", ""),
    "bad id pattern": (_set(("parties", 2, "id"), "Social Care"), "parties[2].id", "Social Care"),
    "duplicate party id": (
        _set(("parties", 1, "id"), "school"),
        "parties[1].id: id 'school' is used twice",
        "school",
    ),
    "duplicate dataset id": (
        _set(("datasets", 1, "id"), "school-attendance"),
        "datasets[1].id: id 'school-attendance' is used twice",
        "school-attendance",
    ),
    "provider not a party": (
        _set(("datasets", 0, "provider"), "schol"),
        "provider 'schol' is not a party; did you mean 'school'?",
        "schol",
    ),
    "provider without provider role": (
        _set(("parties", 0, "roles"), ["recipient"]),
        "party 'school' is not a provider",
        "provider: school",
    ),
    "release of undeclared field": (
        _set(("releases", 0, "fields", 0, "field"), "attendance_pc"),
        "field 'attendance_pc' is not declared in dataset 'school-attendance'; "
        "did you mean 'attendance_pct'?",
        "attendance_pc",
    ),
    "release of undeclared dataset": (
        _set(("releases", 0, "fields", 0, "dataset"), "school-attendence"),
        "dataset 'school-attendence' is not declared; did you mean 'school-attendance'?",
        "school-attendence",
    ),
    "release for undeclared purpose": (
        _set(("releases", 1, "purpose"), "safeguarding-triag"),
        "purpose 'safeguarding-triag' is not declared; did you mean 'safeguarding-triage'?",
        "safeguarding-triag",
    ),
    "release to party without recipient role": (
        _set(("releases", 0, "recipient"), "ed"),
        "party 'ed' does not have the recipient role",
        "recipient: ed",
    ),
    "release to an outsider": (
        _set(("releases", 0, "recipient"), "polise"),
        "recipient 'polise' is not a party; did you mean 'police'?",
        "polise",
    ),
    "recipient without lawful basis": (
        _delete(("purposes", 1, "lawful_basis", "police")),
        "recipient 'police' has no lawful basis for 'violence-reduction'",
        "recipient: police",
    ),
    "lawful basis for an unknown party": (
        _set(
            ("purposes", 0, "lawful_basis", "polic"),
            {"article_6": "6(1)(e) public task"},
        ),
        "lawful basis names unknown party 'polic'; did you mean 'police'?",
        "article_6",
    ),
    "dates out of order": (
        _set(("review_by",), "2029-01-01"),
        "dates must be in order",
        "review_by",
    ),
    "effective after expiry": (
        _set(("effective_from",), "2028-04-01"),
        "dates must be in order",
        "review_by",
    ),
    "special category without article 9": (
        _append(
            ("releases", 2, "fields"), {"dataset": "school-attendance", "field": "sen_support"}
        ),
        "'sen_support' is special category data but purpose 'violence-reduction' gives "
        "'school' no Article 9",
        "sen_support",
    ),
    "article 9 removed": (
        _delete(("purposes", 1, "lawful_basis", "ed", "article_9")),
        "'injury_type' is special category data",
        "injury_type",
    ),
    "criminal offence data without article 10": (
        _append(
            ("releases", 2, "fields"), {"dataset": "police-incidents", "field": "incident_type"}
        ),
        "'incident_type' is criminal offence data",
        "incident_type",
    ),
    "code field without values": (
        _delete(("datasets", 1, "fields", 1, "values")),
        "code field 'incident_type' must list its values",
        "incident_type",
    ),
    "duplicate field name": (
        _set(("datasets", 0, "fields", 1, "name"), "attendance_pct"),
        "field 'attendance_pct' twice",
        "attendance_pct",
    ),
    "month form on a non-date": (
        _set(("releases", 0, "fields", 0, "form"), "month"),
        "form 'month' needs a field of type date",
        "month",
    ),
    "second release for the same recipient and purpose": (
        _append(
            ("releases",),
            {
                "purpose": "violence-reduction",
                "recipient": "police",
                "outputs": ["lookup"],
                "fields": [{"dataset": "school-attendance", "field": "persistent_absence"}],
            },
        ),
        "a release to 'police' for 'violence-reduction' is already declared",
        "recipient: police",
    ),
    "flag form on a code": (
        _set(("releases", 1, "fields", 0, "form"), "flag"),
        "form 'flag' needs a field of type integer",
        "flag",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_agreement_is_reported_with_line(case: str) -> None:
    mutate, fragment, on_line = BROKEN[case]
    document = _document()
    mutate(document)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    error = _rejected(text)
    problem = _problem_with(error, fragment)
    assert problem.code == "agreement_invalid"
    assert problem.location.file == SOURCE
    assert problem.location.line is not None
    assert problem.location.column is not None
    assert on_line in _line(text, problem.location.line)
    # The summary names how many problems there are and the first of them.
    assert str(len(error.problems)) in error.message
    assert error.problems[0].message in error.message


def test_every_problem_is_reported_at_once() -> None:
    document = _document()
    document["version"] = 0
    document["parties"][3]["type"] = "hospital"
    error = _rejected(yaml.safe_dump(document, sort_keys=False))
    assert len(error.problems) == 2
    _problem_with(error, "version")
    _problem_with(error, "parties[3].type")


def _lines_of(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_duplicate_yaml_key_is_reported_at_the_second() -> None:
    lines = _lines_of(EXAMPLE_TEXT)
    at = next(i for i, line in enumerate(lines) if line.startswith("title:"))
    lines.insert(at + 1, "title: A different title\n")
    error = _rejected("".join(lines))
    problem = _problem_with(error, "key 'title' appears twice")
    assert problem.location.line == at + 2


def test_duplicate_nested_yaml_key_is_reported() -> None:
    text = EXAMPLE_TEXT.replace(
        "    name: Northshire Police\n",
        "    name: Northshire Police\n    name: Northshire Constabulary\n",
        1,
    )
    assert text != EXAMPLE_TEXT
    error = _rejected(text)
    problem = _problem_with(error, "key 'name' appears twice")
    assert "Northshire Constabulary" in _line(text, problem.location.line)


def test_invalid_yaml_is_reported_with_line() -> None:
    text = EXAMPLE_TEXT.replace("version: 1\n", "version: [1\n", 1)
    error = _rejected(text)
    assert "not valid YAML" in error.message
    assert error.location.line is not None
    assert error.location.column is not None


def test_tab_indentation_is_invalid_yaml() -> None:
    error = _rejected("id: x\nparties:\n\t- id: y\n")
    assert "not valid YAML" in error.message
    assert error.location.line == 3


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_agreement(text: str) -> None:
    error = _rejected(text)
    assert "empty" in error.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_agreement_that_is_not_a_mapping(text: str) -> None:
    error = _rejected(text)
    assert error.problems


def test_nesting_deeper_than_limit_is_refused() -> None:
    depth = MAX_NESTING + 8
    text = EXAMPLE_TEXT + "deep: " + "[" * depth + "1" + "]" * depth + "\n"
    error = _rejected(text)
    problem = _problem_with(error, f"nesting deeper than {MAX_NESTING}")
    assert "deep:" in _line(text, problem.location.line)


def test_nesting_within_limit_is_not_a_structural_problem() -> None:
    depth = MAX_NESTING - 2
    text = EXAMPLE_TEXT + "deep: " + "[" * depth + "1" + "]" * depth + "\n"
    error = _rejected(text)  # still an unknown key, but not a nesting problem
    assert not any("nesting" in p.message for p in error.problems)
    _problem_with(error, "deep: Extra inputs")


def _laughs(levels: int) -> str:
    """A "billion laughs" document: each level aliases the one before it nine times."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _parse_within(text: str, seconds: float) -> AgreementError:
    """Parse in a daemon thread, so that a hang fails this test instead of the whole run."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            parse_agreement(text, source=SOURCE)
        except BaseException as exc:  # handed back to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"parsing took longer than {seconds} s"
    assert len(outcome) == 1
    assert isinstance(outcome[0], AgreementError)
    return outcome[0]


def test_aliases_nesting_past_the_limit_are_refused_quickly() -> None:
    error = _parse_within(_laughs(40), seconds=10)
    _problem_with(error, f"nesting deeper than {MAX_NESTING}")


def test_aliases_within_the_limit_are_checked_quickly() -> None:
    # 9**12 paths through the aliases; walking each of them would never finish.
    error = _parse_within(_laughs(13), seconds=10)
    assert not any("nesting" in p.message for p in error.problems)
    _problem_with(error, "a12: Extra inputs")


def test_load_agreement_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(EXAMPLE_TEXT, encoding="utf-8")
    assert load_agreement(path) == load_agreement(EXAMPLE)


def test_load_agreement_names_the_file_in_problems(tmp_path: Path) -> None:
    document = _document()
    document["version"] = "one"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    with pytest.raises(AgreementError) as caught:
        load_agreement(path)
    assert caught.value.location.file == str(path)
    assert str(path) in caught.value.one_line()


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    padding = "# padding\n" * (MAX_AGREEMENT_BYTES // 10 + 1)
    path.write_text(EXAMPLE_TEXT + padding, encoding="utf-8")
    assert path.stat().st_size > MAX_AGREEMENT_BYTES
    with pytest.raises(AgreementError, match="larger than") as caught:
        load_agreement(path)
    assert caught.value.location.file == str(path)


def test_file_of_exactly_the_limit_is_not_refused_for_size(tmp_path: Path) -> None:
    path = tmp_path / "limit.yaml"
    path.write_bytes(b"\xff" * MAX_AGREEMENT_BYTES)  # exactly the limit, and not UTF-8
    with pytest.raises(AgreementError) as caught:
        load_agreement(path)
    assert "larger than" not in caught.value.message
    assert "UTF-8" in caught.value.message


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgreementError, match="could not be read"):
        load_agreement(tmp_path / "absent.yaml")


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(
        EXAMPLE_TEXT.replace("Northshire Police", "Northshire Polícia").encode("latin-1")
    )
    with pytest.raises(AgreementError, match="UTF-8"):
        load_agreement(path)


def test_yaml_1_1_booleans_stay_words() -> None:
    # `on:` (a policy test's date) and code values such as yes/no must not turn into booleans.
    text = EXAMPLE_TEXT.replace(
        "values: [ambulance, police, self, other]", "values: [ambulance, police, self, other, no]"
    )
    assert text != EXAMPLE_TEXT
    agreement = parse_agreement(text, verify_approvals=False)
    dataset = agreement.dataset("ed-attendances")
    assert dataset is not None
    spec = dataset.field("arrival_mode")
    assert spec is not None
    assert spec.values is not None
    assert spec.values[-1] == "no"


def test_an_edited_draft_loads_for_review_but_not_for_enforcement() -> None:
    text = EXAMPLE_TEXT.replace("version: 1\n", "version: 2\n", 1)
    with pytest.raises(AgreementError, match="approve it again"):
        parse_agreement(text)
    draft = parse_agreement(text, verify_approvals=False)
    assert draft.version == 2
