"""Every `exchange` command, given bad input, fails with one line naming the problem, the right exit code
(2 bad input, 1 a refusal or failed check) and no traceback.

The commands are enumerated from the typer app, so a new command without a case here fails
`test_every_command_has_a_bad_input_case`. Cases run through typer's CliRunner; a few also through a real
subprocess of the `exchange` console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from exchange.cli import app
from exchange.errors import SourceFormatError
from exchange.stages import PullResult
from tests.conftest import REPO

EXCHANGE = Path(sys.executable).parent / "exchange"
GARBAGE = "not JSON [/b] :cn: [records]"  # also markup and emoji codes, which must come out as written
WINDOW = ("--start", "2026-11-01T00:00:00+08:00", "--end", "2026-11-02T00:00:00+08:00")


@dataclass(frozen=True)
class Case:
    """A command with bad input: `args` after the command's words; {tmp}, {garbage} (a file holding GARBAGE)
    and {missing} (a path that does not exist) are filled in per test."""

    command: str
    args: tuple[str, ...]
    exit_code: int
    message: str
    home: str = "fresh"  # fresh: an empty tmp folder (not created yet); file: EXCHANGE_HOME names a file
    setup: str = ""  # a name from SETUPS


def _broken_province_yaml(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """adapters/jiangsu/province.yaml with a YAML syntax error, the way a hand edit leaves it."""
    adapters = tmp / "adapters"
    shutil.copytree(REPO / "adapters" / "jiangsu", adapters / "jiangsu", ignore=shutil.ignore_patterns("*.py*"))
    (adapters / "jiangsu" / "province.yaml").write_text("province: jiangsu\nschedule: [0 2 * * *\n", encoding="utf-8")
    monkeypatch.setattr("exchange.province_config.ADAPTERS_DIR", adapters)


SETUPS = {"broken_province_yaml": _broken_province_yaml}

CASES: list[Case] = [
    # run: F6, each bad window and name is one line before anything is written
    Case("run", ("--province", "jiangsu", "--dataset", "e_license", "--start", "2026-11-01T00:00:00",
                 "--end", "2026-11-02T00:00:00+08:00"), 2, "window start 2026-11-01T00:00:00 has no UTC offset"),
    Case("run", ("--province", "jiangsu", "--dataset", "e_license", "--start", "2026-11-02T00:00:00+08:00",
                 "--end", "2026-11-02T00:00:00+08:00"), 2, "empty window"),
    Case("run", ("--province", "jiangsu", "--dataset", "e_license", "--start", "2099-01-01T00:00:00+08:00",
                 "--end", "2099-01-02T00:00:00+08:00"), 2, "is in the future"),
    Case("run", ("--province", "hubei", "--dataset", "e_license", *WINDOW), 2, "unknown province 'hubei'"),
    Case("run", ("--province", "jiangsu", "--dataset", "licences", *WINDOW), 2, "unknown dataset 'licences'"),
    Case("run", ("--province", "jiangsu", "--dataset", "e_license", *WINDOW), 2, "is a file, not a folder",
         home="file"),
    Case("run", ("--province", "jiangsu", "--dataset", "e_license", "--start", "2026-13-01", "--end", "x"), 2,
         "Invalid value for '--start'"),
    Case("demo", ("--records", "0"), 2, "Invalid value for '--records'"),
    Case("demo", ("--home", "{garbage}"), 2, "is a file, not a folder"),
    Case("quarantine list", ("--province", "hubei"), 2, "unknown province 'hubei'"),
    Case("quarantine show", ("X1",), 2, "no lake at"),
    Case("quarantine replay", ("jiangsu.e_license.nope",), 2, "is a file, not a folder", home="file"),
    Case("extract", ("--department", "nobody.here", "--dataset", "e_license", "--out", "{tmp}/out"), 2,
         "unknown department 'nobody.here'"),
    Case("verify-extract", ("{missing}", "--trust-bundle", "{garbage}"), 2, "not a trust bundle"),
    Case("departments add", ("js.x", "--name", "x", "--province", "hubei"), 2, "unknown province 'hubei'"),
    Case("departments token", ("nobody.here",), 2, "unknown department 'nobody.here'"),
    Case("departments keygen", ("nobody.here",), 2, "unknown department 'nobody.here'"),
    Case("departments set-key", ("js.public_security", "not-base64!"), 2, "not an age X25519 recipient"),
    Case("departments set-key", ("js.public_security", "age1" + "q" * 58), 2, "bad Bech32 checksum"),
    Case("departments tokens", (), 2, "is a file, not a folder", home="file"),
    Case("departments revoke-token", ("yrd_0000",), 2, "unknown token 'yrd_0000'"),
    Case("departments list", (), 2, "is a file, not a folder", home="file"),
    Case("grants add", ("{garbage}",), 2, "not a grant"),
    Case("grants list", (), 2, "is a file, not a folder", home="file"),
    Case("grants revoke", ("g9", "--reason", "done"), 2, "unknown grant 'g9'"),
    Case("query", ("SELECT 1", "--department", "nobody.here"), 2, "unknown department 'nobody.here'"),
    Case("serve", ("--port", "70000"), 2, "Invalid value for '--port'"),
    Case("check-license", ("X1", "--department", "nobody.here", "--holder-id", "320102199001011237"), 2,
         "unknown department 'nobody.here'"),
    Case("verify-check", ("{missing}", "--trust-bundle", "{garbage}"), 2, "cannot read a signed licence-check"),
    # verify: F7, a home that does not exist is an error (and stays absent: see the test below)
    Case("verify", (), 2, "does not exist"),
    Case("verify", ("--offline",), 2, "--offline needs --provenance, --trust-bundle and --lake"),
    Case("witness", ("--province", "hubei"), 2, "unknown province 'hubei'"),
    Case("witness", (), 2, "is a file, not a folder", home="file"),
    Case("witness", (), 2, "is empty: nothing to witness yet"),
    Case("keys list", (), 2, "is a file, not a folder", home="file"),
    Case("keys create", ("hub", "--algorithm", "rsa"), 2, "unknown signature algorithm 'rsa'"),
    Case("keys init", (), 2, "is a file, not a folder", home="file"),
    Case("keys trust", ("jiangsu.data_office", "{missing}"), 2, "cannot read the public key"),
    Case("keys rotate", ("hub", "--algorithm", "rsa"), 2, "unknown signature algorithm 'rsa'"),
    Case("keys revoke", ("k1", "--at", "yesterday"), 2, "'yesterday' is not an ISO 8601 time"),
    Case("keys pem", ("k1", "--trust-bundle", "{garbage}"), 2, "not a trust bundle"),
    Case("keys export-trust", ("--out", "{missing}/trust.json"), 2, "cannot write it"),
    Case("keys anchor", (), 2, "is a file, not a folder", home="file"),
    Case("provenance checkpoint", (), 2, "no lake at"),
    Case("provenance archive", (), 2, "is a file, not a folder", home="file"),
    Case("trace", ("licences", "K1"), 2, "unknown dataset 'licences'"),
    Case("trace", ("e_license",), 2, "give DATASET KEY, or --subject"),
    Case("report", ("--out", "{missing}/report.html"), 2, "cannot write it"),
    Case("report", ("--out", "{tmp}/report.html"), 2, "does not exist"),
    Case("recover", ("--dry-run",), 2, "does not exist"),
    Case("recover", (), 2, "is a file, not a folder", home="file"),
    Case("backfill", ("--province", "hubei", "--start", "2026-11-10", "--end", "2026-11-12"), 2,
         "unknown province 'hubei'"),
    # F6: a YAML syntax error in province.yaml names the file, not a traceback in the YAML parser
    Case("backfill", ("--province", "jiangsu", "--start", "2026-11-10", "--end", "2026-11-12"), 2,
         "province.yaml: not valid YAML", setup="broken_province_yaml"),
    Case("contracts lint", ("{missing}.odcs.yaml",), 2, "no such contract file"),
    Case("contracts diff", ("{missing}", "{garbage}"), 2, "No such file or directory"),
    Case("lake attach-sql", ("--copy", "{missing}"), 2, "no lake catalog at"),
    Case("departments profile", ("nobody.here", "--out", "{tmp}/profile.share"), 2,
         "unknown department 'nobody.here'"),
    Case("airflow up", ("--port", "70000"), 2, "Invalid value for '--port'"),
    Case("airflow down", (), 2, "is a file, not a folder", home="file"),
    # sharing (issue 19): the catalogue, requests, reviews, disputes, retention
    Case("catalogue publish", (), 2, "is a file, not a folder", home="file"),
    Case("catalogue list", (), 2, "is a file, not a folder", home="file"),
    Case("catalogue show", ("YRD-NOPE-1",), 2, "unknown catalogue item 'YRD-NOPE-1'"),
    Case("catalogue export", ("--out", "{missing}/catalogue.json"), 2, "cannot write it"),
    Case("catalogue verify", ("{garbage}", "--trust-bundle", "{garbage}"), 2, "not a catalogue export"),
    Case("requests file", ("{garbage}",), 2, "not a sharing request form"),
    Case("requests list", (), 2, "is a file, not a folder", home="file"),
    Case("requests show", ("req-1",), 2, "'req-1' is not a request id"),
    Case("requests approve", ("req-1", "--office", "shanghai.data_office"), 2, "'req-1' is not a request id"),
    Case("requests refuse", ("req-1", "--office", "shanghai.data_office", "--reason", "r"), 2,
         "'req-1' is not a request id"),
    Case("requests return", ("req-1", "--office", "shanghai.data_office", "--missing", "m"), 2,
         "'req-1' is not a request id"),
    Case("requests apply-decision", ("{garbage}",), 2, "not a signed decision"),
    Case("requests resubmit", ("req-1", "--department", "js.x", "--material", "m"), 2, "'req-1' is not a request id"),
    Case("requests withdraw", ("req-1", "--department", "js.x"), 2, "'req-1' is not a request id"),
    Case("requests dispute", ("req-1", "--department", "js.x", "--statement", "s"), 2,
         "'req-1' is not a request id"),
    Case("requests statement", ("req-1", "--office", "shanghai.data_office", "--statement", "s"), 2,
         "'req-1' is not a request id"),
    Case("requests evidence", ("req-1",), 2, "'req-1' is not a request id"),
    Case("requests decide-dispute", ("req-1", "--outcome", "maybe"), 2, "--outcome must be uphold or overturn"),
    Case("requests overdue", (), 2, "is a file, not a folder", home="file"),
    Case("requests close", ("req-1", "--department", "js.x"), 2, "'req-1' is not a request id"),
    Case("requests close-expired", (), 2, "is a file, not a folder", home="file"),
    Case("requests consent", ("g9", "--office", "jiangsu.data_office", "--to", "js.x", "--purpose", "p"), 2,
         "unknown grant 'g9'"),
    Case("requests onward", ("g9", "--department", "js.x", "--to", "js.y"), 2, "unknown grant 'g9'"),
    Case("requests token", ("js.public_security",), 2, "is neither a province data office"),
    Case("retention show", (), 2, "is a file, not a folder", home="file"),
]


def _commands() -> set[str]:
    def walk(command: object, path: tuple[str, ...]) -> Iterator[str]:
        subs = getattr(command, "commands", None)
        if subs is None:
            yield " ".join(path)
            return
        for name, sub in subs.items():
            yield from walk(sub, (*path, name))

    return set(walk(typer.main.get_command(app), ()))


def test_every_command_has_a_bad_input_case() -> None:
    missing = _commands() - {c.command for c in CASES}
    assert not missing, f"commands without a bad-input case in CASES: {sorted(missing)}"


def _prepare(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    garbage = tmp_path / "garbage.json"
    garbage.write_text(GARBAGE, encoding="utf-8")
    home = tmp_path / "home"
    if case.home == "file":
        home.write_text("this is not a folder", encoding="utf-8")
    monkeypatch.setenv("EXCHANGE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    if case.setup:
        SETUPS[case.setup](tmp_path, monkeypatch)
    fill = {"{tmp}": str(tmp_path), "{garbage}": str(garbage), "{missing}": str(tmp_path / "missing")}
    args = []
    for arg in case.args:
        for key, value in fill.items():
            arg = arg.replace(key, value)
        args.append(arg)
    return [*case.command.split(), *args]


def _assert_one_line(output: str, case: Case) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{output}"
    assert lines[0].startswith("error: ") and case.message in lines[0], lines[0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}: {c.message}")
def test_bad_input_is_one_line_and_an_exit_code(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _prepare(case, tmp_path, monkeypatch)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == case.exit_code, result.output
    _assert_one_line(result.output, case)


SUBPROCESS = [c for c in CASES if c.command in ("run", "verify", "departments list") and not c.setup][:6]


@pytest.mark.parametrize("case", SUBPROCESS, ids=lambda c: f"{c.command}: {c.message}")
def test_the_console_script_fails_the_same_way(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = _prepare(case, tmp_path, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(EXCHANGE), *argv], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == case.exit_code, done.stdout + done.stderr
    assert done.stdout == "", "errors go to stderr"
    _assert_one_line(done.stderr, case)


def test_verify_on_a_missing_home_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "nowhere"
    monkeypatch.setenv("EXCHANGE_HOME", str(home))
    report = ["report", "--out", str(tmp_path / "r.html")]
    for argv in (["verify"], ["verify", "--json"], ["verify", "--incremental"], report):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 2 and "does not exist" in result.output, result.output
    assert not home.exists()


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_HOME", str(tmp_path / "home"))
    argv = ["run", "--province", "hubei", "--dataset", "e_license", *WINDOW]
    plain = CliRunner().invoke(app, argv)
    assert plain.exit_code == 2 and isinstance(plain.exception, SystemExit)
    debug = CliRunner().invoke(app, ["--debug", *argv])
    assert isinstance(debug.exception, KeyError) and "unknown province 'hubei'" in str(debug.exception)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EXCHANGE_HOME": str(tmp_path / "home")}
    done = subprocess.run([str(EXCHANGE), "--debug", *argv], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_an_internal_failure_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setenv("EXCHANGE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("exchange.pipeline.run_exchange", broken)
    monkeypatch.setattr("exchange.cli._hub", lambda: None)
    result = CliRunner().invoke(app, ["run", "--province", "jiangsu", "--dataset", "e_license", *WINDOW])
    assert result.exit_code == 1
    _assert_one_line(result.output, Case("run", (), 1, "internal error: ZeroDivisionError: a bug"))
    assert "--debug" in result.output


# -- B-2: values are printed as text, never as rich markup ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(problem=st.text(min_size=1, max_size=80), hint=st.text(max_size=40))
def test_a_source_error_is_printed_exactly_whatever_it_contains(problem: str, hint: str) -> None:
    """B-2: a Shanghai value `[/b]` crashed the printer (MarkupError); `[records]` vanished from hints."""
    error = SourceFormatError("shanghai page 3 (https://api.example/licences?page=3)", "record 7 field XKZH",
                              problem, hint)

    def failing(*_: object) -> None:
        raise error

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr("exchange.pipeline.run_exchange", failing)
        monkeypatch.setattr("exchange.cli._hub", lambda: None)
        result = CliRunner().invoke(app, ["run", "--province", "shanghai", "--dataset", "e_license", *WINDOW])
    assert result.exit_code == 1, result.output
    assert result.output == f"error: {' '.join(str(error).split())}\n"


def test_b2_the_shanghai_example() -> None:
    error = SourceFormatError("shanghai page 1", "records[0].XKZH", "expected a string, got '[/b]'",
                              "the body must be an object with a [records] list")

    def failing(*_: object) -> None:
        raise error

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr("exchange.pipeline.run_exchange", failing)
        monkeypatch.setattr("exchange.cli._hub", lambda: None)
        result = CliRunner().invoke(app, ["run", "--province", "shanghai", "--dataset", "e_license", *WINDOW])
    assert "'[/b]'" in result.output and "with a [records] list" in result.output


def test_query_results_are_printed_as_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 item 7: a result value `[/x]` crashed `exchange query` after the query was logged."""
    values = ["[/x]", "[bold]not bold[/bold]", ":cn:", "[records]", "[link=http://evil]x[/link]"]
    table = pa.table({"name[/y]": values, "n": list(range(len(values)))})
    result_object = SimpleNamespace(table=table, snapshot_id=4, grants={"e_license": "g1"}, result_sha256="ab" * 32)
    monkeypatch.setattr("exchange.access.service.query_for_department", lambda *_, **__: result_object)
    monkeypatch.setattr("exchange.cli.access._hub", lambda: None)
    monkeypatch.setenv("COLUMNS", "200")
    done = CliRunner().invoke(app, ["query", "SELECT * FROM e_license", "--department", "js.public_security"])
    assert done.exit_code == 0, done.output
    for value in [*values, "name[/y]"]:
        assert value in done.output
    assert "5 rows at snapshot 4" in done.output


def test_json_output_is_untouched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--json` and the console both print data verbatim (no markup), so scripts can parse what they read."""
    odd = "jiangsu.e_license.[/b] [records] :cn:"
    monkeypatch.setattr("exchange.cli._hub", lambda: None)
    monkeypatch.setattr("exchange.pipeline.run_exchange",
                        lambda *_: PullResult(batch_id=odd, status="empty", pulled=0))
    done = CliRunner().invoke(app, ["run", "--province", "jiangsu", "--dataset", "e_license", *WINDOW])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["batch_id"] == odd
