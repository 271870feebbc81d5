"""`exchange departments profile`: a 0600 profile whose token ends with the first grant to end; none without grants."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from exchange.access.models import Department
from exchange.access.registry import Registry
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.demo import sample_grant
from exchange.hub import Hub


def test_no_usable_grant_no_profile(home: Path, tmp_path: Path) -> None:
    hub = Hub(ExchangeSettings(home=home))
    Registry(hub.layout.access).add_department(Department(id="js.public_security", name="公安厅", province="jiangsu"))
    result = CliRunner().invoke(app, ["departments", "profile", "js.public_security", "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "no usable grant" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "p").exists()
    assert Registry(hub.layout.access).tokens() == []  # no token issued for nothing


def test_profile_token_ends_with_the_grant(home: Path, tmp_path: Path) -> None:
    hub = Hub(ExchangeSettings(home=home))
    registry = Registry(hub.layout.access)
    registry.add_department(Department(id="js.public_security", name="公安厅", province="jiangsu"))
    soon = datetime.now(UTC).date() + timedelta(days=3)
    registry.add_grant(sample_grant(soon - timedelta(days=365)), hub.signer)  # last valid day: in 3 days
    out = tmp_path / "js.share"
    result = CliRunner().invoke(app, ["departments", "profile", "js.public_security", "--out", str(out),
                                      "--endpoint", "https://hub.example/delta-sharing/"])
    assert result.exit_code == 0, result.output
    profile = json.loads(out.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert profile["endpoint"] == "https://hub.example/delta-sharing"
    expires = datetime.fromisoformat(profile["expirationTime"])
    assert expires == datetime.combine(soon + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    token = registry.authenticate(profile["bearerToken"])
    assert token.expires_at == expires and token.department == "js.public_security"
    assert hub.log.read()[-1].action == "token_issue"
