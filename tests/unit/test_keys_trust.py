"""Trusting a key someone else holds: a province office's public key, imported with `exchange keys trust`."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from adapters.authenticity import SourceTrust
from adapters.base import Landing, PullRequest, Window
from adapters.jiangsu.adapter import JiangsuAdapter
from adapters.jiangsu.sandbox import JiangsuSandbox
from exchange.cli import app
from exchange.errors import SourceAuthenticityError
from exchange.provenance.log import ProvenanceLog
from exchange.signing.keyring import Keyring
from exchange.signing.signers import Signature
from exchange.signing.sm2 import SM2PrivateKey
from exchange.signing.trust import public_pem, verify_bundle, verify_signature
from exchange.synthetic import generate

OFFICE = "jiangsu.data_office"
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)


def _openssl_key(tmp_path: Path, algorithm: str) -> tuple[Path, Path]:
    """A key pair made by OpenSSL, as an office outside the hub would make it: (private PEM, public PEM)."""
    private, public = tmp_path / f"{algorithm}.key", tmp_path / f"{algorithm}.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", algorithm, "-out", str(private)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True)
    return private, public


def _trust(home: Path, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["keys", "trust", *args], env={"EXCHANGE_HOME": str(home)})
    return done.exit_code, done.output


def test_an_office_key_made_by_openssl_is_trusted_and_its_signatures_verify(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keyring = Keyring(home / "keys")
    old = keyring.create(OFFICE)  # the embedded default's office key, which the real one replaces
    private, public = _openssl_key(tmp_path, "ed25519")
    code, output = _trust(home, OFFICE, str(public))
    assert code == 0, output
    bundle = keyring.trust_bundle()
    verify_bundle(bundle)  # still signed by the hub
    new = bundle.current(OFFICE)
    assert new is not None and new.key_id in output and new.key_id != old.key_id
    assert bundle.key(old.key_id).status == "retired"
    assert public_pem(new).strip() == public.read_text().strip()
    office = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(office, Ed25519PrivateKey)
    signature = Signature(key_id=new.key_id, algorithm="ed25519",
                          value=base64.b64encode(office.sign(b"drop manifest")).decode())
    verify_signature(bundle, signature, b"drop manifest", datetime.now(UTC), "manifest")
    # The office holds the private half: the hub never makes one for it, and `keys init` says so.
    with pytest.raises(ValueError, match="held by jiangsu.data_office"):
        keyring.signer(OFFICE)
    entries = [e for e in ProvenanceLog(home / "provenance").read() if e.action == "key_trust"]
    assert [e.subject for e in entries] == [OFFICE]
    assert _trust(home, OFFICE, str(public))[0] == 0  # importing it again changes nothing
    assert keyring.trust_bundle().keys == bundle.keys
    refused, message = _trust(home, "anhui.data_office", str(public))
    assert refused == 2 and "already in the trust bundle" in message


def test_an_sm2_office_key_made_by_openssl_gets_the_same_key_id_as_its_private_half(tmp_path: Path) -> None:
    private, public = _openssl_key(tmp_path, "SM2")
    assert _trust(tmp_path / "home", "anhui.data_office", str(public))[0] == 0
    key = Keyring(tmp_path / "home" / "keys").trust_bundle().current("anhui.data_office")
    assert key is not None and key.algorithm == "SM2-SM3"
    assert base64.b64decode(key.public_key) == SM2PrivateKey.from_pem(private.read_bytes()).public_key().to_bytes()


@pytest.mark.parametrize("algorithm", ["RSA", "EC"])
def test_other_kinds_of_key_and_the_hub_itself_are_refused(tmp_path: Path, algorithm: str) -> None:
    if algorithm == "EC":
        private = tmp_path / "ec.key"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", str(private)], check=True)
        public = tmp_path / "ec.pub"
        subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True)
    else:
        public = _openssl_key(tmp_path, algorithm)[1]
    code, output = _trust(tmp_path / "home", OFFICE, str(public))
    assert code == 2 and "Ed25519 and SM2 keys only" in output
    ed_public = _openssl_key(tmp_path, "ed25519")[1]
    code, output = _trust(tmp_path / "home", "hub", str(ed_public))
    assert code == 2 and "keys rotate hub" in output


def test_a_hub_trusting_the_real_office_key_pulls_what_the_office_signed(tmp_path: Path) -> None:
    office_keys = Keyring(tmp_path / "jiangsu-office-keys")  # the office's own keyring, not the hub's
    sandbox = JiangsuSandbox(tmp_path / "jiangsu", office_keys)
    sandbox.seed("e_license", generate("e_license", "jiangsu", 40, seed=5, start=START, end=END))
    home = tmp_path / "home"
    Keyring(home / "keys").signer("hub")
    adapter = JiangsuAdapter(sandbox.drop, trust=SourceTrust(home / "keys"))
    request = PullRequest("e_license", Window(START, END + timedelta(days=1)), None)
    with pytest.raises(SourceAuthenticityError, match="not in the hub's trust bundle"):
        list(adapter.pull(request, Landing(tmp_path / "refused")))
    public = tmp_path / "office.pub"
    public.write_text(public_pem(office_keys.trust_bundle().key(office_keys.signer(OFFICE).key_id)))
    # The office signed these drops before the hub imported its key: trusted from its start of service.
    assert _trust(home, OFFICE, str(public), "--at", START.isoformat())[0] == 0
    assert sum(t.num_rows for t in adapter.pull(request, Landing(tmp_path / "landed"))) == 40
