"""The README's main job on the embedded default: four provinces through Airflow, an extract, verify.

Steps: seed the four province sandboxes (and start Shanghai's API server on 127.0.0.1), run each
province's DAG with Airflow's dag.test() against a SQLite metadata DB under EXCHANGE_HOME, register the
sample department and grant, cut its extract, run the nightly audit DAG (verify, report, checkpoint, the log head
witnessed by the four province offices and a local RFC 3161 time-stamping authority), verify, print a summary.
Every run is left as its interval's scheduled run (exchange/airflow/local_runs.py): a scheduler started
afterwards waits for the next interval.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from adapters.base import Sandbox, sandbox_for
from exchange.access.models import Department, Grant, RowCondition
from exchange.config import Layout
from exchange.datasets import DATASETS, PROVINCES
from exchange.provenance.events import GrantEvent
from exchange.synthetic import generate

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from exchange.hub import Hub

SHANGHAI_TZ = ZoneInfo("Asia/Shanghai")
DEMO_RECORDS = 5_000
SEED = 20261125

SAMPLE_DEPARTMENTS = [
    Department(id="js.public_security", name="江苏省公安厅", province="jiangsu"),
    Department(id="sh.market_regulation", name="上海市市场监督管理局", province="shanghai"),
    Department(id="zj.housing_provident_fund", name="浙江省住房公积金管理中心", province="zhejiang"),
    Department(id="ah.healthcare_security", name="安徽省医疗保障局", province="anhui"),
]


def sample_grant(today: date) -> Grant:
    """Jiangsu public security may see valid Jiangsu e-licences, IDs and names masked."""
    return Grant(
        id="grant-js-public-security-e-license",
        department="js.public_security",
        dataset="e_license",
        columns=["license_id", "license_type", "holder_name", "holder_id", "region_code", "valid_until", "status"],
        row_filter=[
            RowCondition(column="region_code", op="prefix_in", values=["32"]),
            RowCondition(column="status", op="in", values=["valid"]),
        ],
        purpose="核验在苏执业人员电子证照真实性 (verify licences of practitioners in Jiangsu)",
        legal_basis="《政务信息资源共享管理暂行办法》(国发〔2016〕51号) 第十条",
        approved_by="jiangsu.data_office",
        expires_on=today + timedelta(days=365),
        issued_at=datetime.now(UTC),
    )


@dataclass
class DemoWindow:
    """The seeded period: whole days ending two days ago, so every province's latest interval covers it."""

    start: datetime
    end: datetime

    @classmethod
    def around(cls, now: datetime) -> DemoWindow:
        today = datetime.combine(now.astimezone(SHANGHAI_TZ).date(), time(0), SHANGHAI_TZ)
        return cls(today - timedelta(days=9), today - timedelta(days=2))


def seed_sandboxes(layout: Layout, window: DemoWindow, records: int) -> dict[str, Sandbox]:
    """Create and seed every province's sandbox (once: a marker file makes re-seeding a no-op)."""
    sandboxes: dict[str, Sandbox] = {}
    for province in PROVINCES:
        root = layout.sandboxes / province
        sandbox = sandbox_for(province, root)
        marker = root / ".seeded"
        if not marker.exists():
            for dataset in DATASETS:
                sandbox.seed(dataset, generate(dataset, province, records, seed=SEED, start=window.start,
                                               end=window.end))
            marker.write_text(f"{records} records per dataset, seed {SEED}\n")
        sandboxes[province] = sandbox
    return sandboxes


def prepare_airflow(layout: Layout) -> None:
    """Point Airflow at EXCHANGE_HOME and create its SQLite metadata DB."""
    from exchange.airflow.env import apply_airflow_env, init_metadata_db
    from exchange.config import ExchangeSettings

    apply_airflow_env(layout)
    # The demo's console is for its summary: Airflow's INFO chatter stays out of it, while each task's own INFO
    # lines (counts, rules, report path) still reach its log file (exchange/airflow/local_runs.py).
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    init_metadata_db(ExchangeSettings(home=layout.home))  # with the commit pool, for a scheduler started later


def run_dags(dag_ids: list[str]) -> dict[str, str]:
    """Run each DAG once through Airflow (dag.test); return the final state per DAG id."""
    from airflow.dag_processing.dagbag import DagBag

    from exchange.airflow.env import REPO

    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    from exchange.airflow.local_runs import consume_asset_queue, count_as_scheduled, task_logs_in_log_folder

    states: dict[str, str] = {}
    for dag_id in dag_ids:
        dag = bag.dags[dag_id]
        # dag.test() runs the DAG object unserialized, and Airflow 3.3's DagRun.update_state then looks its
        # Deadline Alerts up by id and fails; deadlines only matter to a running scheduler anyway.
        dag.deadline = None
        with task_logs_in_log_folder():  # so the UI shows these runs' task logs
            run = dag.test(logical_date=datetime.now(UTC))
        states[dag_id] = str(run.state)
        if str(run.state) != "success":
            continue
        # A scheduler started after the demo must neither re-run the window the demo covered nor alert on it.
        # A cron DAG's run becomes the run it had due; an asset-triggered one (nothing due) consumes its events.
        if not count_as_scheduled(dag_id, run.run_id):
            consume_asset_queue(dag_id)
    return states


def run_demo(home: Path, *, fresh: bool, records: int = DEMO_RECORDS) -> int:
    """Run the whole demo; return the process exit code (0 = everything verified)."""
    from rich.text import Text

    from exchange.access.extract import EXTRACT_MANIFEST, SignedExtractManifest
    from exchange.access.extractkeys import issue_extract_key
    from exchange.access.registry import Registry
    from exchange.cli import plain_console
    from exchange.hub import Hub
    from exchange.report.summary import print_summary

    # Wide enough for the summary table when the output goes to a file or CI log.
    console = plain_console(width=None if sys.stdout.isatty() else 140)
    # The DAG tasks run in this process and read their settings from the environment.
    os.environ["EXCHANGE_HOME"] = str(home.resolve())
    layout = Layout(home)
    if fresh and layout.home.exists():
        shutil.rmtree(layout.home)
    layout.ensure()
    anchor = pin_anchor(layout)
    console.print(Text.assemble(("Pinned the hub's trust anchor", "bold"), f" outside the home: {anchor} "
                                f"(verify reads it from EXCHANGE_TRUST_ANCHOR={anchor})"))
    window = DemoWindow.around(datetime.now(UTC))
    console.print(Text.assemble(("Seeding the four province sandboxes", "bold"), f" ({records} records per dataset, "
                                f"updated {window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d})"))
    sandboxes = seed_sandboxes(layout, window, records)
    for sandbox in sandboxes.values():
        sandbox.start()
        os.environ.update(sandbox.env())
    try:
        console.print(Text.assemble(("Preparing Airflow", "bold"), " (SQLite metadata DB under EXCHANGE_HOME/airflow)"))
        prepare_airflow(layout)
        console.print(Text.assemble(("Running the four province DAGs through Airflow", "bold"), " (dag.test)"))
        states = run_dags([f"exchange_{p}" for p in PROVINCES])
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
    hub = Hub.current()
    registry = Registry(hub.layout.access)
    for department in SAMPLE_DEPARTMENTS:
        registry.add_department(department)
    grant = registry.add_grant(sample_grant(datetime.now(UTC).date()), hub.signer)
    hub.log.append(hub.signer, GrantEvent(department=grant.grant.department, dataset=grant.grant.dataset),
                   actor=grant.grant.approved_by, subject=grant.grant.id)
    # As `exchange departments keygen` does; a real department makes its own and hands over the public half.
    department_key, _ = issue_extract_key(hub, registry, grant.grant.department)
    console.print(Text.assemble(("Publishing standing extracts through Airflow", "bold"),
                                " (exchange_publish), encrypted to the department's key"))
    states.update(run_dags(["exchange_publish"]))
    standing = sorted((hub.layout.extracts / grant.grant.department / "standing").glob("*/" + EXTRACT_MANIFEST))
    if not standing:
        raise RuntimeError(f"exchange_publish cut no extract for {grant.grant.department}")
    extract = SignedExtractManifest.model_validate_json(standing[-1].read_text(encoding="utf-8"))
    opened = open_as_department(standing[-1].parent, hub, department_key)
    from exchange.provenance.verify import verify_home
    from exchange.sharing.demo import DEMO_CALENDAR_NOTE, run_sharing_demo

    console.print(Text.assemble(("Sharing under the Regulations", "bold"), " (catalogue published and signed by "
                                "each office; one request of each kind)"))
    console.print(f"  {DEMO_CALENDAR_NOTE}")
    for shared in run_sharing_demo(hub):
        console.print(f"  {shared.state:<9} {shared.request_id}  {shared.kind}: {shared.path}")
    # The daily deadline check through Airflow too (the overdue request escalated, its alert file written), so a
    # scheduler started later does not run it again for the day the demo covered.
    states.update(run_dags(["exchange_sharing"]))

    # The nightly audit, through Airflow as a scheduler would run it, so a scheduler started later has nothing
    # left to catch up on: verify, the auditor report, a signed checkpoint, and the log head witnessed.
    console.print(Text.assemble(("Auditing through Airflow", "bold"), " (exchange_audit: verify, report, checkpoint; "
                                "the four province offices countersign the log head, a local RFC 3161 "
                                "time-stamping authority stamps it)"))
    states.update(run_dags(["exchange_audit"]))

    report = verify_home(hub.settings)
    return print_summary(console, hub, states, extract, report, opened)


def anchor_path(layout: Layout) -> Path:
    """Where the demo keeps its home's trust anchor: beside the home, never in it."""
    return layout.home.parent / f"{layout.home.name}.trust-anchor"


def pin_anchor(layout: Layout) -> Path:
    """Make the hub's root key (if new) and pin its fingerprint beside the home, as an operator does once when
    setting up a hub; point EXCHANGE_TRUST_ANCHOR at it for this process (the DAG tasks and verify read it)."""
    from exchange.hub import Hub
    from exchange.signing.anchor import SETTING, write_anchor

    path = anchor_path(layout)
    os.environ.pop(SETTING, None)
    keyring = Hub.current().keyring
    fresh_keys = not any(layout.keys.glob("hub.*.pem"))
    keyring.signer()
    if fresh_keys or not path.exists():
        write_anchor(path, keyring.trust_bundle(), note=f"pinned by `exchange demo` for {layout.home}")
    os.environ[SETTING] = str(path)
    return path


def open_as_department(directory: Path, hub: Hub, key: X25519PrivateKey) -> str:
    """What the department does on receipt: verify the signed manifest and ciphertext, decrypt, and check each
    file's plaintext digest and the row count; the plaintext goes to a scratch folder, never the hub's home."""
    import tempfile

    from exchange.access.extract import decrypt_extract, verify_extract

    signed = verify_extract(directory, hub.keyring.export_trust())
    with tempfile.TemporaryDirectory() as scratch:
        files = decrypt_extract(directory, signed, key, Path(scratch))
        size = sum(f.stat().st_size for f in files)
    encryption = signed.manifest.encryption
    assert encryption is not None, "the department has an extract key, so its extract is encrypted"
    return (f"encrypted to {encryption.recipient_key_id} ({encryption.algorithm}); opened with the department's "
            f"key: {signed.manifest.rows} rows, {size} bytes, plaintext digests match")
