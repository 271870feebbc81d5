"""The shared demo home of the Airflow scenarios (tests/demo_home.py): built once per run by whichever worker
asks first, a failed build failing every asker with its message, and copies that work on themselves."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import demo_home
from tests.demo_home import anchor_of, copy_home, shared_demo_home

REPO = Path(__file__).resolve().parents[2]

# Stands in for `exchange demo`: counts its runs, then lays out a home and its anchor (or fails).
FAKE_DEMO = """\
#!{python}
import sys, time
from pathlib import Path
with open({runs!r}, "a") as runs:
    runs.write("run\\n")
time.sleep(0.5)  # long enough for a second worker to arrive and wait on the lock
if {fail!r}:
    print("seeding failed: no sandbox")
    sys.exit(3)
home = Path(sys.argv[sys.argv.index("--home") + 1])
home.mkdir(parents=True)
home.with_name(home.name + ".trust-anchor").write_text("pin")
print("verify: intact")
"""


class _Factory:
    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


@pytest.fixture
def fake_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the fake `exchange`, the file it counts its runs in); the tests run as one process of a run."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    script, runs = tmp_path / "exchange", tmp_path / "runs"
    script.write_text(FAKE_DEMO.format(python=sys.executable, runs=str(runs), fail=False))
    script.chmod(0o755)
    monkeypatch.setattr(demo_home, "EXCHANGE", str(script))
    (tmp_path / "run").mkdir()
    return script, runs


def test_the_home_is_built_once_and_reused(fake_demo: tuple[Path, Path], tmp_path: Path) -> None:
    _, runs = fake_demo
    first = shared_demo_home(_Factory(tmp_path / "run"))  # type: ignore[arg-type]
    second = shared_demo_home(_Factory(tmp_path / "run"))  # type: ignore[arg-type]
    assert first == second and "verify: intact" in first.stdout
    assert runs.read_text() == "run\n"


def test_workers_asking_together_share_one_build(fake_demo: tuple[Path, Path], tmp_path: Path) -> None:
    script, runs = fake_demo
    ask = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from tests import demo_home
        demo_home.EXCHANGE = {str(script)!r}
        os.environ["PYTEST_XDIST_WORKER"] = "gw"
        class Factory:
            def getbasetemp(self): return Path({str(tmp_path / "run")!r}) / ("popen-" + os.environ["WORKER"])
        print(demo_home.shared_demo_home(Factory()).home)
    """)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", ask], env={"WORKER": w, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True
        )
        for w in ("gw0", "gw1")
    ]
    homes = {w.communicate(timeout=60)[0].strip() for w in workers}
    assert all(w.returncode == 0 for w in workers)
    assert homes == {str(tmp_path / "run" / "shared-demo-home" / "home")}
    assert runs.read_text() == "run\n", "the second worker waited and reused the first one's home"


def test_a_failed_build_fails_every_asker_with_its_message(fake_demo: tuple[Path, Path], tmp_path: Path) -> None:
    script, runs = fake_demo
    script.write_text(FAKE_DEMO.format(python=sys.executable, runs=str(runs), fail=True))
    for _ in range(2):
        with pytest.raises(pytest.fail.Exception, match="seeding failed: no sandbox"):
            shared_demo_home(_Factory(tmp_path / "run"))  # type: ignore[arg-type]
    assert runs.read_text() == "run\n", "the second asker was not a second build"


def test_a_copy_has_its_anchor(fake_demo: tuple[Path, Path], tmp_path: Path) -> None:
    original = shared_demo_home(_Factory(tmp_path / "run")).home  # type: ignore[arg-type]
    copy = copy_home(original, tmp_path / "mine")
    assert copy == tmp_path / "mine" / "home"
    assert anchor_of(copy).read_text() == "pin"


def test_a_copied_time_stamping_authority_stamps_with_its_own_key_and_serial(tmp_path: Path) -> None:
    """A home copied or restored elsewhere (a backup, a test's copy): its local TSA is the copy's, and the folder
    it came from is left exactly as it was (its config once named that folder, so the copy signed with its key
    and advanced its serial)."""
    from exchange.provenance.tsa import LocalTsa, check_stamp, stamp_request

    original = LocalTsa(tmp_path / "a" / "tsa")
    original.ensure()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    before = {p.name: p.read_bytes() for p in original.dir.iterdir()}
    copy = LocalTsa(tmp_path / "b" / "tsa")
    token = copy.reply(stamp_request(b"message"))
    assert check_stamp(token, b"message", (copy.dir / "ca.crt").read_bytes())
    assert {p.name: p.read_bytes() for p in original.dir.iterdir()} == before, "the original's folder was touched"
    assert (copy.dir / "serial").read_text() != before["serial"].decode(), "the copy's own serial advanced"
