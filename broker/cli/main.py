"""The ``broker`` command. Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from broker.cli.adapter import adapter_app
from broker.cli.agreements import agreements_app
from broker.cli.audit import register as register_audit_commands
from broker.cli.audit_reports import register as register_audit_reports
from broker.cli.identity import register as register_identity_commands
from broker.cli.keys import keys_app
from broker.cli.link import register as register_link_command
from broker.errors import AccordError

app = typer.Typer(
    help="Accord: a privacy-preserving data-sharing broker for safeguarding partnerships.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
audit_app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)
agencies_app = typer.Typer(
    help="Agency systems: clients that authenticate with their own keys.", no_args_is_help=True
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(agreements_app, name="agreements")
app.add_typer(audit_app, name="audit")
app.add_typer(adapter_app, name="adapter")
register_audit_commands(audit_app)
register_audit_reports(audit_app)
app.add_typer(agencies_app, name="agencies")
register_identity_commands(agencies_app, app)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
register_link_command(app)

out = Console(soft_wrap=True, highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run the HTTP API under uvicorn until stopped."""
    from broker.config import load_settings
    from broker.startup import run_server

    # Waits for the database, then serves with this worker's share of the background jobs.
    run_server(load_settings(), host=host, port=port)


@app.command()
def demo(
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Keep serving after")] = True,
    port: Annotated[int, typer.Option(help="Port for the demo's API")] = 8000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic town")] = 1,
    people: Annotated[int, typer.Option(help="Young people in the synthetic town")] = 300,
) -> None:
    """Run the partnership scenario over HTTP on a fresh demo database and print what happened."""
    from broker.demo import run_demo

    ok = run_demo(out, port=port, seed=seed, people=people, keep_serving=serve)
    if not ok:
        raise typer.Exit(1)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the CSV files into")],
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same files")] = 1,
    people: Annotated[int, typer.Option(help="Young people in the town")] = 300,
    profile: Annotated[str, typer.Option(help="Mistakes: clean, moderate or hard")] = "moderate",
) -> None:
    """Write a synthetic town's agency extracts (school, police, social care, ED) and the truth."""
    from broker.synth import generate_town, write_town

    paths = write_town(generate_town(seed=seed, people=people, profile=profile), out_dir)
    for path in paths:
        out.print(str(path))


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every entry, node, checkpoint and cosignature; exits 1 at the first bad one."""
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    runtime = build_runtime(load_settings())
    try:
        verified = runtime.broker.verify_audit()
    finally:
        runtime.engine.dispose()
    out.print(
        f"audit verified: {verified.size} entries, root {verified.root_hash}, "
        f"{verified.checkpoints} signed checkpoint(s), {verified.cosignatures} cosignature(s)"
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to this version's migrations."""
    from broker.bootstrap import prepare_database
    from broker.config import load_settings
    from broker.db.engine import create_database_engine
    from broker.db.migrate import current_revision

    engine = create_database_engine(load_settings().database_url)
    try:
        prepare_database(engine)
        out.print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


def main() -> None:
    """Entry point of the ``broker`` console script."""
    try:
        app()
    except AccordError as exc:
        err.print(f"broker: error: {exc.one_line()}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, never a traceback
        err.print(f"broker: internal error ({type(exc).__name__}); please report it", markup=False)
        sys.exit(1)
