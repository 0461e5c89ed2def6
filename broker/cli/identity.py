"""``broker agencies`` and ``broker users``: agency clients, people's accounts; each change audited.

An agency's system authenticates with its own key pair: the agency generates
it and sends the broker only the public half (``--public-key``).
``--generate-credential`` makes the pair here and writes the private half to a
0600 credential file: convenient for development and the demo, not the
production way (the private key then existed on the broker's host).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from broker.errors import ValidationError

if TYPE_CHECKING:
    from broker.identity_admin import Identity, RegisteredClient

out = Console(soft_wrap=True, highlight=False, emoji=False)
users_app = typer.Typer(
    help="People's accounts: DPOs, IG leads, administrators.", no_args_is_help=True
)

PublicKeyOption = Annotated[
    Path | None, typer.Option("--public-key", help="The agency's public key (PEM)")
]
GenerateOption = Annotated[
    Path | None,
    typer.Option(
        "--generate-credential",
        help="Make the key pair here and write a 0600 credential file (development only)",
    ),
]
TokenUrlOption = Annotated[
    str | None, typer.Option("--token-url", help="Token endpoint URL to note in the credential")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log)")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input")
]


@contextmanager
def _identity() -> Iterator[Identity]:
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    runtime = build_runtime(load_settings())
    try:
        yield runtime.broker.identity
    finally:
        runtime.engine.dispose()


def _public_key(public_key: Path | None, generate: Path | None) -> tuple[str, str | None]:
    """(public PEM, private PEM when generated here); exactly one of the options must be given."""
    from broker.client_auth import generate_client_key

    if (public_key is None) == (generate is None):
        raise ValidationError(
            "give exactly one of --public-key FILE or --generate-credential FILE",
            code="key_option_required",
        )
    if generate is not None:
        if generate.exists():
            raise ValidationError(
                f"{generate} already exists; choose another file", code="credential_exists"
            )
        private_pem, public_pem = generate_client_key()
        return public_pem, private_pem
    assert public_key is not None
    try:
        return public_key.read_text(encoding="ascii"), None
    except (OSError, UnicodeDecodeError):
        raise ValidationError(
            f"{public_key} could not be read as a PEM file", code="public_key_unreadable"
        ) from None


def _write_credential(
    path: Path, made: RegisteredClient, private_pem: str, token_url: str | None
) -> None:
    from broker.signing_keys import write_private_key
    from broker.token_client import ClientCredential

    credential = ClientCredential(made.client_id, made.key_id, made.alg, private_pem, token_url)
    write_private_key(path, json.dumps(credential.as_document(), indent=2).encode("utf-8"))


def register(agencies_app: typer.Typer, app: typer.Typer) -> None:
    """Add the agency client commands to ``broker agencies`` and ``broker users`` to ``app``."""
    app.add_typer(users_app, name="users")

    @agencies_app.command("add")
    def agencies_add(
        agency: Annotated[str, typer.Argument(help="Agency id from an agreement")],
        public_key: PublicKeyOption = None,
        generate_credential: GenerateOption = None,
        cert_thumbprint: Annotated[
            str | None,
            typer.Option(
                "--cert-thumbprint", help="Bind to a TLS client certificate (SHA-256 hex)"
            ),
        ] = None,
        token_url: TokenUrlOption = None,
    ) -> None:
        """Register an agency's system with its public key; prints the new client id."""
        public_pem, private_pem = _public_key(public_key, generate_credential)
        with _identity() as identity:
            made = identity.register_client(agency, public_pem, cert_thumbprint=cert_thumbprint)
        if private_pem is not None and generate_credential is not None:
            _write_credential(generate_credential, made, private_pem, token_url)
        out.print(made.client_id, markup=False)

    @agencies_app.command("rotate-key")
    def agencies_rotate_key(
        client_id: Annotated[str, typer.Argument(help="Client id (see 'broker agencies list')")],
        public_key: PublicKeyOption = None,
        generate_credential: GenerateOption = None,
        grace_seconds: Annotated[
            int, typer.Option("--grace-seconds", help="How long the old key stays valid")
        ] = 0,
        token_url: TokenUrlOption = None,
    ) -> None:
        """Register a new key for a client; the old one ends after the grace period."""
        public_pem, private_pem = _public_key(public_key, generate_credential)
        with _identity() as identity:
            made = identity.rotate_client_key(client_id, public_pem, grace_seconds=grace_seconds)
        if private_pem is not None and generate_credential is not None:
            _write_credential(generate_credential, made, private_pem, token_url)
        out.print(f"client {made.client_id}: new key {made.key_id}", markup=False)

    @agencies_app.command("disable")
    def agencies_disable(
        client_id: Annotated[str, typer.Argument(help="Client id")], reason: ReasonOption
    ) -> None:
        """Disable a client at once: no new tokens, and its live tokens are refused."""
        with _identity() as identity:
            client = identity.disable_client(client_id, reason=reason)
        out.print(
            f"client {client.client_id} of agency '{client.agency_id}' disabled", markup=False
        )

    @agencies_app.command("list")
    def agencies_list() -> None:
        """Every registered client with its state; never any key."""
        with _identity() as identity:
            clients = identity.clients()
        table = Table("client", "agency", "role", "status", "certificate", "since")
        for client in clients:
            table.add_row(
                client.client_id,
                client.agency_id,
                client.role,
                client.status,
                "bound" if client.cert_thumbprint else "",
                client.created_at[:10],
            )
        _print_table(table)


def _print_table(table: Table) -> None:
    # Piped output has no width to fit; never cut an id for a script or a log.
    wide = out if out.is_terminal else Console(width=160, highlight=False, emoji=False)
    wide.print(table)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="User name (lower case)")],
    role: Annotated[str, typer.Option("--role", help="dpo, ig_lead or admin")],
    agency: Annotated[
        str | None, typer.Option("--agency", help="The agency (dpo and ig_lead only)")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a person's account; the password is stored only as an scrypt hash."""
    password = _password(password_stdin)
    with _identity() as identity:
        account = identity.add_account(username, role=role, agency_id=agency, password=password)
    where = f" of agency '{account.agency_id}'" if account.agency_id else ""
    out.print(f"account {account.username} ({account.role}{where}) created", markup=False)


@users_app.command("set-password")
def users_set_password(
    username: Annotated[str, typer.Argument(help="User name")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Replace an account's password."""
    password = _password(password_stdin)
    with _identity() as identity:
        identity.set_password(username, password)
    out.print(f"password of {username} replaced", markup=False)


@users_app.command("disable")
def users_disable(
    username: Annotated[str, typer.Argument(help="User name")], reason: ReasonOption
) -> None:
    """Disable an account at once: no sign-in, and its live tokens are refused."""
    with _identity() as identity:
        identity.disable_account(username, reason=reason)
    out.print(f"account {username} disabled", markup=False)


@users_app.command("list")
def users_list() -> None:
    """Every account with its role, agency and state; never a password hash."""
    with _identity() as identity:
        accounts = identity.accounts()
    table = Table("user", "role", "agency", "status", "since")
    for account in accounts:
        table.add_row(
            account.username,
            account.role,
            account.agency_id or "",
            account.status,
            account.created_at[:10],
        )
    _print_table(table)
