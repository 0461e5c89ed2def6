"""What changed between two versions of an agreement, in the words a DPO would use.

Each change says whether it widens what is shared (more data, more recipients,
finer forms, longer life), narrows it, or is neutral (wording, contacts, status).
Where a change cannot be placed with certainty it is called widening, the safe
reading, so that a DPO looks at it before approving. The version number is not
a change; :func:`describe_versions` gives the header for the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from agreements.decision import coarser_form
from agreements.models import Agreement, Dataset, LawfulBasis, Release, ReleaseForm
from agreements.terms import Retention

__all__ = ["Change", "Effect", "describe_versions", "diff_agreements", "is_narrowing_only"]

Effect = Literal["widening", "narrowing", "neutral"]
T = TypeVar("T")

_ARTICLES = {
    "article_6": "Article 6",
    "article_9": "Article 9",
    "article_10": "Article 10",
    "dpa_schedule_1": "DPA 2018 Schedule 1",
    "statutory_gateway": "statutory gateway",
}
# Sections a DPO reads as prose; a change to any of them is reported, not weighed.
_TERMS = ("data_quality", "security", "rights", "termination")


@dataclass(frozen=True)
class Change:
    """One difference between two versions; ``message`` is a sentence for a DPO."""

    effect: Effect
    area: str
    message: str


def describe_versions(old: Agreement, new: Agreement) -> str:
    """A header for a diff, such as "sv-early-identification: version 1 -> version 2"."""
    if old.id == new.id:
        return f"{old.id}: version {old.version} -> version {new.version}"
    return f"{old.id} version {old.version} -> {new.id} version {new.version}"


def is_narrowing_only(changes: Iterable[Change]) -> bool:
    """True when no change widens sharing; an empty list is narrowing only."""
    return all(change.effect != "widening" for change in changes)


def diff_agreements(old: Agreement, new: Agreement) -> list[Change]:
    """Every change from ``old`` to ``new``, sorted by area then message.

    The diff of an agreement with itself is empty and the version number is
    never reported. Parties are named as ``new`` names them, or as ``old`` did
    for a party that has left.
    """
    differ = _Differ(old, new)
    differ.header()
    differ.dates()
    differ.parties()
    differ.purposes()
    differ.datasets()
    differ.releases()
    differ.governance()
    return sorted(set(differ.changes), key=lambda c: (c.area, c.message, c.effect))


def _by_id(items: Iterable[T], attr: str = "id") -> dict[str, T]:
    return {getattr(item, attr): item for item in items}


def _words(code: str) -> str:
    return code.replace("_", " ")


def _quote(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return f"'{text}'" if len(text) <= limit else f"'{text[: limit - 3]}...'"


def _ticks(items: Iterable[str]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def _grows(grew: bool) -> Effect:
    return "widening" if grew else "narrowing"


def _form_effect(old: ReleaseForm, new: ReleaseForm) -> Effect:
    # Unrelated forms give "redacted", which is neither side: widening, the safe reading.
    return "narrowing" if coarser_form(old, new) == new else "widening"


class _Differ:
    def __init__(self, old: Agreement, new: Agreement) -> None:
        self.old, self.new = old, new
        self.changes: list[Change] = []

    def add(self, effect: Effect, area: str, message: str) -> None:
        self.changes.append(Change(effect, area, message))

    def who(self, party_id: str) -> str:
        party = self.new.party(party_id) or self.old.party(party_id)
        return party.name if party is not None else f"`{party_id}`"

    def header(self) -> None:
        old, new = self.old, self.new
        if old.id != new.id:
            self.add("neutral", "agreement", f"Agreement id changes from `{old.id}` to `{new.id}`")
        if old.title != new.title:
            self.add("neutral", "terms", f"Title changes to {_quote(new.title)}")
        if (old.status, old.status_reason) != (new.status, new.status_reason):
            why = f" ({new.status_reason})" if new.status_reason else ""
            self.add("neutral", "status", f"Status changes from {old.status} to {new.status}{why}")

    def dates(self) -> None:
        old, new = self.old, self.new
        if new.effective_from != old.effective_from:
            # Taking effect earlier lets sharing start sooner.
            text = f"Effective date moves from {old.effective_from} to {new.effective_from}"
            self.add(_grows(new.effective_from < old.effective_from), "dates", text)
        if new.expires_on != old.expires_on:
            text = f"Expiry moves from {old.expires_on} to {new.expires_on}"
            self.add(_grows(new.expires_on > old.expires_on), "dates", text)
        if new.review_by != old.review_by:
            # Without a review date nothing stops an unreviewed agreement sharing.
            later = new.review_by is None or (
                old.review_by is not None and new.review_by > old.review_by
            )
            text = f"Review date moves from {old.review_by or 'none'} to {new.review_by or 'none'}"
            self.add(_grows(later), "dates", text)
        if new.grace_days != old.grace_days:
            # The grace period decides how long an overdue agreement still shares.
            text = f"Sharing continues {new.grace_days} days past an overdue review"
            self.add(
                _grows(new.grace_days > old.grace_days), "dates", f"{text} (was {old.grace_days})"
            )

    def parties(self) -> None:
        old, new = _by_id(self.old.parties), _by_id(self.new.parties)
        for pid in new.keys() - old.keys():
            roles = " and ".join(new[pid].roles)
            self.add("widening", "party", f"{new[pid].name} (`{pid}`) joins as {roles}")
        for pid in old.keys() - new.keys():
            self.add("narrowing", "party", f"{old[pid].name} (`{pid}`) is no longer a party")
        for pid in old.keys() & new.keys():
            was, now = old[pid], new[pid]
            if was.name != now.name:
                self.add("neutral", "party", f"`{pid}` is renamed from {was.name} to {now.name}")
            if was.type != now.type:
                text = f"{now.name} is now a {_words(now.type)} agency"
                self.add("neutral", "party", f"{text} (was {_words(was.type)})")
            for role in set(now.roles) - set(was.roles):
                self.add("widening", "party", f"{now.name} gains the role {role}")
            for role in set(was.roles) - set(now.roles):
                self.add("narrowing", "party", f"{now.name} loses the role {role}")
            if was.controller != now.controller:
                text = f"{now.name} is now a {now.controller} controller"
                self.add("neutral", "party", f"{text} (was {was.controller})")

    def purposes(self) -> None:
        old, new = _by_id(self.old.purposes), _by_id(self.new.purposes)
        for pid in new.keys() - old.keys():
            text = f"Purpose `{pid}` is added: {_quote(new[pid].description)}"
            self.add("widening", "purpose", text)
        for pid in old.keys() - new.keys():
            self.add("narrowing", "purpose", f"Purpose `{pid}` is removed")
        for pid in old.keys() & new.keys():
            if old[pid].description != new[pid].description:
                text = f"Purpose `{pid}` is reworded: {_quote(new[pid].description)}"
                self.add("neutral", "purpose", text)
            self.lawful_bases(pid, old[pid].lawful_basis, new[pid].lawful_basis)

    def lawful_bases(
        self, pid: str, old: Mapping[str, LawfulBasis], new: Mapping[str, LawfulBasis]
    ) -> None:
        for party in old.keys() | new.keys():
            who = self.who(party)
            if party not in new:
                self.add("neutral", "purpose", f"{who} no longer states a basis for `{pid}`")
                continue
            if party not in old:
                basis = _quote(new[party].article_6, 500)
                self.add("neutral", "purpose", f"{who} states a basis for `{pid}`: {basis}")
                continue
            for key, label in _ARTICLES.items():
                was, now = getattr(old[party], key), getattr(new[party], key)
                if was == now:
                    continue
                prefix = f"{who}'s {label} basis for `{pid}`"
                # Quoted in full: two bases may differ only in their last words.
                if was is None:
                    text = f"{prefix} is added: {_quote(now, 500)}"
                elif now is None:
                    text = f"{prefix} is removed (was {_quote(was, 500)})"
                else:
                    text = f"{prefix} changes from {_quote(was, 500)} to {_quote(now, 500)}"
                self.add("neutral", "purpose", text)

    def datasets(self) -> None:
        old, new = _by_id(self.old.datasets), _by_id(self.new.datasets)
        for did in new.keys() - old.keys():
            fields = _ticks(f.name for f in new[did].fields)
            text = f"Dataset `{did}` from {self.who(new[did].provider)} is added ({fields})"
            self.add("widening", "dataset", text)
        for did in old.keys() - new.keys():
            text = f"Dataset `{did}` from {self.who(old[did].provider)} is removed"
            self.add("narrowing", "dataset", text)
        for did in old.keys() & new.keys():
            self.dataset(old[did], new[did])
            self.retention(did, old[did].retention, new[did].retention)

    def dataset(self, old: Dataset, new: Dataset) -> None:
        did = new.id
        if old.provider != new.provider:
            text = f"`{did}` is now supplied by {self.who(new.provider)}"
            self.add("neutral", "dataset", f"{text} (was {self.who(old.provider)})")
        for ident in set(new.identifiers) - set(old.identifiers):
            self.add("widening", "dataset", f"`{did}` now carries identifier `{ident}`")
        for ident in set(old.identifiers) - set(new.identifiers):
            self.add("narrowing", "dataset", f"`{did}` no longer carries identifier `{ident}`")
        if (old.description, old.date_format) != (new.description, new.date_format):
            self.add("neutral", "dataset", f"`{did}`'s description or date format changes")
        was_fields, now_fields = _by_id(old.fields, "name"), _by_id(new.fields, "name")
        for name in now_fields.keys() - was_fields.keys():
            kind = _words(now_fields[name].classification)
            self.add("widening", "dataset", f"`{did}` gains field `{name}` ({kind})")
        for name in was_fields.keys() - now_fields.keys():
            self.add("narrowing", "dataset", f"`{did}` loses field `{name}`")
        for name in was_fields.keys() & now_fields.keys():
            was, now = was_fields[name], now_fields[name]
            if was.classification != now.classification:
                self.add(
                    "neutral",
                    "dataset",
                    f"RECLASSIFIED: `{did}.{name}` changes from {_words(was.classification)} "
                    f"to {_words(now.classification)}; check each lawful basis still covers it",
                )
            specs = ("type", "required", "values", "max_length")
            altered = [k for k in specs if getattr(was, k) != getattr(now, k)]
            if altered:
                text = f"`{did}.{name}` changes its definition ({', '.join(altered)})"
                self.add("neutral", "dataset", text)

    def retention(self, did: str, was: Retention | None, now: Retention | None) -> None:
        if was is None and now is not None:
            text = f"`{did}` records are now kept for at most {now.period_days} days"
            self.add("narrowing", "retention", f"{text} (no period before)")
        elif was is not None and now is None:
            # No stated period means nothing bounds how long records are kept.
            text = f"`{did}` no longer states a retention period (was {was.period_days} days)"
            self.add("widening", "retention", text)
        elif was is not None and now is not None:
            if was.period_days != now.period_days:
                text = f"`{did}` records are kept for {now.period_days} days"
                effect = _grows(now.period_days > was.period_days)
                self.add(effect, "retention", f"{text} (was {was.period_days})")
            if was.justification != now.justification:
                text = f"`{did}`'s retention is justified differently"
                self.add("neutral", "retention", f"{text}: {_quote(now.justification)}")

    def to(self, release: Release) -> str:
        return f"to {self.who(release.recipient)} for purpose `{release.purpose}`"

    def releases(self) -> None:
        old = {(r.purpose, r.recipient): r for r in self.old.releases}
        new = {(r.purpose, r.recipient): r for r in self.new.releases}
        for key in new.keys() - old.keys():
            r = new[key]
            fields = ", ".join(f"`{f.dataset}.{f.field}` ({_words(f.form)})" for f in r.fields)
            text = f"New release {self.to(r)}, by {', '.join(r.outputs)}: {fields}"
            self.add("widening", "release", text)
        for key in old.keys() - new.keys():
            r = old[key]
            fields = _ticks(f"{f.dataset}.{f.field}" for f in r.fields)
            text = f"Nothing is released {self.to(r)} any longer (was {fields})"
            self.add("narrowing", "release", text)
        for key in old.keys() & new.keys():
            self.release(old[key], new[key])

    def release(self, old: Release, new: Release) -> None:
        to = self.to(new)
        was_forms = {(f.dataset, f.field): f.form for f in old.fields}
        now_forms = {(f.dataset, f.field): f.form for f in new.fields}
        for (did, name), form in now_forms.items():
            was = was_forms.get((did, name))
            if was is None:
                dataset = self.new.dataset(did) or self.old.dataset(did)
                owner = f"{self.who(dataset.provider)}'s " if dataset is not None else ""
                text = f"{owner}`{did}.{name}` is now released {to} ({_words(form)})"
                self.add("widening", "release", text)
            elif was != form:
                text = f"`{did}.{name}` released {to} changes form from {_words(was)}"
                self.add(_form_effect(was, form), "release", f"{text} to {_words(form)}")
        for did, name in was_forms.keys() - now_forms.keys():
            self.add("narrowing", "release", f"`{did}.{name}` is no longer released {to}")
        for kind in set(new.outputs) - set(old.outputs):
            self.add("widening", "release", f"Release {to} now also allows output {kind}")
        for kind in set(old.outputs) - set(new.outputs):
            self.add("narrowing", "release", f"Release {to} no longer allows output {kind}")
        if old.reveal_record_reference != new.reveal_record_reference:
            reveals = new.reveal_record_reference
            verb = "now reveals" if reveals else "no longer reveals"
            text = f"Release {to} {verb} providers' record references"
            self.add("widening" if reveals else "narrowing", "release", text)
        if old.minimum_cell_size != new.minimum_cell_size:
            # A smaller cell lets aggregates publish counts nearer to single people.
            effect = _grows(new.minimum_cell_size < old.minimum_cell_size)
            text = f"Release {to} sets the minimum cell size to {new.minimum_cell_size}"
            self.add(effect, "release", f"{text} (was {old.minimum_cell_size})")

    def governance(self) -> None:
        old, new = self.old, self.new
        was_keys, now_keys = set(old.linkage.match_keys), set(new.linkage.match_keys)
        for key in now_keys - was_keys:
            self.add("widening", "linkage", f"Records may now be linked by `{key}`")
        for key in was_keys - now_keys:
            self.add("narrowing", "linkage", f"Records are no longer linked by `{key}`")
        if old.linkage != new.linkage and was_keys == now_keys:
            keys = _ticks(new.linkage.match_keys)
            self.add("neutral", "linkage", f"Linkage changes order or method: {keys}")
        for attr in _TERMS:
            if getattr(old, attr) != getattr(new, attr):
                self.add("neutral", "terms", f"The {_words(attr)} terms change")
        if _review_terms(old) != _review_terms(new):
            self.add("neutral", "terms", "The review terms change")
        for party in {c.party for c in {*old.contacts} ^ {*new.contacts}}:
            self.add("neutral", "terms", f"{self.who(party)}'s contacts change")
        was_tests, now_tests = _by_id(old.policy_tests, "name"), _by_id(new.policy_tests, "name")
        for name in now_tests.keys() - was_tests.keys():
            self.add("neutral", "policy tests", f"Policy test {_quote(name)} is added")
        for name in was_tests.keys() - now_tests.keys():
            self.add("neutral", "policy tests", f"Policy test {_quote(name)} is removed")
        for name in was_tests.keys() & now_tests.keys():
            if was_tests[name] != now_tests[name]:
                self.add("neutral", "policy tests", f"Policy test {_quote(name)} changes")
        self.approvals()

    def approvals(self) -> None:
        old, new = _by_id(self.old.approvals, "party"), _by_id(self.new.approvals, "party")
        for party in new.keys() - old.keys():
            a = new[party]
            text = f"{self.who(party)} approves ({a.approver}, {a.approved_on})"
            self.add("neutral", "approvals", text)
        for party in old.keys() - new.keys():
            self.add("neutral", "approvals", f"{self.who(party)}'s approval is absent")
        for party in old.keys() & new.keys():
            was, now = old[party], new[party]
            # A new version is always signed afresh; only who signed, and with what key, matters.
            if (was.approver, was.public_key) != (now.approver, now.public_key):
                text = f"{self.who(party)}'s approval is now by {now.approver}"
                self.add("neutral", "approvals", f"{text}, with key {now.public_key}")


def _review_terms(agreement: Agreement) -> dict[str, object] | None:
    # Grace days are reported under dates, as they decide how long sharing lasts.
    review = agreement.review
    return None if review is None else review.model_dump(exclude={"grace_days"})
