"""The given-name variant table: its examples, its rules, and the names it must keep apart."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from broker.name_variants import AMBIGUOUS, GROUPS, MUST_STAY_DISTINCT, canonical_given_name
from broker.normalise import normalise_name

EVERY_FORM = [form for formal, forms in GROUPS.items() for form in (formal, *forms)]


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("bill", "william"),
        ("billy", "william"),
        ("will", "william"),
        ("william", "william"),
        ("bob", "robert"),
        ("robbie", "robert"),
        ("kate", "catherine"),
        ("katie", "catherine"),
        ("katherine", "catherine"),
        ("kathryn", "catherine"),
        ("jim", "james"),
        ("alfie", "alfred"),
        ("becky", "rebecca"),
        ("liz", "elizabeth"),
        ("zoey", "zoe"),
    ],
)
def test_examples(given: str, canonical: str) -> None:
    assert canonical_given_name(given) == canonical


@pytest.mark.parametrize(
    "given",
    ["liam", "jack", "jamie", "harry", "isabella", "kathleen", "caitlin", "billie", "bobbie"],
)
def test_names_of_their_own_stay_as_they_are(given: str) -> None:
    assert canonical_given_name(given) == given


@pytest.mark.parametrize(
    "given", ["amira", "maryjane", "billyjoe", "", "محمد", "łukasz", "william bill"]
)
def test_anything_outside_the_table_comes_back_unchanged(given: str) -> None:
    assert canonical_given_name(given) == given


def test_every_entry_is_already_normalised() -> None:
    # The function is given normalise_name's output: an entry in any other form never matches.
    for form in [*EVERY_FORM, *AMBIGUOUS, *(n for names in AMBIGUOUS.values() for n in names)]:
        assert normalise_name(form) == form


def test_each_form_is_in_one_group_only() -> None:
    repeated = [form for form, count in Counter(EVERY_FORM).items() if count > 1]
    assert repeated == []


def test_a_groups_own_name_is_its_canonical_form() -> None:
    for formal in GROUPS:
        assert canonical_given_name(formal) == formal


def test_ambiguous_short_forms_are_not_mapped() -> None:
    assert not set(AMBIGUOUS) & set(EVERY_FORM)
    for form in AMBIGUOUS:
        assert canonical_given_name(form) == form


def test_an_ambiguous_short_form_shares_no_canonical_form_with_the_names_it_stands_for() -> None:
    for form, names in AMBIGUOUS.items():
        for name in names:
            if name != form:
                assert canonical_given_name(name) != canonical_given_name(form), (form, name)
        for one, other in combinations(names, 2):
            assert canonical_given_name(one) != canonical_given_name(other), (form, one, other)


@pytest.mark.parametrize(("one", "other"), MUST_STAY_DISTINCT)
def test_names_that_must_stay_distinct_do(one: str, other: str) -> None:
    assert canonical_given_name(one) != canonical_given_name(other)


def test_every_short_form_of_a_pair_that_must_stay_distinct_stays_on_its_own_side() -> None:
    # A short form of one name of a boy/girl pair must not reach the other's group.
    for one, other in MUST_STAY_DISTINCT:
        for form in GROUPS.get(one, ()):
            assert canonical_given_name(form) != canonical_given_name(other), (form, other)
        for form in GROUPS.get(other, ()):
            assert canonical_given_name(form) != canonical_given_name(one), (form, one)


def test_no_muhammad_spelling_is_merged() -> None:
    spellings = ["muhammad", "mohammed", "mohammad", "mohamed", "muhammed", "mohamad"]
    assert [canonical_given_name(s) for s in spellings] == spellings
