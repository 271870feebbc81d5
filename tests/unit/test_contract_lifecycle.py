"""Contract lifecycle: lint, diff between versions, and the lake schema evolving with a new contract version."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.contracts.diff import diff_contracts, semver_key
from exchange.contracts.lint import default_paths, lint_file
from exchange.contracts.load import contract_path, parse_contract
from exchange.contracts.model import ContractError
from exchange.contracts.validate import QUARANTINE_SCHEMA
from exchange.datasets import E_LICENSE
from exchange.lake.commit import LEDGER, commit_batch, files_added, ledger_rows
from exchange.lake.connect import LAKE, catalog_and_data, connect
from exchange.stages import LedgerRow

runner = CliRunner()


def _shipped(dataset: str) -> dict[str, Any]:
    data = yaml.safe_load(contract_path(dataset).read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: dict[str, Any], name: str = "e_license.odcs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def _prop(data: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    for i, prop in enumerate(data["schema"][0]["properties"]):
        if prop["name"] == name:
            return i, prop
    raise KeyError(name)


def _rule(prop: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    for k, quality in enumerate(prop["quality"]):
        if quality["name"] == name:
            return k, quality
    raise KeyError(name)


def _bump(version: str, part: str) -> str:
    major, minor, patch = (int(p) for p in version.split("-")[0].split("."))
    return {"major": f"{major + 1}.0.0", "minor": f"{major}.{minor + 1}.0", "patch": f"{major}.{minor}.{patch + 1}"}[
        part
    ]


# --- lint ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", default_paths(), ids=lambda p: p.name)
def test_lint_passes_on_the_shipped_contracts(path: Path) -> None:
    assert lint_file(path) == []


def test_lint_names_file_path_and_reason_for_invalid_odcs(tmp_path: Path) -> None:
    data = _shipped("e_license")
    i, prop = _prop(data, "holder_id")
    prop["logicalType"] = "text"  # not an ODCS logical type
    path = _write(tmp_path, data)
    problems = lint_file(path)
    assert [(p.file, p.where) for p in problems] == [(path, f"schema[0].properties[{i}].logicalType")]
    assert "not valid ODCS v3" in problems[0].reason and "'text'" in problems[0].reason


def test_lint_reports_an_unknown_rule_type_at_its_quality_entry(tmp_path: Path) -> None:
    data = _shipped("e_license")
    i, prop = _prop(data, "holder_id")
    k, quality = _rule(prop, "holder_id.resident_id_checksum")
    quality["implementation"]["type"] = "expect_column_values_to_be_a_valid_passport"
    path = _write(tmp_path, data)
    problems = lint_file(path)
    assert problems, "an unknown rule type must not lint clean"
    assert {p.where for p in problems} == {f"schema[0].properties[{i}].quality[{k}]"}
    assert any("unknown rule type 'expect_column_values_to_be_a_valid_passport'" in p.reason for p in problems)


def test_lint_reports_a_rule_that_does_not_compile_to_gx(tmp_path: Path) -> None:
    data = _shipped("e_license")
    i, prop = _prop(data, "status")
    k, quality = _rule(prop, "status.in_enum")
    quality["implementation"]["kwargs"]["mostly"] = 0.9  # GX knows it; the per-record split does not
    problems = lint_file(_write(tmp_path, data))
    assert problems and {p.where for p in problems} == {f"schema[0].properties[{i}].quality[{k}]"}
    assert any("unknown argument(s) ['mostly']" in p.reason for p in problems)


def test_lint_reports_a_classification_without_masking(tmp_path: Path) -> None:
    data = _shipped("e_license")
    i, prop = _prop(data, "holder_id")
    prop["customProperties"] = [c for c in prop["customProperties"] if c["property"] != "masking"]
    problems = lint_file(_write(tmp_path, data))
    where = f"schema[0].properties[{i}]"
    assert any(p.where == where and "classification L4 has no masking rule" in p.reason for p in problems)


def test_lint_reports_personal_data_left_unmasked_and_unknown_masks(tmp_path: Path) -> None:
    data = _shipped("e_license")
    i, holder = _prop(data, "holder_id")
    holder["customProperties"] = [{"property": "masking", "value": "none"}, {"property": "grade", "value": "important"}]
    j, name = _prop(data, "holder_name")
    name["customProperties"] = [{"property": "masking", "value": "scramble"}, {"property": "grade", "value": "general"}]
    problems = [(p.where, p.reason) for p in lint_file(_write(tmp_path, data))]
    assert (f"schema[0].properties[{i}]", "holder_id: classification L4 must be masked, not 'none'") in problems
    assert (
        f"schema[0].properties[{j}]",
        "holder_name: masking 'scramble' is not one the hub applies (none, resident_id, name, mobile, withhold)",
    ) in problems


def test_lint_requires_a_semantic_version(tmp_path: Path) -> None:
    data = _shipped("e_license")
    data["version"] = "1.1"
    problems = lint_file(_write(tmp_path, data))
    assert [(p.where, p.reason) for p in problems] == [
        ("version", "must be a semantic version MAJOR.MINOR.PATCH, not '1.1'")
    ]


def test_lint_reports_self_contradictions_with_their_place(tmp_path: Path) -> None:
    # A required field without its not-null rule: the flag promises what no rule enforces.
    data = _shipped("e_license")
    i, prop = _prop(data, "license_type")
    prop["quality"] = []
    (tmp_path / "a").mkdir()
    problems = lint_file(_write(tmp_path / "a", data))
    assert [p.where for p in problems] == ["schema[0].properties"]
    assert "fields marked required" in problems[0].reason and "license_type" in problems[0].reason

    # An enumeration on a column the schema does not have.
    data = _shipped("e_license")
    data["schema"][0]["quality"].append({
        "name": "colour.in_enum", "description": "颜色 / colour", "severity": "error", "type": "custom",
        "engine": "greatExpectations",
        "implementation": {"type": "expect_column_values_to_be_in_set",
                           "kwargs": {"column": "colour", "value_set": ["red"]}},
    })
    (tmp_path / "b").mkdir()
    problems = lint_file(_write(tmp_path / "b", data))
    k = len(data["schema"][0]["quality"]) - 1
    assert [(p.where, p.reason) for p in problems] == [
        (f"schema[0].quality[{k}]", "rule colour.in_enum: unknown column(s) ['colour']")
    ]


def test_lint_and_load_refuse_min_above_max(tmp_path: Path) -> None:
    data = _shipped("enterprise_registration")
    i, prop = _prop(data, "registered_capital")
    k, quality = _rule(prop, "registered_capital.non_negative")
    quality["implementation"]["kwargs"].update(min_value=100, max_value=10)
    path = _write(tmp_path, data, "enterprise_registration.odcs.yaml")
    problems = lint_file(path)
    assert [p.where for p in problems] == [f"schema[0].properties[{i}].quality[{k}]"]
    assert "admit no value" in problems[0].reason
    with pytest.raises(ContractError, match="registered_capital.non_negative: min_value 100 / max_value 10"):
        parse_contract(path.read_bytes(), path, "enterprise_registration")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value_set": []}, "empty value_set rejects every value"),
        ({"value_set": ["ten", "eleven"]}, "does not fit the column type"),
    ],
)
def test_load_refuses_enumerations_no_value_can_pass(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    data = _shipped("enterprise_registration")
    _, prop = _prop(data, "registered_capital")
    _, quality = _rule(prop, "registered_capital.non_negative")
    quality["implementation"] = {"type": "expect_column_values_to_be_in_set", "kwargs": kwargs}
    path = _write(tmp_path, data, "enterprise_registration.odcs.yaml")
    with pytest.raises(ContractError, match=message):
        parse_contract(path.read_bytes(), path, "enterprise_registration")


def test_load_refuses_a_pair_rule_comparing_a_column_with_itself(tmp_path: Path) -> None:
    data = _shipped("e_license")
    data["schema"][0]["quality"][0]["implementation"]["kwargs"]["column_B"] = "valid_until"
    path = _write(tmp_path, data)
    with pytest.raises(ContractError, match="compares valid_until with itself"):
        parse_contract(path.read_bytes(), path, "e_license")


def test_lint_command_exits_non_zero_naming_the_file(tmp_path: Path) -> None:
    data = _shipped("e_license")
    data["version"] = "next"
    path = _write(tmp_path, data)
    result = runner.invoke(app, ["contracts", "lint", str(path)])
    assert result.exit_code == 1
    assert f"{path}: version: must be a semantic version" in result.output
    ok = runner.invoke(app, ["contracts", "lint", str(contract_path("e_license"))])
    assert ok.exit_code == 0, ok.output


# --- diff ---------------------------------------------------------------------------------------------


def _next(data: dict[str, Any], part: str) -> dict[str, Any]:
    new = copy.deepcopy(data)
    new["version"] = _bump(data["version"], part)
    return new


def test_diff_of_identical_contracts_is_empty_and_ok() -> None:
    old = _shipped("e_license")
    result = diff_contracts(old, copy.deepcopy(old))
    assert result.changes == () and result.ok


def test_removed_column_is_breaking_and_needs_a_major_bump() -> None:
    old = _shipped("e_license")
    for part, ok in (("minor", False), ("major", True)):
        new = _next(old, part)
        new["schema"][0]["properties"] = [p for p in new["schema"][0]["properties"] if p["name"] != "license_type"]
        result = diff_contracts(old, new)
        assert [(c.where, c.what) for c in result.breaking][0] == ("e_license.license_type", "column removed")
        assert result.ok is ok
        if not ok:
            assert "need a major version bump" in str(result.version_problem)


def test_narrowed_type_is_breaking_and_widened_type_is_not() -> None:
    old = _shipped("enterprise_registration")
    _, capital = _prop(old, "registered_capital")
    new = _next(old, "minor")
    _, changed = _prop(new, "registered_capital")
    changed["physicalType"] = "float"  # double -> float loses precision
    result = diff_contracts(old, new)
    assert [c.what for c in result.breaking] == ["physicalType double -> float (changed)"]
    assert not result.ok

    capital["physicalType"], changed["physicalType"] = "int32", "int64"
    widened = diff_contracts(old, new)
    assert [(c.breaking, c.what) for c in widened.changes] == [(False, "physicalType int32 -> int64 (widened)")]
    assert widened.ok


def test_tightened_enumeration_is_breaking_and_widened_is_not() -> None:
    old = _shipped("e_license")
    new = _next(old, "minor")
    _, status = _prop(new, "status")
    _, rule = _rule(status, "status.in_enum")
    rule["implementation"]["kwargs"]["value_set"] = ["valid", "revoked", "suspended"]
    result = diff_contracts(old, new)
    assert [(c.breaking, c.where, c.what) for c in result.changes] == [
        (True, "rule status.in_enum", "enumeration tightened: removed ['expired']"),
        (False, "rule status.in_enum", "enumeration widened: added ['suspended']"),
    ]
    assert "need a major version bump" in str(result.version_problem)
    new["version"] = _bump(old["version"], "major")
    assert diff_contracts(old, new).ok


def test_added_optional_column_is_compatible_and_a_required_one_is_not() -> None:
    old = _shipped("e_license")
    new = _next(old, "minor")
    column = {"name": "qr_code", "logicalType": "string", "physicalType": "string", "required": False,
              "classification": "L1", "description": "证照二维码 / licence QR code",
              "customProperties": [{"property": "masking", "value": "none"}]}
    new["schema"][0]["properties"].append(column)
    result = diff_contracts(old, new)
    assert [(c.breaking, c.where, c.what) for c in result.changes] == [
        (False, "e_license.qr_code", "optional column added (string)")
    ]
    assert result.ok
    column["required"] = True
    assert [c.what for c in diff_contracts(old, new).breaking] == ["required column added (string)"]


def test_bounds_rules_sharing_and_descriptions_are_classified() -> None:
    old = _shipped("enterprise_registration")
    new = _next(old, "minor")
    _, capital = _prop(new, "registered_capital")
    _, plausible = _rule(capital, "registered_capital.plausible_magnitude")
    plausible["implementation"]["kwargs"]["max_value"] = 1_000  # tightened
    _, non_negative = _rule(capital, "registered_capital.non_negative")
    non_negative["implementation"]["kwargs"]["min_value"] = -1  # relaxed
    capital["description"] = "注册资本（万元） / registered capital, ten thousand yuan"
    capital["quality"].append({
        "name": "registered_capital.round", "description": "非整数 / not whole", "severity": "warning",
        "type": "custom", "engine": "greatExpectations",
        "implementation": {"type": "expect_column_values_to_match_regex",
                           "kwargs": {"column": "registered_capital", "regex": "0$"}},
    })
    sharing = next(p for p in new["customProperties"] if p["property"] == "sharingType")
    sharing["value"] = "conditional" if sharing["value"] == "unconditional" else "not_shared"
    changes = {(c.breaking, c.where, c.what.split(":")[0].split(" (")[0]) for c in diff_contracts(old, new).changes}
    assert changes == {
        (True, "rule registered_capital.plausible_magnitude", "bound tightened"),
        (False, "rule registered_capital.non_negative", "bound relaxed"),
        (False, "enterprise_registration.registered_capital", "description changed"),
        (False, "rule registered_capital.round",
         "new warning rule expect_column_values_to_match_regex on existing columns"),
        (True, "customProperties.sharingType", f"sharing type {_sharing(old)} -> {sharing['value']}"),
    }


def _sharing(data: dict[str, Any]) -> str:
    return str(next(p["value"] for p in data["customProperties"] if p["property"] == "sharingType"))


def test_a_new_error_rule_on_existing_data_is_breaking() -> None:
    old = _shipped("e_license")
    new = _next(old, "minor")
    _, holder = _prop(new, "holder_name")
    holder["quality"].append({
        "name": "holder_name.han", "description": "姓名含非汉字 / name has non-Han characters", "severity": "error",
        "type": "custom", "engine": "greatExpectations",
        "implementation": {"type": "expect_column_values_to_match_regex", "kwargs": {"regex": "^\\p{Han}+$"}},
    })
    result = diff_contracts(old, new)
    assert [(c.where, c.what) for c in result.breaking] == [
        ("rule holder_name.han", "new error rule expect_column_values_to_match_regex on existing columns")
    ]
    assert not result.ok


def test_changes_without_a_version_increase_fail_even_when_compatible() -> None:
    old = _shipped("e_license")
    new = copy.deepcopy(old)
    new["description"]["purpose"] = "核验 / verify"
    assert "did not increase" in str(diff_contracts(old, new).version_problem)
    new["version"] = _bump(old["version"], "patch")
    assert diff_contracts(old, new).ok


def test_semver_precedence() -> None:
    assert semver_key("1.0.0-rc.1") < semver_key("1.0.0") < semver_key("1.0.1") < semver_key("1.10.0")  # type: ignore[operator]
    assert semver_key("1.0.0-alpha") < semver_key("1.0.0-alpha.1") < semver_key("1.0.0-beta")  # type: ignore[operator]
    assert semver_key("1.0") is None


def test_diff_command_prints_a_table_and_fails_without_a_major_bump(tmp_path: Path) -> None:
    old = _shipped("e_license")
    new = _next(old, "minor")
    new["schema"][0]["properties"] = [p for p in new["schema"][0]["properties"] if p["name"] != "license_type"]
    old_path, new_path = _write(tmp_path, old, "old.odcs.yaml"), _write(tmp_path, new, "new.odcs.yaml")
    result = runner.invoke(app, ["contracts", "diff", str(old_path), str(new_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "breaking" in result.output and "e_license.license_type" in result.output
    assert "column removed" in result.output and "need a major version bump" in result.output
    new["version"] = _bump(old["version"], "major")
    _write(tmp_path, new, "new.odcs.yaml")
    passed = runner.invoke(app, ["contracts", "diff", str(old_path), str(new_path)], env={"COLUMNS": "200"})
    assert passed.exit_code == 0, passed.output
    new["schema"][0]["properties"][0]["logicalType"] = "text"
    _write(tmp_path, new, "new.odcs.yaml")
    invalid = runner.invoke(app, ["contracts", "diff", str(old_path), str(new_path)])
    assert invalid.exit_code == 2 and "schema[0].properties[0].logicalType" in invalid.output


# --- schema evolution in the lake ---------------------------------------------------------------------


def _licences(n: int, start: int, qr_code: bool = False) -> pa.Table:
    rows = [
        {"license_id": f"DZZZ{start + i:012d}", "license_type": "营业执照", "holder_name": "张三",
         "holder_id": "110101199003074514", "issuing_authority": "上海市市场监督管理局", "region_code": "310101",
         "issued_on": date(2026, 1, 2), "valid_until": None, "status": "valid",
         "updated_at": datetime(2026, 11, 2, tzinfo=UTC)}
        for i in range(n)
    ]
    table = pa.Table.from_pylist(rows, schema=E_LICENSE.schema)
    if qr_code:
        table = table.append_column(pa.field("qr_code", pa.string()), pa.array([f"qr-{start + i}" for i in range(n)]))
    return table


def _ledger_row(batch_id: str, version: str, n: int) -> LedgerRow:
    t = datetime(2026, 11, 2, tzinfo=UTC)
    return LedgerRow(batch_id=batch_id, province="shanghai", dataset="e_license", window_start=t,
                     window_end=t, watermark=t, pulled=n, accepted=n, quarantined=0,
                     contract_id="urn:yrd:contract:e_license", contract_version=version)


def _commit(con: Any, batch_id: str, version: str, table: pa.Table) -> int:
    result = commit_batch(con, dataset="e_license", dataset_schema=E_LICENSE.schema,
                          ledger_row=_ledger_row(batch_id, version, table.num_rows), accepted=table,
                          quarantined=QUARANTINE_SCHEMA.empty_table())
    assert result.written
    return result.snapshot_id


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_added_optional_column_evolves_the_lake_without_rewriting_history(home: Path) -> None:
    settings = ExchangeSettings(home=home)
    root = Path(catalog_and_data(settings)[1])
    with connect(settings) as con:
        first = _commit(con, "shanghai.e_license.b1", "1.0.0", _licences(3, 0))
        old_files = {f.path: _sha256(f.path) for f in files_added(con, first, root) if f.table == "e_license"}
        assert old_files
        second = _commit(con, "shanghai.e_license.b2", "1.1.0", _licences(2, 100, qr_code=True))
        new_files = {f.path for f in files_added(con, second, root) if f.table == "e_license"}
        # A batch under the previous contract version (another province not yet migrated) still commits.
        third = _commit(con, "shanghai.e_license.b3", "1.0.0", _licences(1, 200))

        assert new_files and not new_files & old_files.keys(), "the new batch wrote files of its own only"
        assert {p: _sha256(p) for p in old_files} == old_files, "files of the old snapshot are untouched"
        before = con.execute(f"SELECT * FROM {LAKE}.e_license AT (VERSION => {first})").to_arrow_table()
        assert before.column_names == [*E_LICENSE.schema.names, "province", "batch_id"]
        assert before.num_rows == 3
        now = con.execute(
            f"SELECT batch_id, count(*), count(qr_code) FROM {LAKE}.e_license GROUP BY batch_id ORDER BY batch_id"
        ).fetchall()
        assert now == [
            ("shanghai.e_license.b1", 3, 0), ("shanghai.e_license.b2", 2, 2), ("shanghai.e_license.b3", 1, 0)
        ]
        assert con.execute(f"SELECT count(*) FROM {LAKE}.e_license AT (VERSION => {second})").fetchone() == (5,)
        assert third > second > first
        versions = {r.batch_id: r.contract_version for r in ledger_rows(con)}
        assert versions == {"shanghai.e_license.b1": "1.0.0", "shanghai.e_license.b2": "1.1.0",
                            "shanghai.e_license.b3": "1.0.0"}
        # The column was added in the snapshot that brought its first values, not in one of its own.
        snapshots = con.execute(f"SELECT count(*) FROM {LAKE}.snapshots() WHERE snapshot_id > {first}").fetchone()
        assert snapshots == (2,)
        assert con.execute(f"SELECT count(*) FROM {LAKE}.{LEDGER}").fetchone() == (3,)


def _without_masking(data: dict[str, Any]) -> None:
    _, prop = _prop(data, "holder_id")
    prop["customProperties"] = [c for c in prop["customProperties"] if c["property"] != "masking"]


def _unmasked_personal(data: dict[str, Any]) -> None:
    _, prop = _prop(data, "holder_id")
    prop["customProperties"] = [{"property": "masking", "value": "none"}, {"property": "grade", "value": "important"}]


def _version(value: str) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["version"] = value
    return edit


def _classification(value: str) -> Any:
    def edit(data: dict[str, Any]) -> None:
        _prop(data, "holder_name")[1]["classification"] = value
    return edit


@pytest.mark.parametrize("edit", [_version("1.1"), _version("next"), _version("01.0.0"), _without_masking,
                                  _unmasked_personal, _classification("secret")],
                         ids=["version-1.1", "version-next", "version-leading-zero", "no-masking",
                              "personal-unmasked", "unknown-classification"])
def test_run_refuses_every_contract_lint_refuses(tmp_path: Path, edit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """F8: one definition. Whatever lint reports without GX, load_contract (and so `exchange run`) refuses."""
    from exchange.contracts.load import load_contract

    data = _shipped("e_license")
    edit(data)
    path = _write(tmp_path, data)
    problems = lint_file(path)
    assert problems
    parse_contract(path.read_bytes(), path, "e_license")  # the parser alone lets it through
    with pytest.raises(ContractError) as refused:
        load_contract("e_license", tmp_path)
    assert f"{problems[0].where}: {problems[0].reason}" in str(refused.value)
    monkeypatch.setenv("EXCHANGE_CONTRACTS_DIR", str(tmp_path))
    monkeypatch.setenv("EXCHANGE_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["run", "--province", "jiangsu", "--dataset", "e_license",
                                 "--start", "2026-11-01T00:00:00+08:00", "--end", "2026-11-02T00:00:00+08:00"])
    assert result.exit_code != 0
    assert problems[0].reason.split(",")[0] in " ".join(result.output.split())
    assert not (tmp_path / "home" / "landing" / "jiangsu").exists(), "refused before anything was read"


def test_a_lake_from_before_as_sent_gains_the_column_and_stays_readable(home: Path) -> None:
    """The quarantine table got `as_sent` (issue 16 B-8): an older lake's rows read it as null, and the next
    commit adds the column in its own snapshot, inserting by name."""
    from exchange.contracts.validate import QUARANTINE_SCHEMA as NOW
    from exchange.replay import quarantine_status

    before = pa.schema([f for f in NOW if f.name != "as_sent"])

    def rejected(key: str, as_sent: str | None, schema: pa.Schema) -> pa.Table:
        row = {"batch_id": "b", "province": "shanghai", "dataset": "e_license", "record_key": key,
               "rule_id": "status.in_enum", "reason": "r", "severity": "error",
               "record_json": '{"license_id":"' + key + '"}', "as_sent": as_sent}
        return pa.Table.from_pylist([{k: row[k] for k in schema.names}], schema=schema)

    settings = ExchangeSettings(home=home)
    with connect(settings) as con:
        for batch, table in (("shanghai.e_license.old", rejected("OLD1", None, before)),
                             ("shanghai.e_license.new", rejected("NEW1", '{"x":1}', NOW))):
            table = table.set_column(0, "batch_id", pa.array([batch]))
            commit_batch(con, dataset="e_license", dataset_schema=E_LICENSE.schema,
                         ledger_row=_ledger_row(batch, "3.0.0", 0).model_copy(update={"quarantined": 1}),
                         accepted=E_LICENSE.schema.empty_table(), quarantined=table)
        stored = con.execute(f"SELECT record_key, as_sent FROM {LAKE}.quarantine ORDER BY record_key").fetchall()
    assert stored == [("NEW1", '{"x":1}'), ("OLD1", None)]
    rows = {r["record_key"]: r for r in quarantine_status(settings)}
    assert rows["OLD1"]["as_sent"] is None and rows["NEW1"]["as_sent"] == '{"x":1}'
