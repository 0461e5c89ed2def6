"""``broker demo``: a fresh embedded broker, the scenario over HTTP, and a summary table.

The demo owns ``var/demo/``: it deletes and recreates its database there on
every run, so it never touches the database named by BROKER_DATABASE_URL. It
uses the key file named by BROKER_KEY_FILE (created on first run).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from broker.bootstrap import Runtime, build_runtime
from broker.client_auth import generate_client_key
from broker.config import DEFAULT_VAR_DIR, load_settings
from broker.errors import AccordError, ConfigError
from broker.scenario import DATASETS, Callers, HeaderSource, ScenarioReport, run_scenario
from broker.synth import generate_town, write_town
from broker.token_client import ClientCredential, TokenClient, token_url
from broker.web.app import create_app

DEMO_DIR = DEFAULT_VAR_DIR / "demo"
#: The people the scenario needs: two DPOs (suspend, resume) and social care's IG lead.
DEMO_PEOPLE = (
    ("dpo.school", "dpo", "school"),
    ("dpo.social-care", "dpo", "social-care"),
    ("ig-lead.social-care", "ig_lead", "social-care"),
)


def _register_callers(
    runtime: Runtime, base_url: str
) -> tuple[dict[str, ClientCredential], dict[str, str]]:
    """A client per agency (key pair made here: a demo) and the people's accounts."""
    identity = runtime.broker.identity
    credentials = {}
    for agency in DATASETS:
        private_pem, public_pem = generate_client_key()
        made = identity.register_client(agency, public_pem)
        credentials[agency] = ClientCredential(
            made.client_id, made.key_id, made.alg, private_pem, token_url(base_url)
        )
    passwords = {}
    for username, role, agency in DEMO_PEOPLE:
        passwords[username] = secrets.token_urlsafe(18)
        identity.add_account(username, role=role, agency_id=agency, password=passwords[username])
    return credentials, passwords


def _signed_in(base_url: str, username: str, password: str) -> HeaderSource:
    """Headers of a person who signs in for each call (the scenario makes few)."""

    def headers() -> Mapping[str, str]:
        response = httpx.post(
            f"{base_url}/v1/sessions", json={"username": username, "password": password}, timeout=60
        )
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return headers


def _callers(
    base_url: str, credentials: Mapping[str, ClientCredential], passwords: Mapping[str, str]
) -> Callers:
    systems: dict[str, HeaderSource] = {
        agency: TokenClient(credential, base_url).headers
        for agency, credential in credentials.items()
    }
    people = {name: _signed_in(base_url, name, passwords[name]) for name, _, _ in DEMO_PEOPLE}
    return Callers(
        systems=systems,
        dpos={"school": people["dpo.school"], "social-care": people["dpo.social-care"]},
        ig_lead=people["ig-lead.social-care"],
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _start_server(
    runtime: Runtime, host: str, port: int
) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(create_app(runtime), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="accord-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the demo API could not start on {host}:{port}")
        time.sleep(0.05)
    return server, thread


def summary_table(report: ScenarioReport, audit_size: int, verified: bool) -> Table:
    """The demo's summary: records, links, releases, denials, audit."""
    table = Table(title="Accord demo: Northshire safeguarding partnership", show_lines=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for agency in DATASETS:
        table.add_row(f"records from {agency}", str(report.records.get(agency, 0)))
    table.add_row("records linked to a subject already known", str(report.linked))
    table.add_row("new subjects", str(report.new_subjects))
    table.add_row("lookups answered", f"{report.matched} of {report.lookups}")
    table.add_row("fields released", str(report.fields_released))
    for code, count in sorted(report.denials.items()):
        table.add_row(f"denied: {code}", str(count))
    table.add_row(
        "agreement suspended and resumed", report.governance.get("suspended and resumed", "no")
    )
    table.add_row("receipt verified", "yes" if "receipt" in report.governance else "no")
    table.add_row(
        "releases about a child found by the IG lead",
        report.governance.get("releases found by the IG lead", "0"),
    )
    table.add_row("audit entries", str(audit_size))
    table.add_row("audit", "audit verified" if verified else "AUDIT FAILED")
    return table


def run_demo(console: Console, *, port: int, seed: int, people: int, keep_serving: bool) -> bool:
    """Run the demo; True only if every step of the scenario did what it should."""
    host = "127.0.0.1"
    if not _port_free(host, port):
        raise ConfigError(f"port {port} is in use; pass --port with a free one")
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    extracts = DEMO_DIR / "extracts"
    write_town(generate_town(seed=seed, people=people), extracts)
    settings = load_settings(database_url=f"sqlite:///{DEMO_DIR / 'accord.db'}")
    runtime = build_runtime(settings)
    base_url = f"http://{host}:{port}"
    credentials, passwords = _register_callers(runtime, base_url)
    server, thread = _start_server(runtime, host, port)
    console.print(f"Accord API on {base_url} (OpenAPI at {base_url}/docs); running the scenario...")
    try:
        report = run_scenario(base_url, _callers(base_url, credentials, passwords), extracts)
        try:
            verified = runtime.broker.verify_audit()
            audit_size, audit_ok = verified.size, True
        except AccordError as exc:
            console.print(f"[red]{exc.one_line()}[/red]")
            audit_size, audit_ok = runtime.broker.audit_head()[0], False
        for check in report.checks:
            if not check.ok:
                console.print(f"[red]FAILED[/red] {check.name}: {check.note}", markup=True)
        console.print(summary_table(report, audit_size, audit_ok))
        if "checkpoint" in report.governance:
            console.print("The audit log's latest signed checkpoint:", markup=False)
            console.print(report.governance["checkpoint"], markup=False, end="")
            console.print(f"Receipt: {report.governance['receipt']}", markup=False)
        passed = sum(c.ok for c in report.checks)
        console.print(f"{passed} of {len(report.checks)} checks held")
        ok = report.ok and audit_ok
        if ok:
            console.print("audit verified")
        if keep_serving:
            console.print(f"Still serving on {base_url}; press Ctrl-C to stop.")
            _write_credentials(console, credentials, passwords, extracts)
            while thread.is_alive():
                thread.join(0.5)
        return ok
    except KeyboardInterrupt:
        return True
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.engine.dispose()


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _write_credentials(
    console: Console,
    credentials: Mapping[str, ClientCredential],
    passwords: Mapping[str, str],
    extracts: Path,
) -> None:
    # Secrets go to private files, not the console, whose output may end up in a log.
    folder = DEMO_DIR / "credentials"
    folder.mkdir(mode=0o700, exist_ok=True)
    for agency, credential in credentials.items():
        _private_file(folder / f"{agency}.json", json.dumps(credential.as_document(), indent=2))
    _private_file(
        folder / "accounts.txt", "".join(f"{name} {secret}\n" for name, secret in passwords.items())
    )
    console.print(
        f"Extracts are in {extracts}; each agency's client credential (for "
        f"'broker audit witness --credential-file') and the demo accounts are in {folder}."
    )
