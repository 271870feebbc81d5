"""The README's main job end to end: four province DAGs through Airflow, an extract, verify - then tampering.

The demo runs once per test run (in a subprocess, as `make demo` does; tests/demo_home.py, shared with the
Airflow UI scenario) into a temporary EXCHANGE_HOME; this module reads its own copy of that home, and each tamper
test works on a further copy and expects `exchange verify` to fail and name the item.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exchange.datasets import DATASETS, PROVINCES
from tests.demo_home import RECORDS, DemoHome, anchor_of, copy_home, demo_env

EXCHANGE = str(Path(sys.executable).with_name("exchange"))


def _env(home: Path) -> dict[str, str]:
    env = demo_env(home)
    anchor = anchor_of(home)  # where the demo pins its root key, outside the home
    if anchor.exists():
        env["EXCHANGE_TRUST_ANCHOR"] = str(anchor)
    return env


def _run(args: list[str], home: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXCHANGE, *args], env=_env(home), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_home(shared_demo: DemoHome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = shared_demo.stdout
    assert "verify: intact" in out
    assert "opened with the department's key" in out
    # Sharing (issue 19): one request of each kind, and the state each ended in.
    shared = out.split("Sharing under the Regulations", 1)[1].split("Witnessing", 1)[0]
    for state, kind in (("approved", "approved without review"), ("approved", "after one returned notice"),
                        ("refused", "refused with a written reason"), ("overdue", "left unanswered")):
        assert any(line.split()[:1] == [state] and kind in line for line in shared.splitlines()), shared
    # This module's own copy (verify writes its incremental state into the home it checks): the tests below
    # then see a copied home as intact as the one the demo built, at a path the demo never knew.
    return copy_home(shared_demo.home, tmp_path_factory.mktemp("demo"))


@pytest.fixture
def copy_of(demo_home: Path, tmp_path: Path) -> Path:
    return copy_home(demo_home, tmp_path)


def _manifests(home: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(p.read_text()) for p in sorted((home / "manifests").rglob("*.json"))]


def test_all_four_provinces_committed_with_conserved_counts(demo_home: Path) -> None:
    manifests = _manifests(demo_home)
    seen = {(m["manifest"]["province"], m["manifest"]["dataset"]) for m in manifests}
    assert seen == {(p, d) for p in PROVINCES for d in DATASETS}, "every province, every dataset"
    for m in manifests:
        c = m["manifest"]["counts"]
        assert c["pulled"] == RECORDS
        assert c["pulled"] == c["accepted"] + c["quarantined"]
        assert 0 < c["quarantined"] < 150  # about 3 % injected defects
        assert all(f["sha256"] for f in m["manifest"]["files"])
        assert m["manifest"]["landing"], "the raw landing copy is recorded"


def test_verify_passes_on_the_untouched_home(demo_home: Path) -> None:
    out = _run(["verify"], demo_home)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "intact" in out.stdout


def test_extract_is_masked_filtered_and_verifiable(demo_home: Path, tmp_path: Path) -> None:
    # Published by the exchange_publish DAG, which runs on the lake tables' Asset events.
    extract_dir = next((demo_home / "extracts" / "js.public_security" / "standing").glob("e_license-s*"))
    assert not (extract_dir / "e_license.parquet").exists(), "delivered encrypted to the department's key"
    bundle = tmp_path / "trust.json"
    assert _run(["keys", "export-trust", "--out", str(bundle)], demo_home).returncode == 0
    assert _run(["verify-extract", str(extract_dir), "--trust-bundle", str(bundle)], demo_home).returncode == 0
    key = demo_home / "keys" / "departments" / "js.public_security.age.key"
    opened = tmp_path / "opened"
    out = _run(["verify-extract", str(extract_dir), "--trust-bundle", str(bundle), "--key", str(key),
                "--out", str(opened)], demo_home)
    assert out.returncode == 0, out.stdout + out.stderr
    table = pq.read_table(opened / "e_license.parquet")
    assert table.num_rows > 0
    rows = table.to_pylist()
    assert all(r["region_code"].startswith("32") and r["status"] == "valid" for r in rows)
    assert all(r["holder_id"][6:14] == "********" for r in rows)
    assert all(set(r["holder_name"][1:]) <= {"*"} for r in rows if r["holder_name"])
    assert "issuing_authority" not in table.column_names


def test_rerunning_a_committed_window_adds_nothing(copy_of: Path) -> None:
    m = _manifests(copy_of)[0]["manifest"]
    before = len(list((copy_of / "lake" / "data").rglob("*.parquet")))
    out = _run(["run", "--province", m["province"], "--dataset", m["dataset"],
                "--start", m["window_start"], "--end", m["window_end"]], copy_of)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "already_committed" in out.stdout
    assert len(list((copy_of / "lake" / "data").rglob("*.parquet"))) == before
    assert _run(["verify"], copy_of).returncode == 0


def test_one_byte_changed_in_a_lake_file_is_named(copy_of: Path) -> None:
    m = _manifests(copy_of)[0]["manifest"]
    target = copy_of / "lake" / "data" / m["files"][0]["name"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    out = _run(["verify"], copy_of)
    assert out.returncode == 1
    assert m["files"][0]["name"] in out.stdout.replace("\n", "")


def test_an_edited_provenance_entry_is_named(copy_of: Path) -> None:
    log = copy_of / "provenance" / "log.jsonl"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["details"]["pulled"] = 1
    lines[2] = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    log.write_text("\n".join(lines) + "\n")
    out = _run(["verify"], copy_of)
    assert out.returncode == 1
    assert "log.jsonl:3" in out.stdout


def test_an_edited_manifest_is_named(copy_of: Path) -> None:
    path = sorted((copy_of / "manifests").rglob("*.json"))[0]
    doc = json.loads(path.read_text())
    doc["manifest"]["counts"]["quarantined"] -= 1
    doc["manifest"]["counts"]["accepted"] += 1
    path.write_text(json.dumps(doc, indent=2))
    out = _run(["verify"], copy_of)
    assert out.returncode == 1
    assert path.name in out.stdout.replace("\n", "")


AUDIT = """
import json, os
from pathlib import Path
from exchange.config import Layout
from exchange.demo import prepare_airflow, run_dags
prepare_airflow(Layout(Path(os.environ["EXCHANGE_HOME"])))
print("RESULT " + json.dumps(run_dags(["exchange_audit"])))
"""


def _audit(home: Path) -> str:
    out = subprocess.run([sys.executable, "-c", AUDIT], env=_env(home), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return str(json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[7:])["exchange_audit"])


def test_the_nightly_audit_dag_reports_and_fails_loudly_on_tampering(copy_of: Path) -> None:
    assert _audit(copy_of) == "success"
    assert list((copy_of / "reports").glob("audit-*.html"))
    # Incremental verify does not re-hash lake files it already checked, but it re-checks every manifest.
    path = sorted((copy_of / "manifests").rglob("*.json"))[0]
    doc = json.loads(path.read_text())
    doc["manifest"]["counts"]["accepted"] += 1
    path.write_text(json.dumps(doc, indent=2))
    assert _audit(copy_of) == "failed"
