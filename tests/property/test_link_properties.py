"""Properties of the linkage engine over generated people, their records and their twins.

Symmetric and independent of input order; every record in exactly one cluster;
twins never share a cluster; incremental linking in any batches gives the
clusters of linking everything at once; raising one field's agreement never
lowers a pair's weight.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.link.cluster import cluster_id
from broker.link.compare import compare
from broker.link.config import DEFAULT_CONFIG
from broker.link.encode import RecordEncoder
from broker.link.engine import IncrementalLinker, LinkResult, link_records
from broker.link.model import Model, fit
from broker.link.types import COMPARED_FIELDS, Comparison, EncodedRecord, Level
from broker.normalise import nhs_check_digit
from broker.synth import generate_town

KEY = b"property-test-linkage-key-32byte"
ENCODER = RecordEncoder(KEY)
# Clearly different given names (no shared variant group, phonetic code or most bigrams).
GIVEN = ("olivia", "jack", "amelia", "harry", "isla", "oscar", "freya", "muhammad", "zainab")
FAMILY = ("smith", "khan", "okafor", "nowak", "evans")
POSTCODES = ("LS1 4AB", "LS6 2QT", "M14 5RE")
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _nhs(seed: int) -> str:
    for base in range(seed * 7919 + 100_000_000, seed * 7919 + 100_001_000):
        digits = f"{base:09d}"
        check = nhs_check_digit(digits)
        if check is not None:
            return digits + str(check)
    raise AssertionError("no valid NHS number found")


@dataclass(frozen=True)
class Person:
    number: int
    given: str
    family: str
    dob: str
    sex: str
    postcode: str
    address: str
    nhs: str


def _person(number: int, given: str, family: str, dob: str, home: int, sex: str) -> Person:  # noqa: PLR0917
    return Person(
        number,
        given,
        family,
        dob,
        sex,
        POSTCODES[home % 3],
        f"{home + 1} high street",
        _nhs(number),
    )


def _identifiers(p: Person, rng: random.Random) -> dict[str, str]:
    row = {
        "given_name": p.given,
        "family_name": p.family,
        "date_of_birth": p.dob,
        "sex": p.sex,
        "postcode": p.postcode,
        "address_line": p.address,
    }
    if rng.random() < 0.6:
        row["nhs_number"] = p.nhs
    if rng.random() < 0.2:
        row["family_name"] = p.family[:-1] + "x"  # a typo
    if rng.random() < 0.1:
        row["sex"] = ""
    return row


@st.composite
def towns(draw: st.DrawFn) -> tuple[list[EncodedRecord], dict[str, int], set[frozenset[int]]]:
    """Records of a few people, twin pairs among them; (records, person per ref, twin pairs)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    people: list[Person] = []
    twins: set[frozenset[int]] = set()
    for home in range(draw(st.integers(1, 6))):
        family = draw(st.sampled_from(FAMILY))
        year = draw(st.integers(2005, 2015))
        dob = f"{year}-0{draw(st.integers(1, 9))}-1{draw(st.integers(0, 9))}"
        names = draw(st.lists(st.sampled_from(GIVEN), min_size=1, max_size=3, unique=True))
        for i, name in enumerate(names):
            people.append(_person(len(people), name, family, dob, home, "F" if i % 2 else "M"))
        twins.update(
            frozenset((a.number, b.number))
            for a in people[-len(names) :]
            for b in people[-len(names) :]
            if a.number < b.number
        )
    records: list[EncodedRecord] = []
    person_of: dict[str, int] = {}
    for p in people:
        for copy in range(draw(st.integers(1, 3))):
            ref = f"{'abc'[copy]}:{p.number:03d}"
            records.append(ENCODER.encode(ref, ref[0], _identifiers(p, rng)))
            person_of[ref] = p.number
    return records, person_of, twins


def _members(result: LinkResult) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for ref, label in result.clusters.items():
        groups[label].append(ref)
    return groups


@SLOW
@given(towns(), st.randoms(use_true_random=False))
def test_linking_is_independent_of_input_order(town, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    records = town[0]
    shuffled = records[:]
    rnd.shuffle(shuffled)
    first, second = link_records(records), link_records(shuffled)
    assert first.clusters == second.clusters
    assert first.pairs == second.pairs
    assert first.quality == second.quality


@SLOW
@given(towns())
def test_comparison_and_score_are_symmetric(town) -> None:  # type: ignore[no-untyped-def]
    records = town[0]
    model = link_records(records).model
    assert model is not None
    for a in records[:8]:
        for b in records[:8]:
            assert compare(a, b) == compare(b, a)
            assert model.score(*compare(a, b)) == model.score(*compare(b, a))


@SLOW
@given(towns())
def test_every_record_is_in_exactly_one_cluster_named_by_its_smallest_ref(town) -> None:  # type: ignore[no-untyped-def]
    records = town[0]
    result = link_records(records)
    assert sorted(result.clusters) == sorted(r.ref for r in records)
    for label, refs in _members(result).items():
        assert label == cluster_id(min(refs))


@SLOW
@given(towns())
def test_twins_never_share_a_cluster(town) -> None:  # type: ignore[no-untyped-def]
    records, person_of, twins = town
    for refs in _members(link_records(records)).values():
        people = {person_of[ref] for ref in refs}
        assert not any(frozenset((a, b)) in twins for a in people for b in people if a < b)


@settings(max_examples=4, deadline=None)
@given(st.integers(1, 10_000), st.sampled_from(["moderate", "hard"]))
def test_the_generators_twins_never_share_a_cluster(seed: int, profile: str) -> None:
    town = generate_town(seed=seed, people=150, profile=profile)
    truth = {(t["agency"], t["record_id"]): t for t in town.truth}
    records = []
    for agency, rows in town.rows.items():
        records.extend(ENCODER.encode(f"{agency}:{row['record_id']}", agency, row) for row in rows)
    result = link_records(records)
    for refs in _members(result).values():
        rows = [truth[tuple(ref.split(":", 1))] for ref in refs]  # type: ignore[index]
        twin_people = {r["person_id"] for r in rows if r["twin"] == "1"}
        households = [r["household_id"] for r in rows if r["person_id"] in twin_people]
        # Two twins of one household in one cluster would be two person ids here.
        assert len(twin_people) <= 1 or len(set(households)) == len(twin_people)


@SLOW
@given(towns(), st.randoms(use_true_random=False))
def test_incremental_batches_give_the_clusters_of_one_batch(town, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    records = town[0]
    whole = link_records(records)
    model = whole.model
    assert model is not None
    order = records[:]
    rnd.shuffle(order)
    linker = IncrementalLinker(DEFAULT_CONFIG, model)
    start = 0
    while start < len(order):
        size = rnd.randint(1, max(1, len(order) // 2))
        delta = linker.add(order[start : start + size])
        assert set(delta.clusters) >= {r.ref for r in order[start : start + size]}
        start += size
    result = linker.result()
    assert result.clusters == whole.clusters
    assert result.pairs == whole.pairs
    assert result.comparisons == whole.comparisons
    assert result.households == whole.households
    assert result.quality.pairs_per_band == whole.quality.pairs_per_band
    assert result.quality.clusters == whole.quality.clusters
    assert result.quality.refused_links == whole.quality.refused_links
    assert abs(result.quality.precision - whole.quality.precision) < 1e-9
    assert abs(result.quality.recall - whole.quality.recall) < 1e-9


@settings(max_examples=10, deadline=None)
@given(towns(), st.randoms(use_true_random=False))
def test_incremental_without_a_model_refits_to_the_same_result(town, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    records = town[0]
    linker = IncrementalLinker()
    half = rnd.randint(0, len(records))
    linker.add(records[:half])
    linker.add(records[half:])
    assert linker.result().clusters == link_records(records).clusters


probabilities = st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(
    lambda t: tuple(x / sum(t) for x in t)
)
levels = st.tuples(*(st.sampled_from(list(Level)) for _ in COMPARED_FIELDS))


@given(
    st.lists(probabilities, min_size=7, max_size=7),
    st.lists(probabilities, min_size=7, max_size=7),
    st.floats(0.001, 0.999),
    levels,
    st.integers(0, len(COMPARED_FIELDS) - 1),
    st.sampled_from([None, "nhs", "upn", "name_dob"]),
)
def test_raising_one_fields_agreement_never_lowers_the_weight(  # noqa: PLR0917
    m: list[tuple[float, float, float]],
    u: list[tuple[float, float, float]],
    prior: float,
    before: tuple[Level, ...],
    field: int,
    rule: str | None,
) -> None:
    model = Model(m=tuple(m), u=tuple(u), match_prior=prior)  # type: ignore[arg-type]
    if before[field] in (Level.MISSING, Level.AGREE):
        return
    after = list(before)
    after[field] = Level(before[field] + 1)
    low, p_low = model.score(before, rule)
    high, p_high = model.score(tuple(after), rule)
    assert high >= low
    assert p_high >= p_low


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), levels, st.integers(0, len(COMPARED_FIELDS) - 1))
def test_a_fitted_model_is_monotone_too(seed: int, before: tuple[Level, ...], field: int) -> None:
    rng = random.Random(seed)
    comparisons = []
    for i in range(400):
        comparisons.append(
            Comparison(i, i + 1, tuple(Level(rng.randint(0, 3)) for _ in COMPARED_FIELDS))
        )
    model = fit(comparisons)
    for level in (Level.DISAGREE, Level.NEAR):
        raised = list(before)
        raised[field] = level
        higher = list(before)
        higher[field] = Level(level + 1)
        assert model.score(tuple(higher))[0] >= model.score(tuple(raised))[0]
