"""`exchange report`: the auditor's HTML page, parsed as a browser would see its structure."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.config import ExchangeSettings
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.synthetic import generate

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 4, tzinfo=UTC)


class Page(HTMLParser):
    """Collects what the tests look at: text by element id, body rows per table class, SVG bars, links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.rows: dict[str, int] = defaultdict(int)
        self.bars = 0
        self.external: list[str] = []
        self._id: str | None = None
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self._id = a["id"]
            self.ids[self._id or ""] = ""
        if tag == "table":
            self._table = a.get("class") or ""
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.rows[self._table] += 1
        elif tag == "rect" and a.get("class") == "bar":
            self.bars += 1
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._id is not None:
            self.ids[self._id] += data.strip()
            self._id = None


@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = sandbox.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    hub = Hub(ExchangeSettings(home=home, **{k.removeprefix("EXCHANGE_").lower(): v for k, v in env.items()}))
    sandbox.seed("e_license", generate("e_license", "jiangsu", 200, seed=7, start=START, end=END))
    assert run_exchange("jiangsu", "e_license", START, END, hub).status == "committed"
    return hub


def _render(tmp_path: Path, exit_code: int = 0) -> Page:
    """The page `exchange report` wrote; its exit status must be `exit_code` (1 when the verdict is BROKEN)."""
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == exit_code, result.output
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    return page


def test_the_report_shows_the_verdict_batches_chart_and_keys(hub: Hub, tmp_path: Path) -> None:
    page = _render(tmp_path)
    assert page.ids["verdict-value"] == "intact"
    assert page.rows["batches"] == 1 and page.rows["per-dataset"] == 1
    assert page.bars == 1
    assert page.rows["keys"] >= 1 and page.rows["contracts"] == 1 and page.rows["lineage"] == 1
    assert page.external == [], "the page must open without a network"


def test_a_broken_home_says_so_on_the_page(hub: Hub, tmp_path: Path) -> None:
    target = next((hub.layout.lake_data).rglob("*.parquet"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    assert _render(tmp_path, exit_code=1).ids["verdict-value"] == "BROKEN"


def test_report_exits_1_on_broken_after_writing_the_page(hub: Hub, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    runner = CliRunner()
    assert runner.invoke(app, ["report", "--out", str(out)]).exit_code == 0
    out.unlink()
    _flip_a_lake_file(hub)
    result = runner.invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "error: verdict BROKEN, first broken item:" in result.output and str(out) in " ".join(result.output.split())
    assert out.is_file(), "the page is written whatever the verdict"


def test_the_page_is_chinese_with_english_alongside(hub: Hub, tmp_path: Path) -> None:
    _render(tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in html and "Noto Sans CJK SC" in html
    page = Page()
    page.feed(html)
    assert page.ids["verdict-badge"] == "完好"
    # Every heading and every column header carries both languages: "中文 / English".
    for tag in ("h1", "h2", "h3", "th"):
        texts = re.findall(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", html)
        assert texts, tag
        for head in texts:
            assert any("\u4e00" <= c <= "\u9fff" for c in head), f"no Chinese in <{tag}>: {head}"
            assert any(c.isascii() and c.isalpha() for c in head), f"no English in <{tag}>: {head}"


def _flip_a_lake_file(hub: Hub) -> None:
    target = next((hub.layout.lake_data).rglob("*.parquet"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
