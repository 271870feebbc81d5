"""Extracts encrypted to a department's X25519 key: the department decrypts and verifies; nobody else can.

The envelope tests use tiny chunks so chunk boundaries, empty files and truncation are all exercised;
the end-to-end tests cut a real extract from a small Jiangsu lake through the CLI.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError
from typer.testing import CliRunner

from exchange.access.envelope import (
    TAG_SIZE,
    DecryptionFailed,
    EncryptingWriter,
    decrypt_file,
    load_private_key,
    public_key_b64,
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

DEPARTMENT = "js.public_security"
CHUNK = 16


def _seal(data: bytes, recipient: X25519PrivateKey, path: Path) -> EncryptingWriter:
    with path.open("wb") as sink:
        writer = EncryptingWriter(sink, recipient.public_key(), path.name, "plain.bin", chunk_size=CHUNK)
        # Odd-sized writes, so buffering across chunk boundaries is exercised.
        for i in range(0, len(data), 7):
            writer.write(data[i:i + 7])
        writer.close()
    return writer


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 3])
def test_sealed_files_open_only_whole_and_in_order(tmp_path: Path, size: int) -> None:
    key = X25519PrivateKey.generate()
    data = bytes(range(256))[:size] if size <= 256 else (bytes(range(256)) * 2)[:size]
    sealed = tmp_path / "f.enc"
    envelope = _seal(data, key, sealed).envelope()
    chunks = max(1, -(-size // CHUNK))
    assert sealed.stat().st_size == size + chunks * TAG_SIZE
    assert envelope.plaintext_size == size
    out = tmp_path / "plain.bin"
    decrypt_file(sealed, out, key, envelope, CHUNK)
    assert out.read_bytes() == data

    blob = sealed.read_bytes()
    cases = {
        "wrong key": (blob, X25519PrivateKey.generate()),
        "flipped byte": (blob[:-1] + bytes([blob[-1] ^ 1]), key),
    }
    if chunks > 1:
        sealed_chunk = CHUNK + TAG_SIZE
        cases["last chunk dropped"] = (blob[:(chunks - 1) * sealed_chunk], key)
        cases["chunks swapped"] = (blob[sealed_chunk:2 * sealed_chunk] + blob[:sealed_chunk] + blob[2 * sealed_chunk:],
                                   key)
        cases["chunk repeated"] = (blob[:sealed_chunk] + blob, key)
    for name, (bad, with_key) in cases.items():
        out.unlink(missing_ok=True)
        sealed.write_bytes(bad)
        with pytest.raises(DecryptionFailed, match="does not authenticate"):
            decrypt_file(sealed, out, with_key, envelope, CHUNK)
        assert not out.exists(), f"{name}: a partial plaintext was left behind"
        assert not list(tmp_path.glob(".*partial")), name


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
    key_file = hub.layout.keys / "departments" / f"{DEPARTMENT}.x25519.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (hub.layout.keys / "departments").stat().st_mode & 0o077 == 0
    assert runner.invoke(app, ["departments", "keygen", DEPARTMENT]).exit_code == 1, "never overwrite a key"
    key = load_private_key(key_file)
    assert Registry(hub.layout.access).department(DEPARTMENT).extract_public_key == public_key_b64(key.public_key())

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
