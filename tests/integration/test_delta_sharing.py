"""A department reads its share with the official delta-sharing client (1.4.2) over a real uvicorn server.

The client runs in its own Python environment (`make delta-sharing-client` builds .venv-delta-sharing: the
client pins pandas<3 and pyarrow<24, which the hub's venv does not), as a department's machine would; the
test drives it through tests/integration/delta_sharing_client.py and compares what it loads with
`exchange extract` at the same snapshot, row for row.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from exchange.access.registry import Registry
from exchange.access.service import extract_for_department
from exchange.deltasharing.protocol import share_name
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from tests.conftest import REPO
from tests.hubs import extract_home, sandbox_hub, verify_copy
from tests.integration.serving import serving

CLIENT_PYTHON = Path(os.environ.get("DELTA_SHARING_PYTHON", REPO / ".venv-delta-sharing" / "bin" / "python"))
CLIENT = Path(__file__).with_name("delta_sharing_client.py")
DEPARTMENT = "js.public_security"
SHARE = share_name(DEPARTMENT)
TABLE = f"{SHARE}.datasets.e_license"
START = datetime(2026, 11, 1, tzinfo=UTC)
MIDDLE = datetime(2026, 11, 3, tzinfo=UTC)
END = datetime(2026, 11, 5, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    not CLIENT_PYTHON.exists() and not os.environ.get("CI"),
    reason=f"the delta-sharing client's venv is missing ({CLIENT_PYTHON}); run `make delta-sharing-client`")


def client(profile: Path, *args: str) -> dict[str, Any]:
    """One call of the official client in its own Python; its JSON answer."""
    done = subprocess.run([str(CLIENT_PYTHON), str(CLIENT), str(profile), *args], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def snapshot_ids(hub: Hub) -> list[int]:
    with connect(hub.settings, read_only=True) as con:
        return [int(r[0]) for r in con.execute(f"SELECT snapshot_id FROM {LAKE}.snapshots() ORDER BY 1").fetchall()]


def extracted(hub: Hub, snapshot: int) -> pa.Table:
    """`exchange extract`'s rows at the snapshot (the same service the CLI command calls), cut inside the home's
    extracts folder so that verify still finds every extract the log records."""
    out = hub.layout.extracts / DEPARTMENT / "compare" / uuid.uuid4().hex
    signed = extract_for_department(hub, DEPARTMENT, "e_license", out, snapshot).signed
    return pq.read_table(out / signed.manifest.files[0].name)


def same_rows(loaded: Path, expected: pa.Table) -> None:
    """The client's frame equals the extract row for row (types as the client's pandas round trip gives them)."""
    got = pq.read_table(loaded)
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows > 0
    assert got.cast(expected.schema).to_pylist() == expected.to_pylist()


def write_profile(home: Path, url: str, out: Path) -> None:
    from exchange.cli import app

    result = CliRunner().invoke(app, ["departments", "profile", DEPARTMENT, "--out", str(out),
                                      "--endpoint", f"{url}/delta-sharing"],
                                env={"EXCHANGE_HOME": str(home)})
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, str, Path, list[int]]]:
    """Two committed Jiangsu batches (two snapshots), the sample department and grant, a server, a profile."""
    from adapters.base import sandbox_for
    from exchange.synthetic import generate

    home = tmp_path_factory.mktemp("sharing") / "home"
    hub = extract_home(home, 120, 5, START, MIDDLE, DEPARTMENT)
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    sandbox.seed("e_license", generate("e_license", "jiangsu", 80, seed=6, start=MIDDLE, end=END))
    assert run_exchange("jiangsu", "e_license", MIDDLE, END, hub).status == "committed"
    with serving(hub) as url:
        profile = home.parent / "profile.share"
        os.environ["EXCHANGE_HOME"] = str(home)
        try:
            write_profile(home, url, profile)
        finally:
            del os.environ["EXCHANGE_HOME"]
        yield hub, url, profile, snapshot_ids(hub)


def test_profile_file_is_private_and_its_token_ends_with_the_grant(shared: tuple[Hub, str, Path, list[int]]) -> None:
    hub, url, profile, _ = shared
    assert profile.stat().st_mode & 0o777 == 0o600
    document = json.loads(profile.read_text())
    assert document["shareCredentialsVersion"] == 1 and document["endpoint"] == f"{url}/delta-sharing"
    grant = Registry(hub.layout.access).active_grant(DEPARTMENT, "e_license").grant
    expires = datetime.fromisoformat(document["expirationTime"])
    assert expires <= datetime.combine(grant.expires_on + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def test_lists_the_departments_share_and_its_table(shared: tuple[Hub, str, Path, list[int]]) -> None:
    hub, _, profile, _ = shared
    assert client(profile, "list") == {"shares": [SHARE], "schemas": ["datasets"], "tables": [TABLE]}
    assert {e.details.get("operation") for e in hub.log.read() if e.action == "sharing"} >= {"list_shares",
                                                                                              "list_all_tables"}


def test_load_as_pandas_equals_the_extract_row_for_row_and_masks_stay(
        shared: tuple[Hub, str, Path, list[int]], tmp_path: Path) -> None:
    hub, _, profile, snapshots = shared
    answer = client(profile, "load", TABLE, str(tmp_path / "latest.parquet"))
    assert "error" not in answer, answer
    expected = extracted(hub, snapshots[-1])
    same_rows(tmp_path / "latest.parquet", expected)
    ids = pq.read_table(tmp_path / "latest.parquet")["holder_id"].to_pylist()
    assert all(i is None or "*" in i for i in ids)  # masked (region + last 4 only), as in the extract
    with connect(hub.settings, read_only=True) as con:
        clear = {r[0] for r in con.execute(f"SELECT holder_id FROM {LAKE}.e_license").fetchall()}
    assert not clear & set(ids)
    downloads = [e for e in hub.log.read() if e.action == "sharing_download"]
    assert downloads and downloads[-1].actor == DEPARTMENT and downloads[-1].details["snapshot_id"] == snapshots[-1]


def test_an_older_version_by_version_and_by_timestamp(shared: tuple[Hub, str, Path, list[int]], tmp_path: Path) -> None:
    hub, _, profile, snapshots = shared
    older = snapshots[-2]
    answer = client(profile, "load", TABLE, str(tmp_path / "older.parquet"), str(older))
    assert "error" not in answer, answer
    expected = extracted(hub, older)
    same_rows(tmp_path / "older.parquet", expected)
    latest = extracted(hub, snapshots[-1])
    assert expected.num_rows < latest.num_rows  # the second batch added rows the older version does not have
    with connect(hub.settings, read_only=True) as con:
        row = con.execute(f"SELECT snapshot_time FROM {LAKE}.snapshots() WHERE snapshot_id = ?", [older]).fetchone()
    assert row is not None
    at = (row[0].astimezone(UTC) + timedelta(milliseconds=1)).isoformat().replace("+00:00", "Z")
    answer = client(profile, "load", TABLE, str(tmp_path / "at.parquet"), "-", at)
    assert "error" not in answer, answer
    same_rows(tmp_path / "at.parquet", expected)
    assert client(profile, "version", TABLE) == {"version": snapshots[-1]}


def rows(table: pa.Table, schema: pa.Schema) -> Counter[tuple[Any, ...]]:
    """The table's rows in `schema`'s columns and types, as a multiset."""
    return Counter(tuple(r.values()) for r in table.select(schema.names).cast(schema).to_pylist())


def net_changes(path: Path, schema: pa.Schema) -> Counter[tuple[Any, ...]]:
    """Inserted minus deleted rows of a change data feed the client loaded."""
    feed = pq.read_table(path)
    kinds = feed["_change_type"].to_pylist()
    inserted = rows(feed.filter(pa.array([k == "insert" for k in kinds])), schema)
    deleted = rows(feed.filter(pa.array([k == "delete" for k in kinds])), schema)
    assert set(kinds) <= {"insert", "delete"}
    return inserted - deleted


def test_change_data_feed_adds_up_to_the_versions(shared: tuple[Hub, str, Path, list[int]], tmp_path: Path) -> None:
    hub, _, profile, snapshots = shared
    older, latest = (extracted(hub, s) for s in snapshots[-2:])
    answer = client(profile, "changes", TABLE, str(tmp_path / "window.parquet"), str(snapshots[-1]))
    assert "error" not in answer, answer
    assert answer["columns"][-3:] == ["_change_type", "_commit_version", "_commit_timestamp"]
    assert net_changes(tmp_path / "window.parquet", latest.schema) == rows(latest, latest.schema) - rows(
        older, latest.schema)
    assert set(pq.read_table(tmp_path / "window.parquet")["_commit_version"].to_pylist()) == {snapshots[-1]}
    # From the start, the feed (the table's creation included) adds up to the latest version, masks kept.
    answer = client(profile, "changes", TABLE, str(tmp_path / "all.parquet"), "0", str(snapshots[-1]))
    assert "error" not in answer, answer
    assert net_changes(tmp_path / "all.parquet", latest.schema) == rows(latest, latest.schema)
    assert all("*" in i for i in pq.read_table(tmp_path / "all.parquet")["holder_id"].to_pylist() if i)
    assert any(e.details.get("operation") == "changes" for e in hub.log.read() if e.action == "sharing")


def test_unknown_table_and_forged_url_use_the_protocol_error_body(shared: tuple[Hub, str, Path, list[int]]) -> None:
    hub, url, profile, _ = shared
    answer = client(profile, "load", f"{SHARE}.datasets.enterprise_registration", "/dev/null")
    assert answer["status"] == 404 and "RESOURCE_DOES_NOT_EXIST" in answer["message"]
    files = client(profile, "files", TABLE)
    forged = files["urls"][0].replace("/e_license.", "/e_licence.")
    response = httpx.get(forged, timeout=10)
    assert response.status_code == 403 and response.json()["errorCode"] == "PERMISSION_DENIED"
    bearer = json.loads(profile.read_text())["bearerToken"]
    listing = httpx.get(f"{url}/delta-sharing/shares/other/schemas", headers={"Authorization": f"Bearer {bearer}"})
    assert listing.status_code == 404 and set(listing.json()) == {"errorCode", "message"}
    assert any(e.action == "access_denied" and e.details.get("attempt") == "sharing" for e in hub.log.read())


def test_revoking_the_token_or_the_grant_ends_access_also_through_issued_urls(tmp_path: Path) -> None:
    hub = extract_home(tmp_path / "home", 60, 9, START, MIDDLE, DEPARTMENT)
    registry = Registry(hub.layout.access)
    with serving(hub) as url:
        os.environ["EXCHANGE_HOME"] = str(hub.layout.home)
        try:
            write_profile(hub.layout.home, url, tmp_path / "a.share")
            write_profile(hub.layout.home, url, tmp_path / "b.share")
        finally:
            del os.environ["EXCHANGE_HOME"]
        issued = client(tmp_path / "a.share", "files", TABLE)["urls"][0]
        assert httpx.get(issued, timeout=10).status_code == 200
        # The token behind profile a is revoked: its URL and its profile stop working at once.
        token_a = json.loads((tmp_path / "a.share").read_text())["bearerToken"].split(".")[0]
        registry.revoke_token(token_a)
        gone = httpx.get(issued, timeout=10)
        assert gone.status_code == 401 and gone.json()["errorCode"] == "UNAUTHENTICATED"
        assert client(tmp_path / "a.share", "list")["status"] == 401
        # Profile b still reads; then the grant is revoked and its already-issued URL is refused too.
        issued_b = client(tmp_path / "b.share", "files", TABLE)["urls"][0]
        assert httpx.get(issued_b, timeout=10, headers={"Range": "bytes=0-3"}).content == b"PAR1"
        registry.revoke_grant("grant-js-public-security-e-license", "jiangsu.data_office", "purpose fulfilled",
                              hub.signer)
        refused = httpx.get(issued_b, timeout=10)
        assert refused.status_code == 403 and "revoked" in refused.json()["message"]
        answer = client(tmp_path / "b.share", "load", TABLE, str(tmp_path / "x.parquet"))
        assert answer["status"] == 404 and "revoked" in answer["message"]
    denials = [e for e in hub.log.read() if e.action == "access_denied"]
    assert any(e.details.get("attempt") == "sharing_download" and "revoked" in e.details["reason"] for e in denials)


def test_an_expired_grant_ends_access_through_issued_urls(tmp_path: Path) -> None:
    from exchange.demo import sample_grant

    hub = extract_home(tmp_path / "home", 60, 9, START, MIDDLE, DEPARTMENT)
    registry = Registry(hub.layout.access)
    with serving(hub) as url:
        os.environ["EXCHANGE_HOME"] = str(hub.layout.home)
        try:
            write_profile(hub.layout.home, url, tmp_path / "p.share")
        finally:
            del os.environ["EXCHANGE_HOME"]
        issued = client(tmp_path / "p.share", "files", TABLE)["urls"][0]
        # The office re-records the grant ending yesterday (what the passing of its last day does).
        lapsed = sample_grant(datetime.now(UTC).date() - timedelta(days=366))
        registry.add_grant(lapsed, hub.signer)
        refused = httpx.get(issued, timeout=10)
        assert refused.status_code == 403 and "expired" in refused.json()["message"]
        answer = client(tmp_path / "p.share", "load", TABLE, str(tmp_path / "x.parquet"))
        assert answer["status"] == 404 and "expired" in answer["message"]


def test_the_home_still_verifies_after_sharing(shared: tuple[Hub, str, Path, list[int]], tmp_path: Path) -> None:
    hub, _, profile, _ = shared
    assert "error" not in client(profile, "load", TABLE, str(tmp_path / "t.parquet"))
    report = verify_copy(hub.layout.home)
    assert report.ok, [str(p) for p in report.problems]
    kinds = {e.action for e in hub.log.read()}
    assert {"sharing", "sharing_download", "token_issue"} <= kinds


def test_deletions_in_the_lake_reach_the_change_data_feed_masked(tmp_path: Path) -> None:
    """Zhejiang deletes five licences: the next version's changes are their five masked view rows, as deletes."""
    from adapters.zhejiang.sandbox import ZhejiangSandbox
    from exchange.access.models import Department, Grant
    from exchange.synthetic import generate

    home = tmp_path / "home"
    sandbox = ZhejiangSandbox(home / "sandboxes" / "zhejiang")
    sandbox.install()
    sandbox.seed("e_license", generate("e_license", "zhejiang", 150, seed=5, start=START, end=MIDDLE,
                                       defect_rate=0.0))
    hub = sandbox_hub(home, sandbox)
    assert run_exchange("zhejiang", "e_license", START, MIDDLE, hub).status == "committed"
    department = "zj.housing_provident_fund"
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id=department, name="浙江省住房公积金管理中心", province="zhejiang"))
    registry.add_grant(Grant(
        id="g-zj-hpf", department=department, dataset="e_license",
        columns=["license_id", "holder_id", "holder_name", "status"], purpose="核验", legal_basis="国发〔2016〕51号",
        approved_by="zhejiang.data_office", expires_on=datetime.now(UTC).date() + timedelta(days=30),
        issued_at=datetime.now(UTC)), hub.signer)
    with connect(hub.settings, read_only=True) as con:
        gone = sorted(r[0] for r in con.execute(f"SELECT license_id FROM {LAKE}.e_license").fetchall())[:5]
    sandbox.delete("e_license", gone, datetime(2026, 11, 4, 9, tzinfo=UTC))
    assert run_exchange("zhejiang", "e_license", MIDDLE, END, hub).status == "committed"
    deleted_at = snapshot_ids(hub)[-1]
    with serving(hub) as url:
        profile = tmp_path / "zj.share"
        from exchange.cli import app

        result = CliRunner().invoke(app, ["departments", "profile", department, "--out", str(profile),
                                          "--endpoint", f"{url}/delta-sharing"], env={"EXCHANGE_HOME": str(home)})
        assert result.exit_code == 0, result.output
        table = f"{share_name(department)}.datasets.e_license"
        answer = client(profile, "changes", table, str(tmp_path / "cdf.parquet"), str(deleted_at))
    assert "error" not in answer, answer
    feed = pq.read_table(tmp_path / "cdf.parquet")
    assert feed["_change_type"].to_pylist() == ["delete"] * 5
    assert sorted(feed["license_id"].to_pylist()) == gone
    assert all("*" in v for v in feed["holder_id"].to_pylist() + feed["holder_name"].to_pylist() if v)
