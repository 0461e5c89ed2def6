"""Blocking: which pairs share a pass's token, how oversized blocks are split, the index."""

from __future__ import annotations

import pytest

from broker.link.blocking import BlockIndex, BlockingStats, build_index, candidate_pairs
from broker.link.encode import RecordEncoder
from broker.link.types import EncodedRecord

ENCODER = RecordEncoder(bytes(range(32)))
BASE = {
    "given_name": "Oliver",
    "family_name": "Hughes",
    "date_of_birth": "2012-03-05",
    "postcode": "LS6 2AB",
}


def rec(ref: str, **changes: str) -> EncodedRecord:
    return ENCODER.encode(ref, ref.split(":", maxsplit=1)[0], {**BASE, **changes})


def pairs(records: list[EncodedRecord], max_block: int = 200) -> list[tuple[int, int]]:
    return list(candidate_pairs(records, max_block))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        # a wrong year and a move: only family Soundex with day and month is left
        {"date_of_birth": "2013-03-05", "postcode": "M1 1AE"},
        # a new family name and a move: date of birth with the given initial
        {"family_name": "Patel", "postcode": "M1 1AE"},
        # a new given name and a move: date of birth with the family initial
        {"given_name": "Noah", "postcode": "M1 1AE"},
        # swapped names and a move, date kept: sorted Soundex with the year
        {"given_name": "Hughes", "family_name": "Oliver", "postcode": "M1 1AE"},
        # a wholly wrong date: both initials and the postcode district
        {"date_of_birth": "2009-11-21", "postcode": "LS6 9XY"},
        # an NHS number alone on both sides
        {"given_name": "Z", "family_name": "Q", "date_of_birth": "", "postcode": ""},
    ],
)
def test_one_shared_pass_makes_a_candidate(changes: dict[str, str]) -> None:
    left = ENCODER.encode("a:1", "a", {**BASE, "nhs_number": "9434765919"})
    right = ENCODER.encode("b:1", "b", {**BASE, **changes, "nhs_number": "9434765919"})
    assert pairs([left, right]) == [(0, 1)]
    # Without the NHS number, all but the last still share a pass.
    expected = [] if changes.get("given_name") == "Z" else [(0, 1)]
    assert pairs([rec("a:1"), rec("b:1", **changes)]) == expected


def test_records_sharing_no_blocking_token_are_not_candidates() -> None:
    other = rec(
        "b:1", given_name="Noah", family_name="Patel", date_of_birth="2009-11-21", postcode="M1 1AE"
    )
    assert pairs([rec("a:1"), other]) == []


def test_each_pair_once_left_below_right_in_order() -> None:
    records = [rec(f"a:{n}") for n in range(4)] + [
        rec(
            "b:9",
            given_name="Noah",
            family_name="Patel",
            date_of_birth="2009-11-21",
            postcode="M1 1AE",
        )
    ]
    assert pairs(records) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_an_oversized_block_is_split_by_its_refinement_and_a_part_still_too_big_skipped() -> None:
    # Six Hughes boys born in March 2012 on different days in different districts share
    # one block only: family Soundex, year and month, and sex. Three have given names
    # beginning O, three N: the pass's refinement.
    people = [
        ("Oliver", "2012-03-01", "M1 1AE"),
        ("Otto", "2012-03-02", "B1 1AA"),
        ("Owen", "2012-03-03", "CF1 1AA"),
        ("Noah", "2012-03-04", "NE1 1AA"),
        ("Nell", "2012-03-05", "SW1A 1AA"),
        ("Ned", "2012-03-06", "LS1 1AA"),
    ]
    records = [
        rec(f"a:{n}", given_name=given, date_of_birth=born, postcode=postcode, sex="M")
        for n, (given, born, postcode) in enumerate(people)
    ]
    assert len(pairs(records, max_block=6)) == 15
    # Above the cap the block splits by given initial into two parts of three.
    assert pairs(records, max_block=3) == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    assert build_index(records, 3).stats().oversized_blocks == 1
    assert build_index(records, 3).stats().skipped_parts == 0
    # Parts of three over a cap of two are skipped and counted.
    assert pairs(records, max_block=2) == []
    stats = build_index(records, 2).stats()
    assert (stats.oversized_blocks, stats.skipped_parts, stats.skipped_pairs) == (1, 2, 6)


def test_the_index_gives_candidates_of_what_was_added_before() -> None:
    index = BlockIndex()
    first, second = rec("a:1"), rec("b:1", postcode="M1 1AE")
    assert index.candidates(first) == set()
    index.add(0, first)
    assert index.candidates(second) == {0}
    index.add(1, second)
    assert index.candidates(first) == {0, 1}
    assert (
        index.candidates(
            rec(
                "c:1",
                given_name="Noah",
                family_name="Patel",
                date_of_birth="2009-11-21",
                postcode="M1 1AE",
            )
        )
        == set()
    )


def test_stats_of_an_empty_index() -> None:
    assert BlockIndex().stats() == BlockingStats(0, 0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_block": 1}, "at least 2"),
        ({"passes": ("shoe_size",)}, "unknown blocking pass"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BlockIndex(**kwargs)  # type: ignore[arg-type]


def test_only_the_chosen_passes_block() -> None:
    index = BlockIndex(passes=("nhs",))
    index.add(0, rec("a:1"))
    assert index.candidates(rec("b:1")) == set()


def test_the_names_pass_compares_only_uncommon_names() -> None:
    def namesakes(count: int) -> list[EncodedRecord]:
        # The same name, no date of birth, each in a district of its own: the names
        # pass is the only one they share.
        return [
            ENCODER.encode(
                f"a:{n}",
                "a",
                {
                    "given_name": "Oliver",
                    "family_name": "Hughes",
                    "postcode": f"M{n + 1} 1AA",
                    "sex": "MF"[n % 2],
                },
            )
            for n in range(count)
        ]

    # 20 over the names pass's cap of 16: split by sex into two parts of 10.
    assert len(pairs(namesakes(20))) == 2 * 10 * 9 // 2
    # 34 make two parts of 17, each over the cap: skipped, and counted.
    assert pairs(namesakes(34)) == []
    stats = build_index(namesakes(34)).stats()
    assert (stats.oversized_blocks, stats.skipped_parts, stats.skipped_pairs) == (1, 2, 272)
