"""Source authenticity: each province's sandbox signs what it exports with its data office's key, each adapter
verifies it against the hub's trust bundle, refuses unsigned, tampered or wrongly signed payloads, and the
pull's provenance entry records the verified signatures."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from adapters.anhui.sandbox import AnhuiSandbox
from adapters.authenticity import office, sign
from adapters.base import Landing, PullRequest, SourceAdapter, Window, sandbox_for
from adapters.jiangsu.sandbox import JiangsuSandbox
from adapters.shanghai.sandbox import ShanghaiSandbox
from adapters.zhejiang.sandbox import ZhejiangSandbox
from exchange.config import ExchangeSettings, Layout
from exchange.errors import SourceAuthenticityError
from exchange.hub import Hub
from exchange.pipeline import pull
from exchange.signing.keyring import Keyring
from exchange.signing.rotation import revoke
from exchange.synthetic import generate

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 1, tzinfo=CST)
END = datetime(2026, 11, 3, tzinfo=CST)
N = 60
PROVINCES = ["shanghai", "jiangsu", "zhejiang", "anhui"]


@pytest.fixture
def hub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("EXCHANGE_HOME", str(home))
    return home


@pytest.fixture(params=PROVINCES)
def box(request: pytest.FixtureRequest, hub_home: Path) -> Iterator[object]:
    """A seeded sandbox laid out as the embedded default: under <home>/sandboxes, signing with <home>/keys."""
    province: str = request.param
    sandbox = sandbox_for(province, Layout(hub_home).ensure().sandboxes / province)
    sandbox.seed("e_license", generate("e_license", province, N, seed=5, start=START, end=END))
    sandbox.start()
    yield sandbox
    sandbox.stop()


def _adapter(sandbox: object) -> SourceAdapter:
    adapter: SourceAdapter = sandbox.adapter()  # type: ignore[attr-defined]
    return adapter


def _pull(sandbox: object, landing: Path) -> tuple[int, Landing]:
    land = Landing(landing)
    request = PullRequest("e_license", Window(START, END + timedelta(days=1)), None)
    rows = sum(t.num_rows for t in _adapter(sandbox).pull(request, land))
    return rows, land


def _signed_item(sandbox: object) -> Path:
    """A file the province signed (directly or through its digest), for the file-based provinces."""
    if isinstance(sandbox, JiangsuSandbox):
        return sorted(sandbox.drop.glob("*.manifest.json"))[0]
    assert isinstance(sandbox, AnhuiSandbox)
    return sorted(sandbox.exports.glob("*.xml"))[0]


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b"2026")  # a digit of a date: the file stays well-formed
    data[at + 3] = ord("7") if data[at + 3] != ord("7") else ord("8")
    path.write_bytes(bytes(data))


def test_a_signed_export_pulls_and_records_who_signed(box: object, tmp_path: Path) -> None:
    rows, landing = _pull(box, tmp_path / "l")

    assert rows == N
    province = box.province  # type: ignore[attr-defined]
    key = Keyring(box.keyring.dir).trust_bundle().current(office(province))  # type: ignore[attr-defined]
    assert key is not None
    assert landing.signatures, "every payload is verified"
    assert {s.key_id for s in landing.signatures} == {key.key_id}
    assert {s.owner for s in landing.signatures} == {office(province)}


def _tamper(sandbox: object) -> str:
    """Change one byte of what the province signed, behind its back; return what the error must name."""
    if isinstance(sandbox, ShanghaiSandbox):
        original = sandbox.sign_page
        sandbox.sign_page = lambda target, body: original(target, body[:-2] + b" }")  # type: ignore[method-assign]
        return "page 1"
    if isinstance(sandbox, ZhejiangSandbox):
        with sqlite3.connect(sandbox.path) as conn:
            conn.execute("UPDATE T_DZZZ SET CYRXM = CYRXM || '改' WHERE rowid = 1")
        conn.close()
        return "V_DZZZ_GX"
    path = _signed_item(sandbox)
    _flip_one_byte(path)
    return path.name


def test_a_tampered_payload_is_refused(box: object, tmp_path: Path) -> None:
    item = _tamper(box)

    with pytest.raises(SourceAuthenticityError) as caught:
        _pull(box, tmp_path / "l")

    message = str(caught.value)
    assert message.startswith(f"{box.province}: ")  # type: ignore[attr-defined]
    assert item in message
    assert "re-deliver" in message or "retry" in message or "Zhejiang" in message


def _unsign(sandbox: object) -> None:
    """Remove the province's signatures."""
    if isinstance(sandbox, ShanghaiSandbox):
        sandbox.sign_page = lambda target, body: {}  # type: ignore[method-assign]
    elif isinstance(sandbox, ZhejiangSandbox):
        with sqlite3.connect(sandbox.path) as conn:
            conn.execute("DELETE FROM SJQM")
        conn.close()
    else:
        folder: Path = sandbox.drop if isinstance(sandbox, JiangsuSandbox) else sandbox.exports  # type: ignore[attr-defined]
        for sig in folder.glob("*.sig"):
            sig.unlink()


def test_a_missing_signature_is_refused(box: object, tmp_path: Path) -> None:
    _unsign(box)

    with pytest.raises(SourceAuthenticityError, match="unsigned") as caught:
        _pull(box, tmp_path / "l")
    assert str(caught.value).startswith(f"{box.province}: ")  # type: ignore[attr-defined]


def test_a_signature_by_another_provinces_key_is_refused(box: object, tmp_path: Path) -> None:
    province: str = box.province  # type: ignore[attr-defined]
    other = "anhui" if province != "anhui" else "jiangsu"
    keyring: Keyring = box.keyring  # type: ignore[attr-defined]
    impostor = keyring.signer(office(other))
    # The other office's key is in the trust bundle, but it may not vouch for this province's data.
    if isinstance(box, ShanghaiSandbox):
        box._signer = impostor
    elif isinstance(box, ZhejiangSandbox):
        real = keyring.signer
        keyring.signer = lambda owner="hub": impostor if owner == office(province) else real(owner)  # type: ignore[method-assign]
        box.resign("e_license")
    else:
        path = _signed_item(box)
        if isinstance(box, AnhuiSandbox):
            path = path.with_name(path.name.removesuffix(".xml") + ".manifest.json")
        sig = path.with_name(path.name + ".sig")
        sig.write_bytes(sign(impostor, province, path.name, path.read_bytes()).to_bytes())

    with pytest.raises(SourceAuthenticityError, match=f"of {office(other)}, not by a key of {office(province)}"):
        _pull(box, tmp_path / "l")


def test_a_key_revoked_before_signing_is_refused(box: object, tmp_path: Path) -> None:
    province: str = box.province  # type: ignore[attr-defined]
    keyring: Keyring = box.keyring  # type: ignore[attr-defined]
    key = keyring.trust_bundle().current(office(province))
    assert key is not None
    revoke(keyring, key.key_id, at=datetime(2020, 1, 1, tzinfo=CST), reason="test: compromised")

    with pytest.raises(SourceAuthenticityError, match="revoked"):
        _pull(box, tmp_path / "l")


def test_the_pull_provenance_entry_records_the_verified_signatures(hub_home: Path) -> None:
    sandbox = JiangsuSandbox(Layout(hub_home).ensure().sandboxes / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", N, seed=5, start=START, end=END))
    hub = Hub(ExchangeSettings(home=hub_home))

    result = pull("jiangsu", "e_license", START, END + timedelta(days=1), hub)

    assert result.pulled == N
    key = hub.keyring.trust_bundle().current("jiangsu.data_office")
    assert key is not None
    entries = [json.loads(line) for line in (hub.layout.provenance / "log.jsonl").read_text().splitlines()]
    (entry,) = [e for e in entries if e["action"] == "pull"]
    signatures = entry["details"]["source_signatures"]
    assert [s["key_id"] for s in signatures] == [key.key_id] * len(signatures)
    assert [s["subject"] for s in signatures] == sorted(p.name for p in sandbox.drop.glob("*.manifest.json"))
    # The signed manifest's digest is the one landed: the chain of custody starts at the province.
    assert all(entry["digests"][s["subject"]] == s["sha256"] for s in signatures)


def test_a_hub_that_does_not_trust_the_office_refuses(tmp_path: Path) -> None:
    sandbox = JiangsuSandbox(tmp_path / "jiangsu", Keyring(tmp_path / "province-keys"))
    sandbox.seed("e_license", generate("e_license", "jiangsu", N, seed=5, start=START, end=END))
    from adapters.authenticity import SourceTrust
    from adapters.jiangsu.adapter import JiangsuAdapter

    Keyring(tmp_path / "hub-keys").signer("hub")  # a hub with a trust bundle, but no Jiangsu key in it
    adapter = JiangsuAdapter(sandbox.drop, trust=SourceTrust(tmp_path / "hub-keys"))
    with pytest.raises(SourceAuthenticityError, match="not in the hub's trust bundle"):
        list(adapter.pull(PullRequest("e_license", Window(START, END), None), Landing(tmp_path / "l")))
