"""The auditor's report as a person sees it: rendered in headless Chromium (Debian's chromium), with the
verdict, tables and chart checked on screen - positions, computed colours and screenshot pixels."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from adapters.base import sandbox_for
from exchange.cli import app
from exchange.hub import Hub
from exchange.pipeline import run_exchange
from exchange.synthetic import generate
from tests.hubs import sandbox_hub

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("EXCHANGE_TEST_CHROMIUM", "/usr/bin/chromium")
# As the machine notes advise: no background networking on a closed network, a fresh profile.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INTACT_BACKGROUND = (0xE6, 0xF4, 0xEA)
BROKEN_BACKGROUND = (0xFC, 0xE8, 0xE6)
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        message = f"Chromium is not installed at {CHROMIUM} (Debian package chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + " - `make test` installs it")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = sandbox.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    hub = sandbox_hub(home, sandbox)
    sandbox.seed("e_license", generate("e_license", "jiangsu", 300, seed=11, start=START, end=END))
    assert run_exchange("jiangsu", "e_license", START, END, hub).status == "committed"
    return hub


def _report(tmp_path: Path, exit_code: int = 0) -> Path:
    """The page `exchange report` wrote; its exit status must be `exit_code` (1 when the verdict is BROKEN)."""
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == exit_code, result.output
    return out


def _share_of(png: bytes, rgb: tuple[int, int, int], tolerance: int = 6) -> float:
    """The share of a screenshot's pixels within `tolerance` of colour `rgb`."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - np.array(rgb)) <= tolerance).all(axis=-1).mean())


def _open(browser: object, report: Path) -> tuple[object, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(report.as_uri())
    return page, requested


def test_the_report_renders_its_verdict_tables_and_chart(browser: object, hub: Hub, tmp_path: Path) -> None:
    page, requested = _open(browser, _report(tmp_path))
    assert page.locator("#verdict-value").inner_text() == "intact"  # type: ignore[attr-defined]
    verdict = page.locator("#verdict-badge")  # type: ignore[attr-defined]
    assert verdict.is_visible() and verdict.inner_text() == "完好 / intact"
    box = verdict.bounding_box()
    assert box is not None and box["width"] > 50 and box["height"] > 20 and box["y"] < 900, "verdict above the fold"

    # The verdict badge is green on screen: most of its pixels carry the 'intact' background.
    assert _share_of(verdict.screenshot(), INTACT_BACKGROUND) > 0.5

    for table in ("batches", "keys", "contracts", "lineage"):
        rows = page.locator(f"table.{table} tbody tr")  # type: ignore[attr-defined]
        assert rows.count() >= 1, table
        assert rows.first.is_visible(), f"the {table} table is not shown"
    bars = page.locator("svg rect.bar")  # type: ignore[attr-defined]
    assert bars.count() == 1 and bars.first.bounding_box()["height"] > 0, "the rejection-rate chart draws a bar"

    full = page.screenshot(full_page=True)  # type: ignore[attr-defined]
    assert _share_of(full, (255, 255, 255)) < 0.97, "the page is not blank"
    assert requested == [page.url], "the report must open without fetching anything"  # type: ignore[attr-defined]


def test_a_broken_home_shows_a_red_verdict(browser: object, hub: Hub, tmp_path: Path) -> None:
    target = next(hub.layout.lake_data.rglob("*.parquet"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    page, _ = _open(browser, _report(tmp_path, exit_code=1))
    assert page.locator("#verdict-value").inner_text() == "BROKEN"  # type: ignore[attr-defined]
    verdict = page.locator("#verdict-badge")  # type: ignore[attr-defined]
    assert _share_of(verdict.screenshot(), BROKEN_BACKGROUND) > 0.5
    assert _share_of(verdict.screenshot(), INTACT_BACKGROUND) == 0


# A code point no font maps (unassigned), so it renders as the font's missing-glyph box: "tofu".
TOFU = "\u0378"
GLYPHS = """([text, family]) => {
    const box = document.createElement('div');
    box.id = 'glyph-probe';
    for (const c of [...text]) {
        const span = document.createElement('span');
        span.textContent = c;
        span.style.cssText = `display:inline-block;width:48px;height:48px;font-size:36px;line-height:48px;
            text-align:center;font-family:${family};color:#000;background:#fff`;
        box.appendChild(span);
    }
    document.body.prepend(box);
    return box.children.length;
}"""


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def test_chinese_text_renders_in_a_cjk_font_not_as_tofu(browser: object, hub: Hub, tmp_path: Path) -> None:
    page, _ = _open(browser, _report(tmp_path))
    heading = page.locator('h1 span[lang="zh-CN"]')  # type: ignore[attr-defined]
    text = heading.inner_text()
    assert text and all("\u4e00" <= c <= "\u9fff" for c in text), text

    assert_drawn_in_a_cjk_font(page, 'h1 span[lang="zh-CN"]')
    family = heading.evaluate("e => getComputedStyle(e).fontFamily")

    # And on screen: each character, drawn alone in the heading's font stack, has ink, differs from the
    # missing-glyph box, and differs from the others (tofu would draw every character as the same box).
    distinct = sorted(set(text))
    page.evaluate(GLYPHS, ["".join(distinct) + TOFU, family])  # type: ignore[attr-defined]
    shots = [_pixels(page.locator("#glyph-probe span").nth(i).screenshot())  # type: ignore[attr-defined]
             for i in range(len(distinct) + 1)]
    *glyphs, tofu = shots
    for char, glyph in zip(distinct, glyphs, strict=True):
        assert (glyph < 128).mean() > 0.02, f"{char} draws no ink"
        assert glyph.shape == tofu.shape and not np.array_equal(glyph, tofu), f"{char} renders as the tofu box"
    assert len({g.tobytes() for g in glyphs}) == len(distinct), "distinct characters draw distinct glyphs"


OVERFLOWING = """() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    for (const e of document.querySelectorAll('body *')) {
        const r = e.getBoundingClientRect();
        if (r.width && (r.right > width + 0.5 || r.left < -0.5)) out.push(`${e.tagName}.${e.className}: ${r.right}`);
    }
    return {out, scroll: document.documentElement.scrollWidth, width};
}"""


@pytest.mark.parametrize("width", [1280, 760])
def test_no_element_overflows_the_viewport(browser: object, hub: Hub, tmp_path: Path, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.goto(_report(tmp_path).as_uri())
    result = page.evaluate(OVERFLOWING)
    assert result["out"] == [], f"elements beyond the {width}px viewport: {result['out'][:10]}"
    assert result["scroll"] <= result["width"], "the page scrolls sideways"
    batches = page.locator("table.batches").bounding_box()
    assert batches is not None and batches["x"] + batches["width"] <= width


def assert_drawn_in_a_cjk_font(page: Any, selector: str) -> None:
    """What Chromium itself says it drew the element's characters with: a CJK font named in the page's stack,
    and every character drawn (no missing glyph)."""
    element = page.locator(selector)
    text = element.inner_text()
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    family = element.evaluate("e => getComputedStyle(e).fontFamily")
    drawn = {f["familyName"] for f in fonts if f["glyphCount"] > 0}
    assert any("CJK" in name and name.split(" CJK")[0] in family for name in drawn), (drawn, family)
    assert sum(f["glyphCount"] for f in fonts) == len(text)
