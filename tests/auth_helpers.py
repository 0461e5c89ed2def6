"""Authorisation headers for tests: an agency's system, or a person of one role.

The in-process helpers take a ``Broker``; the ``server_`` helpers drive a broker
running in a subprocess through its CLI and its HTTP API. The signatures are
stable; other tests build on them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from broker.service import Broker

_BROKER = str(Path(sys.executable).with_name("broker"))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def agency_headers(broker: Broker, agency: str) -> dict[str, str]:
    """Headers for an agency's own system (role ``system``)."""
    return _bearer(broker.issue_api_key(agency))


def person_headers(broker: Broker, role: str, agency: str | None) -> dict[str, str]:
    """Headers for a person of ``role`` (dpo, ig_lead, admin) at ``agency``."""
    if role == "admin":
        raise NotImplementedError("administrator accounts arrive with people accounts (issue 8)")
    if agency is None:
        raise ValueError(f"a {role} acts for an agency; name one")
    # Until people accounts exist, lifecycle calls accept an agency's system key.
    return _bearer(broker.issue_api_key(agency, "ig_lead" if role == "ig_lead" else "system"))


def _run(env: Mapping[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [_BROKER, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"broker {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def server_agency_headers(
    base_url: str, env: Mapping[str, str], cwd: Path, agency: str
) -> dict[str, str]:
    """Headers for an agency's system against a broker running in a subprocess."""
    del base_url
    return _bearer(_run(env, cwd, "agencies", "key", agency))


def server_person_headers(
    base_url: str, env: Mapping[str, str], cwd: Path, role: str, agency: str | None
) -> dict[str, str]:
    """Headers for a person of ``role`` against a broker running in a subprocess."""
    del base_url
    if role == "admin":
        raise NotImplementedError("administrator accounts arrive with people accounts (issue 8)")
    if agency is None:
        raise ValueError(f"a {role} acts for an agency; name one")
    held = "ig_lead" if role == "ig_lead" else "system"
    return _bearer(_run(env, cwd, "agencies", "key", agency, "--role", held))
