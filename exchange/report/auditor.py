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
from html import escape
from pathlib import Path

from exchange.access.extract import EXTRACT_MANIFEST, ExtractManifest, SignedExtractManifest
from exchange.config import Layout
from exchange.provenance.archive import history_lines
from exchange.provenance.events import Kind, Section, spec
from exchange.provenance.log import ProvenanceEntry, ProvenanceLog
from exchange.provenance.manifest import BatchManifest, read_manifest
from exchange.provenance.verify import VerifyReport
from exchange.report.html import page, table, write_atomically
from exchange.signing.trust import TrustBundle

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
    return table(["actor", "action", "entries"], rows, {2}, cls)


def _rate(m: BatchManifest) -> float:
    return m.counts.quarantined / m.counts.pulled if m.counts.pulled else 0.0


def rejection_chart(manifests: list[BatchManifest], width: int = 720, height: int = 240) -> str:
    """An inline SVG bar chart: one bar per batch, grouped by province and dataset, height = rejection rate."""
    if not manifests:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1" role="img"></svg>'
    top = max(max(_rate(m) for m in manifests), 0.01)
    pad, base = 40, height - 60
    step = (width - pad * 2) / len(manifests)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Rejection rate per batch"><title>Rejection rate per batch</title>',
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
                     f'<text x="{legend_x + 14}" y="{height - 5}" font-size="11">{province}</text>')
        legend_x += 100
    parts.append("</svg>")
    return "".join(parts)


def render(data: ReportData, home: str = "") -> str:
    """The whole page as one HTML string."""
    v = data.verify
    verdict_cls = "intact" if v.ok else "broken"
    first = (f"<p>First broken item: <code>{escape(str(v.problems[0]))}</code></p>" if v.problems else "")
    if v.unpinned:
        first += (f"<p>No trust anchor pinned: the trust bundle vouched only for itself. Hub root key to pin "
                  f"(EXCHANGE_TRUST_ANCHOR): <code>{escape(', '.join(v.unpinned))}</code></p>")
    elif v.anchor:
        first += f"<p>Trust bundle checked against the anchor <code>{escape(v.anchor)}</code></p>"
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in v.counts().items())
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
    per_pd = [[p, d, str(t[0]), str(t[1]), str(t[2]), str(t[3]), f"{(t[3] / t[1] if t[1] else 0):.2%}"]
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
    lineage = [[p, f"lake.{d}", ", ".join(sorted(departments.get(d, set()))) or "-"] for (p, d) in sorted(totals)]
    sections = [
        f"<h1>YRD exchange hub: auditor report</h1><p>Generated {data.generated_at:%Y-%m-%d %H:%M:%S} UTC"
        f"{' for ' + escape(home) if home else ''}.</p>",
        f'<h2 id="verdict">Verification</h2><div class="verdict {verdict_cls}" id="verdict-value">'
        f"{escape(v.verdict)}</div><p>Checked: {escape(counts)}; {len(v.problems)} problem(s).</p>{first}"
        "<h3>Chain entries</h3>" + logged_table(data, Section.CHAIN, "chain-log"),
        '<h2 id="batches">Batches per province and dataset</h2>'
        + table(["province", "dataset", "batches", "pulled", "accepted", "quarantined", "rejection rate"], per_pd,
                 {2, 3, 4, 5, 6}, "per-dataset"),
        '<h3>Rejection rate per batch, over time</h3>' + rejection_chart(data.manifests),
        table(["province", "dataset", "batch", "window (UTC)", "pulled", "accepted", "quarantined", "rejection rate",
                "snapshot", "contract"], batches, {4, 5, 6, 7, 8}, "batches"),
        "<h3>Batch entries in the log</h3>" + logged_table(data, Section.BATCHES, "batch-log"),
        '<h2 id="contracts">Contract versions in force</h2>'
        + table(["dataset", "contract", "version", "SHA-256"], contracts, cls="contracts"),
        '<h2 id="keys">Keys and rotations</h2>'
        + table(["owner", "key id", "algorithm", "valid from", "valid until", "status", "endorsed by"], keys,
                 cls="keys")
        + "<h3>Key entries in the log</h3>" + logged_table(data, Section.KEYS, "key-log"),
        '<h2 id="extracts">Extracts issued per department</h2>'
        + table(["department", "extract", "grant", "dataset", "snapshot", "rows", "cut at (UTC)"], extracts, {4, 5},
                 "extracts"),
        '<h2 id="access">Access and denial log</h2>'
        + logged_table(data, Section.ACCESS, "access")
        + "<h3>Denials</h3>" + table(["at (UTC)", "who", "what", "reason"], denials, cls="denials"),
        '<h2 id="lineage">Lineage: provinces → lake tables → departments</h2>'
        + table(["province", "lake table", "departments that received extracts"], lineage, cls="lineage"),
    ]
    return page("YRD exchange: auditor report", "".join(sections))


def write_report(out: Path, layout: Layout, verify: VerifyReport, bundle: TrustBundle) -> Path:
    """Collect, render and write the report atomically."""
    return write_atomically(out, render(collect(layout, verify, bundle), str(layout.home)))
