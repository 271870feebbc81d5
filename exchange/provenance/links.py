"""verify's cross-links beyond one manifest: replay batches to their origin, lake snapshots to manifests.

- A replay batch ``<origin>.replay-N`` (see exchange/replay.py) must have a provenance ``replay`` entry that
  names its origin and carries the digest of the origin's signed manifest, logged before its commit, with the
  counts its manifest records; and the origin batch must have a signed manifest of its own.
- Every DuckLake snapshot whose commit info names a batch must be the snapshot that batch's signed manifest
  names, and the commit info's ``batch_sha256`` must equal the digest recomputed from the manifest (see
  exchange/lake/commit.py): the snapshot vouches for the manifest and the manifest for the snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from exchange.errors import VerificationError
from exchange.lake.commit import batch_digest
from exchange.provenance.manifest import BatchManifest
from exchange.provenance.problems import Mismatch
from exchange.provenance.verify_result import ChainFacts
from exchange.stages import LedgerRow

REPLAY_MARK = ".replay-"
_REPLAY_ID = re.compile(r"^(?P<origin>.+)\.replay-(?P<n>[1-9][0-9]*)$")


def origin_of(batch_id: str) -> str:
    """The origin batch of a replay id (``O.replay-2`` -> ``O``); any other id is its own origin."""
    match = _REPLAY_ID.match(batch_id)
    return match.group("origin") if match else batch_id


def replay_number(batch_id: str) -> int:
    """N of ``O.replay-N``; 0 for a batch that is not a replay."""
    match = _REPLAY_ID.match(batch_id)
    return int(match.group("n")) if match else 0


def ledger_row_of(m: BatchManifest) -> LedgerRow:
    """The ledger row the batch's commit wrote, rebuilt from its signed manifest."""
    return LedgerRow(
        batch_id=m.batch_id, province=m.province, dataset=m.dataset,
        window_start=m.window_start, window_end=m.window_end, watermark=m.watermark,
        pulled=m.counts.pulled, accepted=m.counts.accepted, quarantined=m.counts.quarantined,
        contract_id=m.contract_id, contract_version=m.contract_version,
    )


def check_snapshot_claim(m: BatchManifest, item: str, infos: dict[int, dict[str, Any]]) -> None:
    """Manifest -> snapshot: the snapshot it names carries this batch's id and digest in its commit info."""
    info = infos.get(m.snapshot_id)
    if info is None or info.get("batch_id") != m.batch_id:
        raise Mismatch(item, f"snapshot {m.snapshot_id}'s commit info does not name this batch",
                       expected=m.batch_id, found=info.get("batch_id") if info else "no commit info")
    expected = batch_digest(ledger_row_of(m))
    if info.get("batch_sha256") != expected:
        raise Mismatch(item, f"snapshot {m.snapshot_id}'s commit info carries another batch digest than the "
                       "manifest's window, counts and contract give (ledger, commit info or manifest rewritten?)",
                       expected=expected, found=info.get("batch_sha256", "no batch_sha256"))


def snapshots_without_manifest(
    infos: dict[int, dict[str, Any]], manifest_snapshots: dict[str, int], already_named: Iterable[str]
) -> list[VerificationError]:
    """Snapshot -> manifest: every snapshot naming a batch is the one that batch's signed manifest names.

    Batches in `already_named` (reported as committed without a manifest) are not reported twice.
    """
    problems: list[VerificationError] = []
    named = set(already_named)
    for snapshot, info in sorted(infos.items()):
        batch = str(info.get("batch_id"))
        listed = manifest_snapshots.get(batch)
        if listed is None and batch not in named:
            problems.append(Mismatch(f"lake snapshot {snapshot}", f"commit info names batch {batch}, which has no "
                                     "signed manifest", expected="a manifest", found="none"))
        elif listed is not None and listed != snapshot:
            problems.append(Mismatch(f"lake snapshot {snapshot}", f"commit info names batch {batch}, whose signed "
                                     "manifest names another snapshot (batch committed twice?)",
                                     expected=f"snapshot {listed}", found=f"snapshot {snapshot}"))
    return problems


def check_replay_link(m: BatchManifest, item: str, manifest_digests: dict[str, str], facts: ChainFacts) -> None:
    """A replay batch: its origin has a signed manifest and a provenance replay entry links the two."""
    origin = origin_of(m.batch_id)
    if origin == m.batch_id:
        return
    origin_digest = manifest_digests.get(origin)
    if origin_digest is None:
        raise Mismatch(item, f"replay of batch {origin}, which has no signed manifest (origin missing)",
                       expected=f"a manifest for {origin}", found="none")
    entry = facts.replays.get(m.batch_id)
    if entry is None:
        raise Mismatch(item, "no provenance replay entry links this replay to its origin (entry removed?)",
                       expected=f"a replay entry naming {origin}", found="no replay entry")
    where = f"provenance replay entry seq {entry.seq}"
    if entry.details.get("origin") != origin:
        raise Mismatch(item, f"{where} names another origin batch", expected=origin,
                       found=entry.details.get("origin"))
    if entry.digests.get("origin_manifest") != origin_digest:
        raise Mismatch(item, f"{where} carries another digest than the origin's signed manifest",
                       expected=origin_digest, found=entry.digests.get("origin_manifest"))
    commit = facts.commits.get(m.batch_id)
    if commit is not None and entry.seq > commit.seq:
        raise Mismatch(item, f"{where} comes after the replay's commit", expected=f"before seq {commit.seq}",
                       found=f"seq {entry.seq}")
    logged = tuple(entry.details.get(k) for k in ("replayed", "accepted", "quarantined"))
    counted = (m.counts.pulled, m.counts.accepted, m.counts.quarantined)
    if logged != counted:
        raise Mismatch(item, f"{where} counts differ from the manifest (replayed / accepted / quarantined)",
                       expected=counted, found=logged)
