"""`exchange verify|keys|provenance|trace|report`: what an auditor runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.cli import _fail, _hub, app, console
from exchange.errors import ExchangeError

if TYPE_CHECKING:
    from exchange.provenance.verify import VerifyReport

keys_app = typer.Typer(help="Signing keys and the public trust bundle.", no_args_is_help=True)
provenance_app = typer.Typer(help="The provenance log: checkpoints and archives.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(provenance_app, name="provenance")

MAX_LISTED = 20  # problems printed after the first; --json carries them all
INTERRUPTED_EXIT = 3  # verify: interrupted, recoverable (`exchange recover`), nothing points at tampering


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    elif report.ok:
        console.print(f"[green]{report.summary()}[/]")
    else:
        first = report.problems[0]
        colour = "yellow" if report.recoverable else "red"
        console.print(f"[{colour}]{report.verdict}[/]: {len(report.problems)} problem(s). "
                      f"{report.summary().split(': ', 1)[1]}")
        console.print(f"first broken item: [bold]{first.item}[/]\n  problem:  {first.problem}")
        expected, found = getattr(first, "expected", None), getattr(first, "found", None)
        if expected is not None or found is not None:
            console.print(f"  expected: {expected}\n  found:    {found}")
        for problem in report.problems[1:MAX_LISTED + 1]:
            console.print(f"  also: {problem}")
        if len(report.problems) > MAX_LISTED + 1:
            console.print(f"  ... and {len(report.problems) - MAX_LISTED - 1} more (see --json)")
    for note in report.notes:
        if not as_json:
            console.print(f"[yellow]note[/]: {note}")
    if not report.ok:
        raise typer.Exit(INTERRUPTED_EXIT if report.recoverable else 1)


@app.command()
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the machine-readable result")] = False,
    incremental: Annotated[bool, typer.Option(help="Re-check only what is new since the last verified "
                                                   "checkpoint")] = False,
    offline: Annotated[bool, typer.Option(help="Verify an auditor's copy; needs no EXCHANGE_HOME")] = False,
    provenance: Annotated[Path | None, typer.Option(help="Offline: an archive, a folder of archives, or a "
                                                         "folder with log.jsonl")] = None,
    trust_bundle: Annotated[Path | None, typer.Option(help="Offline: the hub's exported trust bundle")] = None,
    lake: Annotated[Path | None, typer.Option(help="Offline: lake copy (catalog.ducklake and data/)")] = None,
    manifests: Annotated[Path | None, typer.Option(help="Offline: extra manifests folder")] = None,
    extracts: Annotated[Path | None, typer.Option(help="Offline: extracts folder")] = None,
    anchor: Annotated[list[str] | None, typer.Option(help="Offline: pinned hub key id the bundle must chain "
                                                          "to (repeatable)")] = None,
) -> None:
    """Re-check the provenance chain, every signature, manifest, lake file, count and extract.

    Prints a verdict, and when broken the first broken item with what was expected and what was found.
    Exits 0 when intact, 1 when anything is broken (tampered or damaged), 2 on a usage error, 3 when the only
    problems are what an interrupted commit leaves (INTERRUPTED: run `exchange recover`, then verify again).
    """
    from exchange.provenance.verify import verify_home, verify_offline

    if offline:
        if provenance is None or trust_bundle is None or lake is None:
            console.print("[red]error:[/] --offline needs --provenance, --trust-bundle and --lake")
            raise typer.Exit(2)
        report = verify_offline(provenance, trust_bundle, lake, manifests=manifests, extracts=extracts,
                                anchors=set(anchor) if anchor else None)
    else:
        from exchange.config import settings as current_settings

        # Settings only: building a Hub imports the pipeline, i.e. Great Expectations (seconds), for nothing.
        report = verify_home(current_settings(), incremental=incremental)
    _print_report(report, as_json)


# -- keys ------------------------------------------------------------------------------------------------------


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List every key: id, owner, algorithm, validity, status."""
    bundle = _hub().keyring.trust_bundle()
    if as_json:
        print(bundle.model_dump_json(indent=2))
        return
    now = datetime.now(UTC)
    table = Table("key id", "owner", "algorithm", "valid from", "valid until", "status")
    for k in sorted(bundle.keys, key=lambda k: (k.owner, k.not_before)):
        status = k.status
        if k.revoked_at is not None:
            status += f" at {k.revoked_at:%Y-%m-%d %H:%M:%S}Z" + (f" ({k.revocation_reason})" if k.revocation_reason
                                                                 else "")
        elif k.status == "active" and now > k.not_after:
            status = "expired"
        table.add_row(k.key_id, k.owner, k.algorithm, f"{k.not_before:%Y-%m-%d %H:%M:%S}Z",
                      f"{k.not_after:%Y-%m-%d %H:%M:%S}Z", status)
    console.print(table)


ALGORITHM_HELP = "Signature algorithm: ed25519 (default) or sm2 (SM2 signatures over SM3 digests, GB/T 32918)"


def _algorithm(value: str | None) -> str | None:
    from exchange.signing.keys import algorithm_name

    try:
        return None if value is None else algorithm_name(value)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@keys_app.command("create")
def keys_create(
    owner: Annotated[list[str], typer.Argument(help="Owners, e.g. jiangsu.data_office")],
    algorithm: Annotated[str | None, typer.Option(help=ALGORITHM_HELP + "; only for owners without a key")] = None,
) -> None:
    """Create keys for owners that have none (the hub's key is created on first use)."""
    hub = _hub()
    chosen = _algorithm(algorithm)
    for name in owner:
        key = hub.keyring.create(name, chosen)
        console.print(f"{name}: {key.key_id} ({key.algorithm})")


@keys_app.command("init")
def keys_init() -> None:
    """Create keys for the hub, every province data office and every registered department."""
    from exchange.access.registry import Registry
    from exchange.datasets import PROVINCES

    hub = _hub()
    owners = ["hub", *(f"{p}.data_office" for p in PROVINCES),
              *(d.id for d in Registry(hub.layout.access).departments())]
    for name in owners:
        try:
            console.print(f"{name}: {hub.keyring.create(name).key_id}")
        except ValueError as exc:  # an office whose own key was imported with `keys trust`
            console.print(f"{name}: {exc}")


@keys_app.command("trust")
def keys_trust(
    owner: Annotated[str, typer.Argument(help="Who holds the private key, e.g. jiangsu.data_office")],
    public_key: Annotated[Path, typer.Argument(help="The owner's public key, SubjectPublicKeyInfo PEM "
                                                    "(openssl pkey -pubout), Ed25519 or SM2")],
    at: Annotated[str | None, typer.Option(help="Trusted from (ISO 8601; default now); the owner's "
                                                "previous key retires then")] = None,
) -> None:
    """Trust a key someone else holds: a province office's signing key, received out of band.

    Compare the printed key id with the one the office gives you by another channel before relying on it.
    """
    hub = _hub()
    try:
        key = hub.keyring.trust(owner, public_key.read_bytes(), _at(at))
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/] {public_key}: {exc}")
        raise typer.Exit(2) from None
    hub.log.append(hub.signer, actor="hub", action="key_trust", subject=owner,
                   details={"key": key.key_id, "algorithm": key.algorithm, "from": key.not_before.isoformat()})
    console.print(f"{owner}: trusting {key.algorithm} key {key.key_id} from {key.not_before.isoformat()}")


@keys_app.command("rotate")
def keys_rotate(
    owner: Annotated[str, typer.Argument(help="Owner whose key to replace, e.g. hub")],
    algorithm: Annotated[str | None, typer.Option(help=ALGORITHM_HELP + "; default: the old key's")] = None,
) -> None:
    """Replace an owner's key: the new key takes over now; what the old key signed stays valid.

    The old key endorses the new one, also across algorithms (ed25519 -> sm2 and back).
    """
    hub = _hub()
    chosen = _algorithm(algorithm)
    try:
        key = hub.keyring.rotate(owner, algorithm=chosen)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    hub.log.append(hub.signer, actor="hub", action="key_rotate", subject=owner,
                   details={"new_key": key.key_id, "algorithm": key.algorithm,
                            "endorsed_by": key.endorsement.key_id if key.endorsement else None})
    console.print(f"{owner}: new {key.algorithm} key {key.key_id} from {key.not_before.isoformat()}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id to revoke")],
    at: Annotated[str | None, typer.Option(help="Revoked from (ISO 8601; default now): signatures claimed "
                                                "after it are invalid")] = None,
    reason: Annotated[str, typer.Option(help="Why, e.g. 'key compromised'")] = "",
) -> None:
    """Revoke a key: every signature it made after --at fails verification."""
    hub = _hub()
    try:
        key = hub.keyring.revoke(key_id, _at(at), reason)
    except ExchangeError as exc:
        _fail(exc)
        return
    hub.log.append(hub.signer, actor="hub", action="key_revoke", subject=key_id,
                   details={"owner": key.owner, "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
                            "reason": reason})
    console.print(f"revoked {key_id} ({key.owner}) from {key.revoked_at}")


@keys_app.command("pem")
def keys_pem(
    key_id: Annotated[str, typer.Argument(help="Key id, as in the trust bundle")],
    trust_bundle: Annotated[Path | None, typer.Option(help="Read the key from this exported bundle (offline) "
                                                           "instead of the hub's keyring")] = None,
) -> None:
    """Print a trusted public key as SubjectPublicKeyInfo PEM, for checking a signature with openssl."""
    from exchange.signing.keys import TrustBundle, public_pem

    try:
        bundle = (TrustBundle.model_validate_json(trust_bundle.read_text(encoding="utf-8")) if trust_bundle
                  else _hub().keyring.trust_bundle())
        print(public_pem(bundle.key(key_id)), end="")
    except ExchangeError as exc:
        _fail(exc)


@keys_app.command("export-trust")
def keys_export_trust(out: Annotated[Path, typer.Option(help="Where to write the trust bundle")]) -> None:
    """Export the public trust bundle (signed by the hub) that verifiers need offline."""
    bundle = _hub().keyring.export_trust()
    out.write_text(bundle.model_dump_json(indent=2), encoding="utf-8")
    signer = bundle.signature.key_id if bundle.signature else "-"
    console.print(f"trust bundle ({len(bundle.keys)} keys, signed by {signer}) -> {out}")


# -- provenance ---------------------------------------------------------------------------------------------


@provenance_app.command("checkpoint")
def provenance_checkpoint() -> None:
    """Append a signed checkpoint of the chain head (and the lake's newest snapshot)."""
    from exchange.provenance.checkpoint import append_checkpoint
    from exchange.provenance.lakecheck import lake_head

    hub = _hub()
    head, count = lake_head(hub.settings)
    entry = append_checkpoint(hub.log, hub.signer, lake_snapshot=head, manifests=count)
    console.print(f"checkpoint seq {entry.seq}: head {entry.prev_hash} (lake snapshot {head})")


@provenance_app.command("archive")
def provenance_archive(
    truncate: Annotated[bool, typer.Option("--truncate", help="Then cut the live log back to the last archive's "
                                                              "closing checkpoint (the archives hold the rest)")]
    = False,
) -> None:
    """Close the current segment with a checkpoint and write it as a signed, chained archive.

    With --truncate the live log keeps only that checkpoint and what follows, after checking byte for byte
    that the archives hold every entry dropped; a signed truncate entry names the archive. verify reads the
    chain across the archives and the live log.
    """
    from exchange.provenance.archive import read_header, truncate_to_archive, write_archive
    from exchange.provenance.lakecheck import lake_head

    hub = _hub()
    head, count = lake_head(hub.settings)
    path = write_archive(hub.log, hub.signer, hub.layout.home, lake_snapshot=head, manifests=count)
    if path is None:
        console.print("nothing new since the last archive")
    else:
        h = read_header(path)
        console.print(f"archive {h.segment}: seq {h.first_seq}..{h.last_seq}, {len(h.manifests)} manifests -> {path}")
    if not truncate:
        return
    try:
        cut = truncate_to_archive(hub.log, hub.signer)
    except ExchangeError as exc:
        _fail(exc)
        return
    if cut is None:
        console.print("live log already starts at the last archive's checkpoint")
    else:
        console.print(f"live log truncated: {cut.removed} entries before seq {cut.entry.details['first_seq']} are "
                      f"kept in the archives up to {cut.archive.name} (truncate entry seq {cut.entry.seq})")


# -- trace ------------------------------------------------------------------------------------------------------


@app.command()
def trace(
    dataset: Annotated[str | None, typer.Argument(help="Dataset, e.g. e_license")] = None,
    key: Annotated[str | None, typer.Argument(help="Record key, e.g. a licence id or USCC")] = None,
    subject: Annotated[str | None, typer.Option(help="A resident ID ('-' reads it from stdin): which departments "
                                                     "received records about this person")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The history of one record (DATASET KEY), or who received records about one person (--subject).

    For a record: batches, contract, payload digests, snapshots, quarantine events, extracts that carried it.
    For a person: every extract with records about them, with department, time, grant and purpose; the
    question is logged in provenance under a keyed hash of the ID, never the ID itself.
    """
    from exchange.provenance.trace import trace_record

    hub = _hub()
    if subject is not None:
        _trace_subject(subject, as_json)
        return
    if dataset is None or key is None:
        console.print("[red]error:[/] give DATASET KEY, or --subject RESIDENT_ID")
        raise typer.Exit(2)
    try:
        result = trace_record(hub.settings, dataset, key)
    except (ExchangeError, KeyError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        _print_trace(result)
    if not result.found:
        raise typer.Exit(1)


def _trace_subject(subject: str, as_json: bool) -> None:
    import sys

    from exchange.provenance.subject import trace_subject

    hub = _hub()
    resident_id = sys.stdin.readline().strip() if subject == "-" else subject
    result = trace_subject(hub.settings, resident_id)
    hub.log.append(hub.signer, actor="auditor", action="subject_trace", subject=result.subject,
                   details={"disclosures": len(result.disclosures)})
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    held = ", ".join(f"{n} in {d}" for d, n in result.records_in_lake.items()) or "none"
    console.print(f"subject {result.subject}\nrecords in the lake now: {held}")
    table = Table("received at (UTC)", "department", "dataset", "records", "grant", "purpose", "legal basis",
                  title="Departments that received records about this person")
    for d in result.disclosures:
        table.add_row(f"{d.created_at:%Y-%m-%d %H:%M:%S}", d.department, d.dataset, str(d.records), d.grant_id,
                      d.purpose or "-", d.legal_basis or "-")
    console.print(table)


def _print_trace(result: object) -> None:
    from exchange.provenance.trace import RecordTrace

    assert isinstance(result, RecordTrace)
    if not result.found:
        console.print(f"{result.dataset} {result.key}: never received by the hub")
        return
    console.print(f"[bold]{result.dataset} {result.key}[/]")
    events = Table("event", "batch", "snapshot", "detail", title="What happened to the record")
    for e in result.events:
        events.add_row(e.kind, e.batch_id, str(e.snapshot_id or "-"), e.detail)
    console.print(events)
    batches = Table("batch", "province", "contract", "landing payload SHA-256", "manifest SHA-256", "snapshot",
                    "provenance (seq action)", title="Batches that carried it")
    for b in result.batches:
        landing = "\n".join(f"{n} {d[:16]}…" for n, d in b.landing.items())
        entries = "\n".join(" ".join(p.split()[:2]) for p in b.provenance)
        batches.add_row(b.batch_id, b.province, b.contract, landing, (b.manifest_sha256 or "-")[:16] + "…",
                        str(b.snapshot_id), entries)
    console.print(batches)
    extracts = Table("extract", "department", "grant", "purpose", "snapshot", "carried it", title="Extracts")
    for x in result.extracts:
        carried = {True: "yes", False: "no", None: "unknown"}[x.carried]
        extracts.add_row(x.extract_id, x.department, x.grant_id, x.purpose or "-", str(x.snapshot_id), carried)
    console.print(extracts)


# -- report -----------------------------------------------------------------------------------------------------


@app.command()
def report(out: Annotated[Path, typer.Option(help="HTML file to write")]) -> None:
    """Write the auditor's self-contained HTML report (verifies first; the verdict is on the page)."""
    from exchange.provenance.verify import verify_home
    from exchange.report.auditor import write_report

    hub = _hub()
    result = verify_home(hub.settings)
    write_report(out, hub.layout, result, hub.keyring.trust_bundle())
    console.print(f"report ({result.verdict}) -> {out}")
