"""The permission matrix: who may call each API operation, and under which agreements.

Written once, here; enforced once, by ``broker.web.authorise`` (a dependency
every route of the app runs before its own code); proven by
``tests/integration/test_permission_matrix.py`` (every route, every role, no
credentials, a non-party) and ``tests/property/test_permission_properties.py``.

An operation is named by its route's ``name`` (FastAPI takes it from the
endpoint function). An operation that is not in ``MATRIX`` is refused: the
matrix fails closed, and a unit test checks it names exactly the app's routes.

For each operation the table gives the roles allowed and, per role, the
agreement membership the caller's agency must hold in the agreement named in
the path (for a draft, in the uploaded document):

``none``       any authenticated caller of that role.
``party``      the agency is a party to the agreement (any version).
``recipient``  the agency is a party holding the ``recipient`` role.
``provider``   the agency is a party holding the ``provider`` role.

Who checks membership is declared too. ``authorise`` (the web dependency,
before the route runs) refuses a non-party with 404 ``not_a_party``: the same
answer as for an agreement id the broker does not hold, so a stranger cannot
learn which agreements exist (the agreement register already answered 404
there). ``service`` means the service's own decision checks it, as it did
before this matrix, finer than the table can (the provider of *this* dataset,
the lead party) and, above all, audited: a refused lookup, batch or lifecycle
change is an audit entry that the IG leads' refusal report counts. Moving those
checks to the edge would lose that record, so the table declares them, names
the refusal the service gives (403, with its code), and the matrix test proves
each one.

Run ``python -m broker.permissions --markdown`` for the table as Markdown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from agreements.models import Agreement
from broker.principal import Principal, Role

__all__ = [
    "MATRIX",
    "PUBLIC_OPERATIONS",
    "Allow",
    "CheckedBy",
    "Decision",
    "Entry",
    "Membership",
    "Refusal",
    "allowed",
    "markdown",
    "parties_of",
]


class Membership(StrEnum):
    """What the caller's agency must be in the agreement named in the path."""

    NONE = "none"
    PARTY = "party"
    RECIPIENT = "recipient"
    PROVIDER = "provider"


class CheckedBy(StrEnum):
    """Where an operation's membership rule is enforced."""

    #: ``broker.web.authorise``, before the route runs: 404 ``not_a_party``.
    AUTHORISE = "authorise"
    #: The service's decision, which audits the refusal: 403 with the service's code.
    SERVICE = "service"


@dataclass(frozen=True)
class Refusal:
    """Why a call is refused: a stable code, its HTTP status and what to do next."""

    code: str
    status: int
    message: str


@dataclass(frozen=True)
class Allow:
    """The call may go ahead.

    ``service_checks`` is the membership the service still checks (and audits)
    for this call; ``Membership.NONE`` when nothing is left to check.
    """

    operation: str
    service_checks: Membership = Membership.NONE


Decision = Allow | Refusal

UNAUTHENTICATED: Final = Refusal(
    "unauthenticated", 401, "send 'Authorization: Bearer <access token>' for this request"
)
ROLE_NOT_ALLOWED: Final = Refusal(
    "role_not_allowed", 403, "your role may not call this operation; see docs/security.md"
)
NOT_A_PARTY: Final = Refusal(
    "not_a_party",
    404,
    "no agreement with that id names your agency as a party; check the id with GET /v1/agreements",
)
UNKNOWN_OPERATION: Final = Refusal(
    "operation_not_in_matrix",
    403,
    "this operation is not in the permission matrix, so nobody may call it; report it",
)


@dataclass(frozen=True)
class Entry:
    """One row of the matrix.

    ``roles`` maps each allowed role to its membership rule; a role absent from
    it is refused. ``public`` operations need no credentials at all.
    ``non_party`` is what a caller whose agency fails the membership rule gets.
    """

    why: str
    roles: Mapping[Role, Membership] = field(default_factory=dict)
    public: bool = False
    checked_by: CheckedBy = CheckedBy.AUTHORISE
    non_party: Refusal = NOT_A_PARTY

    def needs_agreement(self) -> bool:
        """Whether some allowed role is bound by membership of the agreement in the path."""
        return any(m is not Membership.NONE for m in self.roles.values())


SYS, DPO, IG, ADM = Role.SYSTEM, Role.DPO, Role.IG_LEAD, Role.ADMIN
NONE, PARTY, RECIPIENT, PROVIDER = (
    Membership.NONE,
    Membership.PARTY,
    Membership.RECIPIENT,
    Membership.PROVIDER,
)
_SERVICE = CheckedBy.SERVICE


def _public(why: str) -> Entry:
    return Entry(why=why, public=True)


def _refusal(code: str, message: str) -> Refusal:
    return Refusal(code, 403, message)


_SERVICE_NOT_PARTY = _refusal("agency_not_party", "the agreement does not name your agency")
_SERVICE_NOT_PROVIDER = _refusal(
    "agency_not_provider", "only the dataset's provider may post to it"
)

# Who does what (the reasoning behind the table):
#
# - system: an agency's own system, holding the agency's client key. It
#   supplies records (batches, rekey), asks for releases (lookups, aggregates,
#   notifications), keeps its own audit receipts (its entries, inclusion
#   proofs, checkpoints), acts as a witness (cosigns checkpoints, checks
#   consistency), and reads the agreements it works under. It changes no
#   agreement: an agreement binds the agency, so a person signs it.
# - dpo: drafts, validates, approves, activates, suspends, resumes and
#   terminates agreements and reads them (versions, documents). Never records
#   or releases: a DPO decides what may be shared, and does not share it.
# - ig_lead: searches and reports on the audit trail within the agency's
#   agreements, checks proofs and checkpoints, and reads those agreements
#   (to answer "under which agreement, for which purpose" the IG lead needs
#   the text). Not records, not lifecycle.
# - admin: runs the broker for the whole partnership and acts for no agency.
#   Read-only oversight: every agreement, the whole audit log (entries
#   without subject ids), checkpoints, proofs, and the two counting reports
#   (refusals, volumes) that show abuse without naming a young person. Never
#   records or releases, never a search by identifiers or a subject or
#   recipient report (those answer "is this child known", which is an
#   agency's question), never a lifecycle step on an agency's behalf, never a
#   cosignature (a witness must be independent of the operator).
#
# Membership binds roles that act for an agency; the administrator acts for
# none, so its rows say ``none``.
MATRIX: Final[Mapping[str, Entry]] = {
    # -- public: probes, the log's public key, the schema and its viewers ------
    "health": _public("liveness probe; says only that the process is up"),
    "ready": _public("readiness probe for load balancers; counts only"),
    "telemetry_health": _public("exporter counts for probes; no data"),
    "log_key": _public("the log's public key: anyone may verify a checkpoint"),
    "token": _public("OAuth 2.0 token endpoint: the client proves itself with a signed assertion"),
    "sign_in": _public("a person signs in with an account's secret and gets a token"),
    "openapi": _public("the API schema (clients and schemathesis read it)"),
    "swagger_ui_html": _public("the schema's viewer"),
    "swagger_ui_redirect": _public("the schema viewer's OAuth redirect page"),
    "redoc_html": _public("the schema's other viewer"),
    # -- the agreement register ------------------------------------------------
    "list_agreements": Entry(
        "each agency sees the agreements it is party to (the route filters); admin all",
        {SYS: NONE, DPO: NONE, IG: NONE, ADM: NONE},
    ),
    "list_versions": Entry(
        "read an agreement's versions: its parties' people and systems; admin oversight",
        {SYS: PARTY, DPO: PARTY, IG: PARTY, ADM: NONE},
    ),
    "show_version": Entry(
        "read one version's document: its parties' people and systems; admin oversight",
        {SYS: PARTY, DPO: PARTY, IG: PARTY, ADM: NONE},
    ),
    "validate_document": Entry(
        "a DPO checks a draft and runs its policy tests; stores nothing",
        {DPO: NONE},
    ),
    "upload_draft": Entry(
        "a DPO stores a draft of an agreement (named in the document) that names the agency",
        {DPO: PARTY},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PARTY,
    ),
    "approve_version": Entry(
        "a party's DPO signs its own approval (the service checks and audits membership)",
        {DPO: PARTY},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PARTY,
    ),
    "activate_version": Entry(
        "the lead party's DPO puts an approved version in force (service: lead only)",
        {DPO: PARTY},
        checked_by=_SERVICE,
        non_party=_refusal("not_lead_party", "only the lead party's DPO may do this"),
    ),
    "suspend": Entry(
        "any party's DPO stops all sharing at once (the service checks and audits)",
        {DPO: PARTY},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PARTY,
    ),
    "resume": Entry(
        "the lead party's DPO lifts a suspension (service: lead only)",
        {DPO: PARTY},
        checked_by=_SERVICE,
        non_party=_refusal("not_lead_party", "only the lead party's DPO may do this"),
    ),
    "terminate": Entry(
        "the lead party's DPO ends the agreement (service: lead only)",
        {DPO: PARTY},
        checked_by=_SERVICE,
        non_party=_refusal("not_lead_party", "only the lead party's DPO may do this"),
    ),
    # -- records in: the provider's system ---------------------------------------
    "post_batch": Entry(
        "the dataset's provider's system supplies records (the service decides, audited)",
        {SYS: PROVIDER},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PROVIDER,
    ),
    "post_rekey": Entry(
        "the provider's system re-tokenises its records during a key rotation",
        {SYS: PROVIDER},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PROVIDER,
    ),
    # -- releases: the recipient's system ----------------------------------------
    "post_lookup": Entry(
        "a recipient's system asks what partners hold (the release decision, audited)",
        {SYS: RECIPIENT},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PARTY,
    ),
    "post_aggregate": Entry(
        "a recipient's system asks for counts, small numbers withheld (audited)",
        {SYS: RECIPIENT},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PARTY,
    ),
    "post_subscription": Entry(
        "a recipient's system subscribes to notifications (the release decision, audited)",
        {SYS: RECIPIENT},
        checked_by=_SERVICE,
        non_party=_SERVICE_NOT_PARTY,
    ),
    "get_subscriptions": Entry("a party's system lists its own subscriptions", {SYS: PARTY}),
    "delete_subscription": Entry("a party's system cancels its own subscription", {SYS: PARTY}),
    "get_notifications": Entry("a party's system polls its own notifications", {SYS: PARTY}),
    "post_acknowledgements": Entry(
        "a party's system acknowledges its own notifications", {SYS: PARTY}
    ),
    "get_deliveries": Entry(
        "a party's system reads the delivery log of its own notification", {SYS: PARTY}
    ),
    # -- the linkage engine's possible-match queue and quality (issue 5) ----------
    "get_possible_matches": Entry(
        "a party's system lists possible matches where it holds one side (levels, no values)",
        {SYS: PARTY},
    ),
    "post_possible_match_decision": Entry(
        "a party's system says same or different for a pair it holds a side of (audited)",
        {SYS: PARTY},
    ),
    "get_linkage_quality": Entry(
        "IG leads and DPOs of a party read estimated linkage quality and the queue's length",
        {DPO: PARTY, IG: PARTY},
    ),
    # -- the audit log -----------------------------------------------------------
    "audit_entries": Entry(
        "a system's own entries (its receipts); admin the whole log, subject ids hidden",
        {SYS: NONE, ADM: NONE},
    ),
    "audit_head": Entry("the log's size and root", {SYS: NONE, IG: NONE, ADM: NONE}),
    "latest_checkpoint": Entry("the newest signed checkpoint", {SYS: NONE, IG: NONE, ADM: NONE}),
    "checkpoint_at": Entry("a signed checkpoint by size", {SYS: NONE, IG: NONE, ADM: NONE}),
    "inclusion": Entry(
        "an agency proves its own entry is in the log; admin any entry",
        {SYS: NONE, IG: NONE, ADM: NONE},
    ),
    "consistency": Entry(
        "a witness or auditor checks the log only grew", {SYS: NONE, IG: NONE, ADM: NONE}
    ),
    "cosign": Entry(
        "an agency's system witnesses a checkpoint (never the operator's own)", {SYS: NONE}
    ),
    "search": Entry("an IG lead searches entries under its agency's agreements", {IG: NONE}),
    "subject_report": Entry(
        "an IG lead's report of every release about one young person", {IG: NONE}
    ),
    "recipient_report": Entry(
        "an IG lead's report of what one recipient received (names subjects)", {IG: NONE}
    ),
    "refusals_report": Entry(
        "refusals counted by reason: an IG lead's scope; admin the partnership's",
        {IG: NONE, ADM: NONE},
    ),
    "patterns_report": Entry(
        "unusual lookup patterns (sweeps, many subjects an hour), counts only; admin all",
        {IG: NONE, ADM: NONE},
    ),
    "volume_report": Entry(
        "lookups per recipient per day, unusual days flagged; admin the partnership's",
        {IG: NONE, ADM: NONE},
    ),
}

PUBLIC_OPERATIONS: Final = frozenset(name for name, e in MATRIX.items() if e.public)


def parties_of(versions: Iterable[Agreement]) -> dict[str, frozenset[str]]:
    """Each party of an agreement, over all its versions, with every role it holds in any."""
    parties: dict[str, set[str]] = {}
    for agreement in versions:
        for party in agreement.parties:
            parties.setdefault(party.id, set()).update(party.roles)
    return {agency: frozenset(roles) for agency, roles in parties.items()}


def _holds(membership: Membership, roles_in_agreement: frozenset[str] | None) -> bool:
    if membership is Membership.NONE:
        return True
    if roles_in_agreement is None:
        return False
    if membership is Membership.PARTY:
        return True
    return membership.value in roles_in_agreement


# One return per rule reads as the checklist it is (as in agreements.decision.decide).
def allowed(  # noqa: PLR0911
    operation: str,
    principal: Principal | None,
    agreement_parties: Mapping[str, frozenset[str]] | None,
) -> Decision:
    """Decide one call against the matrix; deny by default.

    ``agreement_parties`` maps each party of the agreement named in the path
    (over all its versions) to its roles there; an unknown agreement is an
    empty mapping, so it is refused exactly like one the caller is not party
    to. Pass None when membership is not checked here (no agreement in the
    path, or the operation's membership is checked by the service): then an
    operation whose rule this layer must check is refused, and an ``Allow``
    names what the service still checks.
    """
    entry = MATRIX.get(operation)
    if entry is None:
        return UNKNOWN_OPERATION
    if entry.public:
        return Allow(operation)
    if principal is None:
        return UNAUTHENTICATED
    membership = entry.roles.get(principal.role)
    if membership is None:
        return ROLE_NOT_ALLOWED
    if membership is Membership.NONE:
        return Allow(operation)
    if agreement_parties is None:
        if entry.checked_by is CheckedBy.SERVICE:
            return Allow(operation, service_checks=membership)
        # This layer owes the check but was given nothing to check against.
        return entry.non_party
    roles_there = None if principal.agency is None else agreement_parties.get(principal.agency)
    if not _holds(membership, roles_there):
        return entry.non_party
    return Allow(operation)


def _cell(entry: Entry, role: Role) -> str:
    membership = entry.roles.get(role)
    if membership is None:
        return "—"
    return "yes" if membership is Membership.NONE else membership.value


def markdown(matrix: Mapping[str, Entry] = MATRIX) -> str:
    """The matrix as a Markdown table, one row per operation, in table order."""
    roles = list(Role)
    head = [
        "operation",
        *[r.value for r in roles],
        "membership checked by",
        "non-party gets",
        "why",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in matrix.items():
        if entry.public:
            cells = ["public"] * len(roles) + ["—", "—"]
        else:
            cells = [_cell(entry, r) for r in roles]
            if entry.needs_agreement():
                refusal = entry.non_party
                cells += [entry.checked_by.value, f"{refusal.status} `{refusal.code}`"]
            else:
                cells += ["—", "—"]
        lines.append("| " + " | ".join([f"`{name}`", *cells, entry.why]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m broker.permissions --markdown``: print the matrix."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--markdown"]:
        sys.stderr.write("usage: python -m broker.permissions --markdown\n")
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
