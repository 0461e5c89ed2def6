"""``broker demo``: a fresh embedded broker, the scenario over HTTP, and a summary table.

The demo owns ``var/demo/``: it deletes and recreates its database there on
every run, so it never touches the database named by BROKER_DATABASE_URL. It
uses the key file named by BROKER_KEY_FILE (created on first run).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import uvicorn
from rich.console import Console
from rich.table import Table

from broker.bootstrap import Runtime, build_runtime
from broker.config import DEFAULT_VAR_DIR, load_settings
from broker.errors import AccordError, ConfigError
from broker.scenario import DATASETS, ScenarioReport, run_scenario
from broker.synth import generate_town, write_town
from broker.web.app import create_app

DEMO_DIR = DEFAULT_VAR_DIR / "demo"


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
    api_keys = {agency: runtime.broker.issue_api_key(agency) for agency in DATASETS}
    ig_lead_key = runtime.broker.issue_api_key("social-care", "ig_lead")
    server, thread = _start_server(runtime, host, port)
    base_url = f"http://{host}:{port}"
    console.print(f"Accord API on {base_url} (OpenAPI at {base_url}/docs); running the scenario...")
    try:
        report = run_scenario(base_url, api_keys, extracts, ig_lead_key)
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
            _print_keys(console, {**api_keys, "social-care-ig-lead": ig_lead_key}, extracts)
            while thread.is_alive():
                thread.join(0.5)
        return ok
    except KeyboardInterrupt:
        return True
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.engine.dispose()


def _print_keys(console: Console, api_keys: dict[str, str], extracts: Path) -> None:
    # Keys go to a private file, not the console, whose output may end up in a log.
    keys_file = DEMO_DIR / "api-keys.txt"
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(f"{agency} {key}\n" for agency, key in api_keys.items())
    console.print(f"Extracts are in {extracts}; this run's agency API keys are in {keys_file}.")
