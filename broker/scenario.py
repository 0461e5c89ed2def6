"""The demo scenario: agency systems using the broker over HTTP, exactly as they would.

It is drawn from the domain source: four agencies post their extracts; after
an emergency department attendance, children's social care asks at the daily
briefing whether partners know the young person; the school's safeguarding
lead and the police ask within their own purposes; and requests the agreement
does not allow are refused, each with its reason. Every step is checked
against what should happen, using the synthetic town's truth file.
"""

from __future__ import annotations

import csv
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import agreements
from adapters.base import select_declared
from adapters.csv import iter_batches, read_extract
from agreements.loader import load_agreement
from broker.scenario_governance import (
    ig_lead_finds_releases,
    suspension_round_trip,
    verify_receipt,
)

AGREEMENT = "sv-early-identification"
AGREEMENT_FILE = Path(agreements.__file__).parent / "examples" / f"{AGREEMENT}.yaml"
DATASETS = {
    "school": "school-attendance",
    "social-care": "csc-involvement",
    "police": "police-incidents",
    "ed": "ed-attendances",
}
# What the example agreement releases to each recipient for each purpose, per dataset.
PERMITTED = {
    ("social-care", "safeguarding-triage"): {
        "school-attendance": {
            "attendance_pct",
            "persistent_absence",
            "excluded",
            "alternative_provision",
        },
        "police-incidents": {
            "incident_type",
            "role_in_incident",
            "incident_date",
            "exploitation_concern",
        },
        "ed-attendances": {"attendance_date", "injury_type", "safeguarding_referral_made"},
    },
    ("school", "safeguarding-triage"): {
        "csc-involvement": {"csc_status"},
        "police-incidents": {"missing_episodes_12m"},
    },
    ("police", "violence-reduction"): {
        "ed-attendances": {"injury_type", "attendance_date"},
        "school-attendance": {"excluded"},
    },
}
BATCH_SIZE = 250
# Differences in how agencies type the same identifier that normalisation removes,
# or that only cost one match key: exact linkage must still join these records.
NORMALISED_AWAY = frozenset(
    {"diacritics_dropped", "apostrophe_variant", "hyphen_variant", "postcode_format", "nhs_missing"}
)
LOOKUP_IDENTIFIERS = ("given_name", "family_name", "date_of_birth", "postcode")


@dataclass
class Check:
    """One expectation of the scenario and whether it held."""

    name: str
    ok: bool
    note: str = ""


@dataclass
class ScenarioReport:
    """What the scenario did and saw; ``ok`` only when every check held."""

    records: dict[str, int] = field(default_factory=dict)
    linked: int = 0
    new_subjects: int = 0
    lookups: int = 0
    matched: int = 0
    fields_released: int = 0
    denials: Counter[str] = field(default_factory=Counter)
    checks: list[Check] = field(default_factory=list)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    governance: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, note: str = "") -> bool:
        self.checks.append(Check(name, ok, note))
        return ok


@dataclass(frozen=True)
class _Person:
    person_id: str
    agencies: frozenset[str]
    rows: Mapping[str, dict[str, str]]


def _people(extracts: Path) -> dict[str, _Person]:
    """People whose records differ only in ways normalisation removes (so exact links hold)."""
    rows_by_ref: dict[tuple[str, str], dict[str, str]] = {}
    for agency in DATASETS:
        for row in read_extract(extracts / f"{agency}.csv").rows:
            rows_by_ref[(agency, row["record_id"])] = row
    by_person: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    clean: dict[str, bool] = defaultdict(lambda: True)
    twins: set[str] = set()
    with (extracts / "truth.csv").open(encoding="utf-8", newline="") as handle:
        for truth in csv.DictReader(handle):
            person = truth["person_id"]
            by_person[person].append(
                (truth["agency"], rows_by_ref[(truth["agency"], truth["record_id"])])
            )
            if set(filter(None, truth["corruptions"].split(";"))) - NORMALISED_AWAY:
                clean[person] = False
            if truth["twin"].lower() in ("true", "1", "yes"):
                twins.add(person)
    return {
        person: _Person(person, frozenset(a for a, _ in rows), dict(rows))
        for person, rows in by_person.items()
        if clean[person] and person not in twins
    }


#: Where a caller's headers come from: a token client renews its token as it expires.
HeaderSource = Callable[[], Mapping[str, str]]


@dataclass(frozen=True)
class Callers:
    """Who drives the scenario: each agency's system, two DPOs and social care's IG lead."""

    systems: Mapping[str, HeaderSource]
    #: The DPOs of school (who suspends) and social care (the lead party, who resumes).
    dpos: Mapping[str, HeaderSource] = field(default_factory=dict)
    ig_lead: HeaderSource | None = None


class _Agency:
    def __init__(
        self, client: httpx.Client, name: str, system: HeaderSource, dpo: HeaderSource | None
    ) -> None:
        self.client = client
        self.name = name
        self._system = system
        self._dpo = dpo

    @property
    def headers(self) -> dict[str, str]:
        """The agency system's headers (a fresh token when the last one expired)."""
        return dict(self._system())

    @property
    def dpo_headers(self) -> dict[str, str]:
        """The agency's DPO's headers; agreement changes are a DPO's job."""
        return dict((self._dpo or self._system)())

    def post_batch(self, dataset: str, records: list[dict[str, str]]) -> httpx.Response:
        return self.client.post(
            f"/v1/agreements/{AGREEMENT}/datasets/{dataset}/batches",
            json={"records": records},
            # Every batch carries its own key (issue 8); this scenario never retries one.
            headers={**self.headers, "Idempotency-Key": str(uuid.uuid4())},
        )

    def lookup(
        self, purpose: str, identifiers: Mapping[str, str], fields: list[str] | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"purpose": purpose, "identifiers": dict(identifiers)}
        if fields is not None:
            body["fields"] = fields
        return self.client.post(
            f"/v1/agreements/{AGREEMENT}/lookups", json=body, headers=self.headers
        )


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def run_scenario(base_url: str, callers: Callers, extracts: Path) -> ScenarioReport:
    """Drive the whole scenario against a running broker and check every step.

    With an IG lead among the callers (social care's) the scenario also finds,
    by a child's identifiers, every release about them.
    """
    report = ScenarioReport()
    with httpx.Client(base_url=base_url, timeout=60) as client:
        agencies = {
            name: _Agency(client, name, source, callers.dpos.get(name))
            for name, source in callers.systems.items()
        }
        _ingest(report, agencies, extracts)
        _rejected_batch(report, agencies["ed"])
        people = _people(extracts)
        _lookups(report, agencies, people)
        _denials(report, agencies, people, client)
        someone = next(
            p
            for p in sorted(people.values(), key=lambda p: p.person_id)
            if "social-care" in p.agencies
        )
        suspension_round_trip(
            report, agencies, {k: someone.rows["social-care"][k] for k in LOOKUP_IDENTIFIERS}
        )
        verify_receipt(report, client, agencies["social-care"])
        if callers.ig_lead is not None:
            briefed = next(iter(_briefing(people)), None)
            if briefed is not None:
                ig_lead_finds_releases(
                    report,
                    client,
                    callers.ig_lead(),
                    {k: briefed.rows["social-care"][k] for k in LOOKUP_IDENTIFIERS},
                )
        for name, agency in agencies.items():
            response = client.get(
                "/v1/audit/entries", headers=agency.headers, params={"limit": 1000}
            )
            entries = response.json()["entries"] if response.status_code == 200 else []
            report.check(
                f"{name} can read its own audit entries",
                response.status_code == 200
                and bool(entries)
                and all(e["actor"] == name for e in entries),
            )
    return report


def _ingest(report: ScenarioReport, agencies: Mapping[str, _Agency], extracts: Path) -> None:
    # Each agency holds the signed agreement and sends only what its dataset declares.
    agreement = load_agreement(AGREEMENT_FILE)
    for name, dataset in DATASETS.items():
        declared = agreement.dataset(dataset)
        assert declared is not None, dataset
        rows = select_declared(read_extract(extracts / f"{name}.csv").rows, declared)
        accepted = 0
        for batch in iter_batches(rows, BATCH_SIZE):
            response = agencies[name].post_batch(dataset, batch)
            if not report.check(
                f"{name} batch accepted", response.status_code == 201, _code(response)
            ):
                continue
            body = response.json()
            accepted += body["accepted"]
            report.linked += body["linked"]
            report.new_subjects += body["new_subjects"]
        report.records[name] = accepted
        report.check(
            f"every {name} record stored", accepted == len(rows), f"{accepted}/{len(rows)}"
        )


def _rejected_batch(report: ScenarioReport, ed: _Agency) -> None:
    """A batch with one impossible date and one undeclared field is refused whole."""
    good = {
        "record_id": "ED-DEMO-1",
        "given_name": "Demo",
        "family_name": "Example",
        "date_of_birth": "2010-05-04",
        "postcode": "NS1 1AA",
        "attendance_date": "2026-11-20",
        "injury_type": "other",
    }
    bad = {**good, "record_id": "ED-DEMO-2", "attendance_date": "2026-02-30", "ward": "A1"}
    response = ed.post_batch("ed-attendances", [good, bad])
    error = response.json().get("error", {}) if response.status_code == 422 else {}
    where = {
        (p["location"].get("record"), p["location"].get("field")) for p in error.get("problems", [])
    }
    report.check(
        "invalid batch refused whole, naming record and field",
        error.get("code") == "batch_invalid" and {(1, "attendance_date"), (1, "ward")} <= where,
        _code(response),
    )
    if error:
        report.denials[error["code"]] += 1
    retry = ed.post_batch("ed-attendances", [good])
    report.check(
        "nothing from the refused batch was stored",
        retry.status_code == 201,
        _code(retry),
    )
    if retry.status_code == 201:
        report.records["ed"] = report.records.get("ed", 0) + 1


def _released_ok(body: dict[str, Any], permitted: Mapping[str, set[str]]) -> bool:
    for holding in body["holdings"]:
        allowed = permitted.get(holding["dataset"], set())
        for record in holding["records"]:
            if not set(record["fields"]) <= allowed:
                return False
    return True


def _briefing(people: Mapping[str, _Person]) -> list[_Person]:
    # Young people known to social care and at least two partners, as at a daily briefing.
    return sorted(
        (p for p in people.values() if "social-care" in p.agencies and len(p.agencies) >= 3),
        key=lambda p: (-len(p.agencies), p.person_id),
    )[:12]


def _lookups(
    report: ScenarioReport, agencies: Mapping[str, _Agency], people: Mapping[str, _Person]
) -> None:
    briefing = _briefing(people)
    report.check("the town has young people known to three or more agencies", len(briefing) >= 3)
    for person in briefing:
        identifiers = {k: person.rows["social-care"][k] for k in LOOKUP_IDENTIFIERS}
        for recipient, purpose in (
            ("social-care", "safeguarding-triage"),
            ("school", "safeguarding-triage"),
            ("police", "violence-reduction"),
        ):
            permitted = PERMITTED[(recipient, purpose)]
            response = agencies[recipient].lookup(purpose, identifiers)
            report.lookups += 1
            if not report.check(
                f"{recipient} lookup permitted", response.status_code == 200, _code(response)
            ):
                continue
            body = response.json()
            report.received.setdefault(recipient, []).append(body)
            providers = {a for a in person.agencies if a != recipient}
            expected = {a for a in providers if DATASETS[a] in permitted}
            got = {h["agency"] for h in body["holdings"]}
            report.matched += int(body["matched"])
            report.fields_released += sum(
                len(r["fields"]) for h in body["holdings"] for r in h["records"]
            )
            report.check(
                f"{recipient} sees exactly the partners that hold {person.person_id}",
                body["matched"] and got == expected,
                f"expected {sorted(expected)}, got {sorted(got)}",
            )
            report.check(
                f"{recipient} receives only permitted fields", _released_ok(body, permitted)
            )
    if briefing:
        _pseudonyms_differ(report, agencies, briefing[0])


def _pseudonyms_differ(
    report: ScenarioReport, agencies: Mapping[str, _Agency], person: _Person
) -> None:
    identifiers = {k: person.rows["social-care"][k] for k in LOOKUP_IDENTIFIERS}
    first = agencies["social-care"].lookup("safeguarding-triage", identifiers).json()
    again = agencies["social-care"].lookup("safeguarding-triage", identifiers).json()
    school = agencies["school"].lookup("safeguarding-triage", identifiers).json()
    report.lookups += 3
    report.matched += sum(1 for body in (first, again, school) if body.get("matched"))
    report.check(
        "a recipient's pseudonym is stable and differs from another recipient's",
        first["pseudonym"] == again["pseudonym"] != school["pseudonym"],
    )


def _denials(
    report: ScenarioReport,
    agencies: Mapping[str, _Agency],
    people: Mapping[str, _Person],
    client: httpx.Client,
) -> None:
    person = next(
        p for p in sorted(people.values(), key=lambda p: p.person_id) if "social-care" in p.agencies
    )
    identifiers = {k: person.rows["social-care"][k] for k in LOOKUP_IDENTIFIERS}
    attempts = [
        (
            "school asks for police incident types",
            403,
            "field_not_permitted",
            agencies["school"].lookup(
                "safeguarding-triage", identifiers, ["police-incidents.incident_type"]
            ),
        ),
        (
            "the emergency department, a provider only, asks for a lookup",
            403,
            "agency_not_recipient",
            agencies["ed"].lookup("safeguarding-triage", identifiers),
        ),
        (
            "police ask for a purpose the agreement does not name",
            403,
            "purpose_unknown",
            agencies["police"].lookup("mace-identification", identifiers),
        ),
        (
            "police ask for the social care purpose",
            403,
            "no_release_for_recipient",
            agencies["police"].lookup("safeguarding-triage", identifiers),
        ),
        (
            "police post records into the school's dataset",
            403,
            "agency_not_provider",
            agencies["police"].post_batch("school-attendance", [{"record_id": "X1"}]),
        ),
        (
            "a lookup with a given name only",
            422,
            "identifiers_insufficient",
            agencies["social-care"].lookup(
                "safeguarding-triage", {"given_name": identifiers["given_name"]}
            ),
        ),
        (
            "a caller with an unknown API key",
            401,
            "unauthenticated",
            client.post(
                f"/v1/agreements/{AGREEMENT}/lookups",
                headers={"Authorization": "Bearer acc_wrong"},
                json={"purpose": "safeguarding-triage", "identifiers": identifiers},
            ),
        ),
    ]
    for name, status, code, response in attempts:
        got = _code(response)
        report.check(
            f"refused: {name} ({code})", response.status_code == status and got == code, got
        )
        report.denials[got] += 1
