"""The strongest forger of a manifest holds the hub's own key: it edits a signed batch manifest and signs it again.

The signature then verifies, so what must catch the edit are verify's own checks of the manifest against the lake
(storecheck._verify_manifest): counts conserved, delete files against the deletions, lake rows against the counts.
Verify also names such a manifest as replaced (the log's commit entry carries the old digest), so each test asserts
the one check it exists for, and fails when that check alone is disabled (`if False:`, issue 21).
The last tests forge a log entry whose hash chain is intact but whose Ed25519 signature is not the hub's over its
hash: it is named for its signature, not caught as a side effect of another check.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.zhejiang.sandbox import ZhejiangSandbox
from exchange.errors import VerificationError
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.log import ChainVerifier, ProvenanceEntry
from exchange.provenance.manifest import BatchManifest, Counts, SignedManifest, read_manifest, sign_manifest
from exchange.signing.keyring import Keyring
from exchange.signing.signers import ED25519
from exchange.synthetic import generate
from tests.fixture_cache import built_once
from tests.hubs import assert_named, sandbox_hub, verify_copy

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
DELETED = datetime(2026, 11, 6, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("forged", _build, tmp_path_factory) / "home"


def _build(root: Path) -> None:
    """Two Zhejiang batches: the first with quarantined records, the second deleting five of the first's."""
    home = root / "home"
    sandbox = ZhejiangSandbox(home / "sandboxes" / "zhejiang")
    sandbox.install()
    sandbox.seed("e_license", generate("e_license", "zhejiang", 300, seed=11, start=START, end=MID))
    hub: Hub = sandbox_hub(home, sandbox)
    first = run_exchange("zhejiang", "e_license", START, MID, hub)
    assert first.status == "committed" and first.quarantined > 0
    with connect(hub.settings, read_only=True) as con:
        accepted = sorted(k for (k,) in con.execute(f"SELECT license_id FROM {LAKE}.e_license").fetchall())
    sandbox.delete("e_license", accepted[:5], DELETED)
    assert run_exchange("zhejiang", "e_license", MID, END, hub).status == "committed"
    assert verify_copy(home).ok


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def _manifests(home: Path) -> list[Path]:
    """The batch manifests in commit order (the batch with deletions last)."""
    return sorted((home / "manifests").rglob("*.json"), key=lambda p: read_manifest(p).manifest.created_at)


def _forge(home: Path, path: Path, edit: Callable[[Counts], Counts]) -> SignedManifest:
    """Rewrite the counts of the manifest at `path` and sign it again with the hub's own key."""
    signed = read_manifest(path)
    manifest: BatchManifest = signed.manifest.model_copy(update={"counts": edit(signed.manifest.counts)})
    forged = sign_manifest(manifest, Keyring(home / "keys").signer())
    path.write_text(forged.model_dump_json(indent=2))
    return forged


def _shift(c: Counts, **delta: int) -> Counts:
    return c.model_copy(update={k: getattr(c, k) + v for k, v in delta.items()})


def test_the_fixture_has_what_the_forgeries_edit(home: Path) -> None:
    first, second = (read_manifest(p).manifest.counts for p in _manifests(home))
    assert first.quarantined > 0 and first.deleted == 0
    assert second.deleted == 5


def test_the_forgers_tool_re_signs_an_unchanged_manifest_into_a_valid_one(home: Path) -> None:
    # The forger's signature is as good as the hub's, so every problem the tests below find comes from the
    # edited counts, not from how the forger signs.
    path = _manifests(home)[0]
    _forge(home, path, lambda c: c)
    assert verify_copy(home).ok


@pytest.mark.parametrize("delta", [{"pulled": 1}, {"pulled": -1}, {"accepted": 1}, {"quarantined": -1}])
def test_counts_not_conserved_in_a_re_signed_manifest(home: Path, delta: dict[str, int]) -> None:
    path = _manifests(home)[0]
    _forge(home, path, lambda c: _shift(c, **delta))
    assert_named(verify_copy(home), path.name, "counts not conserved: pulled != accepted + quarantined")


@pytest.mark.parametrize(("which", "delta"), [(1, -1), (1, 1), (1, -5), (0, 1)])
def test_deletions_differ_from_the_delete_files_in_a_re_signed_manifest(home: Path, which: int, delta: int) -> None:
    path = _manifests(home)[which]
    _forge(home, path, lambda c: _shift(c, deleted=delta))
    assert_named(verify_copy(home), path.name, "the lake's delete files differ from the manifest's deletions")


@pytest.mark.parametrize("delta", [
    {"pulled": 1, "accepted": 1},  # claims one more accepted record than the lake holds
    {"pulled": -1, "quarantined": -1},  # hides a quarantined record
    {"accepted": 1, "quarantined": -1},  # moves a quarantined record to accepted: pulled unchanged
])
def test_lake_rows_differ_from_the_counts_of_a_re_signed_manifest(home: Path, delta: dict[str, int]) -> None:
    path = _manifests(home)[0]
    _forge(home, path, lambda c: _shift(c, **delta))
    report = verify_copy(home)
    assert_named(report, path.name, "lake rows differ from the manifest's counts")
    # Conserved counts, so only the rows check can name this manifest's content (besides the log's digest).
    assert not [p for p in report.problems if "counts not conserved" in p.problem]


# -- the Ed25519 signature over a log entry, checked directly ---------------------------------------------------


def _log_lines(home: Path) -> list[str]:
    return (home / "provenance" / "log.jsonl").read_text().splitlines()


def _with_signature(line: str, value: bytes) -> str:
    doc = json.loads(line)
    doc["signature"]["value"] = base64.b64encode(value).decode("ascii")
    return json.dumps(doc, ensure_ascii=False)


def _feed_all(home: Path, lines: list[str]) -> None:
    bundle = Keyring(home / "keys").trust_bundle()
    verifier = ChainVerifier(bundle)
    for n, line in enumerate(lines, 1):
        verifier.feed(f"log.jsonl:{n}", line)


def test_the_untouched_chain_feeds(home: Path) -> None:
    lines = _log_lines(home)
    assert ProvenanceEntry.model_validate_json(lines[0]).signature.algorithm == ED25519
    _feed_all(home, lines)


@pytest.mark.parametrize("how", ["a bit flipped", "the hub's signature over other data", "zeros"])
def test_an_entry_whose_ed25519_signature_is_not_over_its_hash(home: Path, how: str) -> None:
    lines = _log_lines(home)
    target = 2
    original = base64.b64decode(json.loads(lines[target])["signature"]["value"])
    if how == "a bit flipped":
        value = bytes([original[0] ^ 0x01, *original[1:]])
    elif how == "zeros":
        value = bytes(len(original))
    else:  # the right key, a valid signature, but over the previous entry's hash
        signer = Keyring(home / "keys").signer()
        value = base64.b64decode(signer.sign(json.loads(lines[target - 1])["entry_hash"].encode()).value)
    lines[target] = _with_signature(lines[target], value)
    # The chain check alone: hash and links intact, so only the signature can fail.
    with pytest.raises(VerificationError) as caught:
        _feed_all(home, lines)
    assert f"log.jsonl:{target + 1}" in str(caught.value)
    assert "does not match the content" in str(caught.value)
    # And verify as a whole names it.
    (home / "provenance" / "log.jsonl").write_text("\n".join(lines) + "\n")
    assert_named(verify_copy(home), f"log.jsonl:{target + 1}", "does not match the content")
