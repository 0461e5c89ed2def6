"""The demo scenario's governance steps: a suspension that stops sharing at once, and a receipt.

Both run over HTTP as the partners' systems would. The receipt is checked the
way any partner can check it, with nothing but the broker's public log key:
the checkpoint's signature, then the entry's inclusion proof against it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import checkpoint as notes
from audit.merkle import verify_inclusion
from broker.errors import AccordError

if TYPE_CHECKING:
    from broker.scenario import ScenarioReport, _Agency

AGREEMENT = "sv-early-identification"


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def suspension_round_trip(
    report: ScenarioReport, agencies: Mapping[str, _Agency], identifiers: Mapping[str, str]
) -> None:
    """A school DPO suspends the agreement; lookups stop at once; the lead party resumes it."""
    school, lead = agencies["school"], agencies["social-care"]
    suspended = school.client.post(
        f"/v1/agreements/{AGREEMENT}/suspend",
        json={"reason": "demonstration: a partner reports suspected misuse"},
        headers=school.dpo_headers,
    )
    report.check("a party suspends the agreement", suspended.status_code == 200, _code(suspended))
    refused = lead.lookup("safeguarding-triage", identifiers)
    code = _code(refused)
    report.check(
        "refused: a lookup under the suspended agreement (agreement_not_active)",
        refused.status_code == 403 and code == "agreement_not_active",
        code,
    )
    report.denials[code] += 1
    resumed = lead.client.post(f"/v1/agreements/{AGREEMENT}/resume", headers=lead.dpo_headers)
    report.check("the lead party resumes it", resumed.status_code == 200, _code(resumed))
    again = lead.lookup("safeguarding-triage", identifiers)
    report.check("lookups work again after resumption", again.status_code == 200, _code(again))
    report.governance["suspended and resumed"] = "yes" if again.status_code == 200 else "no"


def verify_receipt(report: ScenarioReport, client: httpx.Client, agency: _Agency) -> None:
    """Fetch the proof for a lookup's audit entry and verify it against a signed checkpoint."""
    answers = report.received.get(agency.name) or []
    if not answers:
        report.check("a receipt to verify", False, "no lookup answered")
        return
    entry = int(answers[0]["audit_entry"])
    proof = client.get(
        "/v1/audit/proofs/inclusion", params={"entry": entry}, headers=agency.headers
    )
    key = client.get("/v1/audit/log-key")
    if not report.check("the broker serves a receipt", proof.status_code == 200, _code(proof)):
        return
    body: dict[str, Any] = proof.json()
    log: dict[str, Any] = key.json()
    note = body["checkpoint"]["note"]
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(log["public_key"]))
        checkpoint = notes.verify(note, log["origin"], public)
        verify_inclusion(
            bytes.fromhex(body["leaf_hash"]),
            body["leaf_index"],
            checkpoint.size,
            [bytes.fromhex(h) for h in body["path"]],
            checkpoint.root_hash,
        )
        ok = True
    except (AccordError, ValueError) as exc:
        ok = False
        report.check("the receipt verifies", False, type(exc).__name__)
    if ok:
        report.check("the receipt verifies", True)
        report.governance["receipt"] = (
            f"audit entry {entry} is in the log of {checkpoint.size} entries (verified)"
        )
        report.governance["checkpoint"] = note


def ig_lead_finds_releases(
    report: ScenarioReport,
    client: httpx.Client,
    headers: Mapping[str, str],
    identifiers: Mapping[str, str],
) -> None:
    """Social care's IG lead asks, by the child's identifiers, who received what about them."""
    found = client.post(
        "/v1/audit/reports/subject", json={"identifiers": dict(identifiers)}, headers=headers
    )
    if not report.check(
        "the IG lead's subject report answers", found.status_code == 200, _code(found)
    ):
        return
    releases = found.json()["releases"]
    recipients = {r["recipient"] for r in releases}
    report.check(
        "the IG lead finds every recipient that received something about the child",
        {"social-care", "school", "police"} <= recipients,
        f"found {sorted(recipients)}",
    )
    report.governance["releases found by the IG lead"] = str(len(releases))
