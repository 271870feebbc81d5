"""The national suite: SM3 and SM2 against the standards' worked examples, the SM2-SM3 signer behind the
keyring's interface, rotation across algorithms, and a home whose keys moved to SM2 still verifying."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.provenance.verify import verify_home
from exchange.signing import sm2 as sm2_module
from exchange.signing.keyring import Keyring
from exchange.signing.rotation import revoke, rotate
from exchange.signing.signers import ALGORITHMS, SM2_SM3, SM2Signer, algorithm_name
from exchange.signing.signers import generate as generate_key
from exchange.signing.sm2 import (
    SM2P256,
    Curve,
    SM2PrivateKey,
    SM2PublicKey,
    decode_signature,
    encode_signature,
)
from exchange.signing.sm3 import DIGEST_SIZE, sm3
from exchange.signing.trust import public_pem, verify_bundle, verify_signature
from exchange.synthetic import generate
from tests.capability import openssl_with_sm2, sm2_args, unavailable
from tests.fixture_cache import built_once
from tests.hubs import sandbox_hub

DATA = b"canonical bytes of some manifest"

# -- SM3: GB/T 32905-2016 Appendix A ----------------------------------------------------------------------------

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD_16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm3_matches_the_standards_examples() -> None:
    assert sm3(b"abc").hex() == SM3_ABC
    assert sm3(b"abcd" * 16).hex() == SM3_ABCD_16


def test_sm3_agrees_with_the_system_openssl_across_padding_boundaries() -> None:
    """A second implementation (the system OpenSSL behind hashlib, not the one `cryptography` bundles)."""
    import hashlib

    try:
        hashlib.new("sm3")
    except ValueError:
        unavailable("the system OpenSSL has no SM3")
    data = bytes(range(256)) * 4
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000):
        assert sm3(data[:n]) == hashlib.new("sm3", data[:n]).digest(), n
        assert len(sm3(data[:n])) == DIGEST_SIZE


# -- SM2: GB/T 32918.2-2016 / GM/T 0003.2-2012 Appendix A, on the 256-bit test curve of Part 5 ------------------

FP256 = Curve(
    name="GB/T 32918 Fp-256 example curve",
    p=0x8542D69E_4C044F18_E8B92435_BF6FF7DE_45728391_5C45517D_722EDB8B_08F1DFC3,
    a=0x787968B4_FA32C3FD_2417842E_73BBFEFF_2F3C848B_6831D7E0_EC65228B_3937E498,
    b=0x63E4C6D3_B23B0C84_9CF84241_484BFE48_F61D59A5_B16BA06E_6E12D1DA_27C5249A,
    n=0x8542D69E_4C044F18_E8B92435_BF6FF7DD_29772063_0485628D_5AE74EE7_C32E79B7,
    gx=0x421DEBD6_1B62EAB6_746434EB_C3CC315E_32220B3B_ADD50BDC_4C4E6C14_7FEDD43D,
    gy=0x0680512B_CBB42C07_D47349D2_153B70C4_E5D7FDFC_BFA36EA1_A85841B9_E46E09A2,
)
ALICE = b"ALICE123@YAHOO.COM"
MESSAGE = b"message digest"


def _key_of_example(k: int, r: int, s: int, n: int) -> int:
    """The private key of a published example, from its nonce and signature: s(1 + d) = k - rd (mod n).

    No private key literal is committed, not even a public test vector's; the test derives it at run time
    and then checks it against the example's public key and by reproducing the signature.
    """
    return (k - s) * pow(s + r, -1, n) % n


A_X = 0x0AE4C779_8AA0F119_471BEE11_825BE462_02BB79E2_A5844495_E97C04FF_4DF2548A
A_Y = 0x7C0240F8_8F1CD4E1_6352A73C_17B7F16F_07353E53_A176D684_A9FE0C6B_B798E857
A_Z = "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
A_K = 0x6CB28D99_385C175C_94F94E93_4817663F_C176D925_DD72B727_260DBAAE_1FB2F96F
A_R = 0x40F1EC59_F793D9F4_9E09DCEF_49130D41_94F79FB1_EED2CAA5_5BACDB49_C4E755D1
A_S = 0x6FC6DAC3_2C5D5CF1_0C77DFB2_0F7C2EB6_67A45787_2FB09EC5_6327A67E_C7DEEBE7
A_D = _key_of_example(A_K, A_R, A_S, FP256.n)

# A known-answer case on the recommended curve sm2p256v1 with GM/T 0009's default user ID, as used by other
# SM2 implementations' test suites (e.g. gmalg's).
R_PUB = ("04" "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
         "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
R_K = 0x59276E27_D506861A_16680F3A_D9C02DCC_EF3CC1FA_3CDBE4CE_6D54B80D_EAC1BC21
R_R = 0xF5A03B06_48D2C463_0EEAC513_E1BB81A1_5944DA38_27D5B741_43AC7EAC_EEE720B3
R_S = 0xB1B6AA29_DF212FD8_763182BC_0D421CA1_BB9038FD_1F7F42D4_840B69C4_85BBC1AA
R_D = _key_of_example(R_K, R_R, R_S, SM2P256.n)


def test_sm2_signature_example_of_the_standard() -> None:
    key = SM2PrivateKey(A_D, FP256)
    public = key.public_key()
    assert (public.x, public.y) == (A_X, A_Y)
    assert public.z(ALICE).hex().upper() == A_Z
    assert key.sign(MESSAGE, ALICE, nonce=lambda n: A_K) == (A_R, A_S)
    assert SM2PublicKey(A_X, A_Y, FP256).verify(MESSAGE, A_R, A_S, ALICE)


def test_sm2_example_on_the_recommended_curve() -> None:
    key = SM2PrivateKey(R_D)
    assert key.public_key().to_bytes() == bytes.fromhex(R_PUB)
    assert key.sign(MESSAGE, nonce=lambda n: R_K) == (R_R, R_S)  # default user ID 1234567812345678
    public = SM2PublicKey.from_bytes(bytes.fromhex(R_PUB))
    assert public.verify(MESSAGE, R_R, R_S)
    assert public.verify_der(MESSAGE, encode_signature(R_R, R_S))


@pytest.mark.parametrize("change", ["message", "user_id", "r", "s", "key", "r=0", "s=n", "swapped"])
def test_sm2_tampering_fails(change: str) -> None:
    public = SM2PublicKey(A_X, A_Y, FP256)
    message, user_id, r, s = MESSAGE, ALICE, A_R, A_S
    if change == "message":
        message = b"message digesT"
    elif change == "user_id":
        user_id = b"ALICE123@YAHOO.CN"
    elif change == "r":
        r ^= 1
    elif change == "s":
        s = (s + 1) % FP256.n
    elif change == "key":
        public = SM2PrivateKey(A_D + 1, FP256).public_key()
    elif change == "r=0":
        r = 0
    elif change == "s=n":
        s = FP256.n
    else:
        r, s = s, r
    assert not public.verify(message, r, s, user_id)


def test_nonces_and_keys_outside_their_ranges_are_refused() -> None:
    key = SM2PrivateKey(A_D, FP256)
    with pytest.raises(ValueError, match="nonce k must be in"):
        key.sign(MESSAGE, ALICE, nonce=lambda n: 0)
    with pytest.raises(ValueError, match="nonce k must be in"):
        key.sign(MESSAGE, ALICE, nonce=lambda n: n)
    with pytest.raises(ValueError, match="private key"):
        SM2PrivateKey(FP256.n - 1, FP256)  # 1 + d would not be invertible


def test_r_plus_k_equal_n_and_s_zero_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force each rejected case through a stubbed point multiplication and check the retry/raise."""
    key = SM2PrivateKey(R_D)
    e = int.from_bytes(sm3(key.public_key().z(b"1234567812345678") + MESSAGE))
    n, k = SM2P256.n, 12345
    real = sm2_module._multiply
    bad_x: list[int] = []

    def fake(curve: Curve, scalar: int, x: int, y: int) -> tuple[int, int] | None:
        if scalar == k and bad_x:
            return bad_x[0], 0
        return real(curve, scalar, x, y)

    monkeypatch.setattr(sm2_module, "_multiply", fake)
    for x1 in ((n - k - e) % n, -e % n, (k * pow(R_D, -1, n) - e) % n):  # r + k = n, r = 0, s = 0
        bad_x[:] = [x1]
        with pytest.raises(ValueError, match="the standard rejects it"):
            key.sign(MESSAGE, nonce=lambda _n: k)
    # With the CSPRNG nonce a rejected k is simply redrawn.
    draws = iter([k, 777])
    monkeypatch.setattr(sm2_module, "_random_nonce", lambda _n: next(draws))
    r, s = key.sign(MESSAGE)
    assert key.public_key().verify(MESSAGE, r, s)


def test_nonces_come_from_secrets_not_random(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    monkeypatch.setattr(random, "randrange", lambda *a, **k: pytest.fail("random used"))
    monkeypatch.setattr(random, "randint", lambda *a, **k: pytest.fail("random used"))
    calls: list[int] = []
    real = secrets.randbelow

    def counted(n: int) -> int:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(secrets, "randbelow", counted)
    key = SM2PrivateKey.generate()
    first, second = key.sign(DATA), key.sign(DATA)
    assert first != second  # a fresh k each time
    assert calls == [SM2P256.n - 2, SM2P256.n - 1, SM2P256.n - 1]


def test_der_signatures_are_strict() -> None:
    der = encode_signature(R_R, R_S)
    assert decode_signature(der) == (R_R, R_S)
    tlv = sm2_module._tlv
    r_bytes, s_part = R_R.to_bytes(33), tlv(0x02, R_S.to_bytes(33))
    for bad in (
        der + b"\x00",  # trailing bytes
        der[:-1],  # truncated
        tlv(0x30, tlv(0x02, b"\x00" + r_bytes) + s_part),  # non-minimal INTEGER
        tlv(0x30, tlv(0x02, b"\x80") + s_part),  # negative INTEGER
        tlv(0x30, tlv(0x02, r_bytes) + s_part + s_part),  # three INTEGERs
        tlv(0x31, tlv(0x02, r_bytes) + s_part),  # a SET, not a SEQUENCE
    ):
        with pytest.raises(ValueError):
            decode_signature(bad)
    assert not SM2PublicKey.from_bytes(bytes.fromhex(R_PUB)).verify_der(MESSAGE, der[:-1])


def test_public_keys_must_be_on_the_curve() -> None:
    raw = bytearray(bytes.fromhex(R_PUB))
    raw[-1] ^= 1
    with pytest.raises(ValueError, match="not a point of the curve"):
        SM2PublicKey.from_bytes(bytes(raw))


def test_pkcs8_round_trip_and_openssl_interoperability(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    assert SM2PrivateKey.from_pem(key.to_pem()) == key
    assert "d=" not in repr(key)  # the private scalar stays out of logs and tracebacks
    # Decided up front by openssl alone: from here on, openssl rejecting our key or signature is a failure
    # (a badly encoded signature also makes openssl's stderr mention SM2).
    openssl = openssl_with_sm2()
    (tmp_path / "key.pem").write_text(key.to_pem())
    (tmp_path / "pub.pem").write_text(key.public_key().to_pem())
    (tmp_path / "msg").write_bytes(DATA)
    (tmp_path / "sig").write_bytes(key.sign_der(DATA))
    common = sm2_args(tmp_path / "msg")
    verified = subprocess.run([openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
                               "-sigfile", str(tmp_path / "sig"), *common], capture_output=True, text=True)
    assert "Signature Verified Successfully" in verified.stdout, verified.stderr
    derived = subprocess.run([openssl, "pkey", "-in", str(tmp_path / "key.pem"), "-pubout"],
                             capture_output=True, text=True, check=True)
    assert derived.stdout == key.public_key().to_pem()
    # And the other way: OpenSSL's own key and signature, read and checked here.
    subprocess.run([openssl, "genpkey", "-algorithm", "SM2", "-out", str(tmp_path / "theirs.pem")], check=True)
    subprocess.run([openssl, "pkeyutl", "-sign", "-inkey", str(tmp_path / "theirs.pem"),
                    "-out", str(tmp_path / "theirs.sig"), *common], check=True)
    theirs = SM2PrivateKey.from_pem((tmp_path / "theirs.pem").read_text())
    assert theirs.public_key().verify_der(DATA, (tmp_path / "theirs.sig").read_bytes())


# -- the SM2-SM3 signer behind the keyring ---------------------------------------------------------------------


def test_algorithm_names() -> None:
    assert algorithm_name("sm2") == algorithm_name("SM2-SM3") == SM2_SM3
    assert algorithm_name("ED25519") == "ed25519"
    with pytest.raises(ValueError, match="unknown signature algorithm"):
        algorithm_name("rsa")


def test_an_sm2_key_is_0600_pkcs8_and_its_signatures_carry_the_user_id(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys", algorithm="sm2")
    signer = keyring.signer("zhejiang.data_office")
    assert isinstance(signer, SM2Signer) and signer.key_id.startswith("sm2-sm3:")
    path = tmp_path / "keys" / "zhejiang.data_office.sm2.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert SM2PrivateKey.from_pem(path.read_bytes()).public_key().to_bytes() == signer.public_bytes()  # PKCS#8
    bundle = keyring.trust_bundle()
    record = bundle.key(signer.key_id)
    assert record.algorithm == "SM2-SM3" and len(base64.b64decode(record.public_key)) == 65
    verify_bundle(bundle)  # the hub's key is SM2 too here: the bundle's own signature is SM2
    assert bundle.signature is not None and bundle.signature.algorithm == "SM2-SM3"
    signature = signer.sign(DATA)
    assert signature.user_id == "1234567812345678"
    assert json.loads(signature.model_dump_json())["user_id"] == "1234567812345678"
    now = datetime.now(UTC)
    verify_signature(bundle, signature, DATA, now, "sm2 signed")
    for bad in (signature.model_copy(update={"user_id": "someone else"}),
                signature.model_copy(update={"user_id": None}),
                signature.model_copy(update={"algorithm": "ed25519"}),
                signature.model_copy(update={"value": base64.b64encode(b"\x30\x00").decode()})):
        with pytest.raises(VerificationError, match="sm2 tampered"):
            verify_signature(bundle, bad, DATA, now, "sm2 tampered")
    with pytest.raises(VerificationError, match="does not match"):
        verify_signature(bundle, signature, DATA + b"!", now, "other content")
    # PEM of the trusted key, for an auditor's openssl.
    assert SM2PublicKey.from_bytes(base64.b64decode(record.public_key)).to_pem() == public_pem(record)


def test_ed25519_signatures_keep_their_canonical_form(tmp_path: Path) -> None:
    signer = Keyring(tmp_path / "keys").signer()
    signature = signer.sign(DATA)
    assert "user_id" not in json.loads(signature.model_dump_json())  # byte-identical to before SM2 existed
    bundle = Keyring(tmp_path / "keys").trust_bundle()
    with pytest.raises(VerificationError, match="does not match"):
        verify_signature(bundle, signature.model_copy(update={"user_id": "x"}), DATA, datetime.now(UTC), "ed")


def test_rotation_across_algorithms_both_ways(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    first = keyring.signer()
    t0 = datetime.now(UTC)
    first_signature = first.sign(DATA)
    to_sm2 = rotate(keyring, "hub", algorithm="sm2")
    sm2_signer = keyring.signer()
    assert sm2_signer.algorithm == SM2_SM3 and sm2_signer.key_id == to_sm2.key_id
    assert not (tmp_path / "keys" / "hub.ed25519.pem").exists()
    assert to_sm2.endorsement is not None and to_sm2.endorsement.key_id == first.key_id  # Ed25519 endorses SM2
    t1 = datetime.now(UTC)
    sm2_signature = sm2_signer.sign(DATA)
    back = rotate(keyring, "hub", algorithm="ed25519")
    assert back.endorsement is not None and back.endorsement.algorithm == SM2_SM3  # SM2 endorses Ed25519
    assert not (tmp_path / "keys" / "hub.sm2.pem").exists()
    bundle = keyring.export_trust()
    verify_bundle(bundle, anchors={first.key_id})  # the pinned Ed25519 key hands over through the SM2 one
    verify_signature(bundle, first_signature, DATA, t0, "old ed25519")
    verify_signature(bundle, sm2_signature, DATA, t1, "old sm2")
    with pytest.raises(VerificationError, match="outside the validity"):
        verify_signature(bundle, sm2_signature, DATA, datetime.now(UTC) + timedelta(seconds=1), "sm2 after")
    # Same-algorithm rotation keeps SM2 unless told otherwise.
    rotate(keyring, "jiangsu.data_office", algorithm="sm2")
    assert rotate(keyring, "jiangsu.data_office").algorithm == SM2_SM3


def test_a_rotation_interrupted_between_files_picks_the_trusted_key(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    keyring.signer("anhui.data_office")
    new = rotate(keyring, "anhui.data_office", algorithm="sm2")
    # Simulate a crash after the bundle was saved but before the old file was removed.
    stale = Keyring(tmp_path / "other").signer("anhui.data_office")
    (tmp_path / "keys" / "anhui.data_office.ed25519.pem").write_bytes(stale.private_pem())
    assert keyring.signer("anhui.data_office").key_id == new.key_id


def test_revoking_an_sm2_key_removes_it(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    stolen = rotate(keyring, "anhui.data_office", algorithm="sm2")
    revoked = revoke(keyring, stolen.key_id, reason="key compromised")
    assert revoked.status == "revoked"
    assert not (tmp_path / "keys" / "anhui.data_office.sm2.pem").exists()
    assert keyring.signer("anhui.data_office").key_id != stolen.key_id


# -- a home whose hub and province keys moved to SM2 still verifies end to end ---------------------------------

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)


def _hub(home: Path) -> Hub:
    return sandbox_hub(home, sandbox_for("jiangsu", home / "sandboxes" / "jiangsu"))


@pytest.fixture(scope="module")
def sm2_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("sm2", _build_sm2_home, tmp_path_factory) / "home"


def _build_sm2_home(root: Path) -> None:
    """Batch 1 under Ed25519 keys; the hub's and Jiangsu's keys rotated to SM2 by the CLI; batch 2 under SM2."""
    home = root / "home"
    hub = _hub(home)
    sandbox = sandbox_for("jiangsu", hub.layout.sandboxes / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 120, seed=7, start=START, end=MID))
    assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXCHANGE_HOME", str(home))
        for owner in ("hub", "jiangsu.data_office"):
            out = CliRunner().invoke(app, ["keys", "rotate", owner, "--algorithm", "sm2"])
            assert out.exit_code == 0, out.output
            assert "new SM2-SM3 key sm2-sm3:" in out.output
    # The same Hub signs on with the new key (it does not cache its signer across a rotation).
    sandbox.seed("e_license", generate("e_license", "jiangsu", 120, seed=8, start=MID, end=END))
    assert run_exchange("jiangsu", "e_license", MID, END, hub).status == "committed"


@pytest.fixture
def home(sm2_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(sm2_home, copy, symlinks=True)
    monkeypatch.setenv("EXCHANGE_HOME", str(copy))
    monkeypatch.setenv("COLUMNS", "200")
    return copy


def test_a_home_rotated_to_sm2_verifies_end_to_end(home: Path, tmp_path: Path) -> None:
    entries = [json.loads(line) for line in (home / "provenance" / "log.jsonl").read_text().splitlines()]
    algorithms = [e["signature"]["algorithm"] for e in entries]
    assert algorithms[0] == "ed25519" and algorithms[-1] == "SM2-SM3"
    assert all(e["signature"]["user_id"] == "1234567812345678" for e in entries if e["action"] == "commit"
               and e["signature"]["algorithm"] == "SM2-SM3")
    manifests = sorted((home / "manifests").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    signed_with = [json.loads(p.read_text())["signature"]["algorithm"] for p in manifests]
    assert signed_with == ["ed25519", "SM2-SM3"]
    bundle = Keyring(home / "keys").trust_bundle()
    assert {k.algorithm for k in bundle.keys if k.owner == "jiangsu.data_office" and k.status == "active"} == {SM2_SM3}
    # Jiangsu's source signatures over its drop manifests, as landed: Ed25519 for batch 1, SM2 for batch 2.
    landed = {json.loads(p.read_text())["signature"]["algorithm"] for p in (home / "landing").rglob("*.sig")}
    assert landed == {"ed25519", SM2_SM3}
    out = CliRunner().invoke(app, ["verify", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["verdict"] == "intact"
    # Offline, with only the exported bundle, pinned to the hub's original Ed25519 key.
    first_hub = next(k for k in bundle.keys if k.owner == "hub" and k.algorithm == "ed25519")
    trust = tmp_path / "trust.json"
    assert CliRunner().invoke(app, ["keys", "export-trust", "--out", str(trust)]).exit_code == 0
    out = CliRunner().invoke(app, ["verify", "--offline", "--json", "--provenance", str(home / "provenance"),
                                   "--trust-bundle", str(trust), "--lake", str(home / "lake"),
                                   "--manifests", str(home / "manifests"), "--anchor", first_hub.key_id])
    assert out.exit_code == 0, out.output
    # The auditor's openssl path: the key as PEM from the exported bundle.
    sm2_hub = bundle.current("hub")
    assert sm2_hub is not None
    out = CliRunner().invoke(app, ["keys", "pem", sm2_hub.key_id, "--trust-bundle", str(trust)])
    assert out.exit_code == 0 and out.output.startswith("-----BEGIN PUBLIC KEY-----")


def test_an_sm2_signed_manifest_with_another_user_id_is_named(home: Path) -> None:
    manifest = max((home / "manifests").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    doc = json.loads(manifest.read_text())
    assert doc["signature"]["algorithm"] == "SM2-SM3"
    doc["signature"]["user_id"] = "ALICE123@YAHOO.COM"
    manifest.write_text(json.dumps(doc))
    report = verify_home(ExchangeSettings(home=home), record=False)
    assert not report.ok
    assert any(manifest.name in p.item and "does not match" in p.problem for p in report.problems), report.problems


def test_an_sm2_signed_entry_with_a_forged_signature_is_named(home: Path) -> None:
    log = home / "provenance" / "log.jsonl"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["signature"]["algorithm"] == "SM2-SM3"
    r, s = decode_signature(base64.b64decode(entry["signature"]["value"]))
    entry["signature"]["value"] = base64.b64encode(encode_signature(r, (s + 1) % SM2P256.n)).decode()
    lines[-1] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    report = verify_home(ExchangeSettings(home=home), record=False)
    assert not report.ok
    assert any("does not match" in p.problem for p in report.problems), report.problems


def test_rotating_back_to_ed25519_keeps_everything_valid(home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["keys", "rotate", "hub", "--algorithm", "ed25519"])
    assert out.exit_code == 0, out.output
    assert runner.invoke(app, ["provenance", "checkpoint"]).exit_code == 0
    out = runner.invoke(app, ["verify"])
    assert out.exit_code == 0, out.output
    listed = runner.invoke(app, ["keys", "list"]).output
    assert "SM2-SM3" in listed and "retired" in listed
    assert runner.invoke(app, ["keys", "rotate", "hub", "--algorithm", "rsa"]).exit_code == 2


def test_a_hub_set_to_sm2_creates_sm2_keys_and_verifies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    hub = Hub(ExchangeSettings.model_validate({"home": home, "key_algorithm": "sm2", **env}))
    assert hub.signer.algorithm == "SM2-SM3"
    sandbox.seed("e_license", generate("e_license", "jiangsu", 60, seed=9, start=START, end=MID))
    assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"
    assert verify_home(hub.settings).ok


def test_the_key_algorithm_setting_reaches_the_offices_keys_too(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """EXCHANGE_KEY_ALGORITHM=sm2 (as `EXCHANGE_KEY_ALGORITHM=sm2 exchange demo` sets it): the office key a
    sandbox makes on first use is SM2 like the hub's, and the batch it signs verifies end to end."""
    monkeypatch.setenv("EXCHANGE_KEY_ALGORITHM", "sm2")
    home = tmp_path / "home"
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    hub = Hub(ExchangeSettings.model_validate({"home": home, **env}))
    sandbox.seed("e_license", generate("e_license", "jiangsu", 60, seed=9, start=START, end=MID))
    assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"
    keys = hub.keyring.trust_bundle().keys
    assert {k.owner for k in keys} >= {"hub", "jiangsu.data_office"}
    assert {k.algorithm for k in keys} == {SM2_SM3}, [(k.owner, k.algorithm) for k in keys]
    assert verify_home(hub.settings).ok


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_page_signature_sent_in_http_headers_names_the_keys_algorithm(algorithm: str) -> None:
    """Shanghai's API sends only the key id in its header: the statement read back names the algorithm as the
    trust bundle does, so an SM2 office's pages verify (they were refused as 'sm2-sm3' vs 'SM2-SM3')."""
    from adapters.authenticity import from_headers, sign, signature_headers

    signer = generate_key(algorithm, "shanghai.data_office")
    signed = sign(signer, "shanghai", "page-1", b"rows")
    read = from_headers(signature_headers(signed), "shanghai", "page-1", signed.sha256, "page 1")
    assert read is not None and read.signature == signed.signature
    assert read.signature.algorithm == algorithm
