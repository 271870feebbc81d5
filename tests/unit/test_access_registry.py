"""Department tokens and grant revocation in the registry and through the CLI, each change on record."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from exchange.access.errors import AuthenticationFailed, BadQuery, QueryRejected
from exchange.access.models import Department, Grant
from exchange.access.query import QueryLimits, check_statement, open_sandbox, run_in_sandbox
from exchange.access.registry import Registry, secret_digest
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.contracts.load import default_contracts_dir
from exchange.errors import AccessDenied
from exchange.hub import Hub

DEPARTMENT = Department(id="js.public_security", name="江苏省公安厅", province="jiangsu")


@pytest.fixture
def hub(home: Path) -> Hub:
    hub = Hub(ExchangeSettings(home=home))
    Registry(hub.layout.access).add_department(DEPARTMENT)
    return hub


def _grant(gid: str = "g1", dataset: str = "e_license") -> Grant:
    return Grant(id=gid, department=DEPARTMENT.id, dataset=dataset, columns=["region_code", "status"],
                 purpose="verify", legal_basis="regulation", approved_by="jiangsu.data_office",
                 expires_on=datetime.now(UTC).date() + timedelta(days=10), issued_at=datetime.now(UTC))


def test_a_token_is_stored_only_as_a_digest_and_authenticates(hub: Hub) -> None:
    registry = Registry(hub.layout.access)
    record, bearer = registry.issue_token(DEPARTMENT.id, days=5)
    token_id, secret = bearer.split(".", 1)
    assert token_id == record.id and record.secret_sha256 == secret_digest(secret)
    stored = registry.tokens_path.read_text()
    assert secret not in stored and record.secret_sha256 in stored
    assert registry.tokens_path.stat().st_mode & 0o077 == 0
    assert registry.authenticate(bearer).department == DEPARTMENT.id


def test_tokens_expire_and_revoke(hub: Hub) -> None:
    registry = Registry(hub.layout.access)
    _, old = registry.issue_token(DEPARTMENT.id, days=1, now=datetime.now(UTC) - timedelta(days=3))
    with pytest.raises(AuthenticationFailed, match="expired on"):
        registry.authenticate(old)
    record, bearer = registry.issue_token(DEPARTMENT.id)
    registry.revoke_token(record.id)
    with pytest.raises(AuthenticationFailed, match="was revoked"):
        registry.authenticate(bearer)
    with pytest.raises(AccessDenied, match="already revoked"):
        registry.revoke_token(record.id)
    with pytest.raises(AuthenticationFailed, match="malformed"):
        registry.authenticate("not-a-token")


def test_grant_revocation_is_signed_and_refuses_later_use(hub: Hub) -> None:
    registry = Registry(hub.layout.access)
    registry.add_grant(_grant(), hub.signer)
    assert registry.active_grant(DEPARTMENT.id, "e_license").grant.id == "g1"
    signed = registry.revoke_grant("g1", "jiangsu.data_office", "purpose fulfilled", hub.signer)
    assert signed.signature.key_id == hub.signer.key_id
    with pytest.raises(AccessDenied, match="was revoked on"):
        registry.active_grant(DEPARTMENT.id, "e_license")
    with pytest.raises(AccessDenied, match="cannot be reused"):
        registry.add_grant(_grant(), hub.signer)
    with pytest.raises(AccessDenied, match="already revoked"):
        registry.revoke_grant("g1", "hub", "again", hub.signer)


def test_a_not_shared_dataset_cannot_be_granted(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contracts = tmp_path / "contracts"
    shutil.copytree(default_contracts_dir(), contracts)
    path = contracts / "enterprise_registration.odcs.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("value: unconditional", "value: not_shared", 1),
                    encoding="utf-8")
    monkeypatch.setenv("EXCHANGE_CONTRACTS_DIR", str(contracts))
    with pytest.raises(AccessDenied, match="not shared under its contract"):
        Registry(hub.layout.access).add_grant(_grant("g2", "enterprise_registration"), hub.signer)


@pytest.mark.parametrize(("sql", "error", "reason"), [
    ("", BadQuery, "empty"),
    ("SELEC 1", BadQuery, "does not parse"),
    ("SELECT 1; SELECT 2", QueryRejected, "exactly one statement"),
    ("DELETE FROM e_license", QueryRejected, "this statement is DELETE"),
    ("UPDATE e_license SET status = 'valid'", QueryRejected, "this statement is UPDATE"),
    ("INSERT INTO e_license VALUES (1)", QueryRejected, "this statement is INSERT"),
    ("DETACH lake", QueryRejected, "this statement is DETACH"),
    ("CHECKPOINT", QueryRejected, "this statement is CALL"),
])
def test_only_one_select_passes_the_statement_check(sql: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        check_statement(sql)


def test_cli_tokens_and_grant_revocation_are_recorded_in_provenance(hub: Hub, tmp_path: Path) -> None:
    runner = CliRunner()
    issued = runner.invoke(app, ["departments", "token", DEPARTMENT.id, "--days", "7"])
    assert issued.exit_code == 0, issued.output
    bearer = issued.output.strip().splitlines()[-1]
    token_id = bearer.split(".")[0]
    assert Registry(hub.layout.access).authenticate(bearer).id == token_id
    listed = runner.invoke(app, ["departments", "tokens"])
    assert token_id[:8] in listed.output and bearer.split(".")[1] not in listed.output
    assert runner.invoke(app, ["departments", "revoke-token", token_id]).exit_code == 0
    assert runner.invoke(app, ["departments", "revoke-token", token_id]).exit_code == 1  # refused: already revoked

    grant_file = tmp_path / "grant.json"
    grant_file.write_text(json.dumps(_grant().model_dump(mode="json")))
    assert runner.invoke(app, ["grants", "add", str(grant_file)]).exit_code == 0
    revoked = runner.invoke(app, ["grants", "revoke", "g1", "--reason", "no longer needed"])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in runner.invoke(app, ["grants", "list"]).output

    actions = [(e.action, e.subject) for e in hub.log.read()]
    assert ("token_issue", token_id) in actions and ("token_revoke", token_id) in actions
    assert ("grant", "g1") in actions and ("grant_revoke", "g1") in actions
    assert bearer.split(".")[1] not in hub.log.path.read_text()


@pytest.mark.parametrize(("command", "actor"), [
    (["grants", "add"], "js.public_security"),  # a grant approved by a department, not a data office
    (["grants", "revoke", "g1", "--reason", "r", "--by"], "js.public_security"),
    (["grants", "revoke", "g1", "--reason", "r", "--by"], "hub"),
])
def test_a_grant_change_whose_actor_may_not_record_it_changes_nothing(
        hub: Hub, tmp_path: Path, command: list[str], actor: str) -> None:
    registry = Registry(hub.layout.access)
    if command[1] == "revoke":
        registry.add_grant(_grant(), hub.signer)
        args = [*command, actor]
    else:
        grant_file = tmp_path / "grant.json"
        grant_file.write_text(json.dumps(_grant().model_copy(update={"approved_by": actor}).model_dump(mode="json")))
        args = [*command, str(grant_file)]
    before = hub.log.read()
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "may not record" in result.output, result.output
    assert hub.log.read() == before
    assert registry.revoked_grants() == {} and len(registry.grants()) == (command[1] == "revoke")


def test_the_sandbox_cannot_see_python_variables_or_files() -> None:
    # DuckDB's Python client would otherwise resolve an unknown table name to a variable in the caller's frame.
    secret_rows = pa.table({"holder_id": ["320102199001011234"]})
    with open_sandbox(QueryLimits()) as sandbox:
        with pytest.raises(QueryRejected, match="that table is not visible"):
            run_in_sandbox(sandbox, "SELECT * FROM secret_rows", QueryLimits())
        with pytest.raises(QueryRejected, match="disabled in the query sandbox"):
            run_in_sandbox(sandbox, "SELECT * FROM read_text('/etc/hostname')", QueryLimits())
        assert run_in_sandbox(sandbox, "SELECT current_setting('lock_configuration')", QueryLimits()).to_pylist() \
            == [{"current_setting('lock_configuration')": True}]
    assert secret_rows.num_rows == 1
