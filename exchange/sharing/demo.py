"""The demo's sharing part: publish the catalogue, then one request of each kind through the whole process.

1. 无条件 (unconditional) item: approved without review, the grant created at once (下载: a standing extract).
2. 有条件 item: returned once for missing materials, resubmitted, approved narrowed.
3. 有条件 item: refused with a written reason.
4. A request left unanswered past its deadlines: flagged overdue and escalated to the coordinating authority.
   To show it without waiting weeks, the demo files it with the clock set back (it says so): filing is the
   department's act and carries no signature, so nothing signed is backdated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from exchange.hub import Hub
from exchange.sharing.machine import overdue
from exchange.sharing.models import ItemScope, RequestForm, Resubmission
from exchange.sharing.service import SharingService, publish_catalogue
from exchange.sharing.workdays import calendar_for, use


@dataclass(frozen=True)
class DemoRequest:
    """One demo request and where it ended."""

    kind: str
    request_id: str
    path: str  # the states it went through
    state: str  # approved, returned, refused or overdue


def _form(department: str, item: str, columns: list[str], method: str, purpose: str, basis: str,
          now: datetime, days: int = 180) -> RequestForm:
    return RequestForm.model_validate({
        "department": department, "items": [{"item": item, "columns": columns}], "purpose": purpose,
        "legal_basis": basis, "period_until": (now + timedelta(days=days)).date().isoformat(),
        "sharing_method": method, "contact": "数据共享联络员 / data-sharing liaison, 0551-0000000"})


DEMO_CALENDAR_NOTE = ("working-day calendar: the demo sets EXCHANGE_CALENDAR_UNKNOWN_YEARS=weekends, so a year "
                      "whose holidays are not loaded counts Monday-Friday and its deadlines show as provisional")


def run_sharing_demo(hub: Hub, clock: Callable[[], datetime] | None = None) -> list[DemoRequest]:
    """File and process the four demo requests (at `clock`'s time, default now); return where each ended.
    The demo must run on any date, so it sets the unknown-year policy to weekends whatever the hub's setting."""
    calendar = calendar_for(hub.settings.model_copy(update={"calendar_unknown_years": "weekends"}))
    with use(calendar):
        return _run(hub, clock or (lambda: datetime.now(UTC)))


def _run(hub: Hub, clock: Callable[[], datetime]) -> list[DemoRequest]:
    publish_catalogue(hub)
    now = clock()
    service = SharingService(hub, clock=clock)
    done: list[DemoRequest] = []

    auto = service.file(_form("sh.market_regulation", "YRD-SCZT-000201-JS", ["uscc", "enterprise_name", "status"],
                              "download", "长三角跨省企业信用联合监管 / joint credit supervision",
                              "《优化营商环境条例》第五十五条", now))
    done.append(DemoRequest("无条件 item, approved without review", auto.id, "submitted → approved", auto.state))

    returned = service.file(_form("ah.healthcare_security", "YRD-DZZZ-000101-SH",
                                  ["license_id", "license_type", "status", "valid_until"], "online_query",
                                  "异地就医备案核验医师执业证照 / verify practitioners' licences for "
                                  "cross-province care",
                                  "《医疗保障基金使用监督管理条例》第十二条", now))
    service.decide(returned.id, "shanghai.data_office", "return", missing=[
        "单位出具的数据使用授权书 / the department's authorisation letter",
        "数据安全保护措施说明 / a description of the data-protection measures"])
    service.resubmit(returned.id, "ah.healthcare_security", Resubmission(
        materials=["授权书（皖医保函〔2026〕18号）", "数据安全保护措施说明"], note="补齐一次性告知所列材料"))
    approved = service.decide(returned.id, "shanghai.data_office", "approve",
                              narrowed=[ItemScope(item="YRD-DZZZ-000101-SH", columns=["license_id", "status"])],
                              reason="仅核验所需字段 / only the columns the check needs")
    done.append(DemoRequest("有条件 item, approved after one returned notice", approved.id,
                            "submitted → returned → submitted → approved (narrowed)", approved.state))

    refused = service.file(_form("zj.housing_provident_fund", "YRD-GJJ-000401-SH", ["transfer_id", "status"],
                                 "online_query", "核对转移接续进度 / follow transfers", "《住房公积金管理条例》", now))
    refused = service.decide(refused.id, "shanghai.data_office", "refuse",
                             reason="转入地中心已通过全国转移接续平台获取进度，无需重复共享 / the receiving centre "
                                    "already gets the status through the national transfer platform")
    done.append(DemoRequest("有条件 item, refused with a written reason", refused.id, "submitted → refused",
                            refused.state))

    earlier = now - timedelta(days=28)
    late_service = SharingService(hub, clock=lambda: earlier)
    late = late_service.file(_form("js.public_security", "YRD-GJJ-000401-ZJ", ["transfer_id", "region_code"],
                                   "online_query", "协查在逃人员住房公积金转移 / assist an investigation",
                                   "《中华人民共和国刑事诉讼法》第五十四条", earlier))
    service.escalate_overdue()
    late = service.get(late.id)
    missed = overdue(late, service.today())
    due = service.deadlines(late)
    done.append(DemoRequest("left unanswered (filed 28 days earlier, clock set back)", late.id,
                            f"submitted → overdue ({missed} deadline {due.reply}"
                            f"{' provisional' if due.provisional else ''}), escalated",
                            "overdue" if missed else late.state))
    return done
