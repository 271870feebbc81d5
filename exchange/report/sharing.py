"""The auditor report's sharing section: requests, the decisions taken on them, and overdue requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import partial
from html import escape
from pathlib import Path

from exchange.provenance.events import Kind
from exchange.provenance.log import ProvenanceEntry
from exchange.report.html import table
from exchange.sharing.models import SharingRequest

_table = partial(table, empty="无 / none")
DECISION_KINDS = (Kind.REQUEST_DECISION, Kind.DISPUTE_DECIDE, Kind.REQUEST_ESCALATE, Kind.GRANT_CLOSE,
                  Kind.REQUEST_REFUSED)


def read_requests(home: Path) -> list[SharingRequest]:
    """Every sharing request under EXCHANGE_HOME/sharing (none when sharing was never used)."""
    from exchange.sharing.store import SharingStore

    return SharingStore(home / "sharing").all()


def sharing_section(requests: Sequence[SharingRequest], access: Sequence[ProvenanceEntry], today: date) -> str:
    """The HTML of the section: requests with deadlines, decisions from the log, and the overdue list."""
    from exchange.sharing.machine import deadlines as request_deadlines
    from exchange.sharing.machine import overdue
    from exchange.sharing.workdays import CalendarYearUnknown

    rows, late, notes = [], [], []
    for r in requests:
        try:
            due = request_deadlines(r, today)
            missed = overdue(r, today)
            review, reply = str(due.review), str(due.reply)
            if due.provisional:  # counted Monday-Friday over a year whose holidays are not loaded yet
                review, reply = f"{review} (暂定 / provisional)", f"{reply} (暂定 / provisional)"
        except CalendarYearUnknown as unknown:  # say so rather than guess or fail the whole report
            review = reply = "?"
            missed = None
            notes.append(str(unknown))
        rows.append([r.id, r.form.department, ", ".join(s.item for s in r.form.items), r.provider_office,
                     f"{r.filed_at:%Y-%m-%d %H:%M}", r.state, review, reply, ", ".join(r.grants)])
        if missed is not None:
            late.append([r.id, r.provider_office, missed, reply if missed == "reply" else review,
                         f"{r.escalated_at:%Y-%m-%d %H:%M}" if r.escalated_at else ""])
    decisions = [[f"{e.at:%Y-%m-%d %H:%M}", e.actor, e.subject, e.action,
                  str(e.details.get("outcome", e.details.get("reason", e.details.get("missed", "")))),
                  str(e.details.get("reason", e.details.get("reasoning", "")) or "; ".join(e.details.get("missing")
                                                                                            or []))]
                 for e in access if e.action in DECISION_KINDS]
    note = "".join(f"<p><code>{escape(n)}</code></p>" for n in dict.fromkeys(notes))
    return ('<h2 id="sharing">共享申请与审核 / Sharing requests and reviews</h2>' + note
            + _table(["申请 / request", "部门 / department", "目录项 / items", "审核机构 / office",
                      "提交 / filed (UTC)", "状态 / state", "审核期限 / review by", "答复期限 / reply by",
                      "授权 / grants"], rows, cls="sharing-requests")
            + "<h3>决定 / Decisions</h3>"
            + _table(["时间 / at (UTC)", "决定者 / by", "申请 / request", "事件 / action", "结果 / outcome",
                      "理由 / reason"], decisions, cls="sharing-decisions")
            + "<h3>逾期 / Overdue</h3>"
            + _table(["申请 / request", "审核机构 / office", "逾期 / missed", "期限 / deadline",
                      "已上报 / escalated"], late, cls="sharing-overdue"))
