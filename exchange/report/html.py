"""The building blocks of the hub's self-contained HTML pages: one style sheet, escaped tables, atomic writes.

Shared by the auditor's report and the province office's batch reports, so both look alike and both
escape every value the same way. Nothing here fetches anything: a page opens without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path

from exchange import atomic

CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",sans-serif;margin:2em;
color:#222;max-width:1200px;overflow-wrap:anywhere}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.wide{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em;max-width:100%}
th,td{border:1px solid #ccc;padding:.25em .5em;overflow-wrap:anywhere}
svg{max-width:100%;height:auto}
th{background:#f3f3f3;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.4em;font-weight:bold;padding:.5em 1em;display:inline-block;border-radius:4px}
.intact{background:#e6f4ea;color:#137333} .broken{background:#fce8e6;color:#a50e0e}
.en{color:#555;font-size:.9em} code{font-size:.85em}
"""


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] | None = None,
          cls: str = "", empty: str = "none") -> str:
    """An HTML table in a box that scrolls sideways if it must; every header and cell is escaped, columns in
    `numeric` are right-aligned.

    A table without rows shows one cell saying `empty`.
    """
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    nothing = f'<tr><td colspan="{len(headers)}">{escape(empty)}</td></tr>' if not rows else ""
    # Long ids and hashes wrap inside their cells (overflow-wrap above); the scrolling box is the last resort.
    return (f'<div class="wide"><table class="{escape(cls)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}{nothing}</tbody></table></div>")


def page(title: str, body: str, *, lang: str = "en") -> str:
    """A complete HTML document: UTF-8, the shared inline style sheet, `body` as given (already escaped)."""
    return (f'<!DOCTYPE html><html lang="{escape(lang)}"><head><meta charset="utf-8"><title>{escape(title)}'
            f"</title><style>{CSS}</style></head><body>{body}</body></html>\n")


def write_atomically(out: Path, text: str) -> Path:
    """Write `text` as UTF-8 atomically and durably (exchange/atomic): readers never see half a page."""
    atomic.write_text(out, text)
    return out
