"""Properties of the agreement diff over random variations of the example's releases."""

from __future__ import annotations

from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from agreements.diff import diff_agreements, is_narrowing_only
from agreements.models import Agreement, OutputKind, Release, ReleasedField, ReleaseForm
from tests.helpers import example_agreement

BASE = example_agreement()
FORMS: tuple[ReleaseForm, ...] = get_args(ReleaseForm)
OUTPUTS: tuple[OutputKind, ...] = get_args(OutputKind)
# Every (dataset, field) the example declares: the pool new release fields are drawn from.
DECLARED = [(d.id, f.name) for d in BASE.datasets for f in d.fields]
RECIPIENTS = [p.id for p in BASE.parties]
PURPOSES = [p.id for p in BASE.purposes]


@st.composite
def releases(draw: st.DrawFn, purpose: str, recipient: str) -> Release:
    pairs = draw(st.lists(st.sampled_from(DECLARED), min_size=1, max_size=6, unique=True))
    fields = tuple(
        ReleasedField(dataset=d, field=f, form=draw(st.sampled_from(FORMS))) for d, f in pairs
    )
    return Release(
        purpose=purpose,
        recipient=recipient,
        outputs=tuple(draw(st.lists(st.sampled_from(OUTPUTS), min_size=1, unique=True))),
        fields=fields,
        reveal_record_reference=draw(st.booleans()),
        minimum_cell_size=draw(st.integers(1, 20)),
    )


@st.composite
def agreements(draw: st.DrawFn) -> Agreement:
    """The example with random releases: any recipient, purpose, fields, forms and outputs."""
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(PURPOSES), st.sampled_from(RECIPIENTS)),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    return BASE.model_copy(
        update={"releases": tuple(draw(releases(purpose, who)) for purpose, who in keys)}
    )


def _content(agreement: Agreement) -> dict[tuple[str, str], tuple[object, ...]]:
    # What a release grants, ignoring the order its fields and outputs are written in.
    return {
        (r.purpose, r.recipient): (
            frozenset(r.fields),
            frozenset(r.outputs),
            r.reveal_record_reference,
            r.minimum_cell_size,
        )
        for r in agreement.releases
    }


def _replace(agreement: Agreement, index: int, release: Release) -> Agreement:
    chosen = list(agreement.releases)
    chosen[index] = release
    return agreement.model_copy(update={"releases": tuple(chosen)})


@settings(max_examples=50, deadline=None)
@given(agreements())
def test_an_agreement_has_no_changes_from_itself(agreement: Agreement) -> None:
    assert diff_agreements(agreement, agreement) == []
    assert diff_agreements(agreement, agreement.model_copy(update={"version": 9})) == []


@settings(max_examples=50, deadline=None)
@given(agreements(), st.data())
def test_removing_one_released_field_is_one_narrowing_change_naming_it(
    agreement: Agreement, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(agreement.releases) - 1))
    release = agreement.releases[index]
    gone = data.draw(st.sampled_from(release.fields))
    kept = tuple(f for f in release.fields if f != gone)
    # A release cannot be empty: removing its last field removes the release.
    if kept:
        narrower = _replace(agreement, index, release.model_copy(update={"fields": kept}))
    else:
        others = tuple(r for r in agreement.releases if r != release)
        narrower = agreement.model_copy(update={"releases": others})
    changes = diff_agreements(agreement, narrower)
    assert len(changes) == 1, changes
    assert changes[0].effect == "narrowing"
    assert f"`{gone.dataset}.{gone.field}`" in changes[0].message
    assert is_narrowing_only(changes)


@settings(max_examples=50, deadline=None)
@given(agreements(), st.data())
def test_adding_a_released_field_widens_and_the_reverse_narrows(
    agreement: Agreement, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(agreement.releases) - 1))
    release = agreement.releases[index]
    present = {(f.dataset, f.field) for f in release.fields}
    dataset, field = data.draw(st.sampled_from([p for p in DECLARED if p not in present]))
    added = ReleasedField(dataset=dataset, field=field, form=data.draw(st.sampled_from(FORMS)))
    wider = _replace(
        agreement, index, release.model_copy(update={"fields": (*release.fields, added)})
    )
    name = f"`{dataset}.{field}`"
    forward = diff_agreements(agreement, wider)
    backward = diff_agreements(wider, agreement)
    assert [c.effect for c in forward] == ["widening"]
    assert name in forward[0].message
    assert not is_narrowing_only(forward)
    assert [c.effect for c in backward] == ["narrowing"]
    assert name in backward[0].message


@settings(max_examples=50, deadline=None)
@given(agreements(), agreements())
def test_swapping_versions_turns_every_widening_into_a_narrowing(
    old: Agreement, new: Agreement
) -> None:
    forward = diff_agreements(old, new)
    backward = diff_agreements(new, old)
    assert (forward == []) == (_content(old) == _content(new))
    assert len(forward) == len(backward)
    # Unrelated forms are widening both ways (the safe reading), so only narrowing mirrors exactly.
    assert sum(c.effect == "narrowing" for c in backward) <= sum(
        c.effect == "widening" for c in forward
    )
    assert sum(c.effect == "narrowing" for c in forward) <= sum(
        c.effect == "widening" for c in backward
    )
    if forward and is_narrowing_only(forward):
        assert not is_narrowing_only(backward)
    # Each field newly released one way is named as no longer released the other way.
    for change in forward:
        if " is now released to " in change.message:
            name = change.message.split("`")[1]
            assert any(
                c.effect == "narrowing" and f"`{name}` is no longer released" in c.message
                for c in backward
            ), (change, backward)
