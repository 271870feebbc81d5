"""`exchange report --out FILE.html`: the auditor's one-page report, self-contained (no network to open it).

Sections: the verification verdict; per province and dataset the batches with counts and rejection rates
(and an inline SVG chart of the rates over time); contract versions in force; keys and rotations;
extracts issued per department; the access and denial log; a lineage table from provinces through lake
tables to departments. Every value is HTML-escaped; nothing is fetched.

Each provenance event kind names its section (exchange/provenance/events.py), and each section counts the
entries of its kinds per actor and action: a new kind shows up where its class says, without a list here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from html import escape
from pathlib import Path

from exchange.access.extract import EXTRACT_MANIFEST, ExtractManifest, SignedExtractManifest
from exchange.config import Layout
from exchange.datasets import PROVINCE_NAMES
from exchange.provenance.archive import history_lines
from exchange.provenance.events import Kind, Section, spec
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import BatchManifest, read_manifest
from exchange.provenance.verify import VerifyReport
from exchange.report.html import page, table, write_atomically
from exchange.signing.trust import TrustBundle

_table = partial(table, empty="无 / none")
_COLORS = {"shanghai": "#1f77b4", "jiangsu": "#2ca02c", "zhejiang": "#ff7f0e", "anhui": "#9467bd"}


@dataclass
class ReportData:
    """Everything the report shows, read from EXCHANGE_HOME."""

    generated_at: datetime
    verify: VerifyReport
    manifests: list[BatchManifest]
    bundle: TrustBundle
    extracts: list[ExtractManifest]
    access: list[ProvenanceEntry]
    logged: Counter[tuple[Section, str, str]]


def section_of(action: str) -> Section:
    """The report section counting entries of `action`; kinds no longer in the vocabulary go with the chain's."""
    kind = spec(action)
    return kind.section if kind else Section.CHAIN


def collect(layout: Layout, verify: VerifyReport, bundle: TrustBundle) -> ReportData:
    """Read manifests, extracts and the log (streamed: access entries are kept, the others only counted)."""
    manifests = []
    for path in sorted(layout.manifests.rglob("*.json")) if layout.manifests.is_dir() else []:
        try:
            manifests.append(read_manifest(path).manifest)
        except ValueError:
            continue  # verify names unreadable manifests
    extracts = []
    for path in sorted(layout.extracts.rglob(EXTRACT_MANIFEST)) if layout.extracts.is_dir() else []:
        try:
            extracts.append(SignedExtractManifest.model_validate_json(path.read_text("utf-8")).manifest)
        except ValueError:
            continue
    access: list[ProvenanceEntry] = []
    logged: Counter[tuple[Section, str, str]] = Counter()
    # The whole history: entries a truncation moved into the archives count as much as the live log's.
    for line in history_lines(ProvenanceLog(layout.provenance)):
        try:
            entry = ProvenanceEntry.model_validate_json(line)
        except ValueError:
            continue
        section = section_of(entry.action)
        logged[(section, entry.actor, entry.action)] += 1
        if section == Section.ACCESS:
            access.append(entry)
    manifests.sort(key=lambda m: (m.province, m.dataset, m.window_end))
    return ReportData(datetime.now(UTC), verify, manifests, bundle, extracts, access, logged)


def logged_table(data: ReportData, section: Section, cls: str) -> str:
    """Entries of the section's kinds, per actor and action."""
    rows = [[actor, action, str(n)] for (s, actor, action), n in sorted(data.logged.items()) if s == section]
    return _table(["签名者 / actor", "事件 / action", "条目数 / entries"], rows, {2}, cls)


def _rate(m: BatchManifest) -> float:
    return m.counts.quarantined / m.counts.pulled if m.counts.pulled else 0.0


_CHART_TITLE = "各批次拒收率 / Rejection rate per batch"


def rejection_chart(manifests: list[BatchManifest], width: int = 720, height: int = 240) -> str:
    """An inline SVG bar chart: one bar per batch, grouped by province and dataset, height = rejection rate."""
    if not manifests:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1" role="img"></svg>'
    top = max(max(_rate(m) for m in manifests), 0.01)
    pad, base = 40, height - 60
    step = (width - pad * 2) / len(manifests)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_CHART_TITLE}"><title>{_CHART_TITLE}</title>',
             f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#444"/>',
             f'<text x="4" y="{pad - 20}" font-size="11">{top:.1%}</text>',
             f'<line x1="{pad}" y1="{pad - 24}" x2="{width - pad}" y2="{pad - 24}" stroke="#ddd"/>']
    for i, m in enumerate(manifests):
        bar = (base - pad + 24) * _rate(m) / top
        x = pad + i * step + step * 0.15
        label = (f"{m.province} {m.dataset} {m.window_end:%Y-%m-%d}: {_rate(m):.2%} "
                 f"({m.counts.quarantined}/{m.counts.pulled})")
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{base - bar:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{bar:.1f}" fill="{_COLORS.get(m.province, "#777")}">'
                     f"<title>{escape(label)}</title></rect>")
        parts.append(f'<text x="{x:.1f}" y="{base + 14}" font-size="9" transform="rotate(30 {x:.1f} {base + 14})">'
                     f'{escape(m.province[:2])}/{escape(m.dataset[:8])}</text>')
    legend_x = pad
    for province, color in _COLORS.items():
        parts.append(f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="{height - 5}" font-size="11">{escape(_province(province))}</text>')
        legend_x += 130
    parts.append("</svg>")
    return "".join(parts)


COUNTS_ZH = {"entries": "日志条目", "archives": "归档", "manifests": "批次清单", "lake_files": "湖文件",
             "landing_files": "落地文件", "extracts": "数据提取"}
VERDICT_ZH = {"intact": "完好", "BROKEN": "已损坏", "UNANCHORED": "未锚定", "INTERRUPTED": "未完成"}


def _both(zh: str, en: str) -> str:
    """A paragraph in Chinese with its English beside it, as the office report writes them (both escaped)."""
    return f'<p lang="zh-CN">{escape(zh)}</p><p class="en">{escape(en)}</p>'


def _verdict_notes(v: VerifyReport) -> str:
    """The first broken item and the trust anchor, in both languages; codes and key ids as written."""
    notes = ""
    if v.problems:
        notes += (f'<p><span lang="zh-CN">第一个损坏项：</span><span class="en">First broken item:</span> '
                  f"<code>{escape(str(v.problems[0]))}</code></p>")
    if v.unpinned:
        notes += ('<p><span lang="zh-CN">未固定信任锚：信任包只为自己作证。'
                  "请固定中心根密钥（EXCHANGE_TRUST_ANCHOR）：</span>"
                  f'<span class="en">No trust anchor pinned: the trust bundle vouched only for itself. Hub root key '
                  f"to pin (EXCHANGE_TRUST_ANCHOR):</span> <code>{escape(', '.join(v.unpinned))}</code></p>")
    elif v.anchor:
        notes += (f'<p><span lang="zh-CN">信任包已按信任锚核对：</span><span class="en">Trust bundle checked against '
                  f"the anchor</span> <code>{escape(v.anchor)}</code></p>")
    return notes


def render(data: ReportData, home: str = "") -> str:
    """The whole page as one HTML string (lang zh-CN, English alongside, like the office report)."""
    v = data.verify
    verdict_cls = "intact" if v.ok else "broken"
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in v.counts().items())
    counts_zh = "，".join(f"{COUNTS_ZH.get(k, k)} {n}" for k, n in v.counts().items())
    batches = [[m.province, m.dataset, m.batch_id, f"{m.window_start:%Y-%m-%d %H:%M} .. {m.window_end:%Y-%m-%d %H:%M}",
                str(m.counts.pulled), str(m.counts.accepted), str(m.counts.quarantined), f"{_rate(m):.2%}",
                str(m.snapshot_id), f"{m.contract_id} v{m.contract_version}"] for m in data.manifests]
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for m in data.manifests:
        t = totals[(m.province, m.dataset)]
        t[0] += 1
        t[1] += m.counts.pulled
        t[2] += m.counts.accepted
        t[3] += m.counts.quarantined
    per_pd = [[_province(p), d, str(t[0]), str(t[1]), str(t[2]), str(t[3]), f"{(t[3] / t[1] if t[1] else 0):.2%}"]
              for (p, d), t in sorted(totals.items())]
    latest: dict[str, BatchManifest] = {}
    for m in data.manifests:
        if m.dataset not in latest or m.created_at > latest[m.dataset].created_at:
            latest[m.dataset] = m
    contracts = [[d, m.contract_id, m.contract_version, m.contract_sha256[:16] + "…"]
                 for d, m in sorted(latest.items())]
    keys = [[k.owner, k.key_id, k.algorithm, f"{k.not_before:%Y-%m-%d %H:%M}", f"{k.not_after:%Y-%m-%d %H:%M}",
             k.status + (f" at {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""),
             k.endorsement.key_id if k.endorsement else ""]
            for k in sorted(data.bundle.keys, key=lambda k: (k.owner, k.not_before))]
    extracts = [[x.department, x.extract_id, x.grant_id, x.dataset, str(x.snapshot_id), str(x.rows),
                 f"{x.created_at:%Y-%m-%d %H:%M}"]
                for x in sorted(data.extracts, key=lambda x: (x.department, x.created_at))]
    denials = [[f"{e.at:%Y-%m-%d %H:%M}", e.actor, e.subject, str(e.details.get("reason", ""))]
               for e in data.access if e.action == Kind.ACCESS_DENIED]
    departments: dict[str, set[str]] = defaultdict(set)
    for x in data.extracts:
        departments[x.dataset].add(x.department)
    lineage = [[_province(p), f"lake.{d}", ", ".join(sorted(departments.get(d, set()))) or "-"]
               for (p, d) in sorted(totals)]
    where = f" 数据目录 / for {home}" if home else ""
    sections = [
        '<h1><span lang="zh-CN">长三角数据交换中心审计报告</span>'
        '<span class="en"> / YRD exchange hub: auditor report</span></h1>'
        f"<p>生成于 / Generated {data.generated_at:%Y-%m-%d %H:%M:%S} UTC{escape(where)}.</p>",
        '<h2 id="verdict">验证结论 / Verification</h2>'
        f'<div class="verdict {verdict_cls}" id="verdict-badge"><span lang="zh-CN">'
        f"{escape(VERDICT_ZH.get(v.verdict, v.verdict))}</span> / "
        f'<span id="verdict-value">{escape(v.verdict)}</span></div>'
        + _both(f"已检查：{counts_zh}；发现 {len(v.problems)} 个问题。",
                f"Checked: {counts}; {len(v.problems)} problem(s).")
        + _verdict_notes(v)
        + "<h3>链条目 / Chain entries</h3>" + logged_table(data, Section.CHAIN, "chain-log"),
        '<h2 id="batches">各省各数据集批次 / Batches per province and dataset</h2>'
        + _table(["省份 / province", "数据集 / dataset", "批次数 / batches", "拉取 / pulled", "入湖 / accepted",
                 "隔离 / quarantined", "拒收率 / rejection rate"], per_pd, {2, 3, 4, 5, 6}, "per-dataset"),
        "<h3>各批次拒收率随时间变化 / Rejection rate per batch, over time</h3>" + rejection_chart(data.manifests),
        _table(["省份 / province", "数据集 / dataset", "批次 / batch", "时间窗口 / window (UTC)", "拉取 / pulled",
               "入湖 / accepted", "隔离 / quarantined", "拒收率 / rejection rate", "快照 / snapshot",
               "数据合同 / contract"], batches, {4, 5, 6, 7, 8}, "batches"),
        "<h3>日志中的批次条目 / Batch entries in the log</h3>" + logged_table(data, Section.BATCHES, "batch-log"),
        '<h2 id="contracts">现行数据合同版本 / Contract versions in force</h2>'
        + _table(["数据集 / dataset", "数据合同 / contract", "版本 / version", "哈希 / SHA-256"], contracts,
                 cls="contracts"),
        '<h2 id="keys">密钥与轮换 / Keys and rotations</h2>'
        + _table(["持有者 / owner", "密钥 / key id", "算法 / algorithm", "生效 / valid from", "失效 / valid until",
                 "状态 / status", "背书密钥 / endorsed by"], keys, cls="keys")
        + "<h3>日志中的密钥条目 / Key entries in the log</h3>" + logged_table(data, Section.KEYS, "key-log"),
        '<h2 id="extracts">各部门已签发的数据提取 / Extracts issued per department</h2>'
        + _table(["部门 / department", "提取 / extract", "授权 / grant", "数据集 / dataset", "快照 / snapshot",
                 "行数 / rows", "截取时间 / cut at (UTC)"], extracts, {4, 5}, "extracts"),
        '<h2 id="access">访问与拒绝日志 / Access and denial log</h2>'
        + logged_table(data, Section.ACCESS, "access")
        + "<h3>拒绝 / Denials</h3>" + _table(["时间 / at (UTC)", "访问者 / who", "对象 / what", "原因 / reason"],
                                          denials, cls="denials"),
        _sharing(data, home),
        '<h2 id="lineage">数据血缘：省份 → 湖表 → 部门 / Lineage: provinces → lake tables → departments</h2>'
        + _table(["省份 / province", "湖表 / lake table", "收到提取的部门 / departments that received extracts"],
                lineage, cls="lineage"),
    ]
    return page("长三角数据交换中心审计报告 / YRD exchange: auditor report", "".join(sections), lang="zh-CN")


def _sharing(data: ReportData, home: str) -> str:
    """The sharing section (exchange/report/sharing.py): requests, decisions and overdue requests."""
    from exchange.report.sharing import read_requests, sharing_section
    from exchange.sharing.workdays import local_date

    requests = read_requests(Path(home)) if home else []
    return sharing_section(requests, data.access, local_date(data.generated_at))


def _province(code: str) -> str:
    """`江苏省 / jiangsu`: the province's Chinese name beside the code the rest of the hub uses."""
    name = PROVINCE_NAMES.get(code)
    return f"{name} / {code}" if name else code


def write_report(out: Path, layout: Layout, verify: VerifyReport, bundle: TrustBundle) -> Path:
    """Collect, render and write the report atomically."""
    return write_atomically(out, render(collect(layout, verify, bundle), str(layout.home)))
