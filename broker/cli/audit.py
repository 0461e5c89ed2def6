"""``broker audit ...``: a partner's witness, and the operator's checkpoints and proofs.

``witness`` and ``witness-keygen`` run at a partner agency and talk to the broker over
HTTP only. ``witness-key add``, ``checkpoint``, ``prove`` and ``consistency`` are the
operator's, on the broker's own database. Every failure is one line and exit 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from broker.errors import AccordError, AuditIntegrityError, ValidationError

if TYPE_CHECKING:
    import httpx

    from audit.witness import WitnessState
    from broker.bootstrap import Runtime

out = Console(
    soft_wrap=True, highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200
)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

_TIMEOUT = 30.0


def register(audit_app: typer.Typer) -> None:
    """Add the witness, checkpoint and proof commands to the ``audit`` sub-app."""
    witness_key_app = typer.Typer(
        help="Witnesses whose cosignatures the broker accepts.", no_args_is_help=True
    )
    witness_key_app.command("add")(witness_key_add)
    audit_app.add_typer(witness_key_app, name="witness-key")
    audit_app.command("witness")(witness)
    audit_app.command("witness-keygen")(witness_keygen)
    audit_app.command("checkpoint")(checkpoint)
    audit_app.command("prove")(prove)
    audit_app.command("consistency")(consistency)


# -- the witness (a partner agency, over HTTP) ------------------------------------


class _Remote:
    """The broker's audit endpoints, every failure turned into one AccordError line."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self._client = client
        self._url = url

    def get(self, path: str, **params: int) -> dict[str, Any]:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AccordError(
                f"could not reach the broker at {self._url} ({type(exc).__name__})",
                code="broker_unreachable",
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            message = ""
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                message = str(body["error"].get("message", ""))[:300]
            raise AccordError(
                f"the broker answered {response.status_code} to {method} {path}"
                + (f": {message}" if message else ""),
                code="broker_refused",
            )
        if not isinstance(body, dict):
            raise AccordError(
                f"the broker's answer to {method} {path} is not a JSON object",
                code="broker_answer_invalid",
            )
        return body


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AccordError(
            f"the broker's answer lacks a valid '{name}'", code="broker_answer_invalid"
        )
    return value


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise ValidationError(f"{what} {path} could not be read", code="file_unreadable") from None


def witness(
    url: Annotated[str, typer.Option(help="The broker's base URL, e.g. https://broker.example")],
    credential_file: Annotated[
        Path,
        typer.Option(help="This agency's client credential file (client id and private key)"),
    ],
    key: Annotated[Path, typer.Option(help="The witness's private key from 'witness-keygen'")],
    name: Annotated[str, typer.Option(help="The witness's name, as the operator registered it")],
    state: Annotated[Path, typer.Option(help="The witness's state file (JSON, kept 0600)")],
    log_key: Annotated[
        str | None,
        typer.Option(help="The log's public key (base64), obtained out of band; pins it"),
    ] = None,
) -> None:
    """Cosign the broker's latest checkpoint if the log only grew since the last one seen.

    On first use, with no state file, the log key the broker serves is trusted and pinned
    (trust on first use) unless --log-key is given. The state is saved before the
    cosignature is sent, so a witness never signs two views of the log.
    """
    import httpx

    from audit import witness as w
    from broker.token_client import BearerAuth, TokenClient, load_credential

    credential = load_credential(credential_file)
    try:
        pem = key.read_bytes()
    except OSError:
        raise ValidationError(f"key file {key} could not be read", code="key_unreadable") from None
    private_key = w.load_private_key(pem)
    previous = w.load_state(state)
    pinned_arg = None if log_key is None else w.public_key_text(w.parse_public_key(log_key))

    base = url.rstrip("/")
    auth = BearerAuth(TokenClient(credential, base))
    with httpx.Client(base_url=base, auth=auth, timeout=_TIMEOUT) as client:
        remote = _Remote(client, base)
        origin, pinned = _pin(previous, pinned_arg, remote.get("/v1/audit/log-key"))
        note = _field(remote.get("/v1/audit/checkpoint"), "note", str)
        path = _consistency(remote, previous, note)
        try:
            checkpoint, decided = w.decide_cosign(previous, note, pinned, path, origin=origin)
        except AuditIntegrityError as exc:
            raise _refusal(exc.message) from None
        root = checkpoint.root_hash.hex()
        # Commit to this view of the log before the signature leaves the witness.
        w.save_state(state, decided)
        if w.signed_by(note, name, private_key.public_key()):
            out.print(
                f"checkpoint of {checkpoint.size} entries, root {root}, is already cosigned "
                f"by {name}",
                markup=False,
            )
            return
        cosigned = w.cosign(note, name, private_key)
        remote.post(f"/v1/audit/checkpoints/{checkpoint.size}/cosignatures", {"note": cosigned})
    out.print(f"cosigned checkpoint of {checkpoint.size} entries, root {root}", markup=False)


def _pin(
    previous: WitnessState | None, pinned_arg: str | None, published: dict[str, Any]
) -> tuple[str, str]:
    """The log's origin and the key to verify with; refuses a key other than the pinned one."""
    origin = _field(published, "origin", str)
    served_key = _field(published, "public_key", str)
    if previous is not None:
        if pinned_arg is not None and pinned_arg != previous.log_key:
            raise _refusal("--log-key differs from the log key pinned in the state file")
        if origin != previous.origin:
            raise _refusal(f"the broker now calls its log '{origin[:64]}', not '{previous.origin}'")
        pinned = previous.log_key
    else:
        pinned = pinned_arg if pinned_arg is not None else served_key  # trust on first use
    if served_key != pinned:
        raise _refusal(
            "the broker serves a different log key from the one this witness pinned; "
            "a new log key needs a human decision"
        )
    return origin, pinned


def _consistency(remote: _Remote, previous: WitnessState | None, note: str) -> list[bytes]:
    """The broker's proof that the witness's last size extends to the note's (or none needed)."""
    from audit.witness import checkpoint_of

    try:
        claimed = checkpoint_of(note)
    except AuditIntegrityError as exc:
        raise _refusal(exc.message) from None
    if previous is None or not 0 < previous.last_size < claimed.size:
        return []
    proof = remote.get("/v1/audit/proofs/consistency", old=previous.last_size, new=claimed.size)
    try:
        return [bytes.fromhex(node) for node in _field(proof, "path", list)]
    except (TypeError, ValueError):
        raise AccordError(
            "the broker's consistency proof is not a list of hex hashes",
            code="broker_answer_invalid",
        ) from None


def _refusal(why: str) -> AccordError:
    return AuditIntegrityError(f"the witness refuses to cosign: {why}")


def witness_keygen(
    out_file: Annotated[Path, typer.Option("--out", help="Where to keep the private key")],
) -> None:
    """Make a witness's Ed25519 key (private PEM file, 0600); prints the public key."""
    from audit.witness import generate_key
    from broker.signing_keys import write_private_key

    pem, public = generate_key()
    write_private_key(out_file, pem)
    out.print(f"private key written to {out_file}; keep it safe and never share it", markup=False)
    out.print(f"public key (give this to the broker operator to register): {public}", markup=False)


# -- the operator's commands, on the broker's database -----------------------------


def _runtime() -> Runtime:
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    return build_runtime(load_settings())


def witness_key_add(
    name: Annotated[str, typer.Argument(help="The witness's name, one word")],
    public_key: Annotated[str, typer.Argument(help="Public key printed by 'witness-keygen'")],
) -> None:
    """Accept cosignatures from this witness (audited)."""
    runtime = _runtime()
    try:
        runtime.broker.audit.add_witness_key(name, public_key, actor="operator")
    finally:
        runtime.engine.dispose()
    out.print(f"witness '{name}' registered", markup=False)


def checkpoint() -> None:
    """Sign a checkpoint of the log now; prints its size, root and the signed note."""
    runtime = _runtime()
    try:
        stored = runtime.broker.audit.checkpoint_now()
    finally:
        runtime.engine.dispose()
    out.print(f"checkpoint of {stored.size} entries, root {stored.root_hash}", markup=False)
    out.print(stored.cosigned_note(), markup=False, end="")


def _head_size(runtime: Runtime) -> int:
    size, _ = runtime.broker.audit_head()
    return size


def prove(
    entry: Annotated[int, typer.Argument(help="The audit entry (1 is the first)")],
    size: Annotated[
        int | None, typer.Option(help="Prove against the checkpoint at this size")
    ] = None,
) -> None:
    """Print the inclusion proof of one entry as JSON, verified here first."""
    from audit import checkpoint as notes
    from audit.merkle import verify_inclusion

    if entry < 1:
        raise ValidationError("audit entries are numbered from 1", code="proof_request_invalid")
    runtime = _runtime()
    try:
        held = _head_size(runtime)
        if entry > held:
            raise ValidationError(
                f"the log holds {held} entries; there is no entry {entry}",
                code="proof_request_invalid",
            )
        if size is not None and not entry <= size <= held:
            raise ValidationError(
                f"the size must be between entry {entry} and the log's {held} entries",
                code="proof_request_invalid",
            )
        trail = runtime.broker.audit
        proof = trail.inclusion_proof(entry, size=size)
        signed = notes.verify(proof.checkpoint.note, trail.origin, trail.signer.public_key)
    finally:
        runtime.engine.dispose()
    if signed.size != proof.size or signed.root_hash.hex() != proof.checkpoint.root_hash:
        raise _broken(f"the checkpoint at size {proof.size} does not match its signed note")
    try:
        verify_inclusion(
            bytes.fromhex(proof.leaf_hash),
            entry - 1,
            proof.size,
            [bytes.fromhex(p) for p in proof.path],
            signed.root_hash,
        )
    except AccordError:
        raise _broken(
            f"the inclusion proof of entry {entry} does not verify against the checkpoint "
            f"at size {proof.size}"
        ) from None
    document = {
        "entry": proof.entry,
        "leaf_index": proof.entry - 1,
        "size": proof.size,
        "leaf_hash": proof.leaf_hash,
        "path": list(proof.path),
        "root_hash": proof.checkpoint.root_hash,
        "checkpoint": proof.checkpoint.cosigned_note(),
    }
    out.print(json.dumps(document, indent=2), markup=False)


def consistency(
    old: Annotated[int, typer.Argument(help="The earlier log size (at least 1)")],
    new: Annotated[int, typer.Argument(help="The later log size")],
) -> None:
    """Print the consistency proof between two sizes as JSON, checked against checkpoints."""
    from audit import checkpoint as notes
    from audit.merkle import verify_consistency
    from broker.errors import NotFound

    if old < 1:
        raise ValidationError("the old size must be at least 1", code="proof_request_invalid")
    if old > new:
        raise ValidationError(
            f"the old size {old} exceeds the new size {new}", code="proof_request_invalid"
        )
    runtime = _runtime()
    try:
        held = _head_size(runtime)
        if new > held:
            raise ValidationError(
                f"the log holds {held} entries; ask for a size up to that",
                code="proof_request_invalid",
            )
        trail = runtime.broker.audit
        proof = trail.consistency_proof(old, new)
        roots: list[bytes] = []
        for wanted in (old, new):
            try:
                stored = trail.checkpoint(wanted)
            except NotFound:
                break
            roots.append(notes.verify(stored.note, trail.origin, trail.signer.public_key).root_hash)
    finally:
        runtime.engine.dispose()
    path = [bytes.fromhex(p) for p in proof.path]
    checked = len(roots) == 2
    if checked:
        try:
            verify_consistency(old, new, roots[0], roots[1], path)
        except AccordError:
            raise _broken(
                f"the consistency proof from {old} to {new} does not verify against the "
                "signed checkpoints"
            ) from None
    document = {
        "old_size": old,
        "new_size": new,
        "path": list(proof.path),
        "verified_against_checkpoints": checked,
    }
    out.print(json.dumps(document, indent=2), markup=False)


def _broken(message: str) -> AccordError:
    return AuditIntegrityError(message)
