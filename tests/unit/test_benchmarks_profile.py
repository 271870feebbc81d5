"""The ingest benchmark's pyinstrument profile: where the files go and what the text report holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ingest import profile_prefix


def test_profile_prefix() -> None:
    assert profile_prefix(Path("/tmp/ingest-zhejiang"), "zhejiang", False) == Path("/tmp/ingest-zhejiang")
    assert profile_prefix(Path("/tmp/ingest.txt"), "anhui", False) == Path("/tmp/ingest")
    assert profile_prefix(Path("/tmp/ingest"), "anhui", True) == Path("/tmp/ingest-anhui")


def _busy() -> list[str]:
    return [json.dumps({"n": i}) for i in range(60_000)]


def test_profile_text_html_and_session(tmp_path: Path) -> None:
    pyinstrument = pytest.importorskip("pyinstrument", reason="the profiles come from the optional `bench` extra")
    from benchmarks.contenders import write_profile

    profiler = pyinstrument.Profiler(interval=0.001)
    profiler.start()
    _busy()
    profiler.stop()

    written = write_profile(profiler, tmp_path / "ours")

    assert set(written) == {"text", "html", "session"} and all(Path(p).stat().st_size for p in written.values())
    text = Path(written["text"]).read_text()
    assert "_busy" in text  # the call tree
    hottest = text.split("hottest functions by own time")[1].splitlines()[1:]
    assert hottest and all(float(line.split()[0]) > 0 for line in hottest)
    assert any("encoder.py" in line for line in hottest), "json's own frames, not one merged [self] row"
