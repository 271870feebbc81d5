"""Lake data on S3-compatible object storage (moto's standalone server on loopback): commit, verify,
tamper detection, and storage errors failing a batch cleanly."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.base import sandbox_for
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError, TerminalError
from exchange.faults import CRASH_ENV, CRASH_EXIT
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import run_exchange
from exchange.provenance.log import ProvenanceLog
from exchange.provenance.verify import verify_home
from exchange.recovery import reconcile
from exchange.synthetic import generate
from tests.integration.scaleout_servers import s3_server
from tests.unit.crash_harness import child_process

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 4, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
KEY = {"aws_access_key_id": "exchange-test", "aws_secret_access_key": "exchange-test-secret"}


def _hub(home: Path, endpoint: str, data: str, **extra: Any) -> Hub:
    drop = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    return Hub(ExchangeSettings(
        home=home,
        **{k.removeprefix("EXCHANGE_").lower(): v for k, v in drop.env().items()},
        lake_data=data, lake_s3_endpoint=endpoint, lake_s3_region="us-east-1", lake_s3_url_style="path",
        lake_s3_access_key_id=KEY["aws_access_key_id"], lake_s3_secret_access_key=KEY["aws_secret_access_key"],
        **extra,
    ))


def _seed(home: Path, n: int, start: datetime, end: datetime, seed: int) -> None:
    table = generate("e_license", "jiangsu", n, seed=seed, start=start, end=end)
    sandbox_for("jiangsu", home / "sandboxes" / "jiangsu").seed("e_license", table)


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **KEY)


def _committed_batches(settings: ExchangeSettings) -> list[str]:
    """Batches with a snapshot, from catalog metadata only (readable while the storage is down)."""
    with connect(settings, read_only=True) as con:
        rows = con.execute(f"SELECT json_extract_string(commit_extra_info, '$.batch_id') FROM {LAKE}.snapshots() "
                           "WHERE commit_extra_info IS NOT NULL ORDER BY snapshot_id").fetchall()
    return [str(r[0]) for r in rows]


def test_a_batch_committed_to_s3_verifies_and_a_changed_byte_is_detected(home: Path) -> None:
    with s3_server() as (endpoint, _):
        s3 = _s3(endpoint)
        s3.create_bucket(Bucket="yrd-lake")
        hub = _hub(home, endpoint, "s3://yrd-lake/hub")
        _seed(home, 800, START, MID, seed=5)
        result = run_exchange("jiangsu", "e_license", START, MID, hub)
        assert result.status == "committed"

        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="yrd-lake", Prefix="hub/")["Contents"]]
        assert keys and all(k.endswith(".parquet") for k in keys)
        assert not list((home / "lake" / "data").rglob("*.parquet")), "nothing of the lake's data is local"
        with connect(hub.settings, read_only=True) as con:
            row = con.execute(f"SELECT count(*) FROM {LAKE}.e_license").fetchone()
        assert row is not None and row[0] == result.accepted
        report = verify_home(hub.settings)
        assert report.ok, report.problems
        assert report.files == len(keys)

        target = next(k for k in keys if "/e_license/" in k)
        body = bytearray(s3.get_object(Bucket="yrd-lake", Key=target)["Body"].read())
        body[len(body) // 2] ^= 0x01  # same size, one bit: only the hash can tell
        s3.put_object(Bucket="yrd-lake", Key=target, Body=bytes(body))
        report = verify_home(hub.settings)
        assert not report.ok
        assert any("SHA-256" in str(p) and target.removeprefix("hub/") in str(p) for p in report.problems), (
            report.problems
        )


def test_storage_down_during_commit_fails_the_batch_cleanly(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import exchange.lake.retry as retry

    with s3_server() as (endpoint, server):
        _s3(endpoint).create_bucket(Bucket="yrd-lake")
        hub = _hub(home, endpoint, "s3://yrd-lake/hub", lake_commit_retries=1, lake_commit_backoff_seconds=0.1)
        _seed(home, 300, START, MID, seed=5)
        first = run_exchange("jiangsu", "e_license", START, MID, hub)
        assert first.status == "committed"

        _seed(home, 300, MID, END, seed=6)
        real = retry.commit_retrying

        def storage_goes_down(*args: Any, **kwargs: Any) -> Any:
            server.stop()  # every request from here on is refused
            return real(*args, **kwargs)

        monkeypatch.setattr("exchange.lake.protocol.commit_retrying", storage_goes_down)
        with pytest.raises(ExchangeError, match="a retry is safe"):
            run_exchange("jiangsu", "e_license", MID, END, hub)

        assert _committed_batches(hub.settings) == [first.batch_id]  # nothing of the second batch
        assert len(list((home / "manifests").rglob("*.json"))) == 1
        commits = [e.subject for e in ProvenanceLog(home / "provenance").read() if e.action == "commit"]
        assert commits == [first.batch_id]


def test_a_bucket_that_does_not_exist_fails_the_batch_cleanly(home: Path) -> None:
    with s3_server() as (endpoint, _):
        hub = _hub(home, endpoint, "s3://no-such-bucket/hub")
        _seed(home, 200, START, MID, seed=5)
        with pytest.raises(TerminalError, match="no-such-bucket|404|NoSuchBucket"):
            run_exchange("jiangsu", "e_license", START, MID, hub)
        assert _committed_batches(hub.settings) == []
        assert not list((home / "manifests").rglob("*.json"))
        assert not [e for e in ProvenanceLog(home / "provenance").read() if e.action == "commit"]


def _second_window_dying_before_the_lake_commit(home: str, endpoint: str) -> None:
    os.environ[CRASH_ENV] = "commit.before_lake_commit"  # data objects written, the catalog never told
    run_exchange("jiangsu", "e_license", MID, END, _hub(Path(home), endpoint, "s3://yrd-lake/hub"))


@pytest.mark.mutation
def test_recovery_reports_the_objects_an_interrupted_commit_left_and_never_claims_it_removed_them(
    home: Path,
) -> None:
    """DuckDB cannot delete an object: recovery must say which ones stay, in its report and in the signed log,
    and verify names them until an operator deletes them."""
    with s3_server() as (endpoint, _):
        s3 = _s3(endpoint)
        s3.create_bucket(Bucket="yrd-lake")

        def keys() -> set[str]:
            return {o["Key"] for o in s3.list_objects_v2(Bucket="yrd-lake", Prefix="hub/").get("Contents", [])}

        hub = _hub(home, endpoint, "s3://yrd-lake/hub")
        _seed(home, 300, START, MID, seed=5)
        assert run_exchange("jiangsu", "e_license", START, MID, hub).status == "committed"
        committed = keys()
        _seed(home, 300, MID, END, seed=6)
        child = child_process(_second_window_dying_before_the_lake_commit, str(home), endpoint)
        child.join(300)
        assert child.exitcode == CRASH_EXIT
        stray = sorted(keys() - committed)
        assert stray, "the interrupted attempt wrote data objects"

        # A file in flight from another writer (rows of another batch, unknown to the catalog as yet): on object
        # storage recovery cannot tell it from an orphan by the catalog, so it reports only its own batch's.
        other = next(k for k in sorted(committed) if "/e_license/" in k)  # a committed file of the first batch
        inflight = "hub/main/e_license/in-flight-of-another-writer.parquet"
        s3.copy_object(Bucket="yrd-lake", Key=inflight, CopySource={"Bucket": "yrd-lake", "Key": other})
        report = reconcile(hub)  # what every stage runs first
        s3.delete_object(Bucket="yrd-lake", Key=inflight)
        assert report.removed == [] and len(report.abandoned) == 1
        assert sorted(r.path for r in report.left) == [f"s3://yrd-lake/{k}" for k in stray]
        why = f"data file of batch {report.abandoned[0]} written by an interrupted commit"
        assert {r.why for r in report.left} == {why}
        assert sum(line.startswith("LEFT IN PLACE") and f": {why}; " in line for line in report.lines()) == len(stray)
        assert keys() == committed | set(stray)  # nothing deleted
        entry = [e for e in ProvenanceLog(home / "provenance").read() if e.action == "recovered"][-1]
        assert entry.subject == report.abandoned[0]
        assert entry.details["removed"] == []
        assert entry.details["left"] == [k.removeprefix("hub/") for k in stray]

        # Named, and not taken for tampering: the hub's signed log says recovery left them.
        verified = verify_home(hub.settings)
        problems = [str(p) for p in verified.problems]
        for key in stray:
            assert any(key.removeprefix("hub/") in p and "unknown to the catalog" in p for p in problems), problems
        assert verified.verdict == "INTERRUPTED", problems
        assert any(n.startswith(f"{len(stray)} lake object(s) an interrupted commit wrote to object storage")
                   and "ducklake_delete_orphaned_files" in n for n in verified.notes), verified.notes
        # The same bytes under a name no signed entry lists are someone else's doing.
        planted = stray[0].replace(".parquet", "-copy.parquet")
        s3.copy_object(Bucket="yrd-lake", Key=planted, CopySource={"Bucket": "yrd-lake", "Key": stray[0]})
        assert verify_home(hub.settings).verdict == "BROKEN"
        s3.delete_object(Bucket="yrd-lake", Key=planted)
        # A listed name holding rows of another batch is not what recovery left either.
        s3.copy_object(Bucket="yrd-lake", Key=stray[0], CopySource={"Bucket": "yrd-lake", "Key": other})
        assert verify_home(hub.settings).verdict == "BROKEN"
        # The operator runs DuckLake's cleanup, as docs/operators.md says (no commit runs here: every orphan is
        # old enough), and it deletes exactly the objects recovery left.
        with connect(hub.settings) as con:
            con.execute(f"CALL ducklake_delete_orphaned_files('{LAKE}', older_than => now() + INTERVAL 1 SECOND)")
        assert keys() == committed
        assert run_exchange("jiangsu", "e_license", MID, END, hub).status == "committed"
        report_after = verify_home(hub.settings)
        assert report_after.ok, report_after.problems
