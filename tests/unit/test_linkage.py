"""Token linkage with an in-memory store: who links, and who is kept apart."""

from __future__ import annotations

from typing import get_args

from agreements.checklist import _MATCH_KEY_IDENTIFIERS
from agreements.terms import MatchKeyName
from broker.linkage import (
    MATCH_KEYS,
    Assignment,
    assign_subjects,
    record_tokens,
)
from broker.pseudonymise import token
from tests.fakes import MemoryStore

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def _person(
    *,
    given: str = "amira",
    family: str = "okafor",
    dob: str = "2011-03-14",
    postcode: str = "NS1 4AB",
    nhs: str | None = None,
    upn: str | None = None,
) -> dict[str, str]:
    identifiers = {
        "given_name": given,
        "family_name": family,
        "date_of_birth": dob,
        "postcode": postcode,
    }
    if nhs is not None:
        identifiers["nhs_number"] = nhs
    if upn is not None:
        identifiers["upn"] = upn
    return record_tokens(KEY, identifiers)


# ---------------------------------------------------------------------------- record_tokens


def test_record_tokens_per_match_key() -> None:
    tokens = record_tokens(
        KEY,
        {
            "given_name": "amira",
            "family_name": "okafor",
            "date_of_birth": "2011-03-14",
            "postcode": "NS1 4AB",
            "nhs_number": "9434765919",
            "upn": "L201234567890",
            "sex": "F",
        },
    )
    assert set(tokens) == {key.name for key in MATCH_KEYS}
    assert tokens["nhs"] == token(KEY, "nhs", ["9434765919"])
    assert tokens["upn"] == token(KEY, "upn", ["L201234567890"])
    assert tokens["name_dob_postcode"] == token(
        KEY, "name_dob_postcode", ["amira", "okafor", "2011-03-14", "NS1 4AB"]
    )


def test_a_key_needs_every_identifier_it_names() -> None:
    assert set(record_tokens(KEY, {"nhs_number": "9434765919"})) == {"nhs"}
    partial = {"given_name": "amira", "family_name": "okafor", "date_of_birth": "2011-03-14"}
    assert record_tokens(KEY, partial) == {}
    assert record_tokens(KEY, {**partial, "postcode": ""}) == {}
    assert set(record_tokens(KEY, {**partial, "postcode": "NS1 4AB"})) == {
        "name_dob_postcode",
        "variant_dob_postcode",
        "swapped_names_dob_postcode",
    }
    assert record_tokens(KEY, {}) == {}


def test_tokens_depend_on_the_linkage_key() -> None:
    identifiers = {"nhs_number": "9434765919"}
    assert record_tokens(KEY, identifiers) != record_tokens(OTHER_KEY, identifiers)


def test_tokens_of_the_same_values_under_different_keys_differ() -> None:
    # The same string as an NHS number and as a UPN must not collide.
    both = record_tokens(KEY, {"nhs_number": "1234567890123", "upn": "1234567890123"})
    assert both["nhs"] != both["upn"]


def test_tokens_hold_no_identifier() -> None:
    tokens = _person(nhs="9434765919")
    for value in tokens.values():
        assert "amira" not in value
        assert "9434765919" not in value


# ---------------------------------------------------------------------------- assign_subjects


def test_first_record_makes_a_new_subject() -> None:
    store = MemoryStore()
    [placed] = store.ingest([_person(nhs="9434765919")])
    assert placed == Assignment("subject-1", new=True, rule=None)


def test_same_person_across_two_batches_links() -> None:
    store = MemoryStore()
    [school] = store.ingest([_person(upn="L201234567890")])
    [ed] = store.ingest([_person(nhs="9434765919")])
    assert ed.subject_id == school.subject_id
    assert ed.new is False
    assert ed.rule == "name_dob_postcode"
    # A third record with only the NHS number now finds the same subject by the strong key.
    [later] = store.ingest([record_tokens(KEY, {"nhs_number": "9434765919"})])
    assert later.subject_id == school.subject_id
    assert later.rule == "nhs"


def test_strongest_key_is_tried_first() -> None:
    store = MemoryStore()
    store.ingest([_person(nhs="9434765919")])
    [again] = store.ingest([_person(nhs="9434765919")])
    assert again.rule == "nhs"


def test_twins_never_link() -> None:
    store = MemoryStore()
    first = _person(given="amira", nhs="9434765919")
    second = _person(given="zara", nhs="4010232137")
    placed = store.ingest([first, second])
    assert placed[0].subject_id != placed[1].subject_id
    assert all(p.new for p in placed)
    # In separate batches too, and in either order.
    other = MemoryStore()
    [b] = other.ingest([second])
    [a] = other.ingest([first])
    assert a.subject_id != b.subject_id


def test_differing_nhs_number_blocks_the_name_key() -> None:
    # Same name, date of birth and postcode (twins named alike, or a typing slip), but
    # the NHS numbers differ: these are different people, whatever the names say.
    store = MemoryStore()
    [first] = store.ingest([_person(nhs="9434765919")])
    [second] = store.ingest([_person(nhs="4010232137")])
    assert second.subject_id != first.subject_id
    assert second.new is True


def test_differing_nhs_number_blocks_the_name_key_within_a_batch() -> None:
    store = MemoryStore()
    placed = store.ingest([_person(nhs="9434765919"), _person(nhs="4010232137")])
    assert placed[0].subject_id != placed[1].subject_id


def test_differing_upn_blocks_the_name_key() -> None:
    store = MemoryStore()
    [first] = store.ingest([_person(upn="L201234567890")])
    [second] = store.ingest([_person(upn="A201234567891")])
    assert second.subject_id != first.subject_id


def test_record_without_nhs_number_links_to_a_subject_with_one() -> None:
    store = MemoryStore()
    [first] = store.ingest([_person(nhs="9434765919")])
    [second] = store.ingest([_person()])
    assert second.subject_id == first.subject_id
    assert second.rule == "name_dob_postcode"


def test_ambiguous_key_links_nothing() -> None:
    store = MemoryStore()
    twins = store.ingest([_person(nhs="9434765919"), _person(nhs="4010232137")])
    assert twins[0].subject_id != twins[1].subject_id
    [unsure] = store.ingest([_person()])
    assert unsure.new is True
    assert unsure.rule is None
    assert unsure.subject_id not in {t.subject_id for t in twins}
    assert store.find(_person()) == (None, None)


def test_ambiguous_name_key_still_resolved_by_nhs() -> None:
    store = MemoryStore()
    twins = store.ingest([_person(nhs="9434765919"), _person(nhs="4010232137")])
    [known] = store.ingest([_person(nhs="4010232137")])
    assert known.subject_id == twins[1].subject_id
    assert known.rule == "nhs"


def test_within_batch_linking() -> None:
    store = MemoryStore()
    placed = store.ingest(
        [
            _person(upn="L201234567890"),
            _person(given="zara"),
            record_tokens(KEY, {"upn": "L201234567890"}),
            _person(),
        ]
    )
    assert placed[0].new is True
    assert placed[1].new is True
    assert placed[2] == Assignment(placed[0].subject_id, new=False, rule="upn")
    assert placed[3] == Assignment(placed[0].subject_id, new=False, rule="name_dob_postcode")
    assert store.issued == 2


def test_record_with_no_tokens_is_a_new_subject() -> None:
    store = MemoryStore()
    placed = store.ingest([{}, {}])
    assert placed[0].subject_id != placed[1].subject_id
    assert all(p.new for p in placed)


def test_store_is_asked_once_per_match_key_for_a_batch() -> None:
    store = MemoryStore()
    store.ingest([_person(nhs="9434765919"), _person(given="zara", nhs="4010232137")])
    asked = [match_key for match_key, _ in store.lookups]
    assert sorted(asked) == sorted(set(asked))


def test_assign_subjects_does_not_write_to_the_store() -> None:
    store = MemoryStore()
    batch = [_person(nhs="9434765919")]
    assign_subjects(
        batch,
        subjects_for=store.subjects_for,
        identity_of=store.identity_of,
        new_subject=store.new_subject,
    )
    assert not store.tokens


# ---------------------------------------------------------------------------- find_subject


def test_find_subject() -> None:
    store = MemoryStore()
    [placed] = store.ingest([_person(nhs="9434765919")])
    assert store.find(_person(nhs="9434765919")) == (placed.subject_id, "nhs")
    assert store.find(_person()) == (placed.subject_id, "name_dob_postcode")
    assert store.find(record_tokens(KEY, {"nhs_number": "9434765919"})) == (
        placed.subject_id,
        "nhs",
    )


def test_find_subject_refuses_a_contradicting_nhs_number() -> None:
    store = MemoryStore()
    store.ingest([_person(nhs="9434765919")])
    assert store.find(_person(nhs="4010232137")) == (None, None)


def test_find_subject_for_strangers() -> None:
    store = MemoryStore()
    store.ingest([_person(nhs="9434765919")])
    assert store.find(_person(given="zara")) == (None, None)
    assert store.find({}) == (None, None)
    assert store.find(record_tokens(OTHER_KEY, {"nhs_number": "9434765919"})) == (None, None)


# ---------------------------------------------------------------------------- fuzzy keys

EXACT_KEYS = ("nhs", "upn", "name_dob_postcode")
FUZZY_KEYS = ("variant_dob_postcode", "swapped_names_dob_postcode")
DOB, POSTCODE = "2011-03-14", "NS1 4AB"


def _named(
    given: str,
    family: str = "okafor",
    *,
    nhs: str | None = None,
    keys: tuple[str, ...] | None = None,
) -> dict[str, str]:
    identifiers = {
        "given_name": given,
        "family_name": family,
        "date_of_birth": DOB,
        "postcode": POSTCODE,
    }
    if nhs is not None:
        identifiers["nhs_number"] = nhs
    return record_tokens(KEY, identifiers, keys)


def test_match_keys_are_strongest_first_and_fuzzy_keys_come_last() -> None:
    assert [k.name for k in MATCH_KEYS] == [
        "nhs",
        "upn",
        "name_dob_postcode",
        "variant_dob_postcode",
        "swapped_names_dob_postcode",
    ]
    strengths = [k.strength for k in MATCH_KEYS]
    assert strengths == sorted(strengths, reverse=True)
    fuzzy = [k for k in MATCH_KEYS if k.fuzzy]
    assert [k.name for k in fuzzy] == ["variant_dob_postcode", "swapped_names_dob_postcode"]
    assert all(k.strength < MATCH_KEYS[2].strength and not k.identity for k in fuzzy)


def test_the_agreement_model_and_checklist_know_every_match_key() -> None:
    assert get_args(MatchKeyName) == tuple(k.name for k in MATCH_KEYS)
    assert {k.name: k.identifiers for k in MATCH_KEYS} == _MATCH_KEY_IDENTIFIERS


def test_fuzzy_tokens_hash_the_name_group_and_the_sorted_names() -> None:
    tokens = _named("bill", "okafor")
    assert tokens["variant_dob_postcode"] == token(
        KEY, "variant_dob_postcode", ["william", "okafor", DOB, POSTCODE]
    )
    assert tokens["swapped_names_dob_postcode"] == token(
        KEY, "swapped_names_dob_postcode", ["bill", "okafor", DOB, POSTCODE]
    )
    swapped = _named("okafor", "bill")
    assert swapped["swapped_names_dob_postcode"] == tokens["swapped_names_dob_postcode"]
    assert swapped["name_dob_postcode"] != tokens["name_dob_postcode"]


def test_fuzzy_tokens_never_equal_exact_ones_for_the_same_values() -> None:
    # "amira" has no group and is already in order, so all three hash the same values:
    # only the match key's domain keeps their tokens apart.
    tokens = _named("amira", "okafor")
    assert len({tokens[k] for k in ("name_dob_postcode", *FUZZY_KEYS)}) == 3


def test_a_nickname_links_by_the_variant_key() -> None:
    store = MemoryStore()
    [william] = store.ingest([_named("william")])
    [bill] = store.ingest([_named("bill")])
    assert bill == Assignment(william.subject_id, new=False, rule="variant_dob_postcode")
    assert store.find(_named("billy")) == (william.subject_id, "variant_dob_postcode")


def test_swapped_names_link_by_the_swapped_key() -> None:
    store = MemoryStore()
    [first] = store.ingest([_named("amira", "okafor")])
    [swapped] = store.ingest([_named("okafor", "amira")])
    assert swapped == Assignment(first.subject_id, new=False, rule="swapped_names_dob_postcode")


def test_fuzzy_keys_apply_only_where_the_agreement_names_them() -> None:
    assert set(_named("bill", keys=EXACT_KEYS)) == {"name_dob_postcode"}
    assert set(_named("bill", keys=("variant_dob_postcode",))) == {"variant_dob_postcode"}
    store = MemoryStore()
    [william] = store.ingest([_named("william", keys=EXACT_KEYS)])
    [bill] = store.ingest([_named("bill", keys=EXACT_KEYS)])
    assert bill.new is True
    assert bill.subject_id != william.subject_id


TWIN_NAMES = [
    ("jack", "james"),
    ("jack", "john"),
    ("jake", "jack"),
    ("samuel", "samantha"),
    ("alexander", "alexandra"),
    ("alex", "alexander"),
    ("alex", "alexandra"),
    ("oliver", "olivia"),
    ("ollie", "olivia"),
    ("charlie", "charlotte"),
    ("george", "georgia"),
    ("william", "liam"),
    ("francis", "frances"),
    ("daniel", "danielle"),
    ("jordan", "taylor"),
]


def test_twins_with_different_given_names_never_share_a_token() -> None:
    for first, second in TWIN_NAMES:
        one, other = _named(first, "taylor"), _named(second, "taylor")
        shared = {k for k in one if one[k] == other[k]}
        assert shared == set(), (first, second, shared)


def test_twins_with_different_given_names_stay_apart() -> None:
    for first, second in TWIN_NAMES:
        store = MemoryStore()
        placed = store.ingest([_named(first, "taylor"), _named(second, "taylor")])
        assert all(p.new for p in placed), (first, second)


def test_a_short_form_either_twin_could_use_links_to_neither() -> None:
    for short, twins in (("alex", ("alexander", "alexandra")), ("sam", ("samuel", "samantha"))):
        store = MemoryStore()
        stored = store.ingest([_named(twins[0]), _named(twins[1])])
        [unsure] = store.ingest([_named(short)])
        assert unsure.new is True
        assert unsure.subject_id not in {s.subject_id for s in stored}


def test_mirror_names_are_one_person_to_the_swapped_key_unless_an_nhs_number_differs() -> None:
    # By design: "Jordan Taylor" and "Taylor Jordan" born the same day at the same
    # postcode are taken for one child entered the wrong way round. Two such children
    # are kept apart only by a contradicting national identifier.
    store = MemoryStore()
    [first] = store.ingest([_named("jordan", "taylor")])
    [mirror] = store.ingest([_named("taylor", "jordan")])
    assert mirror.subject_id == first.subject_id
    assert mirror.rule == "swapped_names_dob_postcode"
    apart = MemoryStore()
    [one] = apart.ingest([_named("jordan", "taylor", nhs="9434765919")])
    [two] = apart.ingest([_named("taylor", "jordan", nhs="4010232137")])
    assert two.new is True
    assert two.subject_id != one.subject_id


def test_a_fuzzy_key_is_not_tried_after_a_stronger_key_is_ambiguous() -> None:
    # Two Williams stored before the agreement named the fuzzy keys (so without their
    # tokens) leave the exact key ambiguous; the variant key would find only Bill.
    store = MemoryStore()
    store.ingest(
        [
            _named("william", nhs="9434765919", keys=EXACT_KEYS),
            _named("william", nhs="4010232137", keys=EXACT_KEYS),
        ]
    )
    [bill] = store.ingest([_named("bill")])
    [unsure] = store.ingest([_named("william")])
    assert unsure.new is True
    assert unsure.subject_id != bill.subject_id
    # Without the ambiguity the same record does link by the variant key.
    plain = MemoryStore()
    [only_bill] = plain.ingest([_named("bill")])
    [william] = plain.ingest([_named("william")])
    assert william == Assignment(only_bill.subject_id, new=False, rule="variant_dob_postcode")
