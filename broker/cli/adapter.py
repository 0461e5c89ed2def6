"""``broker adapter ...``: at-source pseudonymisation.

The operator exports an agreement's linkage key for a provider
(``export-key``, audited); the provider tokenises its extract in its own
building with that key (``tokenise``, no database, no network) and posts only
tokens and permitted fields. Every error is one line on stderr and exit 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from broker.errors import AccordError

adapter_app = typer.Typer(
    help="At-source pseudonymisation: export linkage keys, tokenise extracts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

out = Console(soft_wrap=True, highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

# Below this many rows tokenising takes well under a second; a bar would only flicker.
PROGRESS_FROM_ROWS = 5_000
MAX_PROBLEM_LINES = 50


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn an Accord error into one line on stderr and exit 1, however the app is run."""
    try:
        yield
    except AccordError as exc:
        err.print(f"broker: error: {exc.one_line()}", markup=False)
        raise typer.Exit(1) from None


@adapter_app.command("export-key")
def export_key(
    agreement: Annotated[str, typer.Argument(help="Agreement id")],
    out_file: Annotated[
        Path, typer.Option("--out", help="Linkage key file to create (never overwritten)")
    ],
) -> None:
    """Operator: write an agreement's linkage key file (mode 0600) for a provider; audited."""
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    with _one_line_errors():
        runtime = build_runtime(load_settings())
        try:
            linkage = runtime.broker.export_linkage_key(agreement, out_file)
        finally:
            runtime.engine.dispose()
    out.print(
        f"wrote {out_file}: linkage key of agreement '{linkage.agreement_id}', key version "
        f"{linkage.version}, key check {linkage.check_value}. Give it to the provider over a "
        "secure channel; anyone holding it can compute this agreement's tokens",
        markup=False,
    )


@adapter_app.command("tokenise")
def tokenise(
    agreement_file: Annotated[
        Path, typer.Option("--agreement", help="The signed agreement YAML file")
    ],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset id in the agreement")],
    key_file: Annotated[
        Path, typer.Option("--key", help="Linkage key file from 'broker adapter export-key'")
    ],
    source: Annotated[Path, typer.Argument(help="The extract (UTF-8 CSV, canonical columns)")],
    target: Annotated[Path, typer.Argument(help="Tokenised CSV to write")],
) -> None:
    """Provider: normalise and tokenise an extract; write record_id, tokens and fields only.

    Rows whose name or date of birth is invalid are listed (row and field, never
    the value) and left out; the rest are written.
    """
    from adapters.tokenise import tokenise_extract
    from agreements.loader import load_agreement
    from broker.keys import load_linkage_key_file

    bar = Progress(
        TextColumn("tokenising"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )

    def start_bar(total: int) -> Callable[[int], None] | None:
        if total < PROGRESS_FROM_ROWS:
            return None
        task = bar.add_task("tokenising", total=total)
        bar.start()
        return lambda done: bar.advance(task, done)

    with _one_line_errors():
        agreement = load_agreement(agreement_file)
        linkage = load_linkage_key_file(key_file, agreement_id=agreement.id)
        try:
            result = tokenise_extract(
                agreement, dataset, linkage, source, target, progress_total=start_bar
            )
        finally:
            bar.stop()
    for problem in result.rejected[:MAX_PROBLEM_LINES]:
        err.print(f"{source}: {problem.describe()} (row left out)", markup=False)
    for problem in result.unusable[: max(0, MAX_PROBLEM_LINES - len(result.rejected))]:
        err.print(f"{source}: {problem.describe()} (match key lost)", markup=False)
    listed = len(result.rejected) + len(result.unusable)
    if listed > MAX_PROBLEM_LINES:
        err.print(f"{source}: ... and {listed - MAX_PROBLEM_LINES} more problem(s)", markup=False)
    out.print(
        f"tokenised {len(result.rows)} of {result.rows_read} row(s) of {source} into {target}; "
        f"{result.rows_rejected} left out with invalid identifiers, "
        f"{len(result.unusable)} identifier(s) unusable; key version {linkage.version}, "
        f"key check {linkage.check_value}",
        markup=False,
    )


def main() -> None:
    """Run the sub-app alone (``python -m broker.cli.adapter``), with the broker's error rules."""
    try:
        adapter_app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, never a traceback
        err.print(f"broker: internal error ({type(exc).__name__}); please report it", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
