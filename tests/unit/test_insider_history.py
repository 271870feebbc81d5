"""The insider tamper matrix: history an insider rewrites with the hub's own key and disk is still named.

The tamper matrix's small lake (two Jiangsu batches, an extract, an archive) is copied once and witnessed
twice by two province offices and the local RFC 3161 authority. Every case works on its own copy, tampers
as an insider would (deleting, cutting, forking, re-signing with the hub key) and expects verify to name it
in all three modes: plain, `exchange verify --json`, and `--offline` with what an auditor kept (the
exported trust bundle, the witness receipts, the TSA's root certificate).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from adapters.witness import office_witnesses, witness_hub
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.errors import Refused
from exchange.hub import Hub
from exchange.provenance.checkpoint import append_checkpoint
from exchange.provenance.lakecheck import lake_head
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.verify import VerifyReport, verify_home, verify_offline
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keyring import Keyring
from tests.hubs import verify_copy
from tests.unit.test_tamper_matrix import DEPARTMENT, built  # noqa: F401 - the shared module fixture

OFFICES = ["anhui", "jiangsu"]
MODES = ["plain", "json", "offline"]


@pytest.fixture(scope="module")
def witnessed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:  # noqa: F811
    """A copy of the tamper matrix's home, witnessed at two heads, with an unwitnessed tail after the second."""
    root = tmp_path_factory.mktemp("insider")
    home = root / "home"
    shutil.copytree(built, home, symlinks=True)
    hub = Hub(ExchangeSettings(home=home))
    assert verify_home(hub.settings).ok  # records the signed verified.json
    shutil.copy(home / "provenance" / "verified.json", root / "first-verified.json")  # for the replay case
    head, count = lake_head(hub.settings)
    append_checkpoint(hub.log, hub.signer, lake_snapshot=head, manifests=count)
    first, _ = witness_hub(hub, OFFICES)
    assert verify_home(hub.settings).ok
    append_checkpoint(hub.log, hub.signer, lake_snapshot=head, manifests=count)
    second, _ = witness_hub(hub, OFFICES)
    append_checkpoint(hub.log, hub.signer, lake_snapshot=head, manifests=count)  # the unwitnessed tail
    kept = root / "auditor"  # what an auditor keeps apart from the hub
    shutil.copytree(home / "provenance" / "witness", kept / "witness")
    (kept / "trust.json").write_text(hub.keyring.export_trust().model_dump_json())
    shutil.copy(home / "tsa" / "ca.crt", kept / "tsa-root.pem")
    return {"home": home, "kept": kept, "first": first.head_seq, "second": second.head_seq,
            "older": root / "first-verified.json"}


@pytest.fixture
def case(witnessed: dict[str, object], tmp_path: Path) -> dict[str, object]:
    copy = tmp_path / "home"
    shutil.copytree(witnessed["home"], copy, symlinks=True)  # type: ignore[arg-type]
    return {**witnessed, "home": copy}


def _verify(mode: str, home: Path, kept: Path) -> list[tuple[str, str]]:
    """(item, problem) of every problem verify names in `mode`."""
    if mode == "plain":
        report: VerifyReport = verify_copy(home)
        return [(p.item, p.problem) for p in report.problems]
    if mode == "json":
        out = CliRunner().invoke(app, ["verify", "--json"], env={"EXCHANGE_HOME": str(home)})
        assert out.exit_code == 1, out.output
        return [(p["item"], p["problem"]) for p in json.loads(out.output)["problems"]]
    report = verify_offline(home / "provenance", kept / "trust.json", home / "lake", manifests=home / "manifests",
                            extracts=home / "extracts", witnesses=kept / "witness", tsa_root=kept / "tsa-root.pem",
                            reports=home / "reports")
    return [(p.item, p.problem) for p in report.problems]


def _assert_named(found: list[tuple[str, str]], item: str, problem: str) -> None:
    assert any(item in i and problem in p for i, p in found), f"expected {item!r} / {problem!r}; got {found}"


def _lines(home: Path) -> list[str]:
    return (home / "provenance" / "log.jsonl").read_text().splitlines()


def _write_lines(home: Path, lines: list[str]) -> None:
    (home / "provenance" / "log.jsonl").write_text("\n".join(lines) + "\n")


def _resign(lines: list[str], signer_home: Path, edit: Callable[[dict[str, object]], None], at: int) -> list[str]:
    """Edit entry `at` and re-chain and re-sign it and every later entry with the hub's own key."""
    signer = Keyring(signer_home).signer()
    out = lines[:at]
    prev_hash = ProvenanceEntry.model_validate_json(lines[at - 1]).entry_hash
    for raw in lines[at:]:
        body = ProvenanceEntry.model_validate_json(raw).body()
        if len(out) == at:
            edit(body)
        body["prev_hash"] = prev_hash
        entry_hash = sha256_hex(canonical_bytes(body))
        out.append(json.dumps({**body, "entry_hash": entry_hash,
                               "signature": signer.sign(entry_hash.encode()).model_dump()}, ensure_ascii=False))
        prev_hash = entry_hash
    return out


def test_the_witnessed_copy_verifies_and_reports_its_latest_witnessed_head(case: dict[str, object]) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    report = verify_copy(home)
    assert report.ok, [str(p) for p in report.problems]
    assert report.witnessed is not None and report.witnessed.seq == case["second"]
    assert report.witnessed.witnesses == ["anhui.data_office", "jiangsu.data_office", "tsa:local"]
    assert report.to_json()["witnessed"]["seq"] == case["second"]
    assert f"latest witnessed head seq {case['second']}" in report.summary()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("record", ["deleted", "replayed"])
def test_the_tail_cut_below_a_witnessed_head(case: dict[str, object], mode: str, record: str) -> None:
    home, kept, second = case["home"], case["kept"], case["second"]
    assert isinstance(home, Path) and isinstance(kept, Path) and isinstance(second, int)
    state = home / "provenance" / "verified.json"
    older = case["older"]
    assert isinstance(older, Path)
    _write_lines(home, _lines(home)[:second - 1])  # cut the witnessed head and everything after it
    for receipt in (home / "provenance" / "witness").glob("*.json"):
        if receipt.name.endswith(f"{second:010d}.json"):
            receipt.unlink()  # the insider deletes the receipt on the hub's disk too
    if record == "deleted":
        state.unlink()
    else:
        shutil.copy(older, state)  # a validly signed record from before the witnessed head
    found = _verify(mode, home, kept)
    _assert_named(found, "witness", f"witnessed head seq {second} is not in the log")


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_archive(case: dict[str, object], mode: str) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    (archive,) = (home / "provenance" / "archives").glob("*.tar")
    archive.unlink()
    _assert_named(_verify(mode, home, case["kept"]), "provenance archive segment 1", "missing")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_rolled_away(case: dict[str, object], mode: str) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    manifest = sorted((home / "manifests").rglob("*.json"))[-1]
    batch = json.loads(manifest.read_text())["manifest"]["batch_id"]
    with duckdb.connect(str(home / "lake" / "catalog.ducklake")) as con:  # the old catalog, restored
        last = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchone()[0]  # type: ignore[index]
        con.execute("DELETE FROM ducklake_snapshot WHERE snapshot_id = ?", [last])
        con.execute("DELETE FROM ducklake_snapshot_changes WHERE snapshot_id = ?", [last])
    manifest.unlink()
    (home / "provenance" / "verified.json").unlink()
    found = _verify(mode, home, case["kept"])  # type: ignore[arg-type]
    if mode == "offline":  # the auditor's archive still carries the manifest: its snapshot is gone
        _assert_named(found, manifest.name, "snapshot")
    else:
        _assert_named(found, f"batch {batch}", "manifest is missing")


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_extract_folder(case: dict[str, object], mode: str) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    shutil.rmtree(home / "extracts" / DEPARTMENT)
    _assert_named(_verify(mode, home, case["kept"]), "extract ", "folder or manifest is missing")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suffix", [".rejections.html", ".rejections.csv", ".summary.json"])
def test_an_edited_office_report(case: dict[str, object], mode: str, suffix: str) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    report = sorted((home / "reports" / "jiangsu").glob(f"*{suffix}"))[0]
    report.write_bytes(report.read_bytes().replace(b"jiangsu", b"JIANGSU", 1) + b" ")
    _assert_named(_verify(mode, home, case["kept"]), f"office report reports/jiangsu/{report.name}",  # type: ignore[arg-type]
                  "SHA-256 mismatch")


def test_a_deleted_office_report_is_named(case: dict[str, object]) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    report = sorted((home / "reports" / "jiangsu").glob("*.rejections.csv"))[0]
    report.unlink()
    _assert_named(_verify("plain", home, case["kept"]), f"reports/jiangsu/{report.name}", "missing")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_a_forked_log(case: dict[str, object], mode: str) -> None:
    """Keep the first witnessed head, write another continuation with the hub's key: the second witnessed
    head (a seq the fork reaches again) differs; and no office countersigns the fork."""
    home, first, second = case["home"], case["first"], case["second"]
    assert isinstance(home, Path) and isinstance(first, int) and isinstance(second, int)
    _write_lines(home, _lines(home)[:first])
    hub = Hub(ExchangeSettings(home=home))
    while (head := hub.log.head()) is not None and head.seq <= second:
        append_checkpoint(hub.log, hub.signer, lake_snapshot=None, manifests=0)
    _assert_named(_verify(mode, home, case["kept"]), "witness", "rewritten or forked")  # type: ignore[arg-type]
    for office in office_witnesses(hub.layout.sandboxes, OFFICES):
        with pytest.raises(Refused, match="already countersigned"):
            office.countersign(second, ProvenanceLog(home / "provenance").read()[second - 1].entry_hash)


@pytest.mark.parametrize("mode", MODES)
def test_the_log_rewritten_with_the_hubs_key_after_a_witnessed_head(case: dict[str, object], mode: str) -> None:
    home = case["home"]
    assert isinstance(home, Path)

    def edit(body: dict[str, object]) -> None:
        details = body["details"]
        assert isinstance(details, dict)
        details["pulled"] = 1

    _write_lines(home, _resign(_lines(home), home / "keys", edit, at=2))
    shutil.rmtree(home / "provenance" / "witness")  # the insider also deletes the receipts it cannot re-sign
    found = _verify(mode, home, case["kept"])  # type: ignore[arg-type]
    _assert_named(found, "witness", "rewritten or forked")
    assert not any("altered" in p for _, p in found) or mode != "plain"  # the chain itself is valid


def test_an_edited_verified_record_is_named(case: dict[str, object]) -> None:
    home = case["home"]
    assert isinstance(home, Path)
    state = home / "provenance" / "verified.json"
    doc = json.loads(state.read_text())
    doc["state"]["head_seq"] += 5
    state.write_text(json.dumps(doc))
    _assert_named(_verify("plain", home, case["kept"]), "verified.json", "does not match")  # type: ignore[arg-type]


@pytest.mark.parametrize(("what", "item", "problem"), [
    ("office signature", "countersignature by anhui.data_office", "does not match"),
    ("time-stamp token", "time stamp by local", "does not verify"),
    ("head hash", "countersignature by anhui.data_office", "countersigns another head"),
])
def test_a_forged_receipt(case: dict[str, object], what: str, item: str, problem: str) -> None:
    """A receipt the insider edits (it holds no office key and no TSA key) is named, and so is the edit."""
    home = case["home"]
    assert isinstance(home, Path)
    path = sorted((home / "provenance" / "witness").glob("*.json"))[-1]
    doc = json.loads(path.read_text())
    if what == "office signature":
        doc["countersignatures"][0]["signature"]["value"] = doc["countersignatures"][1]["signature"]["value"]
    elif what == "time-stamp token":
        token = bytearray(base64.b64decode(doc["stamps"][0]["token"]))
        token[-40] ^= 0x01
        doc["stamps"][0]["token"] = base64.b64encode(bytes(token)).decode()
    else:
        doc["head_hash"] = "0" * 64
    path.write_text(json.dumps(doc, indent=2))
    found = _verify("plain", home, case["kept"])  # type: ignore[arg-type]
    _assert_named(found, item, problem)
    _assert_named(found, "witness entry", "its receipt was changed")


def test_shanghai_countersigns_over_its_api_and_refuses_a_cut_head(case: dict[str, object]) -> None:
    """Shanghai's office answers over its REST API (bearer token), the others through their inboxes."""
    home = case["home"]
    assert isinstance(home, Path)
    hub = Hub(ExchangeSettings(home=home))
    receipt, _ = witness_hub(hub, ["shanghai", "jiangsu"])
    assert receipt.witnesses() == ["shanghai.data_office", "jiangsu.data_office", "tsa:local"]
    report = verify_copy(home)
    assert report.ok and report.witnessed is not None and "shanghai.data_office" in report.witnessed.witnesses
    from adapters.shanghai.sandbox import ShanghaiSandbox
    from adapters.witness import COUNTERSIGN_PATH, HttpWitness, OfficeWitness

    api = ShanghaiSandbox(home / "sandboxes" / "shanghai")
    api.start()
    try:
        assert httpx.post(api.url + COUNTERSIGN_PATH, json={"seq": 1, "entry_hash": "0" * 64}).status_code == 401
        office = HttpWitness(OfficeWitness("shanghai", home / "sandboxes" / "shanghai"), api.url, api.token)
        with pytest.raises(Refused, match="older head"):
            office.countersign(receipt.head_seq - 1, "0" * 64)
        assert office.latest() is not None and office.latest().statement.seq == receipt.head_seq  # type: ignore[union-attr]
    finally:
        api.stop()
