"""`exchange extract|verify-extract|departments|grants`: what departments receive, under which grant."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.cli import _hub, app, console, read_model
from exchange.provenance import events

if TYPE_CHECKING:
    from exchange.signing.anchor import Anchor
    from exchange.signing.trust import TrustBundle

departments_app = typer.Typer(help="Departments that receive shared data.", no_args_is_help=True)
grants_app = typer.Typer(help="Grants: what a department may see, why, until when.", no_args_is_help=True)
app.add_typer(departments_app, name="departments")
app.add_typer(grants_app, name="grants")


@app.command()
def extract(
    department: Annotated[str, typer.Option(help="Department id, e.g. js.public_security")],
    dataset: Annotated[str, typer.Option(help="Dataset the grant covers")],
    out: Annotated[Path, typer.Option(help="Folder to write the extract to")],
    snapshot: Annotated[int | None, typer.Option(help="Lake snapshot (default: latest)")] = None,
    encrypt: Annotated[bool, typer.Option(help="Encrypt the files to the department's registered X25519 key")] = False,
) -> None:
    """Cut the department's grant into Parquet plus a signed extract manifest."""
    from exchange.access.service import extract_for_department

    signed = extract_for_department(_hub(), department, dataset, out, snapshot, encrypt=encrypt).signed
    m = signed.manifest
    sealed = f", encrypted to {m.encryption.recipient_key_id}" if m.encryption else ""
    console.print(f"{m.rows} rows of {m.dataset} at snapshot {m.snapshot_id} -> {out} (grant {m.grant_id}{sealed})")


@app.command("verify-extract")
def verify_extract_cmd(
    directory: Annotated[Path, typer.Argument(help="Extract folder")],
    trust_bundle: Annotated[Path, typer.Option(help="Trust bundle exported by the hub")],
    key: Annotated[Path | None, typer.Option(help="Your department's age identity file (or older X25519 PEM "
                                                  "key): decrypt an encrypted extract and check the plaintext "
                                                  "too")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write decrypted files (default: the extract folder)")]
    = None,
    anchor: Annotated[list[str] | None, typer.Option(help="Pinned hub root key id the trust bundle must chain "
                                                          "from (repeatable; default EXCHANGE_TRUST_ANCHOR)")] = None,
) -> None:
    """Check an extract offline against the hub's trust bundle (itself checked against the pinned anchor); with
    --key, decrypt it and check the plaintext. Exits 3 if everything checks out but no anchor is pinned."""
    from exchange.access.envelope import load_private_key
    from exchange.access.extract import decrypt_extract, verify_extract
    from exchange.signing.trust import TrustBundle

    bundle = read_model(trust_bundle, TrustBundle, "a trust bundle")
    pinned = _anchored(bundle, anchor, trust_bundle)
    signed = verify_extract(directory, bundle)
    decrypted = decrypt_extract(directory, signed, load_private_key(key), out) \
        if key is not None and signed.manifest.encryption else []
    m = signed.manifest
    console.print(f"intact: {m.rows} rows, signed by {signed.signature.key_id}", style="green")
    if m.encryption and not decrypted:
        console.print(f"ciphertext checked (encrypted to {m.encryption.recipient_key_id})")
        console.print("pass --key to decrypt and check the plaintext")
    for path in decrypted:
        console.print(f"decrypted: {path} (plaintext SHA-256 and rows match the manifest)", style="green")
    _unanchored_exit(pinned, bundle)


def _anchored(bundle: TrustBundle, anchor: list[str] | None, path: Path) -> Anchor | None:
    """The received bundle checked against the pinned anchor (--anchor, else EXCHANGE_TRUST_ANCHOR)."""
    import os

    from exchange.signing.anchor import SETTING, check_anchored

    return check_anchored(bundle, anchor, os.environ.get(SETTING) or None, f"trust bundle {path}")


def _unanchored_exit(pinned: Anchor | None, bundle: TrustBundle) -> None:
    """Without an anchor the bundle vouched only for itself: say so, name the root key, exit 3."""
    from exchange.signing.anchor import pin_hint

    if pinned is None:
        console.print(f"UNANCHORED: no trust anchor pinned, so the trust bundle vouched only for itself. "
                      f"{pin_hint(bundle)}", style="yellow")
        raise typer.Exit(3)


@departments_app.command("add")
def departments_add(
    id: Annotated[str, typer.Argument(help="Province code, dot, short name")],
    name: Annotated[str, typer.Option(help="Official name")],
    province: Annotated[str, typer.Option(help="Province the department belongs to")],
) -> None:
    """Register a department."""
    from exchange.access.models import Department
    from exchange.access.registry import Registry
    from exchange.datasets import province as known_province

    known_province(province)
    hub = _hub()
    Registry(hub.layout.access).add_department(Department(id=id, name=name, province=province))
    hub.log.append(hub.signer, events.DepartmentAdd(name=name), actor=events.HUB, subject=id)
    console.print(f"registered {id}")


@departments_app.command("token")
def departments_token(
    department: Annotated[str, typer.Argument(help="Department id")],
    days: Annotated[int, typer.Option(help="Days until the token expires")] = 90,
) -> None:
    """Issue an API token for a department; the secret is printed once and only its SHA-256 is kept."""
    from exchange.access.registry import Registry

    hub = _hub()
    record, bearer = Registry(hub.layout.access).issue_token(department, days)
    hub.log.append(hub.signer, events.TokenIssue(department=department, expires_at=record.expires_at.isoformat()),
                   actor=events.HUB, subject=record.id)
    console.print(f"token {record.id} for {department}, expires {record.expires_at:%Y-%m-%d %H:%M} UTC")
    console.print("bearer token (shown once, store it now):")
    # Plain print: rich would wrap or style the secret, and scripts read this line.
    print(bearer)


@departments_app.command("keygen")
def departments_keygen(
    department: Annotated[str, typer.Argument(help="Department id")],
    private_key: Annotated[Path | None, typer.Option(help="Where to write the private key (default: "
                                                          "EXCHANGE_HOME/keys/departments/<id>.age.key)")] = None,
) -> None:
    """Make an age X25519 extract key for a department (demo use) and register its public half.

    In production the department runs this itself, keeps the private key and hands the hub only the
    public key (`departments set-key`). The file is created 0600 and never overwritten.
    """
    from exchange.access.envelope import key_id
    from exchange.access.extractkeys import issue_extract_key
    from exchange.access.registry import Registry

    hub = _hub()
    key, path = issue_extract_key(hub, Registry(hub.layout.access), department, private_key)
    console.print(f"extract key {key_id(key.public_key())} for {department}; private key at {path} (0600)")


@departments_app.command("set-key")
def departments_set_key(
    department: Annotated[str, typer.Argument(help="Department id")],
    public_key: Annotated[str, typer.Argument(
        help="The department's age recipient (age1..., from age-keygen) or base64 raw X25519 public key")],
) -> None:
    """Register the age recipient (X25519 public key) a department's extracts are encrypted to."""
    from exchange.access.extractkeys import register_extract_key
    from exchange.access.registry import Registry

    hub = _hub()
    fingerprint = register_extract_key(hub, Registry(hub.layout.access), department, public_key)
    console.print(f"extract key {fingerprint} registered for {department}")


@departments_app.command("tokens")
def departments_tokens(department: Annotated[str | None, typer.Argument(help="Only this department")] = None) -> None:
    """List API tokens (ids, expiry, revocation; never secrets)."""
    from exchange.access.registry import Registry

    table = Table("token id", "department", "created", "expires", "revoked")
    for t in Registry(_hub().layout.access).tokens():
        if department is None or t.department == department:
            table.add_row(t.id, t.department, f"{t.created_at:%Y-%m-%d}", f"{t.expires_at:%Y-%m-%d}",
                          f"{t.revoked_at:%Y-%m-%d}" if t.revoked_at else "")
    console.print(table)


@departments_app.command("revoke-token")
def departments_revoke_token(
    token_id: Annotated[str, typer.Argument(help="Token id (the part before the dot)")],
) -> None:
    """Revoke an API token at once; requests bearing it are refused from now on."""
    from exchange.access.registry import Registry

    hub = _hub()
    record = Registry(hub.layout.access).revoke_token(token_id)
    hub.log.append(hub.signer, events.TokenRevoke(department=record.department), actor=events.HUB, subject=token_id)
    console.print(f"revoked token {token_id} of {record.department}")


@departments_app.command("list")
def departments_list() -> None:
    """List registered departments."""
    from exchange.access.registry import Registry

    table = Table("id", "name", "province")
    for d in Registry(_hub().layout.access).departments():
        table.add_row(d.id, d.name, d.province)
    console.print(table)


@grants_app.command("add")
def grants_add(file: Annotated[Path, typer.Argument(help="Grant as JSON (see schemas/grant.schema.json)")]) -> None:
    """Record a grant after checking it against the contract's sharing terms."""
    from exchange.access.models import Grant
    from exchange.access.registry import Registry

    hub = _hub()
    grant = read_model(file, Grant, "a grant")
    events.may_record(events.Kind.GRANT, grant.approved_by)  # before it is registered: it must be loggable
    if grant.item is not None:  # a grant on a catalogue item never exceeds the item (exchange.access.policy)
        from exchange.access.policy import item_grant_denial, require
        from exchange.catalogue.store import Catalogue
        from exchange.sharing.service import catalogue_dir, item_terms

        require(item_grant_denial(grant, item_terms(Catalogue(catalogue_dir(hub)).item(grant.item))))
    signed = Registry(hub.layout.access).add_grant(grant, hub.signer)
    hub.log.append(hub.signer, events.GrantEvent(department=signed.grant.department, dataset=signed.grant.dataset),
                   actor=signed.grant.approved_by, subject=signed.grant.id)
    console.print(f"recorded grant {signed.grant.id}")


@grants_app.command("list")
def grants_list() -> None:
    """List grants with their expiry and revocation."""
    from exchange.access.policy import grant_status
    from exchange.access.registry import Registry

    registry = Registry(_hub().layout.access)
    revoked = registry.revoked_grants()
    table = Table("id", "department", "dataset", "columns", "expires", "approved by", "status")
    today = date.today()
    for g in registry.grants():
        table.add_row(g.grant.id, g.grant.department, g.grant.dataset, ", ".join(g.grant.columns),
                      str(g.grant.expires_on), g.grant.approved_by, grant_status(g.grant, revoked, today))
    console.print(table)


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[str, typer.Argument(help="Grant id")],
    reason: Annotated[str, typer.Option(help="Why the grant is withdrawn")],
    by: Annotated[str, typer.Option(help="Who revokes it (default: the grant's approving office)")] = "",
) -> None:
    """Withdraw a grant now: later queries and extracts under it are refused (earlier extracts still verify)."""
    from exchange.access.registry import Registry

    hub = _hub()
    registry = Registry(hub.layout.access)
    revoked_by = by or registry.grant(grant_id).grant.approved_by
    events.may_record(events.Kind.GRANT_REVOKE, revoked_by)
    signed = registry.revoke_grant(grant_id, revoked_by, reason, hub.signer)
    from exchange.signing.canonical import document_digest

    hub.log.append(hub.signer, events.GrantRevoke(reason=reason), actor=revoked_by, subject=grant_id,
                   digests={"revocation": document_digest(signed.revocation.model_dump(mode="json"))})
    console.print(f"revoked grant {grant_id}")


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="One SELECT over your permitted views (tables named after datasets)")],
    department: Annotated[str, typer.Option(help="Department id, e.g. js.public_security")],
    snapshot: Annotated[int | None, typer.Option(help="Lake snapshot (default: latest)")] = None,
    max_rows: Annotated[int, typer.Option(help="Refuse results larger than this")] = 10_000,
    timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds")] = 10.0,
) -> None:
    """Run a read-only query in the department's sandbox (masked, filtered views only) and print it."""
    from exchange.access.query import QueryLimits
    from exchange.access.service import query_for_department

    result = query_for_department(_hub(), department, sql, snapshot,
                                  limits=QueryLimits(max_rows=max_rows, timeout_seconds=timeout))
    table = Table(*result.table.column_names)
    # Bounded by max_rows, so a Python loop over the rows is fine here.
    for row in zip(*(c.to_pylist() for c in result.table.columns), strict=True):
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
    console.print(f"{result.table.num_rows} rows at snapshot {result.snapshot_id} "
                  f"(grants: {', '.join(result.grants.values())}; result sha256 {result.result_sha256[:16]}...)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8750,
) -> None:
    """Start the department API (OpenAPI document at /openapi.json, docs at /docs)."""
    import uvicorn

    from exchange.api.app import create_app

    # warm: cached sandboxes follow each commit in the background, so the first query after it is a warm one.
    uvicorn.run(create_app(_hub(), warm=True), host=host, port=port)


@app.command("check-license")
def check_license(
    license_id: Annotated[str, typer.Argument(help="Licence number")],
    department: Annotated[str, typer.Option(help="Department asking, e.g. js.public_security")],
    holder_id: Annotated[str, typer.Option(help="Holder's resident ID to compare (never stored)")],
) -> None:
    """Minimal-disclosure e-licence check of a licence and holder: print the hub-signed answer as JSON.

    Logged like the API's; the API's failed-check lockout is a property of the server, not of this command.
    """
    from exchange.access.service import check_licence_for_department

    signed = check_licence_for_department(_hub(), department, license_id, holder_id)
    print(signed.model_dump_json(indent=2))  # plain: scripts keep the signed answer


@app.command("verify-check")
def verify_check(
    answer: Annotated[Path, typer.Argument(help="Signed answer (JSON) from check-license or the API")],
    trust_bundle: Annotated[Path, typer.Option(help="Trust bundle exported by the hub")],
    anchor: Annotated[list[str] | None, typer.Option(help="Pinned hub root key id the trust bundle must chain "
                                                          "from (repeatable; default EXCHANGE_TRUST_ANCHOR)")] = None,
) -> None:
    """Check an e-licence check answer's hub signature offline (the bundle against the pinned anchor)."""
    from exchange.access.check import SignedLicenceCheck, verify_licence_check
    from exchange.signing.trust import TrustBundle

    signed = read_model(answer, SignedLicenceCheck, "a signed licence-check answer")
    bundle = read_model(trust_bundle, TrustBundle, "a trust bundle")
    pinned = _anchored(bundle, anchor, trust_bundle)
    c = verify_licence_check(signed, bundle)
    console.print(f"authentic: licence {c.license_id} {c.answer} at snapshot {c.snapshot_id}", style="green")
    _unanchored_exit(pinned, bundle)
