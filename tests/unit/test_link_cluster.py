"""Clusters from matched pairs with the chaining guard, and households beside them."""

from __future__ import annotations

import random

from broker.link.cluster import Guard, Link, cluster, cluster_id
from broker.link.config import GuardSettings
from broker.link.households import household_id, households
from broker.link.types import EncodedRecord, Level

A, N, D, M = Level.AGREE, Level.NEAR, Level.DISAGREE, Level.MISSING
SAME = (M, M, A, A, A, A, A)


def _records(*tokens: dict[str, str]) -> list[EncodedRecord]:
    return [EncodedRecord(f"r{i}", "s", t) for i, t in enumerate(tokens)]


def _guard(
    records: list[EncodedRecord],
    levels: dict[frozenset[str], tuple[Level, ...]] | None = None,
    settings: GuardSettings | None = None,
) -> Guard:
    table = levels or {}

    def compare(a: EncodedRecord, b: EncodedRecord) -> tuple[tuple[Level, ...], str | None]:
        return table.get(frozenset((a.ref, b.ref)), SAME), None

    return Guard(records, compare, settings or GuardSettings())


def test_matched_pairs_form_clusters_named_by_their_smallest_ref() -> None:
    records = _records({}, {}, {}, {})
    refs = [r.ref for r in records]
    result = cluster(refs, [Link(0, 1, 10.0, SAME), Link(1, 2, 9.0, SAME)], _guard(records))
    assert result.labels == (cluster_id("r0"),) * 3 + (cluster_id("r3"),)
    assert result.refused == ()
    assert cluster_id("r0").startswith("c_")
    assert cluster_id("r0") != cluster_id("r1")


def test_different_nhs_numbers_never_share_a_cluster_even_through_a_chain() -> None:
    records = _records({"nhs": "x"}, {}, {"nhs": "y"})
    refs = [r.ref for r in records]
    links = [Link(0, 1, 12.0, SAME), Link(1, 2, 11.0, SAME)]
    result = cluster(refs, links, _guard(records))
    assert result.labels[0] == result.labels[1] != result.labels[2]
    assert result.refused == (links[1],)


def test_the_strongest_link_wins_the_contested_record() -> None:
    records = _records({"nhs": "x"}, {}, {"nhs": "y"})
    refs = [r.ref for r in records]
    links = [Link(0, 1, 8.0, SAME), Link(1, 2, 15.0, SAME)]
    result = cluster(refs, links, _guard(records))
    assert result.labels[1] == result.labels[2] != result.labels[0]
    assert result.refused == (links[0],)


def test_different_upns_are_kept_apart_and_the_switch_turns_it_off() -> None:
    records = _records({"upn": "a"}, {"upn": "b"})
    refs = [r.ref for r in records]
    link = Link(0, 1, 20.0, SAME)
    assert cluster(refs, [link], _guard(records)).refused == (link,)
    off = GuardSettings(different_upn=False)
    assert cluster(refs, [link], _guard(records, settings=off)).refused == ()


def test_a_record_that_fits_two_exclusive_records_equally_joins_neither() -> None:
    # r1 (no NHS number) matches r0 and r2 about equally; r0 and r2 differ on NHS.
    records = _records({"nhs": "x"}, {}, {"nhs": "y"})
    refs = [r.ref for r in records]
    links = [Link(0, 1, 12.0, SAME), Link(1, 2, 11.5, SAME)]
    result = cluster(refs, links, _guard(records), margin=1.0)
    assert len(set(result.labels)) == 3
    assert set(result.refused) == set(links)
    clear = [Link(0, 1, 12.0, SAME), Link(1, 2, 10.5, SAME)]
    result = cluster(refs, clear, _guard(records), margin=1.0)
    assert result.labels[0] == result.labels[1] != result.labels[2]
    assert result.refused == (clear[1],)


def test_a_shared_nhs_number_outweighs_a_different_given_name_at_home() -> None:
    records = _records({"household": "h", "nhs": "n"}, {"household": "h", "nhs": "n"})
    refs = [r.ref for r in records]
    levels = (A, M, D, A, A, A, A)
    result = cluster(refs, [Link(0, 1, 20.0, levels)], _guard(records))
    assert result.labels[0] == result.labels[1]


def test_twins_at_one_household_stay_apart() -> None:
    records = _records(
        {"household": "h", "given": "g1", "dob": "d"}, {"household": "h", "given": "g2", "dob": "d"}
    )
    refs = [r.ref for r in records]
    twins = (M, M, D, A, A, A, A)
    link = Link(0, 1, 30.0, twins)
    result = cluster(refs, [link], _guard(records, {frozenset(refs): twins}))
    assert result.labels[0] != result.labels[1]
    assert result.refused == (link,)


def test_a_given_name_that_nearly_agrees_or_swapped_names_do_not_trigger_the_household_rule() -> (
    None
):
    records = _records({"household": "h", "given": "g1"}, {"household": "h", "given": "g2"})
    refs = [r.ref for r in records]
    for levels in ((M, M, N, A, A, A, A), (M, M, D, D, A, A, A)):
        result = cluster(refs, [Link(0, 1, 30.0, levels)], _guard(records))
        assert result.labels[0] == result.labels[1]


def test_different_given_names_elsewhere_need_a_different_birth_date_too() -> None:
    same = _records({"given": "g1", "dob": "d"}, {"given": "g2", "dob": "d"})
    refs = [r.ref for r in same]
    same_dob = (M, M, D, A, A, A, D)
    other_dob = (M, M, D, A, D, A, D)
    assert cluster(refs, [Link(0, 1, 30.0, same_dob)], _guard(same)).refused == ()
    records = _records({"given": "g1", "dob": "d1"}, {"given": "g2", "dob": "d2"})
    link = Link(0, 1, 30.0, other_dob)
    assert cluster(refs, [link], _guard(records)).refused == (link,)
    nearly = Link(0, 1, 30.0, (M, M, D, A, N, A, D))  # a typo in the date: not two people
    assert cluster(refs, [nearly], _guard(records)).refused == ()


def test_the_guard_checks_every_member_not_just_the_linking_pair() -> None:
    # r0-r1 and r2-r3 are clusters; r1-r2 links them, but r0 and r3 are twins.
    records = _records({"household": "h", "given": "g1"}, {}, {}, {"household": "h", "given": "g2"})
    refs = [r.ref for r in records]
    twins = (M, M, D, A, A, A, A)
    guard = _guard(records, {frozenset(("r0", "r3")): twins})
    links = [Link(0, 1, 20.0, SAME), Link(2, 3, 19.0, SAME), Link(1, 2, 18.0, SAME)]
    result = cluster(refs, links, guard)
    assert len(set(result.labels)) == 2
    assert result.refused == (links[2],)


def test_clusters_do_not_depend_on_link_order_or_positions() -> None:
    rng = random.Random(5)
    refs = [f"r{i:02d}" for i in range(30)]
    tokens = [{"nhs": str(i % 4)} if i % 3 == 0 else {} for i in range(30)]
    records = [EncodedRecord(ref, "s", t) for ref, t in zip(refs, tokens, strict=True)]
    pairs = {tuple(sorted(rng.sample(range(30), 2))) for _ in range(60)}
    links = [Link(a, b, float(rng.randint(1, 5)), SAME) for a, b in sorted(pairs)]
    base = dict(zip(refs, cluster(refs, links, _guard(records)).labels, strict=True))
    for seed in range(5):
        order = list(range(30))
        random.Random(seed).shuffle(order)
        where = {old: new for new, old in enumerate(order)}
        moved_records = [records[i] for i in order]
        moved_refs = [r.ref for r in moved_records]
        moved = [Link(where[x.left], where[x.right], x.weight, x.levels) for x in links]
        random.Random(seed).shuffle(moved)
        labels = cluster(moved_refs, moved, _guard(moved_records)).labels
        assert dict(zip(moved_refs, labels, strict=True)) == base


def test_households_group_clusters_without_merging_them() -> None:
    records = _records({"household": "h1"}, {"household": "h1"}, {"household": "h2"}, {})
    labels = ["c_a", "c_b", "c_a", "c_c"]
    groups = households(records, labels)
    assert groups == {household_id("h1"): ("c_a", "c_b"), household_id("h2"): ("c_a",)}
    assert households(records, labels, min_subjects=2) == {household_id("h1"): ("c_a", "c_b")}
    assert household_id("h1").startswith("h_")
    assert household_id("h1") != household_id("h2")


def test_two_records_the_model_finds_plainly_different_never_meet_through_a_third() -> None:
    # r1 has only a name; it links to r0 and r2, who differ on date of birth.
    records = _records({}, {}, {})
    refs = [r.ref for r in records]
    apart = (M, M, A, A, D, A, D)

    def compare(a: EncodedRecord, b: EncodedRecord) -> tuple[tuple[Level, ...], str | None]:
        return (apart if {a.ref, b.ref} == {"r0", "r2"} else SAME), None

    def score(levels: tuple[Level, ...], rule: str | None) -> tuple[float, float]:
        return (-9.0, 0.002) if levels == apart else (9.0, 0.998)

    links = [Link(0, 1, 9.0, SAME), Link(1, 2, 5.0, SAME)]
    guarded = cluster(refs, links, Guard(records, compare, GuardSettings(), score))
    assert guarded.labels[0] == guarded.labels[1] != guarded.labels[2]
    assert guarded.refused == (links[1],)
    off = GuardSettings(min_pair_probability=None)
    unguarded = cluster(refs, links, Guard(records, compare, off, score))
    assert len(set(unguarded.labels)) == 1
