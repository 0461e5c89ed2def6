"""The engine end to end on a few encoded records: clusters, pairs, households, quality, errors."""

from __future__ import annotations

import pytest

from broker.errors import ValidationError
from broker.link.cluster import cluster_id
from broker.link.config import LinkageConfig
from broker.link.encode import RecordEncoder
from broker.link.engine import IncrementalLinker, link_records
from broker.link.households import household_id
from broker.link.types import Band, EncodedRecord

ENCODER = RecordEncoder(b"engine-unit-test-linkage-key-32b")
TWIN_A = {
    "given_name": "Olivia",
    "family_name": "Nowak",
    "date_of_birth": "2012-03-14",
    "sex": "F",
    "postcode": "LS6 2QT",
    "address_line": "4 Hyde Park Road",
    "nhs_number": "9434765919",
}
TWIN_B = {**TWIN_A, "given_name": "Harry", "sex": "M", "nhs_number": ""}
OTHER = {
    "given_name": "Zainab",
    "family_name": "Okafor",
    "date_of_birth": "2009-11-02",
    "postcode": "M14 5RE",
}


def _records() -> list[EncodedRecord]:
    rows = [
        ("school:1", TWIN_A),
        ("police:7", {**TWIN_A, "given_name": "Olivia", "family_name": "Nowack"}),
        ("ed:3", {**TWIN_A, "nhs_number": "", "sex": ""}),
        ("school:2", TWIN_B),
        ("ed:9", OTHER),
        ("police:8", {**OTHER, "postcode": "M14 5RF"}),
    ]
    return [ENCODER.encode(ref, ref.split(":")[0], row) for ref, row in rows]


def test_link_records_clusters_the_same_people_and_keeps_twins_apart() -> None:
    result = link_records(_records())
    olivia = cluster_id("ed:3")
    assert result.clusters == {
        "ed:3": olivia,
        "police:7": olivia,
        "school:1": olivia,
        "school:2": cluster_id("school:2"),
        "ed:9": cluster_id("ed:9"),
        "police:8": cluster_id("ed:9"),
    }
    assert result.comparisons >= 4
    assert all(p.left_ref < p.right_ref for p in result.pairs)
    assert [(p.left_ref, p.right_ref) for p in result.pairs] == sorted(
        (p.left_ref, p.right_ref) for p in result.pairs
    )
    assert all(p.band is not Band.NON_MATCH for p in result.pairs)
    assert result.households == {
        household_id(_records()[0].tokens["household"]): tuple(
            sorted((olivia, cluster_id("school:2")))
        )
    }
    quality = result.quality
    assert quality.records == 6
    assert quality.clusters == 3
    assert sum(quality.pairs_per_band.values()) == result.comparisons
    assert 0.0 <= quality.recall <= 1.0
    assert 0.0 <= quality.precision <= 1.0


def test_non_matches_are_kept_only_when_asked() -> None:
    keep = LinkageConfig(keep_non_matches=True)
    result = link_records(_records(), keep)
    assert len(result.pairs) == result.comparisons
    assert any(p.band is Band.NON_MATCH for p in result.pairs)


def test_duplicate_refs_are_refused() -> None:
    records = _records()
    with pytest.raises(ValidationError) as caught:
        link_records([*records, records[0]])
    assert caught.value.code == "duplicate_ref"
    linker = IncrementalLinker(model=link_records(records).model)
    linker.add(records[:2])
    with pytest.raises(ValidationError) as again:
        linker.add(records[1:3])
    assert again.value.code == "duplicate_ref"


def test_nothing_to_link() -> None:
    result = link_records([])
    assert result.clusters == {}
    assert result.comparisons == 0
    assert result.quality.precision == 1.0
    assert IncrementalLinker().result().clusters == {}


def test_one_new_record_reports_its_cluster_and_the_changed_ones() -> None:
    records = _records()
    linker = IncrementalLinker(model=link_records(records).model)
    linker.add([r for r in records if r.ref != "ed:3"])
    delta = linker.add([r for r in records if r.ref == "ed:3"])
    # ed:3 is now the smallest ref of Olivia's cluster, so her records' id changes.
    assert delta.clusters == {ref: cluster_id("ed:3") for ref in ("ed:3", "police:7", "school:1")}
    assert {(p.left_ref, p.right_ref) for p in delta.pairs} >= {("ed:3", "school:1")}
    assert linker.result().clusters == link_records(records).clusters
