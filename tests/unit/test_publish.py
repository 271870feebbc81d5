"""Standing extracts: one per live grant and snapshot; revoked and expired grants get none."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from adapters.base import sandbox_for
from exchange.access.models import Department, Grant, RowCondition
from exchange.access.registry import Registry
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.publish import refresh_standing_extracts
from exchange.synthetic import generate

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)


def _grant(grant_id: str, expires_on: date) -> Grant:
    return Grant(id=grant_id, department="js.public_security", dataset="e_license",
                 columns=["license_id", "holder_id", "status"],
                 row_filter=[RowCondition(column="status", op="in", values=["valid"])],
                 purpose="licence checks", legal_basis="国发〔2016〕51号", approved_by="jiangsu.data_office",
                 expires_on=expires_on, issued_at=datetime.now(UTC))


def test_each_live_grant_is_published_once_per_snapshot(home: Path) -> None:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    hub = Hub(ExchangeSettings(home=home, jiangsu_drop_dir=home / "sandboxes" / "jiangsu" / "drop"))
    sandbox.seed("e_license", generate("e_license", "jiangsu", 300, seed=2, start=START, end=END))
    run_exchange("jiangsu", "e_license", START, END, hub)
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id="js.public_security", name="江苏省公安厅", province="jiangsu"))
    today = datetime.now(UTC).date()
    registry.add_grant(_grant("live", today + timedelta(days=30)), hub.signer)
    registry.add_grant(_grant("expired", today - timedelta(days=1)), hub.signer)
    registry.add_grant(_grant("revoked", today + timedelta(days=30)), hub.signer)
    registry.revoke_grant("revoked", "jiangsu.data_office", "purpose ended", hub.signer)

    cut = refresh_standing_extracts(hub)
    assert [c.grant for c in cut] == ["live"]
    assert cut[0].rows > 0
    assert refresh_standing_extracts(hub) == [], "the same snapshot is not published twice"
