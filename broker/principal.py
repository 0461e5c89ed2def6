"""Who is calling: the roles Accord knows and the principal a request acts as.

Agency systems authenticate as clients (OAuth 2.0 client credentials with a
signed assertion); people authenticate with an account of one role. Every
request that passes authentication carries exactly one ``Principal``; what it
may do is decided once, in ``broker.permissions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """The roles of the permission matrix."""

    #: An agency's own system: supplies records, asks for releases, receives notifications.
    SYSTEM = "system"
    #: An agency's Data Protection Officer: drafts, tests, approves and suspends agreements.
    DPO = "dpo"
    #: An agency's information governance lead: searches and reports on the audit trail.
    IG_LEAD = "ig_lead"
    #: The broker's administrator: runs the broker for the whole partnership.
    ADMIN = "admin"


#: Roles that always act for one agency; an administrator acts for none.
AGENCY_ROLES = frozenset({Role.SYSTEM, Role.DPO, Role.IG_LEAD})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``subject`` is a client id or a user name (never an identifier of a young
    person); ``agency`` is None only for an administrator.
    """

    subject: str
    role: Role
    agency: str | None

    def __post_init__(self) -> None:
        if self.role in AGENCY_ROLES and self.agency is None:
            raise ValueError(f"a {self.role.value} principal acts for an agency; name one")
        if self.role not in AGENCY_ROLES and self.agency is not None:
            raise ValueError("an administrator acts for no agency")
