"""The contracts as a province checks them, with the Open Data Contract Standard's own tool: datacontract-cli
(pinned, in its own venv `make install-test` builds, since it pins an older typer than the hub's).

`datacontract lint` passes on every shipped contract and agrees with `exchange contracts lint` on which ODCS
version's schema a document meets; `datacontract test` checks what the hub committed - the lake table,
exported by a stock DuckDB process through `exchange lake attach-sql`'s statements - against the contract.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.base import sandbox_for
from exchange.contracts import coltypes
from exchange.contracts.lint import ODCS_SCHEMAS, default_paths, lint_file, odcs_schema_problems
from exchange.datasets import dataset
from exchange.lake.outside import attach_script
from exchange.pipeline import run_exchange
from exchange.synthetic import generate
from tests.hubs import sandbox_hub

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOOLS_VENV = Path(os.environ.get("EXCHANGE_TEST_TOOLS_VENV", REPO / ".venv-tools"))
DATACONTRACT = TOOLS_VENV / "bin" / "datacontract"
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def datacontract() -> Path:
    if not os.access(DATACONTRACT, os.X_OK):
        message = f"datacontract-cli is not installed at {DATACONTRACT}"
        if os.environ.get("CI"):
            pytest.fail(message + " - `make install-test` builds it in .venv-tools")
        pytest.skip(message)
    return DATACONTRACT


def _run(binary: Path, command: str, contract: Path, out: Path) -> tuple[int, dict[str, Any]]:
    """Run `datacontract COMMAND CONTRACT`; its exit status and its JSON report."""
    done = subprocess.run(
        [str(binary), command, str(contract), "--output-format", "json", "--output", str(out)],
        capture_output=True, text=True, timeout=300, cwd=out.parent,
    )
    assert out.exists(), f"datacontract {command} wrote no report:\n{done.stdout}\n{done.stderr}"
    return done.returncode, json.loads(out.read_text("utf-8"))


def _failing(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c.get("reason") or "") for c in report["checks"] if c["result"] != "passed"]


@pytest.mark.parametrize("path", default_paths(), ids=lambda p: p.name)
def test_datacontract_lint_passes_on_every_shipped_contract(datacontract: Path, path: Path, tmp_path: Path) -> None:
    declared = yaml.safe_load(path.read_text("utf-8"))["apiVersion"]
    code, report = _run(datacontract, "lint", path, tmp_path / "lint.json")
    assert (code, report["result"]) == (0, "passed"), _failing(report)
    assert [c["name"] for c in report["checks"]] == [f"Data contract is valid against ODCS {declared}"]
    assert lint_file(path) == []


def _shipped() -> dict[str, Any]:
    return yaml.safe_load((default_paths()[0].parent / "e_license.odcs.yaml").read_text("utf-8"))


def _timestamp_property(data: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in data["schema"][0]["properties"] if p["logicalType"] == "timestamp")


def _as_is(data: dict[str, Any]) -> None:
    pass


def _without_timestamp(data: dict[str, Any]) -> None:
    # What a v3.0.2 contract had to say instead: ODCS 3.0 has no timestamp logical type.
    prop = _timestamp_property(data)
    prop["logicalType"] = "date"
    del prop["logicalTypeOptions"]


def _text_logical_type(data: dict[str, Any]) -> None:
    data["schema"][0]["properties"][0]["logicalType"] = "text"


@pytest.mark.parametrize("api_version", ODCS_SCHEMAS)
@pytest.mark.parametrize("edit", [_as_is, _without_timestamp, _text_logical_type], ids=lambda f: f.__name__.strip("_"))
def test_our_lint_and_datacontract_lint_agree_per_declared_version(
    datacontract: Path, api_version: str, edit: Any, tmp_path: Path
) -> None:
    """The same verdict from both tools, for each version: the shipped contract (v3.1 vocabulary) is valid
    from v3.1.0 on and not as v3.0.2; a contract without `timestamp` is valid as v3.0.2 too."""
    data = copy.deepcopy(_shipped())
    data["apiVersion"] = api_version
    edit(data)
    path = tmp_path / "e_license.odcs.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    code, report = _run(datacontract, "lint", path, tmp_path / "lint.json")
    ours = odcs_schema_problems(data)
    assert (code == 0) == (not ours), (ours, _failing(report))
    if api_version == "v3.0.2" and edit is _as_is:
        assert [where for where, _ in ours] == ["schema[0].properties[9].logicalType"]
        assert "'timestamp'" in ours[0][1] and "v3.0.2" in ours[0][1]


@pytest.fixture(scope="module")
def lake_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One committed Jiangsu e-licence batch, its lake table exported by a stock DuckDB in another process:
    to a DuckDB database and to Parquet, the canonical columns only (the lake adds province and batch_id)."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("EXCHANGE_HOME", str(home))
    try:
        sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
        sandbox.seed("e_license", generate("e_license", "jiangsu", 400, seed=5, start=START, end=END))
        hub = sandbox_hub(home, sandbox)
        assert run_exchange("jiangsu", "e_license", START, END, hub).status == "committed"
        script = attach_script(hub.settings)
    finally:
        mp.undo()
    out = tmp_path_factory.mktemp("export")
    database, parquet = out / "export.duckdb", out / "e_license.parquet"
    columns = ", ".join(f'"{name}"' for name in dataset("e_license").schema.names)
    sql = script + (
        f"ATTACH '{database}' AS export;\n"
        f"CREATE TABLE export.main.e_license AS SELECT {columns} FROM lake.e_license;\n"
        f"COPY (SELECT {columns} FROM lake.e_license) TO '{parquet}' (FORMAT parquet);\n"
    )
    stock = TOOLS_VENV / "bin" / "python"  # the tool venv's duckdb: a plain PyPI wheel, none of our code
    if not os.access(stock, os.X_OK):
        pytest.skip(f"no tool venv at {TOOLS_VENV}")
    subprocess.run([str(stock), "-c", "import duckdb, sys; duckdb.connect().execute(sys.stdin.read())"],
                   input=sql, text=True, check=True, timeout=120)
    return {"duckdb": database, "parquet": parquet}


def _with_server(tmp_path: Path, data: dict[str, Any], server: dict[str, Any]) -> Path:
    data = {**copy.deepcopy(data), "servers": [{"server": "lake-export", **server}]}
    path = tmp_path / "e_license.odcs.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def test_datacontract_test_passes_on_the_lake_exported_to_duckdb(
    datacontract: Path, lake_export: dict[str, Path], tmp_path: Path
) -> None:
    server = {"type": "duckdb", "database": str(lake_export["duckdb"]), "schema": "main"}
    code, report = _run(datacontract, "test", _with_server(tmp_path, _shipped(), server), tmp_path / "test.json")
    assert (code, report["result"]) == (0, "passed"), _failing(report)
    checked = {c["field"] for c in report["checks"] if c["name"].startswith("Check that field") and "has type" in
               c["name"] and c["result"] == "passed"}
    assert checked == set(dataset("e_license").schema.names), "every column's type was checked"


def test_datacontract_test_reads_the_parquet_export_only_with_the_mapped_physical_types(
    datacontract: Path, lake_export: dict[str, Path], tmp_path: Path
) -> None:
    server = {"type": "local", "format": "parquet", "path": str(lake_export["parquet"])}
    code, report = _run(datacontract, "test", _with_server(tmp_path, _shipped(), server), tmp_path / "test.json")
    # datacontract-cli 1.2.8 cannot compare Parquet column types and says so as warnings; the rest must pass.
    assert code == 0 and report["result"] in ("passed", "warning"), _failing(report)
    assert all(c["result"] == "passed" for c in report["checks"] if "has type" not in c["name"]), _failing(report)
    assert any("duplicate" in c["name"] for c in report["checks"]), "the key's uniqueness was checked"

    # The same contract with physicalType spelled as Arrow prints it (what the contracts said before): the
    # tool cannot build its typed view of the Parquet files, so nothing is checked.
    arrow_spelled = copy.deepcopy(_shipped())
    for prop in arrow_spelled["schema"][0]["properties"]:
        arrow = coltypes.arrow_type(prop["physicalType"])
        assert arrow is not None
        prop["physicalType"] = str(arrow)
    (tmp_path / "old").mkdir()
    code, report = _run(datacontract, "test", _with_server(tmp_path / "old", arrow_spelled, server),
                        tmp_path / "old" / "test.json")
    assert code != 0 and report["result"] == "failed"
