"""What a command imports before it answers: Great Expectations (about 5 CPU-seconds to import) only where a
contract is run, and a mistyped option answered before the pipeline is imported at all (issue 20: `exchange
run --province hubei` took 8 s to say the province is unknown)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def modules_after(code: str, tmp_path: Path) -> set[str]:
    """sys.modules after `code` ran in a fresh interpreter (this one has imported everything already)."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {"PATH": "/usr/bin:/bin", "EXCHANGE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert out.stdout, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_stages_helpers_and_reports_do_not_import_great_expectations(tmp_path: Path) -> None:
    loaded = modules_after("import exchange.pipeline, exchange.replay, exchange.report.masked, "
                           "exchange.report.office, exchange.report.rejections, exchange.contracts.validate",
                           tmp_path)
    assert "exchange.contracts.validate" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "great_expectations"}


@pytest.mark.parametrize("argv", [
    ["run", "--province", "hubei", "--dataset", "e_license", "--start", "2026-11-01T00:00:00+08:00",
     "--end", "2026-11-02T00:00:00+08:00"],
    ["run", "--province", "jiangsu", "--dataset", "licences", "--start", "2026-11-01T00:00:00+08:00",
     "--end", "2026-11-02T00:00:00+08:00"],
    ["quarantine", "list", "--province", "hubei"],
])
def test_a_mistyped_option_is_answered_before_the_pipeline_is_imported(argv: list[str], tmp_path: Path) -> None:
    loaded = modules_after(f"from exchange.cli import app\ntry:\n    app({argv!r})\nexcept SystemExit:\n    pass",
                           tmp_path)
    assert "exchange.cli" in loaded
    assert not loaded & {"exchange.pipeline", "exchange.replay", "great_expectations"}
