"""verify's part 2 (exchange/provenance/storecheck.py): manifests against the lake, the lake as a whole, extracts.

An auditor relies on these checks to name a manifest, lake file, landing file or extract that was edited,
swapped, removed or forged, with what was expected and what was found (issue 21). The helpers that decide
what is read and how it is labelled come first; the checks of a built lake follow.
"""

from __future__ import annotations

from pathlib import Path

from exchange.access.extract import EXTRACT_MANIFEST
from exchange.config import ExchangeSettings
from exchange.provenance.storecheck import extract_dirs, label, lake_exists, manifest_files


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
