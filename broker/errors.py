"""The one exception tree of Accord, with stable machine codes.

::

    AccordError                      code            what it means
    ├── ConfigError                  config_invalid  a setting is missing or wrong; start-up stops
    ├── KeyFileError                 key_file_invalid the key file is missing, unreadable or corrupt
    ├── ValidationError              invalid_input   input does not match what was declared
    │   ├── IdentifierError          identifier_invalid  an identifier fails its check
    │   └── BatchRejected            batch_invalid   one or more records in a batch are invalid
    ├── AgreementError               agreement_invalid  an agreement file is wrong
    ├── NotFound                     not_found       an agreement, dataset or agency is unknown
    ├── Conflict                     conflict        the request clashes with stored state
    ├── AuthenticationFailed         unauthenticated the caller did not prove who it is
    ├── Refused                      refused         the agreement does not allow this
    ├── RateLimited                  rate_limited    too many requests of one kind; retry later
    ├── AuditIntegrityError          audit_tampered  the audit log does not verify
    └── StorageError                 storage_failed  the database failed; nothing was stored

Every error carries a ``code`` (stable, for machines), a ``message`` (for
people, saying what to do next) and an optional ``location``. Messages never
contain an identifier, a key or a payload value: they name fields and record
positions only. The HTTP status for each code lives in ``broker.web.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Location:
    """Where a problem is: a record position in a batch, a field, or a file line."""

    record: int | None = None
    field: str | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return only the parts that are set."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        """Render for a one-line message, e.g. ``record 3, field 'postcode'``."""
        parts: list[str] = []
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            parts.append(where)
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input; a batch rejection carries many."""

    code: str
    message: str
    location: Location = field(default_factory=Location)

    def as_dict(self) -> dict[str, Any]:
        """Return the problem in the shape used by HTTP error bodies."""
        return {"code": self.code, "message": self.message, "location": self.location.as_dict()}


class AccordError(Exception):
    """Base of every error Accord raises on purpose."""

    code = "accord_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: Location | None = None,
        problems: tuple[Problem, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.location = location or Location()
        self.problems = problems

    def one_line(self) -> str:
        """The message with its location, for a CLI or a log line."""
        where = self.location.describe()
        return f"{self.message} ({where})" if where else self.message


class ConfigError(AccordError):
    """A setting is missing or wrong; the message names the setting."""

    code = "config_invalid"


class KeyFileError(AccordError):
    """The key file is missing, unreadable or corrupt; never regenerated over data."""

    code = "key_file_invalid"


class ValidationError(AccordError):
    """Input does not match what was declared for it."""

    code = "invalid_input"


class IdentifierError(ValidationError):
    """An identifier fails its format or its check digit."""

    code = "identifier_invalid"


class BatchRejected(ValidationError):
    """A batch held invalid records; it was rejected whole and nothing was stored."""

    code = "batch_invalid"


class AgreementError(AccordError):
    """An agreement file is malformed or inconsistent."""

    code = "agreement_invalid"


class NotFound(AccordError):
    """An agreement, dataset, agency or entry the caller named does not exist."""

    code = "not_found"


class Conflict(AccordError):
    """The request clashes with what is already stored."""

    code = "conflict"


class AuthenticationFailed(AccordError):
    """The caller did not prove which agency it is."""

    code = "unauthenticated"


class Refused(AccordError):
    """The agreement does not allow what was asked; ``code`` names the rule."""

    code = "refused"


class RateLimited(AccordError):
    """Too many requests of one kind from one agency; ``retry_after`` says when to retry.

    Transient, unlike a Refused ``lookup_budget_exhausted``: waiting
    ``retry_after`` whole seconds is always enough for one more request.
    """

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuditIntegrityError(AccordError):
    """The audit log does not verify; ``location.record`` is the first bad entry."""

    code = "audit_tampered"

    def one_line(self) -> str:
        """The message alone: it already names the entry."""
        return self.message


class StorageError(AccordError):
    """The database failed; the transaction was rolled back."""

    code = "storage_failed"
