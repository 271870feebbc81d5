"""verify's part 2 (exchange/provenance/storecheck.py): manifests against the lake, the lake as a whole, extracts.

An auditor relies on these checks to name a manifest, lake file, landing file or extract that was edited,
swapped, removed or forged, with what was expected and what was found (issue 21). The helpers that decide
what is read and how it is labelled come first; the checks of a built lake follow (one Jiangsu batch, read from
its folder and through a URL data path), then a lake whose batches span several data and delete files.
"""

from __future__ import annotations

import locale
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.zhejiang.sandbox import ZhejiangSandbox
from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest, extract_digest
from exchange.config import ExchangeSettings, Layout
from exchange.lake.commit import LEDGER
from exchange.lake.connect import LAKE, META, catalog_and_data, connect
from exchange.pipeline import run_exchange
from exchange.provenance.archive import archive_paths
from exchange.provenance.chaincheck import verify_log_and_archives
from exchange.provenance.checkpoint import VerifiedState
from exchange.provenance.links import origin_of
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import SignedManifest, landing_dir, read_manifest, sign_manifest
from exchange.provenance.problems import problem_json
from exchange.provenance.storecheck import (
    Sources,
    extract_dirs,
    label,
    lake_exists,
    manifest_files,
    open_stream,
    verify_store,
)
from exchange.provenance.verify_result import ChainFacts, VerifyReport
from exchange.signing.canonical import canonical_bytes, sha256_hex
from exchange.signing.keyring import Keyring
from exchange.synthetic import generate
from tests.fixture_cache import built_once
from tests.hubs import extract_home, never_wait_for_outsiders, outside_reader, replay_home, sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)
MID = datetime(2026, 11, 3, tzinfo=UTC)  # the spanning home's second batch: the deletions
DELETED = datetime(2026, 11, 3, 12, tzinfo=UTC)
DEPARTMENT = "js.public_security"


def test_a_path_is_labelled_relative_to_the_root_when_under_it(tmp_path: Path) -> None:
    assert label(tmp_path / "manifests" / "a.json", tmp_path) == "manifests/a.json"
    assert label(Path("/elsewhere/a.json"), tmp_path) == "/elsewhere/a.json"


def test_manifest_files_are_every_json_under_the_folder_in_order_read_lazily(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    (folder / "zhejiang").mkdir(parents=True)
    (folder / "zhejiang" / "b.json").write_bytes(b"B")
    (folder / "a.json").write_bytes(b"A")
    (folder / "notes.txt").write_bytes(b"-")
    listed = manifest_files(folder, tmp_path)
    assert [name for name, _ in listed] == ["manifests/a.json", "manifests/zhejiang/b.json"]
    assert [read() for _, read in listed] == [b"A", b"B"]
    assert manifest_files(tmp_path / "none", tmp_path) == []


def test_extract_dirs_are_the_folders_holding_an_extract_manifest(tmp_path: Path) -> None:
    for name in ("b", "a/deeper"):
        (tmp_path / "extracts" / name).mkdir(parents=True)
        (tmp_path / "extracts" / name / EXTRACT_MANIFEST).write_text("{}")
    (tmp_path / "extracts" / "empty").mkdir()
    assert extract_dirs(tmp_path / "extracts") == [tmp_path / "extracts" / "a/deeper", tmp_path / "extracts" / "b"]
    assert extract_dirs(tmp_path / "missing") == []
    assert extract_dirs(None) == []


def test_a_lake_exists_when_its_catalog_file_does_or_its_catalog_is_postgresql(tmp_path: Path) -> None:
    settings = ExchangeSettings(home=tmp_path / "home")
    assert not lake_exists(settings)
    assert lake_exists(ExchangeSettings(home=tmp_path / "home", lake_catalog="postgresql://hub@localhost/lake"))
    assert lake_exists(ExchangeSettings(home=tmp_path / "home", lake_catalog="postgres:dbname=lake"))
    (tmp_path / "home" / "lake").mkdir(parents=True)
    (tmp_path / "home" / "lake" / "catalog.ducklake").write_bytes(b"")
    assert lake_exists(settings)


# -- a built home: one committed Jiangsu batch (landing copies kept) and one department extract --------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("storecheck", lambda root: extract_home(root / "home", 200, seed=5, start=START, end=END),
                      tmp_path_factory) / "home"


@pytest.fixture
def home(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "home", symlinks=True)
    return tmp_path / "home"


def _store(home: Path, previous: VerifiedState | None = None, *, account_extracts: bool = True,
           landing: bool = True, floor: int | None = None,
           lake_data: str | None = None) -> tuple[VerifyReport, VerifiedState]:
    """The store checks as verify runs them: the chain first (for its facts), then manifests, lake, extracts."""
    layout, keyring = Layout(home), Keyring(home / "keys")
    report, facts = VerifyReport(), ChainFacts()
    verify_log_and_archives(ProvenanceLog(layout.provenance), lambda: archive_paths(layout.provenance / "archives"),
                            keyring.trust_bundle(), report, facts)
    chain_problems = len(report.problems)
    facts.lake_floor = floor if floor is not None else facts.lake_floor
    src = Sources(keyring.trust_bundle(), ExchangeSettings(home=home, lake_data=lake_data),
                  manifest_files(layout.manifests, home),
                  extract_dirs(layout.extracts), layout.landing if landing else None, previous,
                  account_extracts=account_extracts)
    state = verify_store(src, facts, report)
    report.problems = report.problems[chain_problems:]  # the store's own findings
    return report, state


def _manifest(home: Path) -> Path:
    [path] = sorted((home / "manifests").rglob("*.json"))
    return path


def _named(report: VerifyReport) -> list[dict[str, Any]]:
    return [problem_json(p) for p in report.problems]


def _forge(home: Path, edit: Callable[[dict[str, Any]], dict[str, Any]],
          path: Path | None = None) -> tuple[Path, SignedManifest]:
    """Edit the batch manifest (the one at `path`, else the only one) and sign it again with the hub's own key."""
    path = path or _manifest(home)
    signed = read_manifest(path)
    manifest = type(signed.manifest).model_validate(edit(signed.manifest.model_dump(mode="json")))
    forged = sign_manifest(manifest, Keyring(home / "keys").signer())
    path.write_text(forged.model_dump_json(indent=2))
    return path, forged


def _resign_log(home: Path, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite every provenance entry through `edit` and chain and sign them again with the hub's own key."""
    log = home / "provenance" / "log.jsonl"
    signer = Keyring(home / "keys").signer()
    out: list[ProvenanceEntry] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        body = edit(ProvenanceEntry.model_validate_json(line).body())
        body["prev_hash"] = out[-1].entry_hash if out else body["prev_hash"]
        digest = sha256_hex(canonical_bytes(body))
        out.append(ProvenanceEntry.model_validate(
            {**body, "entry_hash": digest, "signature": signer.sign(digest.encode()).model_dump()}))
    log.write_text("".join(e.model_dump_json() + "\n" for e in out), encoding="utf-8")


def test_an_untouched_store_verifies_and_counts_what_it_checked(home: Path) -> None:
    report, state = _store(home)
    m = read_manifest(_manifest(home)).manifest
    assert report.problems == []
    assert (report.manifests, report.files, report.extracts) == (1, len(m.files), 1)
    assert report.landing == len(m.landing) > 0
    assert list(state.manifests) == [m.batch_id] and len(state.extracts) == 1
    assert state.lake_snapshot == m.snapshot_id  # the head a later verify must not find rolled back
    assert state.verified_at.utcoffset() is not None and not state.verified_at.utcoffset()  # recorded in UTC
    assert report.skipped == {}


def test_an_incremental_run_skips_what_the_last_verify_recorded(home: Path) -> None:
    _, state = _store(home)
    report, again = _store(home, state)
    assert report.problems == [] and report.skipped == {"manifests": 1, "extracts": 1}
    assert (report.manifests, report.files, report.extracts) == (0, 0, 0)
    assert again.manifests == state.manifests and again.extracts == state.extracts


def test_a_manifest_found_broken_is_not_recorded_as_verified(home: Path) -> None:
    _forge(home, lambda m: {**m, "contract_version": m["contract_version"] + "-forged"})  # replaced: digest differs
    report, state = _store(home)
    assert report.problems and state.manifests == {}


def test_the_lake_catalog_removed_is_named_when_batches_were_committed(home: Path) -> None:
    catalog = home / "lake" / "catalog.ducklake"
    catalog.unlink()
    report, _ = _store(home)
    assert _named(report) == [{"item": f"lake catalog {catalog}", "problem": "missing, though batches were "
                               "committed", "expected": "a DuckLake catalog", "found": "no file"}]


def test_a_lake_file_listed_by_the_manifest_but_missing_is_named(home: Path) -> None:
    f = read_manifest(_manifest(home)).manifest.files[0]
    (home / "lake" / "data" / f.name).unlink()
    report, _ = _store(home)
    assert {"item": f"lake file {f.name}", "problem": f"listed in {label(_manifest(home), home)} but missing",
            "expected": f.sha256, "found": "no file"} in _named(report)


def test_a_lake_file_whose_size_differs_from_a_re_signed_manifest_is_named(home: Path) -> None:
    path, forged = _forge(home, lambda m: {**m, "files": [{**m["files"][0], "size": m["files"][0]["size"] + 1},
                                                          *m["files"][1:]]})
    f = forged.manifest.files[0]
    report, _ = _store(home)
    assert {"item": f"lake file {f.name}", "problem": f"size differs from {label(path, home)}",
            "expected": f.size, "found": f.size - 1} in _named(report)


def test_a_lake_file_whose_content_differs_is_named_with_both_digests(home: Path) -> None:
    f = read_manifest(_manifest(home)).manifest.files[0]
    data = bytearray((home / "lake" / "data" / f.name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (home / "lake" / "data" / f.name).write_bytes(bytes(data))
    report, _ = _store(home)
    [hit] = [p for p in _named(report) if p["item"] == f"lake file {f.name}"]
    assert hit["problem"] == f"content differs from {label(_manifest(home), home)} (SHA-256 mismatch)"
    assert hit["expected"] == f.sha256 and hit["found"] != f.sha256 and len(hit["found"]) == 64


def test_a_manifest_claiming_another_snapshot_is_named(home: Path) -> None:
    path, forged = _forge(home, lambda m: {**m, "snapshot_id": m["snapshot_id"] + 1})
    report, _ = _store(home)
    item = label(path, home)
    assert {"item": item, "problem": "the lake's snapshot for this batch differs from the manifest (catalog rolled "
            "back or rewritten?)", "expected": f"snapshot {forged.manifest.snapshot_id}",
            "found": f"snapshot {forged.manifest.snapshot_id - 1}"} in _named(report)


def test_a_manifest_listing_a_file_of_another_table_is_named_with_the_difference(home: Path) -> None:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        first = m["files"][0]
        return {**m, "files": [{**first, "rows": first["rows"] + 1}, *m["files"][1:]]}

    path, forged = _forge(home, edit)
    f = forged.manifest.files[0]
    snapshot = forged.manifest.snapshot_id
    report, _ = _store(home)
    assert {"item": label(path, home), "problem": f"snapshot {snapshot}'s files differ from the manifest",
            "expected": [[f.table, f.name, f.rows]], "found": [[f.table, f.name, f.rows - 1]]} in _named(report)


def test_a_landing_copy_edited_is_named_as_differing_from_what_the_province_delivered(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    f = m.landing[0]
    copy = landing_dir(home / "landing", m.province, m.dataset, m.batch_id) / f.name
    copy.write_bytes(copy.read_bytes() + b" ")
    report, _ = _store(home)
    [hit] = _named(report)
    assert hit["item"] == f"landing file {m.batch_id}/{f.name}" and hit["expected"] == f.sha256
    assert hit["problem"] == f"differs from what the province delivered ({label(_manifest(home), home)})"
    assert hit["found"] == sha256_hex(copy.read_bytes())


def test_a_landing_copy_removed_is_named(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    f = m.landing[0]
    (landing_dir(home / "landing", m.province, m.dataset, m.batch_id) / f.name).unlink()
    report, _ = _store(home)
    assert _named(report) == [{"item": f"landing file {m.batch_id}/{f.name}",
                               "problem": f"listed in {label(_manifest(home), home)} but missing",
                               "expected": f.sha256, "found": "no file"}]


def test_a_landing_copy_replaced_by_a_folder_is_named_as_differing_with_no_file_found(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    f = m.landing[0]
    copy = landing_dir(home / "landing", m.province, m.dataset, m.batch_id) / f.name
    copy.unlink()
    copy.mkdir()  # there, but nothing to hash: not a crash of verify, and not "missing"
    report, _ = _store(home)
    assert _named(report) == [{"item": f"landing file {m.batch_id}/{f.name}",
                               "problem": f"differs from what the province delivered ({label(_manifest(home), home)})",
                               "expected": f.sha256, "found": "no file"}]


def test_landing_copies_kept_elsewhere_or_not_given_are_not_checked(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    report, _ = _store(home, landing=False)
    assert report.problems == [] and report.landing == 0
    shutil.rmtree(landing_dir(home / "landing", m.province, m.dataset, m.batch_id))
    report, _ = _store(home)
    assert report.problems == [] and report.landing == 0


def test_a_commit_entry_naming_another_snapshot_is_named(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    _resign_log(home, lambda b: {**b, "details": {**b["details"], "snapshot_id": 99}} if b["action"] == "commit"
                else b)
    report, _ = _store(home)
    assert {"item": label(_manifest(home), home), "problem": "the provenance commit entry names another snapshot",
            "expected": m.snapshot_id, "found": 99} in _named(report)


def _manifest_mismatches(home: Path) -> list[tuple[str, object, object]]:
    """(problem, expected, found) of what the store checks name at the only manifest."""
    report, _ = _store(home)
    item = label(_manifest(home), home)
    return [(p.problem, p.expected, p.found) for p in report.problems if p.item == item]  # type: ignore[attr-defined]


def test_a_pull_entry_without_the_manifests_landing_digests_is_named(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    forged = {f.name: "0" * 64 for f in m.landing}
    _resign_log(home, lambda b: {**b, "digests": forged} if b["action"] == "pull" and b["subject"] == m.batch_id
                else b)
    assert _manifest_mismatches(home) == [
        ("no provenance pull entry carries the manifest's landing digests", {f.name: f.sha256 for f in m.landing},
         forged)]


def test_a_batch_without_any_pull_entry_is_named_with_no_pull_entry(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    _resign_log(home, lambda b: {**b, "subject": f"{m.batch_id}.elsewhere"} if b["action"] == "pull"
                and b["subject"] == m.batch_id else b)
    assert _manifest_mismatches(home) == [
        ("no provenance pull entry carries the manifest's landing digests", {f.name: f.sha256 for f in m.landing},
         "no pull entry")]


def test_a_committed_batch_whose_manifest_is_gone_is_named_in_the_ledger(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    _manifest(home).unlink()
    report, _ = _store(home)
    ledger, logged, *files = _named(report)
    assert ledger == {"item": f"lake batch {m.batch_id}", "problem": f"committed to {LEDGER} but has no signed "
                      "manifest", "expected": "a manifest", "found": "none"}
    # Its snapshot is not named again; it is still in the lake, so the commit entry's problem does not say otherwise.
    assert logged["item"] == f"batch {m.batch_id}" and logged["problem"].endswith("(batch rolled away?)")
    assert sorted(p["item"] for p in files) == sorted(f"lake file {f.name}" for f in m.files)


def test_an_unreadable_extract_manifest_is_named(home: Path) -> None:
    target = home / "extracts" / DEPARTMENT / EXTRACT_MANIFEST
    target.write_text("{not json", encoding="utf-8")
    report, _ = _store(home, account_extracts=False)
    assert [p["item"] for p in _named(report)] == [str(target)]
    assert report.problems[0].problem.startswith("unreadable extract manifest: ")
    assert report.extracts == 0


def test_an_extract_no_provenance_entry_carries_is_named(home: Path) -> None:
    target = home / "extracts" / DEPARTMENT / EXTRACT_MANIFEST
    _resign_log(home, lambda b: {**b, "digests": {**b["digests"], "extract_manifest": "0" * 64}}
                if "extract_manifest" in b["digests"] else b)
    report, state = _store(home, account_extracts=False)
    [hit] = _named(report)
    assert hit["item"] == str(target) and hit["found"] == "no entry"
    assert hit["expected"] == extract_digest(SignedExtractManifest.model_validate_json(target.read_text("utf-8")))
    assert hit["problem"] == ("no provenance extract entry carries this extract manifest's digest (extract replaced "
                              "or never logged?)")
    assert state.extracts == []  # not recorded as verified


def test_an_extract_manifest_is_read_as_utf8_whatever_the_auditors_locale(home: Path) -> None:
    # A grant's row filter may hold Chinese values; an auditor's machine may run in an ASCII or GBK locale. The
    # hub key's holder cuts such an extract (manifest and log entry both signed): verify reads it as UTF-8.
    target = home / "extracts" / DEPARTMENT / EXTRACT_MANIFEST
    signed = SignedExtractManifest.model_validate_json(target.read_text("utf-8"))
    m = signed.manifest
    manifest = m.model_copy(update={"row_filter": [c.model_copy(update={"values": [*c.values, "有效"]})
                                                   if c.column == "status" else c for c in m.row_filter]})
    forged = SignedExtractManifest(manifest=manifest, signature=Keyring(home / "keys").signer().sign(
        canonical_bytes(manifest.model_dump(mode="json"))))
    target.write_text(forged.model_dump_json(indent=2), encoding="utf-8")
    assert "有效".encode() in target.read_bytes()
    old, new = extract_digest(signed), extract_digest(forged)
    _resign_log(home, lambda b: {**b, "digests": {**b["digests"], "extract_manifest": new}}
                if b["digests"].get("extract_manifest") == old else b)
    was = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # what open() decodes with when no encoding is given: ASCII
    try:
        report, state = _store(home)
    finally:
        locale.setlocale(locale.LC_CTYPE, was)
    assert report.problems == [] and report.extracts == 1 and state.extracts == [new]


def test_a_lake_catalog_verify_cannot_read_is_named_by_its_path_and_the_extracts_still_checked(home: Path) -> None:
    catalog = catalog_and_data(ExchangeSettings(home=home))[0]
    Path(catalog).write_bytes(b"not a DuckDB database, nor a DuckLake catalog" * 100)
    report, _ = _store(home)
    [hit] = _named(report)
    assert hit["item"] == f"lake catalog {catalog}" and hit["found"] == "unreadable"
    assert hit["problem"].startswith("verify could not read it: ")
    assert report.extracts == 1


def _second_extract(home: Path) -> Path:
    """The department's grant cut again, into extracts/second (listed after extracts/<department>)."""
    from exchange.access.service import extract_for_department
    from exchange.hub import Hub

    extract_for_department(Hub(ExchangeSettings(home=home)), DEPARTMENT, "e_license", home / "extracts" / "second")
    return home / "extracts" / "second"


def test_every_extract_is_counted_and_an_incremental_run_skips_every_one_it_recorded(home: Path) -> None:
    _second_extract(home)
    report, state = _store(home)
    assert report.problems == [] and report.extracts == 2 and len(set(state.extracts)) == 2
    report, again = _store(home, state)
    assert report.problems == [] and report.skipped["extracts"] == 2 and report.extracts == 0
    assert again.extracts == state.extracts


def test_an_unreadable_extract_manifest_listed_first_does_not_stop_the_checks_of_those_after_it(home: Path) -> None:
    second = _second_extract(home)
    (home / "extracts" / DEPARTMENT / EXTRACT_MANIFEST).write_text("{not json", encoding="utf-8")
    report, state = _store(home, account_extracts=False)
    assert [p.item for p in report.problems] == [str(home / "extracts" / DEPARTMENT / EXTRACT_MANIFEST)]
    signed = SignedExtractManifest.model_validate_json((second / EXTRACT_MANIFEST).read_text("utf-8"))
    assert report.extracts == 1 and state.extracts == [extract_digest(signed)]


def test_a_logged_extract_missing_from_the_copy_is_named_unless_the_copy_may_omit_it(home: Path) -> None:
    shutil.rmtree(home / "extracts" / DEPARTMENT)
    report, _ = _store(home)
    assert report.problems and report.extracts == 0
    report, _ = _store(home, account_extracts=False)
    assert report.problems == []


def test_the_lake_catalog_removed_is_named_even_when_the_manifests_went_with_it(home: Path) -> None:
    catalog = home / "lake" / "catalog.ducklake"
    catalog.unlink()
    shutil.rmtree(home / "manifests")  # the log's commit entries still say a batch was committed
    report, _ = _store(home)
    assert [(p.item, p.problem) for p in report.problems][0] == (f"lake catalog {catalog}",
                                                                 "missing, though batches were committed")


def test_verify_reads_the_lake_beside_an_outside_read_only_duckdb_without_waiting_for_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An auditor verifies while a department's stock duckdb reads the catalog: readers share it, so verify must
    # open it read-only (a writer's attach would wait for the reader and then fail).
    never_wait_for_outsiders(monkeypatch, "verify")
    catalog = catalog_and_data(ExchangeSettings(home=home))[0]
    with outside_reader(catalog):
        report, _ = _store(home)
    assert report.problems == [] and report.manifests == 1


def test_a_catalog_naming_a_data_file_by_its_full_path_under_the_data_path_names_the_same_file(home: Path) -> None:
    # DuckLake may hold a file's path in full (path_is_relative false): it is matched to manifests relative to
    # the lake's data path all the same.
    settings = ExchangeSettings(home=home)
    data = catalog_and_data(settings)[1]
    m = read_manifest(_manifest(home)).manifest
    f = next(f for f in m.files if f.table == m.dataset and f.kind == "data")
    with connect(settings) as con:
        con.execute(f"UPDATE {META}.ducklake_data_file SET path = ?, path_is_relative = false WHERE path = ?",
                    [str(Path(data) / f.name), Path(f.name).name])
        [(absolute,)] = con.execute(f"SELECT count(*) FROM {META}.ducklake_data_file "
                                    "WHERE NOT path_is_relative").fetchall()
    assert absolute == 1
    report, _ = _store(home)
    assert report.problems == [] and report.files == len(m.files)


def test_a_hub_that_never_committed_needs_no_lake(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Keyring(home / "keys").signer()
    (home / "provenance").mkdir(parents=True)
    report, state = _store(home)
    assert report.problems == [] and state.manifests == {} and state.lake_snapshot is None


def test_a_lake_at_the_snapshot_a_checkpoint_recorded_is_not_rolled_back(home: Path) -> None:
    head = read_manifest(_manifest(home)).manifest.snapshot_id
    report, _ = _store(home, floor=head)
    assert report.problems == []
    report, _ = _store(home, floor=head + 1)
    assert _named(report) == [{"item": "lake catalog", "problem": "rolled back: its newest snapshot is older than "
                               "one a signed checkpoint recorded", "expected": f"snapshot >= {head + 1}",
                               "found": f"snapshot {head}"}]


def test_an_unreadable_manifest_is_named_and_the_rest_still_checked(home: Path) -> None:
    path = _manifest(home)
    m = read_manifest(path).manifest
    path.write_text("{not json", encoding="utf-8")
    report, state = _store(home)
    items = [p.item for p in report.problems]
    assert any(label(path, home) in item for item in items)
    assert f"lake batch {m.batch_id}" in items  # its batch is then committed without a manifest
    assert report.manifests == 0 and state.manifests == {} and report.extracts == 1


def test_a_ledger_file_swapped_is_named_as_its_table_unreadable_and_verify_carries_on(home: Path) -> None:
    # lakecheck.read_catalog: the ledger is read from its Parquet files; one replaced breaks the read.
    [ledger] = sorted((home / "lake" / "data" / "main" / LEDGER).rglob("*.parquet"))
    ledger.write_bytes(b"PAR1 not a parquet file PAR1")
    report, _ = _store(home)
    [hit] = [p for p in _named(report) if p["item"] == f"lake table {LEDGER}"]
    assert hit["problem"].startswith("unreadable: a data file of the table was swapped, cut or replaced (")
    why = hit["problem"].split(" (", 1)[1].removesuffix(")")  # DuckDB's own words, on one line, naming the file
    assert f"'{ledger}'" in why.split() and why == " ".join(why.split()), why
    assert (hit["expected"], hit["found"]) == ("the ledger's Parquet files as committed", "unreadable")
    assert report.manifests == 1  # the manifest checks still ran, and name the file
    assert any(p["item"] == f"lake file {label(ledger, home / 'lake' / 'data')}" for p in _named(report))
    # and so did the catalog checks: the ledger read as no batches, not as something they cannot walk
    assert not [p for p in _named(report) if p["problem"].startswith("verify could not read it")]


def test_a_manifest_edited_without_the_key_is_named_for_its_signature(home: Path) -> None:
    path = _manifest(home)
    signed = read_manifest(path)
    flipped = signed.manifest.model_copy(update={"gx_success": not signed.manifest.gx_success})
    edited = signed.model_copy(update={"manifest": flipped})
    path.write_text(edited.model_dump_json(indent=2))
    report, state = _store(home)
    hits = [p.problem for p in report.problems if p.item == label(path, home)]
    assert f"signature by {signed.signature.key_id} does not match the content" in hits
    assert state.manifests == {}


def test_a_manifest_signed_by_the_provinces_office_key_is_named_for_its_signer(home: Path) -> None:
    # The office key is in the trust bundle and its signature is valid: only the signer's role is wrong.
    path = _manifest(home)
    office = Keyring(home / "keys").signer("jiangsu.data_office")
    path.write_text(sign_manifest(read_manifest(path).manifest, office).model_dump_json(indent=2))
    report, _ = _store(home)
    hits = [p.problem for p in report.problems if p.item == label(path, home)]
    assert any(h.startswith(f"signed by a key that is not the hub's: key {office.key_id} of jiangsu.data_office")
               and h.endswith("a batch manifest may be signed only by hub") for h in hits), hits


def test_a_manifest_replaced_by_one_the_hub_re_signed_is_named_against_the_commit_entry(home: Path) -> None:
    original = read_manifest(_manifest(home)).digest()
    path, _ = _forge(home, lambda m: {**m, "contract_version": m["contract_version"] + "-forged"})
    report, _ = _store(home)
    assert {"item": label(path, home), "problem": "no provenance commit entry carries this manifest's digest "
            "(manifest replaced?)", "expected": read_manifest(path).digest(), "found": original} in _named(report)


def test_a_manifest_whose_commit_entry_is_gone_is_named(home: Path) -> None:
    m = read_manifest(_manifest(home)).manifest
    _resign_log(home, lambda b: {**b, "subject": "another-batch"} if b["action"] == "commit" else b)
    report, _ = _store(home)
    assert {"item": label(_manifest(home), home), "problem": "no provenance commit entry carries this manifest's "
            "digest (manifest replaced?)", "expected": read_manifest(_manifest(home)).digest(),
            "found": "no commit entry"} in _named(report)
    assert m.batch_id not in _store(home)[1].manifests


def _counts(home: Path, **delta: int) -> tuple[Path, dict[str, Any]]:
    """Re-sign the manifest with its counts shifted by `delta`; return its path and the forged counts."""
    def shift(m: dict[str, Any]) -> dict[str, Any]:
        counts = {"deleted": 0, **m["counts"]}  # deleted is left out of the JSON while 0
        return {**m, "counts": {k: v + delta.get(k, 0) for k, v in counts.items()}}

    path, forged = _forge(home, shift)
    return path, forged.manifest.counts.model_dump()


def test_counts_not_conserved_are_named_with_the_sum_found(home: Path) -> None:
    path, c = _counts(home, pulled=1)
    report, _ = _store(home)
    assert {"item": label(path, home), "problem": "counts not conserved: pulled != accepted + quarantined",
            "expected": c["pulled"], "found": f"{c['accepted']} + {c['quarantined']} = "
            f"{c['accepted'] + c['quarantined']}"} in _named(report)


def test_deletions_the_lake_does_not_hold_are_named_with_both_counts(home: Path) -> None:
    path, c = _counts(home, deleted=2)
    report, _ = _store(home)
    assert {"item": label(path, home), "problem": "the lake's delete files differ from the manifest's deletions",
            "expected": f"{c['deleted']} deleted", "found": f"{c['deleted'] - 2} deleted"} in _named(report)


@pytest.mark.parametrize("delta", [{"pulled": 1, "accepted": 1}, {"accepted": 1, "quarantined": -1}])
def test_lake_rows_that_differ_from_the_counts_are_named_with_both(home: Path, delta: dict[str, int]) -> None:
    m = read_manifest(_manifest(home)).manifest
    path, c = _counts(home, **delta)
    report, _ = _store(home)
    a, q = m.counts.accepted, m.counts.quarantined
    assert {"item": label(path, home), "problem": "lake rows differ from the manifest's counts",
            "expected": f"{c['accepted']} accepted / {c['quarantined']} quarantined",
            "found": f"{a} accepted / {q} quarantined"} in _named(report)


@pytest.mark.parametrize("remote", [False, True])
def test_the_manifest_stream_hashes_local_lake_files_and_landing_copies_ahead(home: Path, remote: bool) -> None:
    # What verify hashes beside the chain check: a local lake's files and the landing copies; an object-storage
    # lake's files are hashed through the lake connection instead, never read as local paths.
    layout = Layout(home)
    settings = ExchangeSettings(home=home, lake_data="s3://exchange-test/lake/" if remote else None)
    src = Sources(Keyring(layout.keys).trust_bundle(), settings, manifest_files(layout.manifests, home), [],
                  layout.landing)
    m = read_manifest(_manifest(home)).manifest
    stream = open_stream(src)
    try:
        stream.prime()
        wanted = set(stream.hashes._started)
    finally:
        stream.close()
    landing = {landing_dir(layout.landing, m.province, m.dataset, m.batch_id) / d.name for d in m.landing}
    lake = {Path(str(layout.lake_data) + "/" + f.name) for f in m.files}
    assert wanted == (landing if remote else landing | lake)


# -- an object-storage lake: its files are hashed through the lake connection ------------------------------------


def test_an_object_storage_lakes_files_are_hashed_through_the_lake_connection(home: Path) -> None:
    # A data path that is a URL is read with DuckDB's read_blob over the lake connection (lake_files.digest), as an
    # s3:// bucket is (tests/integration/test_scaleout_s3.py, against a real server). A file:// URL of the same
    # folder takes that path without a server: verify opens no local path, DuckDB reads the URL as it reads a bucket.
    m = read_manifest(_manifest(home)).manifest
    url = f"file://{home}/lake/data/"

    report, _ = _store(home, lake_data=url)
    assert _named(report) == [] and report.manifests == 1  # the whole-lake listing too knows every file by its URL
    assert report.files == len(m.files)  # each hashed, and found as the manifest says

    f = m.files[0]
    changed = bytearray((home / "lake" / "data" / f.name).read_bytes())
    changed[len(changed) // 2] ^= 0x01
    (home / "lake" / "data" / f.name).write_bytes(bytes(changed))
    report, _ = _store(home, lake_data=url)
    assert {"item": f"lake file {f.name}", "problem": f"content differs from {label(_manifest(home), home)} "
            "(SHA-256 mismatch)", "expected": f.sha256, "found": sha256_hex(bytes(changed))} in _named(report)


# -- a batch whose table spans two data files, and one whose deletions span two delete files ----------------------

def _spanning_home(home: Path) -> None:
    """Two Zhejiang batches: the first's e-licences in two data files, the second deleting one record of each file.

    DuckLake starts a new data file past its target size, at a row-group boundary (512 MB and 122,880 rows by
    default: a large province's batch); the lake's options shrink both so 2,300 records take two files.
    """
    sandbox = ZhejiangSandbox(home / "sandboxes" / "zhejiang")
    sandbox.install()
    sandbox.seed("e_license", generate("e_license", "zhejiang", 2300, seed=11, start=START, end=MID))
    hub = sandbox_hub(home, sandbox)
    with connect(hub.settings) as con:
        con.execute(f"CALL {LAKE}.set_option('target_file_size', '1KB')")
        con.execute(f"CALL {LAKE}.set_option('parquet_row_group_size', '2048')")
    assert run_exchange("zhejiang", "e_license", START, MID, hub).status == "committed"
    with connect(hub.settings, read_only=True) as con:
        in_order = [k for (k,) in con.execute(f"SELECT license_id FROM {LAKE}.e_license ORDER BY rowid").fetchall()]
    sandbox.delete("e_license", [in_order[0], in_order[-1]], DELETED)  # the first file's first, the last's last
    assert run_exchange("zhejiang", "e_license", MID, END, hub).status == "committed"


@pytest.fixture(scope="module")
def spanning_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("storecheck-spanning", lambda root: _spanning_home(root / "home"), tmp_path_factory) / "home"


@pytest.fixture
def spanning(spanning_built: Path, tmp_path: Path) -> Path:
    shutil.copytree(spanning_built, tmp_path / "home", symlinks=True)
    return tmp_path / "home"


def _in_commit_order(home: Path) -> list[Path]:
    return sorted((home / "manifests").rglob("*.json"), key=lambda p: read_manifest(p).manifest.created_at)


def test_a_table_spread_over_two_files_and_deletions_over_two_delete_files_verify(spanning: Path) -> None:
    first, second = (read_manifest(p).manifest for p in _in_commit_order(spanning))
    data = [f.rows for f in first.files if f.table == first.dataset]
    deletes = [f.rows for f in second.files if f.kind == "delete"]
    assert len(data) == 2 and sum(data) == first.counts.accepted  # what the checks below sum
    assert deletes == [1, 1] and second.counts.deleted == 2
    report, _ = _store(spanning)
    assert report.problems == [] and report.manifests == 2
    assert report.files == len(first.files) + len(second.files)


def test_lake_rows_named_for_a_re_signed_manifest_are_those_of_every_file(spanning: Path) -> None:
    path = _in_commit_order(spanning)[0]
    path, forged = _forge(spanning, lambda m: {**m, "counts": {**m["counts"], "pulled": m["counts"]["pulled"] + 1,
                                                               "accepted": m["counts"]["accepted"] + 1}}, path)
    c = forged.manifest.counts
    report, _ = _store(spanning)
    assert {"item": label(path, spanning), "problem": "lake rows differ from the manifest's counts",
            "expected": f"{c.accepted} accepted / {c.quarantined} quarantined",
            "found": f"{c.accepted - 1} accepted / {c.quarantined} quarantined"} in _named(report)


def test_deletions_named_for_a_re_signed_manifest_are_those_of_every_delete_file(spanning: Path) -> None:
    path = _in_commit_order(spanning)[1]
    path, _ = _forge(spanning, lambda m: {**m, "counts": {**m["counts"], "deleted": 3}}, path)
    report, _ = _store(spanning)
    assert {"item": label(path, spanning), "problem": "the lake's delete files differ from the manifest's deletions",
            "expected": "3 deleted", "found": "2 deleted"} in _named(report)


def test_an_unreadable_manifest_listed_first_does_not_stop_the_checks_of_those_after_it(spanning: Path) -> None:
    first, second = sorted((spanning / "manifests").rglob("*.json"))  # the order verify reads them in
    batch = read_manifest(second).manifest.batch_id
    first.write_text("{not json", encoding="utf-8")
    report, state = _store(spanning)
    assert label(first, spanning) in report.problems[0].item
    assert report.manifests == 1 and list(state.manifests) == [batch]


@pytest.fixture(scope="module")
def replayed_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once("links", replay_home, tmp_path_factory) / "home"


@pytest.fixture
def replayed(replayed_built: Path, tmp_path: Path) -> Path:
    shutil.copytree(replayed_built, tmp_path / "home", symlinks=True)
    return tmp_path / "home"


def _replay_manifest(home: Path) -> Path:
    [path] = [p for p in (home / "manifests").rglob("*.json") if origin_of(p.stem) != p.stem]
    return path


def test_a_replay_is_recorded_as_verified_only_while_its_link_to_the_origin_holds(replayed: Path) -> None:
    report, state = _store(replayed)
    batches = {read_manifest(p).manifest.batch_id for p in (replayed / "manifests").rglob("*.json")}
    assert report.problems == [] and set(state.manifests) == batches  # the next incremental verify skips both
    replay_batch = read_manifest(_replay_manifest(replayed)).manifest.batch_id

    def other_origin_digest(entry: dict[str, Any]) -> dict[str, Any]:
        if entry["action"] != "replay":
            return entry
        return {**entry, "digests": {**entry["digests"], "origin_manifest": "0" * 64}}

    _resign_log(replayed, other_origin_digest)  # the hub key's holder: the chain verifies, only the link breaks
    report, state = _store(replayed)
    [broken] = report.problems
    assert broken.item == label(_replay_manifest(replayed), replayed)
    assert broken.problem.endswith("carries another digest than the origin's signed manifest")
    assert set(state.manifests) == batches - {replay_batch}


def test_a_replay_failing_its_own_checks_and_its_link_is_named_for_both_and_verify_carries_on(
    replayed: Path,
) -> None:
    # Re-signed with more records than the replay entry logged: its commit entry and the lake disagree, and so
    # does the link; the batch is dropped from what was verified once, and the lake's own checks still run.
    path, _ = _forge(replayed, lambda m: {**m, "counts": {**m["counts"], "pulled": m["counts"]["pulled"] + 1,
                                                          "accepted": m["counts"]["accepted"] + 1}},
                     _replay_manifest(replayed))
    report, state = _store(replayed)
    problems = [p.problem for p in report.problems if p.item == label(path, replayed)]
    assert "lake rows differ from the manifest's counts" in problems
    assert any(p.endswith("counts differ from the manifest (replayed / accepted / quarantined)") for p in problems)
    assert not any("could not read" in p.problem for p in report.problems)
    assert read_manifest(path).manifest.batch_id not in state.manifests
