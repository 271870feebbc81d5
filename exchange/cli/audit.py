"""`exchange verify|keys|provenance|trace|report`: what an auditor runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.cli import _hub, app, console, read_model, write_text
from exchange.errors import BadFile, BadInput, CheckFailed
from exchange.provenance import events

if TYPE_CHECKING:
    from exchange.provenance.verify import VerifyReport

keys_app = typer.Typer(help="Signing keys and the public trust bundle.", no_args_is_help=True)
provenance_app = typer.Typer(help="The provenance log: checkpoints and archives.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(provenance_app, name="provenance")

MAX_LISTED = 20  # problems printed after the first; --json carries them all
INTERRUPTED_EXIT = 4  # verify: interrupted, recoverable (`exchange recover`), nothing points at tampering


UNANCHORED_EXIT = 3  # nothing found broken, but the trust bundle vouched only for itself


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    elif report.ok:
        console.print(report.summary(), style="green")
    elif not report.problems:
        _print_unanchored(report)
    else:
        first = report.problems[0]
        # The verdict as plain text (a report value is never parsed as markup); INTERRUPTED is recoverable.
        console.print(report.verdict, style="yellow" if report.recoverable else "red", end="")
        console.print(f": {len(report.problems)} problem(s). {report.summary().split(': ', 1)[1]}")
        console.print(f"first broken item: {first.item}\n  problem:  {first.problem}")
        expected, found = getattr(first, "expected", None), getattr(first, "found", None)
        if expected is not None or found is not None:
            console.print(f"  expected: {expected}\n  found:    {found}")
        for problem in report.problems[1:MAX_LISTED + 1]:
            console.print(f"  also: {problem}")
        if len(report.problems) > MAX_LISTED + 1:
            console.print(f"  ... and {len(report.problems) - MAX_LISTED - 1} more (see --json)")
    for note in report.notes:
        if not as_json:
            console.print(f"note: {note}")
    if not report.ok:
        raise typer.Exit(INTERRUPTED_EXIT if report.recoverable else 1 if report.problems else UNANCHORED_EXIT)


def _print_unanchored(report: VerifyReport) -> None:
    from exchange.signing.anchor import SETTING

    ids = ",".join(report.unpinned)
    console.print("UNANCHORED", style="yellow", end="")
    console.print(f": nothing found broken ({report.summary().split(': ', 1)[1]}), but no trust anchor is pinned, so "
                  "the trust bundle vouched only for itself (a bundle replaced together with the log would pass).")
    console.print(f"hub root key: {ids}\ncheck it against the fingerprint the hub published, then pin it outside "
                  f"EXCHANGE_HOME:\n  export {SETTING}={ids}\n  (auditors, offline: --anchor {ids})")


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
    anchor: Annotated[list[str] | None, typer.Option(help="Pinned hub root key id the trust bundle must chain "
                                                          "from (repeatable; default EXCHANGE_TRUST_ANCHOR)")] = None,
    witnesses: Annotated[Path | None, typer.Option(help="Offline: the kept witness receipts (default: "
                                                        "<provenance>/witness)")] = None,
    tsa_root: Annotated[Path | None, typer.Option(help="Offline: the time-stamping authority's pinned root "
                                                       "certificate (PEM)")] = None,
    reports: Annotated[Path | None, typer.Option(help="Offline: the office reports folder to account for")] = None,
) -> None:
    """Re-check the trust bundle against the pinned anchor, the provenance chain, every signature and the
    role allowed to make it, every manifest, lake file, count and extract.

    Prints a verdict, and when broken the first broken item with what was expected and what was found.
    Exits 0 when intact, 1 when anything is broken (tampered or damaged), 2 on a usage error, 3 when nothing is
    broken but no trust anchor is pinned (UNANCHORED: it prints the hub root key and how to pin it), 4 when the
    only problems are what an interrupted commit leaves (INTERRUPTED: run `exchange recover`, then verify again).
    """
    from exchange.config import settings as current_settings
    from exchange.provenance.verify import verify_home, verify_offline

    if offline:
        if provenance is None or trust_bundle is None or lake is None:
            raise typer.BadParameter("--offline needs --provenance, --trust-bundle and --lake")
        report = verify_offline(provenance, trust_bundle, lake, manifests=manifests, extracts=extracts,
                                anchors=anchor, setting=_anchor_setting(), witnesses=witnesses, tsa_root=tsa_root,
                                reports=reports)
    else:
        # Settings only: a Hub's layout creates missing folders, and verify only reads the home it checks.
        report = verify_home(current_settings(), incremental=incremental, anchors=anchor)
    _print_report(report, as_json)


def _anchor_setting() -> str | None:
    """EXCHANGE_TRUST_ANCHOR, read without needing an EXCHANGE_HOME (an auditor's machine has none)."""
    import os

    from exchange.signing.anchor import SETTING

    return os.environ.get(SETTING) or None


@app.command()
def witness(
    province: Annotated[list[str] | None, typer.Option(help="Only this province's office (repeatable; default: "
                                                            "every office with a sandbox)")] = None,
) -> None:
    """Have the log head countersigned by the province offices and an RFC 3161 time-stamping authority.

    Stores the receipt under provenance/witness/ and a `witness` entry in the log. From then on verify names
    any deletion or rewrite of entries up to that head, even one made with the hub's own key.
    """
    from adapters.witness import witness_hub
    from exchange.datasets import PROVINCES

    for name in province or []:
        if name not in PROVINCES:
            raise typer.BadParameter(f"unknown province {name!r}; one of {', '.join(PROVINCES)}",
                                     param_hint="--province")
    receipt, entry = witness_hub(_hub(), province)
    console.print(f"witnessed head seq {receipt.head_seq} ({receipt.head_hash[:16]}...) by "
                  f"{', '.join(receipt.witnesses())}; witness entry seq {entry.seq}")


# -- keys ------------------------------------------------------------------------------------------------------


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2026-12-01T09:00:00+08:00",
                                 param_hint="--at") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def _keyring_input() -> Iterator[None]:
    """The keyring reports a bad owner, algorithm or key file as ValueError: here that is bad input."""
    try:
        yield
    except ValueError as exc:
        raise BadInput(str(exc)) from None


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
    from exchange.signing.signers import algorithm_name

    with _keyring_input():
        return None if value is None else algorithm_name(value)


@keys_app.command("create")
def keys_create(
    owner: Annotated[list[str], typer.Argument(help="Owners, e.g. jiangsu.data_office")],
    algorithm: Annotated[str | None, typer.Option(help=ALGORITHM_HELP + "; only for owners without a key")] = None,
) -> None:
    """Create keys for owners that have none (the hub's key is created on first use)."""
    hub = _hub()
    chosen = _algorithm(algorithm)
    for name in owner:
        with _keyring_input():
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
    from exchange.signing.rotation import trust

    hub = _hub()
    try:
        pem = public_key.read_bytes()
    except OSError as exc:
        raise BadFile(public_key, f"cannot read the public key: {exc.strerror or exc}") from None
    with _keyring_input():
        key = trust(hub.keyring, owner, pem, _at(at))
    trusted = events.KeyTrust.model_validate({"key": key.key_id, "algorithm": key.algorithm,
                                               "from": key.not_before.isoformat()})
    hub.log.append(hub.signer, trusted, actor=events.HUB, subject=owner)
    console.print(f"{owner}: trusting {key.algorithm} key {key.key_id} from {key.not_before.isoformat()}")


@keys_app.command("rotate")
def keys_rotate(
    owner: Annotated[str, typer.Argument(help="Owner whose key to replace, e.g. hub")],
    algorithm: Annotated[str | None, typer.Option(help=ALGORITHM_HELP + "; default: the old key's")] = None,
) -> None:
    """Replace an owner's key: the new key takes over now; what the old key signed stays valid.

    The old key endorses the new one, also across algorithms (ed25519 -> sm2 and back).
    """
    from exchange.signing.rotation import rotate

    hub = _hub()
    chosen = _algorithm(algorithm)
    with _keyring_input():
        key = rotate(hub.keyring, owner, algorithm=chosen)
    hub.log.append(hub.signer, events.KeyRotate(new_key=key.key_id, algorithm=key.algorithm,
                                                endorsed_by=key.endorsement.key_id if key.endorsement else None),
                   actor=events.HUB, subject=owner)
    console.print(f"{owner}: new {key.algorithm} key {key.key_id} from {key.not_before.isoformat()}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id to revoke")],
    at: Annotated[str | None, typer.Option(help="Revoked from (ISO 8601; default now): signatures claimed "
                                                "after it are invalid")] = None,
    reason: Annotated[str, typer.Option(help="Why, e.g. 'key compromised'")] = "",
) -> None:
    """Revoke a key: every signature it made after --at fails verification."""
    from exchange.signing.rotation import revoke

    hub = _hub()
    key = revoke(hub.keyring, key_id, _at(at), reason)
    hub.log.append(hub.signer, events.KeyRevoke(owner=key.owner, reason=reason,
                                                revoked_at=key.revoked_at.isoformat() if key.revoked_at else None),
                   actor=events.HUB, subject=key_id)
    console.print(f"revoked {key_id} ({key.owner}) from {key.revoked_at}")
    if key.owner == events.HUB:
        # The successor is deliberately not endorsed by a compromised key: only a new pin makes verify trust it.
        console.print(f"the hub's new key {hub.signer.key_id} is not endorsed by the revoked one: pin it too "
                      "(`exchange keys anchor --out FILE`, EXCHANGE_TRUST_ANCHOR) and tell auditors", style="yellow")


@keys_app.command("pem")
def keys_pem(
    key_id: Annotated[str, typer.Argument(help="Key id, as in the trust bundle")],
    trust_bundle: Annotated[Path | None, typer.Option(help="Read the key from this exported bundle (offline) "
                                                           "instead of the hub's keyring")] = None,
) -> None:
    """Print a trusted public key as SubjectPublicKeyInfo PEM, for checking a signature with openssl."""
    from exchange.signing.trust import TrustBundle, public_pem

    bundle = read_model(trust_bundle, TrustBundle, "a trust bundle") if trust_bundle else _hub().keyring.trust_bundle()
    print(public_pem(bundle.key(key_id)), end="")


@keys_app.command("anchor")
def keys_anchor(
    out: Annotated[Path | None, typer.Option(help="Also write the key id(s) to this file (outside EXCHANGE_HOME)")]
    = None,
) -> None:
    """Print the hub root key id(s) to pin as the trust anchor (EXCHANGE_TRUST_ANCHOR, or an auditor's --anchor).

    Pin them once, when the hub is set up or after the hub key was revoked, and keep them outside
    EXCHANGE_HOME; rotations need no new pin (each new hub key is endorsed by the one before).
    """
    from exchange.signing.anchor import SETTING, root_ids, write_anchor

    hub = _hub()
    bundle = hub.keyring.export_trust()
    ids = ",".join(root_ids(bundle))
    if out is not None:
        if out.resolve().is_relative_to(hub.layout.home):
            raise BadInput(f"{out} is inside EXCHANGE_HOME: keep the anchor outside it")
        write_anchor(out, bundle)
        console.print(f"wrote {out}")
    print(ids)
    console.print(f"pin it: export {SETTING}={out or ids}", style="dim")


@keys_app.command("export-trust")
def keys_export_trust(out: Annotated[Path, typer.Option(help="Where to write the trust bundle")]) -> None:
    """Export the public trust bundle (signed by the hub) that verifiers need offline."""
    bundle = _hub().keyring.export_trust()
    write_text(out, bundle.model_dump_json(indent=2))
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
    cut = truncate_to_archive(hub.log, hub.signer)
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

    if subject is not None:
        _trace_subject(subject, as_json)
        return
    if dataset is None or key is None:
        raise typer.BadParameter("give DATASET KEY, or --subject RESIDENT_ID")
    from exchange.datasets import dataset as known_dataset

    known_dataset(dataset)
    result = trace_record(_hub().settings, dataset, key)
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
    hub.log.append(hub.signer, events.SubjectTrace(disclosures=len(result.disclosures)), actor="auditor",
                   subject=result.subject)
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
    console.print(f"{result.dataset} {result.key}", style="bold")
    events = Table("event", "batch", "snapshot", "detail", title="What happened to the record")
    for e in result.events:
        events.add_row(e.kind, e.batch_id, str(e.snapshot_id or "-"), e.detail)
    console.print(events)
    batches = Table("batch", "province", "contract", "landing payload SHA-256", "manifest SHA-256", "snapshot",
                    "provenance (seq action)", title="Batches that carried it")
    for b in result.batches:
        landing = "\n".join(f"{n} {d[:16]}…" for n, d in b.landing.items())
        batches.add_row(b.batch_id, b.province, b.contract, landing, (b.manifest_sha256 or "-")[:16] + "…",
                        str(b.snapshot_id), _seq_actions(b.provenance))
    console.print(batches)
    extracts = Table("extract", "department", "grant", "purpose", "snapshot", "carried it", "provenance (seq action)",
                     title="Extracts")
    for x in result.extracts:
        carried = {True: "yes", False: "no", None: "unknown"}[x.carried]
        extracts.add_row(x.extract_id, x.department, x.grant_id, x.purpose or "-", str(x.snapshot_id), carried,
                         _seq_actions(x.provenance))
    console.print(extracts)


def _seq_actions(entries: list[str]) -> str:
    return "\n".join(" ".join(p.split()[:2]) for p in entries)


# -- report -----------------------------------------------------------------------------------------------------


@app.command()
def report(out: Annotated[Path, typer.Option(help="HTML file to write")]) -> None:
    """Write the auditor's self-contained HTML report (verifies first; the verdict is on the page).

    The page is written whatever the verdict; the exit status is 1 when it is BROKEN, 4 when INTERRUPTED (as for
    verify: run `exchange recover`), 0 otherwise (UNANCHORED too: the page names the root key to pin).
    """
    from exchange.config import settings as current_settings
    from exchange.provenance.verify import verify_home
    from exchange.report.auditor import write_report

    if not out.parent.is_dir():
        raise BadFile(out, f"cannot write it: no folder {out.parent}")
    result = verify_home(current_settings())  # first: a missing home is an error, not a new empty hub
    hub = _hub()
    write_report(out, hub.layout, result, hub.keyring.trust_bundle())
    console.print(f"report ({result.verdict}) -> {out}")
    if result.verdict == "BROKEN":
        # CheckFailed: its exit status comes from the one table in exchange/errors.py, like verify's failures.
        raise CheckFailed(f"verdict BROKEN, first broken item: {result.problems[0]} (the report is at {out})")
    if result.verdict == "INTERRUPTED":
        raise typer.Exit(INTERRUPTED_EXIT)
