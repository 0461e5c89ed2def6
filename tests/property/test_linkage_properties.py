"""Properties of linkage: batching does not change who is who; national ids keep people apart."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.linkage import Assignment, record_tokens
from tests.fakes import MemoryStore

KEY = bytes(range(32))


# Small pools, so that shared names, twins, ambiguity and contradictions are common.
RECORDS = st.fixed_dictionaries(
    {
        "given_name": st.sampled_from(["amira", "zara"]),
        "family_name": st.sampled_from(["okafor"]),
        "date_of_birth": st.sampled_from(["2011-03-14", "2012-07-01"]),
        "postcode": st.sampled_from(["NS1 4AB", ""]),
        "nhs_number": st.sampled_from(["", "9434765919", "4010232137", "4505577104"]),
        "upn": st.sampled_from(["", "L201234567890", "A201234567891"]),
    }
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[dict[str, str]], list[int]]:
    """Records (as identifier dicts) and the batch sizes they are sent in."""
    records = draw(st.lists(RECORDS, min_size=1, max_size=12))
    sizes: list[int] = []
    left = len(records)
    while left:
        size = draw(st.integers(1, left))
        sizes.append(size)
        left -= size
    return records, sizes


def _partition(assignments: Sequence[Assignment]) -> set[frozenset[int]]:
    groups: dict[str, set[int]] = defaultdict(set)
    for index, assignment in enumerate(assignments):
        groups[assignment.subject_id].add(index)
    return {frozenset(group) for group in groups.values()}


def _send(tokens: list[dict[str, str]], sizes: Sequence[int]) -> list[Assignment]:
    store = MemoryStore()
    placed: list[Assignment] = []
    start = 0
    for size in sizes:
        placed.extend(store.ingest(tokens[start : start + size]))
        start += size
    return placed


def _check_assignments(placed: Sequence[Assignment]) -> None:
    seen: set[str] = set()
    for assignment in placed:
        if assignment.new:
            assert assignment.subject_id not in seen  # a new subject is new
            assert assignment.rule is None
        else:
            assert assignment.subject_id in seen  # an existing subject was made before
            assert assignment.rule in {"nhs", "upn", "name_dob_postcode"}
        seen.add(assignment.subject_id)


@settings(max_examples=60, deadline=None)
@given(case=batches())
def test_batching_does_not_change_the_partition(
    case: tuple[list[dict[str, str]], list[int]],
) -> None:
    records, sizes = case
    tokens = [record_tokens(KEY, identifiers) for identifiers in records]
    whole = _send(tokens, [len(tokens)])
    one_by_one = _send(tokens, [1] * len(tokens))
    split = _send(tokens, sizes)
    assert len(whole) == len(one_by_one) == len(split) == len(records)
    assert _partition(whole) == _partition(one_by_one) == _partition(split)
    assert [a.new for a in whole] == [a.new for a in one_by_one] == [a.new for a in split]
    assert [a.rule for a in whole] == [a.rule for a in one_by_one] == [a.rule for a in split]
    for placed in (whole, one_by_one, split):
        _check_assignments(placed)


@settings(max_examples=60, deadline=None)
@given(case=batches())
def test_each_record_is_in_exactly_one_subject(
    case: tuple[list[dict[str, str]], list[int]],
) -> None:
    records, sizes = case
    placed = _send([record_tokens(KEY, r) for r in records], sizes)
    partition = _partition(placed)
    members = [index for group in partition for index in group]
    assert sorted(members) == list(range(len(records)))


@settings(max_examples=60, deadline=None)
@given(case=batches())
def test_a_subject_never_holds_two_nhs_numbers_or_two_upns(
    case: tuple[list[dict[str, str]], list[int]],
) -> None:
    records, sizes = case
    placed = _send([record_tokens(KEY, r) for r in records], sizes)
    for group in _partition(placed):
        for identifier in ("nhs_number", "upn"):
            values = {records[i][identifier] for i in group} - {""}
            assert len(values) <= 1, (identifier, [records[i] for i in sorted(group)])


@settings(max_examples=60, deadline=None)
@given(case=batches())
def test_records_with_the_same_nhs_number_split_only_on_a_contradiction(
    case: tuple[list[dict[str, str]], list[int]],
) -> None:
    records, sizes = case
    placed = _send([record_tokens(KEY, r) for r in records], sizes)
    members: dict[str, set[int]] = defaultdict(set)
    by_nhs: dict[str, set[str]] = defaultdict(set)
    for index, (record, assignment) in enumerate(zip(records, placed, strict=True)):
        members[assignment.subject_id].add(index)
        if record["nhs_number"]:
            by_nhs[record["nhs_number"]].add(assignment.subject_id)
    # Records sharing an NHS number are kept apart only when their subjects hold
    # differing UPNs: the strongest key otherwise always finds the one subject.
    for subjects in by_nhs.values():
        if len(subjects) > 1:
            upns = {records[i]["upn"] for s in subjects for i in members[s]} - {""}
            assert len(upns) >= 2
