"""What is derived from the event vocabulary keeps up with it: the entry schema, the report, trace."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from exchange.config import Layout
from exchange.provenance.events import VOCABULARY, Section, Subject, kinds
from exchange.provenance.log import ProvenanceLog
from exchange.provenance.trace import provenance_about
from exchange.provenance.verify_result import VerifyReport
from exchange.report.auditor import collect, render
from exchange.schemas import SCHEMAS_DIR
from exchange.signing.keyring import Keyring
from tests.unit.sample_events import SAMPLES, Sample

FIXTURE = Path(__file__).parent / "fixtures" / "provenance_v1" / "log.jsonl"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A home whose log holds one entry of every kind, as the call sites write them."""
    home = tmp_path_factory.mktemp("vocabulary")
    log = ProvenanceLog(Layout(home).provenance)
    signer = Keyring(Layout(home).keys).signer()
    for s in SAMPLES:
        log.append(signer, s.event, actor=s.actor, subject=s.subject, digests=s.digests)
    return home, [json.loads(line) for _, line in log.entries()]


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS_DIR / "provenance-entry.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def test_every_kind_written_fits_the_published_schema(written: tuple[Path, list[dict[str, Any]]]) -> None:
    _, entries = written
    validator = _validator()
    for entry in entries:
        validator.validate(entry)
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():  # format 1, including a retired kind
        validator.validate(json.loads(line))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.event.kind.value)
def test_the_schema_rejects_what_the_log_refuses(written: tuple[Path, list[dict[str, Any]]], sample: Sample) -> None:
    _, entries = written
    entry = next(e for e in entries if e["action"] == sample.event.kind)
    validator = _validator()
    assert not validator.is_valid({**entry, "details": {**entry["details"], "stray": 1}})
    assert not validator.is_valid({**entry, "action": "no_such_kind"})
    for key in sample.event.digests:
        assert not validator.is_valid({**entry, "digests": {k: v for k, v in entry["digests"].items() if k != key}})
    legacy = {k: v for k, v in entry.items() if k != "version"}
    assert validator.is_valid({**legacy, "action": "no_such_kind", "details": {"free": 1}})


def _section_html(page: str, section: Section) -> str:
    match = re.search(rf'<h2 id="{section.value}">(.*?)(?=<h2 |$)', page, re.S)
    assert match, f"the report has no section {section.value}"
    return match.group(1)


def test_each_kind_is_counted_in_its_report_section(written: tuple[Path, list[dict[str, Any]]]) -> None:
    home, _ = written
    layout = Layout(home)
    page = render(collect(layout, VerifyReport(), Keyring(layout.keys).trust_bundle()))
    for kind, cls in VOCABULARY.items():
        row = f"<td>{kind.value}</td>"
        assert row in _section_html(page, cls.section), f"{kind} is not counted in section {cls.section.value}"
        others = [s for s in Section if s != cls.section]
        assert not any(row in _section_html(page, s) for s in others), f"{kind} is counted twice"


def test_every_section_a_kind_names_is_one_the_report_has() -> None:
    assert {cls.section for cls in VOCABULARY.values()} <= set(Section)
    assert all(kinds(section=s) for s in Section), "a report section with no kind to count"


def test_trace_shows_exactly_the_entries_about_a_batch_or_an_extract(
        written: tuple[Path, list[dict[str, Any]]]) -> None:
    home, entries = written
    log = ProvenanceLog(Layout(home).provenance)
    # Ask about every subject written, under each kind of subject: only kinds about that kind of subject answer.
    wanted = {s: {e["subject"] for e in entries} for s in (Subject.BATCH, Subject.EXTRACT)}
    about = provenance_about(log, wanted)
    for subject in wanted:
        shown = {line.split()[1] for lines in about[subject].values() for line in lines}
        assert shown == {k.value for k in kinds(subject=subject)}, subject
    assert kinds(subject=Subject.BATCH) and kinds(subject=Subject.EXTRACT)


def test_trace_shows_a_retired_kind_wherever_its_subject_matches(tmp_path: Path) -> None:
    (tmp_path / "provenance").mkdir()
    (tmp_path / "provenance" / "log.jsonl").write_bytes(FIXTURE.read_bytes())
    subject = json.loads(FIXTURE.read_text().splitlines()[3])["subject"]  # the retired `access` entry
    about = provenance_about(ProvenanceLog(tmp_path / "provenance"), {Subject.BATCH: {subject}})
    assert [line.split()[1] for line in about[Subject.BATCH][subject]] == ["access"]
