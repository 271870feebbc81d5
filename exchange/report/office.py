"""The HTML report of one batch for the provincial data office that sent it: what broke, where, how to fix it.

Written beside the batch's rejection CSV as ``<batch>.rejections.html``, in Chinese with English alongside
(contracts write every description as "中文 / English"). One self-contained page: counts, whether the
contract's threshold held the batch and what to do then, one row per failing rule (the field in both
languages, the rule's text saying what to fix, the number of records) and the first rejected records with
their offending values masked by classification. Every value is HTML-escaped; nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

import pyarrow as pa

from exchange.contracts.model import Contract
from exchange.contracts.validate import RUN_TIMEZONE
from exchange.datasets import PROVINCE_NAMES
from exchange.report.html import page, table
from exchange.report.masked import explain

SAMPLE_RECORDS = 50  # records the page lists; the CSV has them all
SEVERITY_TEXT = {"error": "错误，已隔离 / error, quarantined", "warning": "警告，已保留 / warning, kept"}
_PAIRS = (("(", ")"), ("（", "）"))


def bilingual(text: str) -> tuple[str, str]:
    """Split a contract's "中文 / English" text at the first " / " outside brackets; ("text", "") if none."""
    start = 0
    while (at := text.find(" / ", start)) >= 0:
        head = text[:at]
        if all(head.count(o) == head.count(c) for o, c in _PAIRS):
            return head.strip(), text[at + 3:].strip()
        start = at + 3
    return text.strip(), ""


@dataclass(frozen=True)
class RuleRow:
    """One failing rule: where it looks, what it says to fix, how many records broke it."""

    rule_id: str
    severity: str
    fields_zh: str
    fields_en: str
    fix_zh: str
    fix_en: str
    records: int


@dataclass(frozen=True)
class SampleRow:
    """One rule one rejected record broke, with the offending value(s) masked."""

    record_key: str
    rule_id: str
    values: str
    fix_zh: str
    fix_en: str


@dataclass(frozen=True)
class OfficeReport:
    """Everything the page shows about one batch."""

    batch_id: str
    province: str
    dataset: str
    dataset_zh: str
    dataset_en: str
    window: tuple[datetime, datetime] | None
    contract_id: str
    contract_version: str
    threshold: float
    pulled: int
    accepted: int
    quarantined: int
    warned: int | None
    held: bool
    rules: list[RuleRow]
    sample: list[SampleRow]
    sampled_records: int
    csv_name: str

    @property
    def rejection_rate(self) -> float:
        """Quarantined share of the pulled records."""
        return self.quarantined / self.pulled if self.pulled else 0.0

    @classmethod
    def build(
        cls,
        *,
        batch_id: str,
        province: str,
        contract: Contract,
        counts: dict[str, Any],
        rules: Sequence[dict[str, Any]],
        quarantined: pa.Table,
        window: tuple[datetime, datetime] | None,
    ) -> OfficeReport:
        """Gather the page's content: rule texts from `contract`, a masked sample from `quarantined`."""
        rows = [_rule_row(contract, r["rule_id"], r["severity"], int(r["unexpected"]))
                for r in rules if r["unexpected"]]
        rows.sort(key=lambda r: (r.severity != "error", -r.records))
        head = quarantined.slice(0, SAMPLE_RECORDS)
        explained = explain(head, contract)
        keys = explained.keys.to_pylist()
        unknown = explained.unknown.to_pylist()
        ids = head.column("rule_id").to_pylist()
        per_rule = [(h.rule, h.hit.to_pylist(), h.values.to_pylist()) for h in explained.rules]
        sample = []
        for i, key in enumerate(keys):
            for rule, hit, values in per_rule:
                if hit[i]:
                    zh, en = bilingual(rule.description)
                    sample.append(SampleRow(key or "", rule.id, values[i] or "", zh, en))
            if unknown[i]:
                sample.append(SampleRow(key or "", ids[i] or "", "", f"规则不在合同 {contract.version} 中",
                                        f"rule not in contract version {contract.version}"))
        dataset_zh, dataset_en = bilingual(contract.raw.name or contract.dataset)
        return cls(
            batch_id=batch_id, province=province, dataset=contract.dataset, dataset_zh=dataset_zh,
            dataset_en=dataset_en, window=window, contract_id=contract.id, contract_version=contract.version,
            threshold=contract.batch_hold_threshold, pulled=int(counts["pulled"]), accepted=int(counts["accepted"]),
            quarantined=int(counts["quarantined"]),
            warned=int(counts["warned"]) if counts.get("warned") is not None else None,
            held=bool(counts.get("held", False)), rules=rows, sample=sample, sampled_records=head.num_rows,
            csv_name=f"{batch_id}.rejections.csv",
        )


def _rule_row(contract: Contract, rule_id: str, severity: str, records: int) -> RuleRow:
    try:
        rule = contract.rule(rule_id)
    except KeyError:  # counted under another contract version (a replay); say so rather than guess
        return RuleRow(rule_id, severity, "", "", f"规则不在合同 {contract.version} 中",
                       f"rule not in contract version {contract.version}", records)
    zh_fields, en_fields = [], []
    for column in rule.columns:
        zh, en = bilingual(contract.field(column).description)
        zh_fields.append(zh or column)
        en_fields.append(f"{column} ({en})" if en else column)
    fix_zh, fix_en = bilingual(rule.description)
    return RuleRow(rule.id, severity, "；".join(zh_fields), "; ".join(en_fields), fix_zh, fix_en, records)


def _percent(share: float) -> str:
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _window(window: tuple[datetime, datetime] | None) -> str:
    if window is None:
        return "-"
    start, end = (w.astimezone(RUN_TIMEZONE) for w in window)
    return (f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} 北京时间 / China Standard Time "
            f"(UTC {window[0]:%Y-%m-%dT%H:%M:%SZ} – {window[1]:%Y-%m-%dT%H:%M:%SZ})")


def _verdict(r: OfficeReport) -> str:
    rate, threshold = _percent(r.rejection_rate), _percent(r.threshold)
    if r.held:
        rerun = f"exchange run --province {r.province} --dataset {r.dataset}"
        if r.window is not None:
            rerun += f" --start {r.window[0].isoformat()} --end {r.window[1].isoformat()}"
        return (
            '<div class="verdict broken" id="verdict">整批暂停入湖 / HELD</div>'
            f"<p>本批不合格记录占 {escape(rate)}，超过数据合同规定的 {escape(threshold)}，"
            "整批未入湖（合格记录也未入湖）。请按下表在源系统修正问题记录后，重新运行本时间窗口。</p>"
            f'<p class="en">{escape(rate)} of this batch\'s records failed, more than the contract\'s threshold of '
            f"{escape(threshold)}, so the whole batch was held: nothing from it was committed, not even the "
            "records that passed. Fix the records listed below at source, then re-run this window:</p>"
            f"<p><code>{escape(rerun)}</code></p>"
        )
    if not r.quarantined:
        return ('<div class="verdict intact" id="verdict">全部通过 / ALL PASSED</div>'
                "<p>本批记录全部通过数据合同检查。</p><p class=\"en\">Every record of this batch passed the contract."
                "</p>")
    return (
        '<div class="verdict intact" id="verdict">未暂停 / NOT HELD</div>'
        f"<p>不合格记录占 {escape(rate)}，未超过阈值 {escape(threshold)}：合格记录继续入湖，不合格记录已隔离。"
        "请在源系统修正下列记录，并更新其更新时间，下次交换时将重新报送。</p>"
        f'<p class="en">{escape(rate)} of the records failed, within the threshold of {escape(threshold)}: the '
        "records that passed go on to the lake, the rejected ones are quarantined. Fix them at source and give "
        "them a new update time; the next exchange brings them again.</p>"
    )


def render(r: OfficeReport) -> str:
    """The page as one HTML string (lang zh-CN, English alongside)."""
    province_zh = PROVINCE_NAMES.get(r.province, r.province)
    province_en = r.province.capitalize()
    about = [
        ["批次 / batch", r.batch_id],
        ["省份 / province", f"{province_zh} / {province_en}"],
        ["数据集 / dataset", f"{r.dataset_zh} / {r.dataset_en} ({r.dataset})"],
        ["时间窗口 / window", _window(r.window)],
        ["数据合同 / contract", f"{r.contract_id} v{r.contract_version}"],
        ["暂停阈值 / hold threshold", _percent(r.threshold)],
    ]
    counts = [[str(r.pulled), str(r.accepted), str(r.quarantined), "-" if r.warned is None else str(r.warned),
               _percent(r.rejection_rate)]]
    rules = [[x.rule_id, SEVERITY_TEXT.get(x.severity, x.severity), x.fields_zh, x.fields_en, x.fix_zh, x.fix_en,
              str(x.records)] for x in r.rules]
    sample = [[s.record_key, s.rule_id, s.values, s.fix_zh, s.fix_en] for s in r.sample]
    more = r.quarantined - r.sampled_records
    sections = [
        f"<h1>{escape(province_zh)}{escape(r.dataset_zh)}数据批次检查报告</h1>"
        f'<p class="en">Batch report for the {escape(province_en)} data office: {escape(r.dataset_en)}</p>',
        table(["项目 / item", "内容 / value"], about, cls="about"),
        '<h2 id="result">检查结果 / Result</h2>' + _verdict(r),
        table(["拉取 / pulled", "入湖 / accepted", "隔离 / quarantined", "警告 / warned", "拒收率 / rejection rate"],
              counts, {0, 1, 2, 3, 4}, "counts"),
        '<h2 id="rules">按规则统计 / Records per rule</h2>'
        "<p>每条规则的说明即修正方法。<span class=\"en\">Each rule's text says what to fix.</span></p>"
        + table(["规则 / rule", "级别 / severity", "字段", "field", "问题及修正方法", "what to fix",
                 "记录数 / records"], rules, {6}, "rules", empty="无 / none"),
        '<h2 id="sample">不合格记录示例 / Rejected records</h2>'
        f"<p>前 {r.sampled_records} 条不合格记录（共 {r.quarantined} 条），全部记录见 "
        f'<a href="{escape(r.csv_name)}">{escape(r.csv_name)}</a>。'
        f'<span class="en">The first {r.sampled_records} of {r.quarantined} rejected records'
        f"{f'; {more} more' if more > 0 else ''}: all of them are in the CSV beside this page.</span></p>"
        + table(["记录标识 / record key", "规则 / rule", "问题值（已脱敏） / offending value (masked)",
                 "问题及修正方法", "what to fix"], sample, cls="sample", empty="无 / none"),
        "<p>敏感字段按数据合同的分级脱敏（身份证号保留前6位和后4位，姓名保留姓氏）；完整记录保存在交换平台的隔离区"
        "（<code>exchange quarantine show 记录标识</code>）。</p>"
        '<p class="en">Sensitive values are masked by the contract\'s classification, as for departments (resident '
        "IDs keep the first 6 and last 4 characters, names the surname); the full record is in the hub's "
        "quarantine (<code>exchange quarantine show KEY</code>).</p>",
    ]
    return page(f"{r.batch_id}: 数据批次检查报告 / batch report", "".join(sections), lang="zh-CN")
