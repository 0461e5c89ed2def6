"""``broker keys``: list, rotate and destroy the broker's working keys; each change is audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from broker.service import Broker
    from broker.service_keys import KeyChange

keys_app = typer.Typer(
    help="The broker's working keys: linkage, data and pseudonym keys.", no_args_is_help=True
)
out = Console(soft_wrap=True, highlight=False, emoji=False)

Kind = Annotated[str, typer.Argument(help="linkage, data or pseudonym")]
AgreementOption = Annotated[str, typer.Option("--agreement", help="Agreement id")]
RecipientOption = Annotated[
    str, typer.Option("--recipient", help="Recipient agency (pseudonym keys only)")
]


@contextmanager
def _broker() -> Iterator[Broker]:
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    runtime = build_runtime(load_settings())
    try:
        yield runtime.broker
    finally:
        runtime.engine.dispose()


def _report(change: KeyChange) -> None:
    out.print(f"{change.name} v{change.version} {change.state}: {change.note}", markup=False)


@keys_app.command("list")
def keys_list() -> None:
    """Every key version with its state; never any key material."""
    with _broker() as broker:
        keys = broker.list_keys()
    table = Table("agreement", "key", "version", "state", "since", "payloads")
    for key in keys:
        table.add_row(
            key.agreement_id or "(broker)",
            f"{key.kind} for {key.recipient}" if key.recipient else key.kind,
            str(key.version),
            key.state,
            key.changed_at[:10],
            "" if key.records is None else str(key.records),
        )
    # Piped output has no width to fit; never cut an agreement id for a script or a log.
    wide = out if out.is_terminal else Console(width=160, highlight=False, emoji=False)
    wide.print(table)


@keys_app.command("rotate")
def keys_rotate(kind: Kind, agreement: AgreementOption, recipient: RecipientOption = "") -> None:
    """Make a new version of a key (data keys reseal every payload; see docs for linkage keys)."""
    with _broker() as broker:
        _report(broker.rotate_key(kind, agreement, recipient))


@keys_app.command("complete-rotation")
def keys_complete_rotation(agreement: AgreementOption) -> None:
    """Finish a linkage key rotation once every provider has sent its rekey batches."""
    with _broker() as broker:
        _report(broker.complete_linkage_rotation(agreement))


@keys_app.command("destroy")
def keys_destroy(
    kind: Kind,
    agreement: AgreementOption,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log)")],
    recipient: RecipientOption = "",
    version: Annotated[
        int | None,
        typer.Option("--version", help="A retired version; omit (data keys only) to shred all"),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm; destruction cannot be undone")
    ] = False,
) -> None:
    """Destroy a retired key version, or every data key version of an ended agreement."""
    if not yes:
        raise typer.BadParameter("destroying a key cannot be undone; add --yes to confirm")
    with _broker() as broker:
        _report(broker.destroy_key(kind, agreement, recipient, version=version, reason=reason))
