"""Scenario 4: full verify of a lake vs ``sha256sum`` over the same files, and incremental verify
after one new batch.

The lake is either `batches` one-week windows committed through run_exchange (sandbox pulls, landing
copies), or, with ``--lake-gb``, synthetic batches up to that many GiB of Parquet: canonical records
generated once, re-sent every week and staged as the pull stage leaves them, then checked and committed
by the real validate and commit stages (see build_synthetic_lake). Then a signed checkpoint (what the
nightly audit leaves behind), a full verify, and ``sha256sum`` over exactly the files verify hashes (lake
Parquet, landing copies, manifests, provenance log), so the throughput ratio is ``sha256sum seconds /
verify seconds`` over the same bytes. Last, one new week of `records` through run_exchange and an
incremental verify, timed in-process and as the whole ``exchange verify --incremental`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from benchmarks.harness import Stopwatch, run_task
from benchmarks.report import Target, ratio
from benchmarks.shanghai_server import sandbox_env
from benchmarks.sources import SEED, sandbox_root, window

if TYPE_CHECKING:
    import pyarrow as pa

    from exchange.hub import Hub

HASHED_FOLDERS = ("lake/data", "landing", "manifests", "provenance")
REUSE_NOTE = ("the same generated records are re-sent every week with update times moved into that week "
              "(a re-issue of every licence, newer than the lake's copy); no landing copies")


def build_lake(
    province: str, dataset: str, home: Path, env: dict[str, str], weeks: list[int]
) -> tuple[float, int, dict[str, Any]]:
    """Commit the given one-week windows through run_exchange into the EXCHANGE_HOME `home`."""
    os.environ.update(env)
    from exchange.config import ExchangeSettings
    from exchange.hub import Hub
    from exchange.pipeline import run_exchange

    hub = Hub(ExchangeSettings(home=home))
    rows = 0
    with Stopwatch() as watch:
        for week in weeks:
            start, end = window(week)
            rows += run_exchange(province, dataset, start, end, hub).pulled
    return watch.seconds, rows, {}


def build_synthetic_lake(
    province: str, dataset: str, home: Path, lake_gb: float, batch_records: int, next_records: int
) -> tuple[float, int, dict[str, Any]]:
    """Commit synthetic batches until the lake holds `lake_gb` GiB of Parquet, then seed the province sandbox
    with `next_records` records for the week after (the one new batch of the incremental verify).

    Records are generated once and re-sent every week (see REUSE_NOTE): only the pull is skipped. Each batch
    is staged as the pull stage leaves it (pulled.parquet, pull.json, a signed pull entry) and goes through
    the real validate and commit stages, so it has its contract check, snapshot, signed manifest and
    provenance entries like any other.
    """
    from exchange.config import ExchangeSettings
    from exchange.hub import Hub
    from exchange.pipeline import commit, validate
    from exchange.synthetic import DEFECT_COLUMN, generate

    hub = Hub(ExchangeSettings(home=home))
    start, end = window(0)
    records = generate(dataset, province, batch_records, seed=SEED, start=start, end=end).drop_columns([DEFECT_COLUMN])
    weeks = rows = 0
    since: datetime | None = None
    with Stopwatch() as watch:
        while lake_parquet_bytes(home) < lake_gb * 2**30:
            batch_id, since = stage_batch(hub, province, dataset, records, weeks, since)
            validate(batch_id, hub)
            commit(batch_id, hub)
            weeks, rows = weeks + 1, rows + records.num_rows
    seed_week(home / "sandboxes" / province, province, dataset, next_records, weeks)
    return watch.seconds, rows, {"batches": weeks, "generated_records": records.num_rows, "reuse": REUSE_NOTE}


def stage_batch(
    hub: Hub, province: str, dataset: str, records: pa.Table, week: int, since: datetime | None
) -> tuple[str, datetime]:
    """Stage `records`, moved into `week`, as the pull stage would: its batch id and watermark."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from adapters.base import Window
    from exchange.datasets import dataset as canonical_dataset
    from exchange.hub import batch_id_for
    from exchange.provenance import events
    from exchange.stages import PULL_FILE, PullRecord, iso_utc, write_record

    start, end = window(week)
    batch_id = batch_id_for(province, dataset, Window(start, end))
    moved = pc.add(records.column("updated_at"), pa.scalar(timedelta(weeks=week)))
    table = records.set_column(records.schema.get_field_index("updated_at"), "updated_at", moved)
    staging = hub.staging(batch_id)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pq.write_table(table.cast(canonical_dataset(dataset).schema), staging / "pulled.parquet")
    latest: datetime = pc.max(moved).as_py()
    info = PullRecord(
        batch_id=batch_id, province=province, dataset=dataset, window_start=start, window_end=end, since=since,
        watermark=latest, pulled=table.num_rows, landing=[], drift=[], source_signatures=[],
    )
    write_record(staging / PULL_FILE, info)
    # Recorded as the hub's pull (the only role that may record one); the benchmark's result says the records
    # were staged, not pulled (REUSE_NOTE).
    hub.log.append(hub.signer, events.Pull(pulled=table.num_rows, deleted=0, since=iso_utc(info.since),
                                           window_end=info.window_end.isoformat(), source_signatures=[], drift=[]),
                   actor=events.HUB, subject=batch_id)
    return batch_id, latest


def seed_week(root: Path, province: str, dataset: str, records: int, week: int) -> None:
    """Fresh records for one week in the province's sandbox (its adapter pulls them like any other week)."""
    from adapters.base import sandbox_for
    from exchange.synthetic import generate

    start, end = window(week)
    sandbox = sandbox_for(province, root)
    sandbox.seed(dataset, generate(dataset, province, records, seed=SEED + week, start=start, end=end))
    if hasattr(sandbox, "stop"):
        sandbox.stop()


def lake_parquet_bytes(home: Path) -> int:
    """Bytes of Parquet in the lake's data path."""
    return sum(p.stat().st_size for p in (home / "lake" / "data").rglob("*.parquet"))


def run_verify(home: Path, incremental: bool) -> tuple[float, int, dict[str, Any]]:
    """verify_home on `home` (recording its checkpoint, as `exchange verify` does)."""
    from exchange.config import ExchangeSettings
    from exchange.provenance.verify import verify_home

    settings = ExchangeSettings(home=home, trust_anchor=pinned_root(home))
    with Stopwatch() as watch:
        report = verify_home(settings, incremental=incremental)
    details = {"ok": report.ok, "mode": report.mode, "counts": report.counts(), "skipped": report.skipped,
               "problems": [str(p) for p in report.problems[:5]]}
    return watch.seconds, 0, details


def checkpoint(home: Path) -> int:
    """Append a signed checkpoint of the chain head, as `exchange provenance checkpoint` (or the nightly
    audit DAG after its verify) does: an incremental verify resumes from the last checkpoint it verified."""
    from exchange.config import ExchangeSettings, Layout
    from exchange.provenance.checkpoint import append_checkpoint
    from exchange.provenance.lakecheck import lake_head
    from exchange.provenance.log import ProvenanceLog
    from exchange.signing.keyring import Keyring

    settings = ExchangeSettings(home=home)
    layout = Layout(home)
    head, manifests = lake_head(settings)
    return append_checkpoint(ProvenanceLog(layout.provenance), Keyring(layout.keys).signer(),
                             lake_snapshot=head, manifests=manifests).seq


def command_seconds(home: Path, *args: str) -> float:
    """Wall time of the auditor's command `exchange verify ARGS` (interpreter start and imports included)."""
    exe = Path(sys.executable).with_name("exchange")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "verify", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "EXCHANGE_HOME": str(home), "EXCHANGE_TRUST_ANCHOR": pinned_root(home)})
    return time.perf_counter() - t0


def pinned_root(home: Path) -> str:
    """The hub root key id(s) of the benchmark's hub: it set the hub up, so it pins the anchor, as an operator does."""
    from exchange.signing.anchor import root_ids
    from exchange.signing.keyring import Keyring

    return ",".join(root_ids(Keyring(home / "keys").trust_bundle()))


def hashed_files(home: Path) -> list[Path]:
    """The files a full verify reads and hashes."""
    return sorted(p for folder in HASHED_FOLDERS for p in (home / folder).rglob("*") if p.is_file())


def sha256sum_seconds(files: list[Path]) -> float:
    """Wall time of coreutils ``sha256sum`` over `files` (one process, as an auditor would run it)."""
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def loadavg() -> str:
    """The machine's load averages (1, 5, 15 min): the machine is shared, so every figure carries them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "-"


@dataclass
class VerifyResult:
    """Figures and targets of one verify run."""

    province: str
    dataset: str
    records_per_batch: int
    batches: int
    lake_mb: float
    hashed_mb: float
    full_seconds: float
    full_rss_mb: float
    sha256sum_seconds: float
    incremental_seconds: float
    ok: bool
    new_batch_records: int = 0
    build_seconds: float = 0.0
    incremental_command_seconds: float = 0.0
    incremental_counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    load: dict[str, str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def table(self) -> Table:
        """One row of figures."""
        title = (f"verify {self.province} {self.dataset}: {self.batches} batches of {self.records_per_batch:,}, "
                 f"then one of {self.new_batch_records:,}")
        table = Table(title=title, caption=self.caption())
        for col in ("lake Parquet MB", "hashed MB", "verify s", "verify MB/s", "sha256sum s", "sha256sum MB/s",
                    "verify RSS MB", "incremental s", "incremental command s", "intact"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{self.lake_mb:.0f}", f"{self.hashed_mb:.0f}", f"{self.full_seconds:.2f}",
            f"{self.hashed_mb / self.full_seconds:.0f}", f"{self.sha256sum_seconds:.2f}",
            f"{self.hashed_mb / self.sha256sum_seconds:.0f}", f"{self.full_rss_mb:.0f}",
            f"{self.incremental_seconds:.2f}", f"{self.incremental_command_seconds:.2f}", str(self.ok),
        )
        return table

    def caption(self) -> str:
        """How the lake was built, what the incremental verify covered, the load averages during the runs."""
        covered = ", ".join(f"{v} {k}" for k, v in self.incremental_counts.items() if v)
        lines = [self.note] if self.note else []
        lines.append(f"lake built in {self.build_seconds:.0f} s; incremental verify checked {covered or 'nothing'}")
        lines.append("load average " + "; ".join(f"{k}: {v}" for k, v in self.load.items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {**{k: v for k, v in self.__dict__.items() if k != "targets"},
                "targets": [t.to_json() for t in self.targets]}


@dataclass
class Built:
    """The lake before the new batch: how many batches of how many records, how long it took."""

    batches: int
    records_per_batch: int
    seconds: float
    note: str = ""


def _build(base: dict[str, Any], home: Path, batches: int, lake_gb: float | None, batch_records: int) -> Built:
    """Either `batches` weeks through run_exchange (sandbox pulls), or synthetic batches up to `lake_gb` GiB."""
    if lake_gb is None:
        run_task("prepare", {**base, "weeks": batches + 1})
        with ExitStack() as stack:
            env = sandbox_env(stack, sandbox_root(Path(base["root"]), base["province"]), base["province"])
            done = run_task("build_lake", {**base, "env": env, "home": str(home), "weeks": list(range(batches))})
        return Built(batches, int(base["records"]), float(done["seconds"]))
    spec = {**base, "home": str(home), "lake_gb": lake_gb, "batch_records": batch_records}
    done = run_task("build_synthetic_lake", spec, timeout=4 * 3600)
    details = done["details"]
    note = f"synthetic batches: {details['reuse']}"
    return Built(int(details["batches"]), batch_records, float(done["seconds"]), note)


def _full_vs_sha256sum(home: Path, load: dict[str, str]) -> tuple[dict[str, Any], float, list[Path]]:
    """Best of two full verifies and of two sha256sum runs over the files verify hashes, interleaved."""
    files = hashed_files(home)
    load["before full verify"] = loadavg()
    runs = []
    shas = []
    for _ in range(2):
        runs.append(run_task("verify", {"home": str(home)}))
        shas.append(sha256sum_seconds(files))
    load["after sha256sum"] = loadavg()
    best = min(runs, key=lambda r: float(r["seconds"]))
    best["peak_rss_mb"] = max(float(r["peak_rss_mb"]) for r in runs)
    best["details"]["ok"] = all(bool(r["details"]["ok"]) for r in runs)
    return best, min(shas), files


def _incremental(base: dict[str, Any], home: Path, week: int, load: dict[str, str]) -> tuple[dict[str, Any], float]:
    """One more week through run_exchange, then the incremental verify measured in-process and as the command
    (the state file restored in between, so both start from the same checkpoint)."""
    with ExitStack() as stack:
        env = sandbox_env(stack, sandbox_root(Path(base["root"]), base["province"]), base["province"])
        run_task("build_lake", {**base, "env": env, "home": str(home), "weeks": [week]})
    state = home / "provenance" / "verified.json"
    saved = state.read_bytes()
    load["before incremental"] = loadavg()
    measured = run_task("verify", {"home": str(home), "incremental": True})
    state.write_bytes(saved)
    return measured, command_seconds(home, "--incremental")


def run_verify_scenario(
    province: str, dataset: str, records: int, batches: int, *, workdir: Path | None = None,
    lake_gb: float | None = None, batch_records: int = 2_000_000,
) -> VerifyResult:
    """Build a lake, checkpoint it, verify it fully (vs sha256sum), add one batch of `records`, verify that
    incrementally. The lake is `batches` weeks of `records` through run_exchange, or, with `lake_gb`,
    synthetic batches of `batch_records` until its Parquet reaches that many GiB (see build_synthetic_lake)."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-verify-{province}-", dir=workdir))
    home = root / "province-home"  # the sandboxes sign with this home's keyring, as in the embedded layout
    load: dict[str, str] = {"start": loadavg()}
    try:
        base = {"province": province, "dataset": dataset, "root": str(root), "records": records}
        built = _build(base, home, batches, lake_gb, batch_records)
        checkpoint(home)
        lake_bytes = lake_parquet_bytes(home)
        full, sha, files = _full_vs_sha256sum(home, load)
        hashed_bytes = sum(p.stat().st_size for p in files)
        incremental, command = _incremental(base, home, built.batches, load)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = VerifyResult(
        province=province, dataset=dataset, records_per_batch=built.records_per_batch, batches=built.batches,
        lake_mb=round(lake_bytes / 2**20, 1), hashed_mb=round(hashed_bytes / 2**20, 1),
        full_seconds=float(full["seconds"]), full_rss_mb=float(full["peak_rss_mb"]),
        sha256sum_seconds=sha, incremental_seconds=float(incremental["seconds"]),
        ok=bool(full["details"]["ok"]) and bool(incremental["details"]["ok"]),
        new_batch_records=records, build_seconds=round(built.seconds, 1),
        incremental_command_seconds=round(command, 3), incremental_counts=incremental["details"]["counts"],
        note=built.note, load=load,
    )
    result.targets = _targets(result)
    return result


def _targets(result: VerifyResult) -> list[Target]:
    size = f"lake {result.lake_mb / 1024:.2f} GiB" + ("" if result.lake_mb >= 2048 else " (issue asks >= 2 GB)")
    return [
        Target("verify throughput / sha256sum throughput", ratio(result.sha256sum_seconds, result.full_seconds), 0.7,
               at_most=False, note=size),
        Target("incremental verify after one batch, s", round(result.incremental_seconds, 3), 1.0,
               note=f"whole `exchange verify --incremental` command: {result.incremental_command_seconds:.2f} s"),
        Target("verify reports intact", 1.0 if result.ok else 0.0, 1.0, at_most=False),
    ]
