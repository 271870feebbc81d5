"""Extracts encrypted to a department's age X25519 key: the department decrypts and verifies; nobody else can.

The envelope tests cross age's 64 KiB chunk boundaries, and the legacy reader's tests use tiny chunks, so
empty files and truncation are exercised in both formats; the end-to-end tests cut a real extract from a
small Jiangsu lake through the CLI and open it with Debian's `age` binary too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from exchange.access import legacy_envelope
from exchange.access.envelope import (
    ALGORITHM,
    AgeWriter,
    DecryptionFailed,
    ExtractEncryption,
    FileEnvelope,
    decrypt_file,
    identity,
    key_id,
    load_private_key,
    public_key_b64,
    recipient,
)
from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest, decrypt_extract, verify_extract
from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.hub import Hub
from exchange.publish import refresh_standing_extracts
from tests.unit.access_lake import clean_e_licenses, seed_lake
from tests.unit.legacy_extract_writer import LegacyWriter

DEPARTMENT = "js.public_security"
CHUNK = 16
AGE_CHUNK = 64 * 1024
AGE = shutil.which("age")
needs_age = pytest.mark.skipif(AGE is None, reason="Debian's age is not installed (make system-packages)")
LEGACY = ExtractEncryption(algorithm=legacy_envelope.ALGORITHM, recipient_key_id="x25519:0", chunk_size=CHUNK,
                           files=[])
AGE_FORMAT = ExtractEncryption(algorithm=ALGORITHM, recipient_key_id="x25519:0", files=[])


def _legacy_seal(data: bytes, to: X25519PrivateKey, path: Path) -> LegacyWriter:
    with path.open("wb") as sink:
        writer = LegacyWriter(sink, to.public_key(), path.name, "plain.bin", chunk_size=CHUNK)
        # Odd-sized writes, so buffering across chunk boundaries is exercised.
        for i in range(0, len(data), 7):
            writer.write(data[i:i + 7])
        writer.close()
    return writer


def _age_seal(data: bytes, to: X25519PrivateKey, path: Path) -> AgeWriter:
    with path.open("wb") as sink, AgeWriter(sink, to.public_key(), path.name, "plain.bin") as writer:
        for i in range(0, len(data), 10_007):
            writer.write(data[i:i + 10_007])
    return writer


def _opens_only_whole(sealed: Path, key: X25519PrivateKey, envelope: FileEnvelope, encryption: ExtractEncryption,
                      data: bytes, altered: dict[str, bytes]) -> None:
    """`sealed` opens to `data` with `key`; with another key, a flipped last byte or any of `altered` it fails
    to authenticate and leaves no plaintext behind, partial or whole."""
    out = sealed.with_name("plain.bin")
    decrypt_file(sealed, out, key, envelope, encryption)
    assert out.read_bytes() == data
    blob = sealed.read_bytes()
    cases = {"wrong key": (blob, X25519PrivateKey.generate()),
             "flipped last byte": (blob[:-1] + bytes([blob[-1] ^ 1]), key),
             **{name: (bad, key) for name, bad in altered.items()}}
    for name, (bad, with_key) in cases.items():
        out.unlink(missing_ok=True)
        sealed.write_bytes(bad)
        with pytest.raises(DecryptionFailed, match="does not authenticate"):
            decrypt_file(sealed, out, with_key, envelope, encryption)
        assert not out.exists(), f"{name}: a partial plaintext was left behind"
        assert not list(sealed.parent.glob(".*partial")), name
    sealed.write_bytes(blob)


@pytest.mark.parametrize("size", [0, 1, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 3 * AGE_CHUNK + 5])
def test_age_files_open_only_whole_with_the_key(tmp_path: Path, size: int) -> None:
    key = X25519PrivateKey.generate()
    data = os.urandom(size)
    sealed = tmp_path / "f.enc"
    envelope = _age_seal(data, key, sealed).envelope()
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert (envelope.plaintext_size, envelope.plaintext_sha256) == (size, hashlib.sha256(data).hexdigest())
    assert "ephemeral_public_key" not in envelope.model_dump(), "age keeps its stanza in the file header"
    blob = sealed.read_bytes()
    _opens_only_whole(sealed, key, envelope, AGE_FORMAT, data, {"truncated": blob[:-17]})


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_age_key_text_forms_match_pyrage(raw: bytes) -> None:
    """Our Bech32 forms of a key are the ones age itself derives: identity -> recipient agrees with pyrage."""
    key = X25519PrivateKey.from_private_bytes(raw)
    age_identity = pyrage.x25519.Identity.from_str(identity(key))
    assert str(age_identity.to_public()) == recipient(key.public_key())
    assert str(age_identity) == identity(key)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 3])
def test_legacy_sealed_files_open_only_whole_and_in_order(tmp_path: Path, size: int) -> None:
    key = X25519PrivateKey.generate()
    data = bytes(range(256))[:size] if size <= 256 else (bytes(range(256)) * 2)[:size]
    sealed = tmp_path / "f.enc"
    envelope = _legacy_seal(data, key, sealed).envelope()
    chunks = max(1, -(-size // CHUNK))
    assert sealed.stat().st_size == size + chunks * legacy_envelope.TAG_SIZE
    assert envelope.plaintext_size == size
    blob = sealed.read_bytes()
    cases = {}
    if chunks > 1:
        sealed_chunk = CHUNK + legacy_envelope.TAG_SIZE
        cases["last chunk dropped"] = blob[:(chunks - 1) * sealed_chunk]
        cases["chunks swapped"] = blob[sealed_chunk:2 * sealed_chunk] + blob[:sealed_chunk] + blob[2 * sealed_chunk:]
        cases["chunk repeated"] = blob[:sealed_chunk] + blob
    _opens_only_whole(sealed, key, envelope, LEGACY, data, cases)


def test_a_department_key_must_be_x25519() -> None:
    good = public_key_b64(X25519PrivateKey.generate().public_key())
    assert Department(id="a.b", name="n", province="anhui", extract_public_key=good).extract_public_key == good
    for bad in ["not base64!", base64.b64encode(b"x" * 31).decode(), base64.b64encode(b"x" * 65).decode()]:
        with pytest.raises(ValidationError):
            Department(id="a.b", name="n", province="anhui", extract_public_key=bad)
    # Without a key the field is left out of the document entirely (older department files stay identical).
    assert "extract_public_key" not in Department(id="a.b", name="n", province="anhui").model_dump()


@pytest.fixture
def hub(home: Path) -> Iterator[Hub]:
    hub = Hub(ExchangeSettings(home=home))
    seed_lake(hub, clean_e_licenses(300, seed=5))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=DEPARTMENT, name="江苏省公安厅", province="jiangsu"))
    registry.add_grant(Grant(
        id="g-enc", department=DEPARTMENT, dataset="e_license", columns=["license_id", "holder_id", "status"],
        row_filter=[RowCondition(column="status", op="in", values=["valid"])], purpose="licence checks",
        legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
        expires_on=datetime.now(UTC).date() + timedelta(days=30), issued_at=datetime.now(UTC)), hub.signer)
    yield hub


def _bundle(hub: Hub, tmp_path: Path) -> Path:
    path = tmp_path / "trust.json"
    path.write_text(hub.keyring.export_trust().model_dump_json(), encoding="utf-8")
    return path


def test_cli_encrypted_extract_round_trip(hub: Hub, tmp_path: Path) -> None:
    runner = CliRunner()
    # Encrypting before the department has a key is refused, with the reason, and on record.
    refused = runner.invoke(app, ["extract", "--department", DEPARTMENT, "--dataset", "e_license",
                                  "--out", str(tmp_path / "none"), "--encrypt"])
    assert refused.exit_code == 1 and "no extract public key" in refused.output  # a refusal: exit 1
    assert hub.log.read()[-1].action == "access_denied"

    made = runner.invoke(app, ["departments", "keygen", DEPARTMENT])
    assert made.exit_code == 0, made.output
    key_file = hub.layout.keys / "departments" / f"{DEPARTMENT}.age.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (hub.layout.keys / "departments").stat().st_mode & 0o077 == 0
    assert runner.invoke(app, ["departments", "keygen", DEPARTMENT]).exit_code == 1, "never overwrite a key"
    key = load_private_key(key_file)
    assert Registry(hub.layout.access).department(DEPARTMENT).extract_public_key == recipient(key.public_key())

    sealed_dir, clear_dir = tmp_path / "sealed", tmp_path / "clear"
    cut = runner.invoke(app, ["extract", "--department", DEPARTMENT, "--dataset", "e_license",
                              "--out", str(sealed_dir), "--encrypt"])
    assert cut.exit_code == 0, cut.output
    assert sorted(p.name for p in sealed_dir.iterdir()) == sorted([EXTRACT_MANIFEST, "e_license.parquet.enc"])
    signed = SignedExtractManifest.model_validate_json((sealed_dir / EXTRACT_MANIFEST).read_text())
    assert signed.manifest.encryption is not None
    entry = hub.log.read()[-1]
    assert entry.action == "extract" and entry.details["encrypted_to"] == signed.manifest.encryption.recipient_key_id
    snapshot = str(signed.manifest.snapshot_id)
    assert runner.invoke(app, ["extract", "--department", DEPARTMENT, "--dataset", "e_license",
                               "--out", str(clear_dir), "--snapshot", snapshot]).exit_code == 0

    bundle = _bundle(hub, tmp_path)
    # Without the key: signature and ciphertext digests check, nothing is decrypted.
    plain = runner.invoke(app, ["verify-extract", str(sealed_dir), "--trust-bundle", str(bundle)])
    assert plain.exit_code == 0 and "pass --key" in plain.output, plain.output
    assert not (sealed_dir / "e_license.parquet").exists()
    opened = runner.invoke(app, ["verify-extract", str(sealed_dir), "--trust-bundle", str(bundle),
                                 "--key", str(key_file), "--out", str(tmp_path / "opened")])
    assert opened.exit_code == 0, opened.output
    decrypted = pq.read_table(tmp_path / "opened" / "e_license.parquet")
    assert decrypted.num_rows == signed.manifest.rows > 0
    assert decrypted.equals(pq.read_table(clear_dir / "e_license.parquet")), "same snapshot, same rows"
    assert set(decrypted["status"].to_pylist()) == {"valid"}

    # Another department's key cannot open it, and says why.
    other = tmp_path / "other.pem"
    runner.invoke(app, ["departments", "add", "sh.public_security", "--name", "上海市公安局", "--province", "shanghai"])
    assert runner.invoke(app, ["departments", "keygen", "sh.public_security", "--private-key", str(other)]).exit_code \
        == 0
    wrong = runner.invoke(app, ["verify-extract", str(sealed_dir), "--trust-bundle", str(bundle), "--key", str(other)])
    assert wrong.exit_code == 1 and "encrypted to" in wrong.output  # a failed check: exit 1


def test_tampered_encrypted_extracts_do_not_verify(hub: Hub, tmp_path: Path) -> None:
    from exchange.access.envelope import generate_private_key
    from exchange.access.service import extract_for_department

    key = generate_private_key()
    Registry(hub.layout.access).set_extract_key(DEPARTMENT, public_key_b64(key.public_key()))
    out = tmp_path / "x"
    extract_for_department(hub, DEPARTMENT, "e_license", out, encrypt=True)
    bundle = hub.keyring.export_trust()
    signed = verify_extract(out, bundle)
    data = out / "e_license.parquet.enc"
    blob = data.read_bytes()

    data.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    with pytest.raises(VerificationError, match="SHA-256 mismatch"):
        verify_extract(out, bundle)
    # Even past the ciphertext digest (a verifier that skipped it), decryption refuses the altered chunk.
    with pytest.raises(DecryptionFailed):
        decrypt_extract(out, signed, key, tmp_path / "o")
    data.write_bytes(blob)

    manifest_path = out / EXTRACT_MANIFEST
    doc = json.loads(manifest_path.read_text())
    doc["manifest"]["encryption"]["files"][0]["plaintext_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="signature"):
        verify_extract(out, bundle)


def test_standing_extracts_are_sealed_for_departments_with_a_key(hub: Hub, tmp_path: Path) -> None:
    key = X25519PrivateKey.generate()
    Registry(hub.layout.access).set_extract_key(DEPARTMENT, public_key_b64(key.public_key()))
    cut = refresh_standing_extracts(hub)
    assert [c.encrypted for c in cut] == [True]
    folder = Path(cut[0].out)
    signed = verify_extract(folder, hub.keyring.export_trust())
    assert [p.name for p in decrypt_extract(folder, signed, key, tmp_path / "o")] == ["e_license.parquet"]
    assert not (folder / "e_license.parquet").exists()
    assert io.BytesIO((tmp_path / "o" / "e_license.parquet").read_bytes()).read(4) == b"PAR1"


def _age_open(sealed: Path, key_file: Path) -> bytes:
    assert AGE is not None
    opened = subprocess.run([AGE, "-d", "-i", str(key_file), str(sealed)], capture_output=True, check=False,
                            timeout=60)
    assert opened.returncode == 0, opened.stderr.decode()
    return opened.stdout


@needs_age
def test_debian_age_opens_what_the_hub_encrypts(hub: Hub, tmp_path: Path) -> None:
    """Both ways a department gets a key (the hub's keygen, or its own age-keygen and set-key): the real
    `age` binary opens the extract to exactly the plaintext the signed manifest lists."""
    from exchange.access.service import extract_for_department

    runner = CliRunner()
    hub_made = hub.layout.keys / "departments" / f"{DEPARTMENT}.age.key"
    assert runner.invoke(app, ["departments", "keygen", DEPARTMENT]).exit_code == 0
    own = tmp_path / "own.key"
    keygen = shutil.which("age-keygen")
    if keygen:
        subprocess.run([keygen, "-o", str(own)], capture_output=True, check=True, timeout=60)
        public = subprocess.run([keygen, "-y", str(own)], capture_output=True, check=True, text=True,
                                timeout=60).stdout.strip()
    else:  # Older age packages ship age-keygen separately; our own writer makes the same file.
        from exchange.access.envelope import write_private_key
        made = X25519PrivateKey.generate()
        write_private_key(made, own)
        public = recipient(made.public_key())
    for key_file, register in [(hub_made, None), (own, public)]:
        if register:
            registered = runner.invoke(app, ["departments", "set-key", DEPARTMENT, register])
            assert registered.exit_code == 0, registered.output
        out = tmp_path / f"extract-{key_file.stem}"
        extract_for_department(hub, DEPARTMENT, "e_license", out, encrypt=True)
        signed = verify_extract(out, hub.keyring.export_trust())
        assert signed.manifest.encryption is not None and signed.manifest.encryption.algorithm == ALGORITHM
        assert signed.manifest.encryption.recipient_key_id == key_id(load_private_key(key_file).public_key())
        [envelope] = signed.manifest.encryption.files
        plain = _age_open(out / envelope.name, key_file)
        assert (hashlib.sha256(plain).hexdigest(), len(plain)) == (envelope.plaintext_sha256,
                                                                   envelope.plaintext_size)
        assert pq.read_table(io.BytesIO(plain)).num_rows == signed.manifest.rows > 0


def test_extracts_published_in_the_legacy_format_still_verify(hub: Hub, tmp_path: Path) -> None:
    """An extract sealed before the age format (its manifest says so) still opens with `verify-extract --key`
    and the department's PEM key, and a flipped plaintext digest is still caught."""
    from cryptography.hazmat.primitives import serialization

    from exchange.access.extract import ExtractManifest
    from exchange.access.service import extract_for_department
    from exchange.provenance.manifest import FileDigest
    from exchange.signing.canonical import canonical_bytes, file_sha256

    key = X25519PrivateKey.generate()
    pem = tmp_path / "dept.x25519.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    clear = tmp_path / "clear"
    plain = extract_for_department(hub, DEPARTMENT, "e_license", clear).signed.manifest
    out = tmp_path / "legacy"
    out.mkdir()
    sealed = out / "e_license.parquet.enc"
    with sealed.open("wb") as sink, LegacyWriter(sink, key.public_key(), sealed.name, "e_license.parquet",
                                                 chunk_size=1 << 20) as writer:
        writer.write((clear / "e_license.parquet").read_bytes())
    manifest = ExtractManifest.model_validate({
        **plain.model_dump(), "files": [FileDigest(name=sealed.name, sha256=file_sha256(sealed),
                                                   size=sealed.stat().st_size)],
        "encryption": ExtractEncryption(algorithm=legacy_envelope.ALGORITHM, recipient_key_id=key_id(key.public_key()),
                                        chunk_size=1 << 20, files=[writer.envelope()])})
    signed = SignedExtractManifest(manifest=manifest,
                                   signature=hub.signer.sign(canonical_bytes(manifest.model_dump(mode="json"))))
    (out / EXTRACT_MANIFEST).write_text(signed.model_dump_json(), encoding="utf-8")
    bundle = _bundle(hub, tmp_path)
    opened = CliRunner().invoke(app, ["verify-extract", str(out), "--trust-bundle", str(bundle), "--key", str(pem),
                                      "--out", str(tmp_path / "opened")])
    assert opened.exit_code == 0, opened.output
    assert pq.read_table(tmp_path / "opened" / "e_license.parquet").equals(pq.read_table(clear / "e_license.parquet"))
    doc = json.loads((out / EXTRACT_MANIFEST).read_text())
    doc["manifest"]["encryption"]["files"][0]["plaintext_sha256"] = "0" * 64
    with pytest.raises(VerificationError, match="plaintext SHA-256 mismatch"):
        decrypt_extract(out, SignedExtractManifest.model_validate(doc), key, tmp_path / "again")
