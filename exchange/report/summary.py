"""The demo's closing summary: one row per province and dataset, records per contract rule, where everything is,
verify's verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from exchange.access.extract import SignedExtractManifest
from exchange.datasets import PROVINCES
from exchange.hub import Hub
from exchange.provenance.manifest import SignedManifest, read_manifest
from exchange.provenance.verify import VerifyReport
from exchange.report.rejections import html_path


def print_summary(
    console: Console, hub: Hub, states: dict[str, str], extract: SignedExtractManifest, report: VerifyReport,
    opened: str | None = None,
) -> int:
    """Print the summary; return 0 if every DAG succeeded and verify found nothing broken, else 1.

    Values (names, problems) are printed as text, never as rich markup: pass a console without markup.
    """
    table = Table(title="Exchange summary (one row per province and dataset)")
    for column in ("province", "dataset", "DAG run", "pulled", "accepted", "quarantined", "snapshot", "signed by"):
        table.add_column(column, justify="right" if column in ("pulled", "accepted", "quarantined", "snapshot")
                         else "left")
    order = {p: i for i, p in enumerate(PROVINCES)}
    manifests = sorted((read_manifest(p) for p in hub.layout.manifests.rglob("*.json")),
                       key=lambda s: (order.get(s.manifest.province, 99), s.manifest.dataset, s.manifest.snapshot_id))
    for m in manifests:
        table.add_row(m.manifest.province, m.manifest.dataset, states.get(f"exchange_{m.manifest.province}", "-"),
                      str(m.manifest.counts.pulled), str(m.manifest.counts.accepted),
                      str(m.manifest.counts.quarantined), str(m.manifest.snapshot_id), m.signature.key_id)
    console.print(table)
    console.print(rule_table(manifests))
    e = extract.manifest
    layout = hub.layout
    console.print(Text.assemble("Extract for ", (e.department, "bold"), f" (grant {e.grant_id}): {e.rows} rows of "
                                f"{e.dataset} at snapshot {e.snapshot_id}, columns {', '.join(e.columns)}"))
    if opened:
        console.print(f"  {opened}", soft_wrap=True)
    console.print(f"  lake        {layout.lake}\n  manifests   {layout.manifests}\n"
                  f"  provenance  {hub.log.path}\n  quarantine  lake table `quarantine` "
                  f"(exchange quarantine list)\n  rejections  {layout.reports}/<province> (per batch: an HTML "
                  f"report for the office, a CSV of every rejected record)\n"
                  f"  extracts    {layout.extracts}\n  trust       "
                  f"{hub.keyring.trust_bundle_path}")
    example = next((html_path(layout.reports, m.manifest.province, m.manifest.batch_id) for m in manifests
                    if m.manifest.counts.quarantined), None)
    if example is not None and example.exists():
        console.print(Text.assemble("Province office report of one batch: ",
                                    (str(example), f"link {example.as_uri()}")), soft_wrap=True)
    failed = [dag_id for dag_id, state in states.items() if state != "success"]
    if failed:
        console.print(f"DAG runs not successful: {', '.join(failed)}", style="red")
    if report.ok:
        console.print(Text.assemble(("verify: intact", "green"), f" - {report.entries} provenance entries, "
                                    f"{report.manifests} manifests, {report.files} lake files, {report.extracts} "
                                    "extracts checked"))
    elif report.problems:
        console.print(Text.assemble(("verify: BROKEN", "red"), f" - first: {report.problems[0]}"))
    else:
        console.print(Text.assemble(("verify: UNANCHORED", "red"), " - no trust anchor pinned; hub root key "
                                    f"{', '.join(report.unpinned)}"))
    return 0 if report.ok and not failed else 1


def rule_table(manifests: list[SignedManifest]) -> Table:
    """Records each contract rule rejected (error) or flagged (warning), per province and in total."""
    provinces = [p for p in PROVINCES if any(m.manifest.province == p for m in manifests)]
    counts: dict[tuple[str, str, str], dict[str, int]] = {}
    for m in manifests:
        for rule in m.manifest.rules:
            if rule.unexpected:
                per = counts.setdefault((m.manifest.dataset, rule.rule_id, rule.severity), {})
                per[m.manifest.province] = per.get(m.manifest.province, 0) + rule.unexpected
    table = Table(title="Records per contract rule (error: rejected, warning: kept and flagged)")
    for column in ("dataset", "rule", "severity", *provinces, "total"):
        table.add_column(column, justify="left" if column in ("dataset", "rule", "severity") else "right")
    for (dataset, rule_id, severity), per in sorted(counts.items(), key=lambda kv: (kv[0][0], -sum(kv[1].values()))):
        table.add_row(dataset, rule_id, severity, *(str(per.get(p, 0)) for p in provinces), str(sum(per.values())))
    return table
