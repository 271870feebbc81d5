"""A malformed payload fails only its province's DAG run, names the file and position, and leaves the lake intact."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.hubs import pin_root

SCRIPT = """
import json, os, sys
from datetime import UTC, datetime
from pathlib import Path
from exchange.config import Layout
from exchange.demo import DemoWindow, prepare_airflow, run_dags, seed_sandboxes

layout = Layout(Path(os.environ["EXCHANGE_HOME"])).ensure()
sandboxes = seed_sandboxes(layout, DemoWindow.around(datetime.now(UTC)), 800)
os.environ.update(sandboxes["anhui"].env())
# Jiangsu's drop is found only through its Airflow Connection (credentials never come from the repo).
moved = layout.home / "jiangsu-drop"
(layout.sandboxes / "jiangsu" / "drop").rename(moved)
os.environ["AIRFLOW_CONN_EXCHANGE_JIANGSU"] = json.dumps({"conn_type": "fs", "extra": {"path": str(moved)}})
broken = sorted((layout.sandboxes / "anhui" / "exports").glob("电子证照_*.xml"))[1]
# Anhui's export job died half way and the office signed what it wrote: the signature checks out, the XML does not.
truncated = broken.read_bytes()[: broken.stat().st_size // 2]
sandboxes["anhui"].publish(broken, truncated)
prepare_airflow(layout)
states = run_dags(["exchange_anhui", "exchange_jiangsu"])
print("RESULT " + json.dumps({"states": states, "broken": broken.name, "lines": truncated.count(b"\\n") + 1}))
"""


def test_a_truncated_xml_export_fails_anhui_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_", "AIRFLOW"))}
    env["EXCHANGE_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["states"] == {"exchange_anhui": "failed", "exchange_jiangsu": "success"}
    logs = out.stdout + out.stderr
    # One line naming the file and the position (the last line of the truncated file) and what to do.
    one_line = re.compile(rf"SourceFormatError: {re.escape(result['broken'])} at line {result['lines']} column "
                          r"\d+: [^\n]+ \(the file is not well-formed XML; re-export it\)")
    failures = [json.loads(p.read_text()) for p in (home / "reports" / "failures").glob("*.json")]
    assert [(f["dag_id"], f["task_id"]) for f in failures] == [("exchange_anhui", "pull_e_license")]
    error = failures[0]["error"]
    assert re.fullmatch(f"AirflowFailException: {one_line.pattern}", error), error
    logged = [line for line in logs.splitlines() if "exchange_anhui.pull_e_license failed for" in line]
    assert len(logged) == 1 and error in logged[0], logs[-3000:]
    # No traceback of where the error arose (adapter, pipeline): it reaches the log as that line. Airflow's
    # task runner still prints the stack of the AirflowFailException itself, which ends in the task wrapper
    # (exchange/airflow/), for any failed task; no frame below it is shown.
    assert not re.search(r'File "[^"]*/(adapters/|exchange/(?!airflow/))', logs), logs[-3000:]
    assert "direct cause" not in logs and "During handling" not in logs, logs[-3000:]

    exchange = str(Path(sys.executable).with_name("exchange"))
    manifests = [json.loads(p.read_text())["manifest"] for p in (home / "manifests").rglob("*.json")]
    assert {m["province"] for m in manifests} <= {"jiangsu", "anhui"}
    assert {(m["province"], m["dataset"]) for m in manifests} >= {("jiangsu", "e_license"),
                                                                  ("jiangsu", "enterprise_registration")}
    assert ("anhui", "e_license") not in {(m["province"], m["dataset"]) for m in manifests}
    env["EXCHANGE_TRUST_ANCHOR"] = str(pin_root(home))
    verify = subprocess.run([exchange, "verify"], env=env, capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
