"""`exchange catalogue|requests`: the published catalogue, sharing requests, reviews, deadlines and disputes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from exchange.cli import _hub, app, console, read_model, write_text

if TYPE_CHECKING:
    from exchange.sharing.models import SharingRequest
    from exchange.sharing.service import SharingService

catalogue_app = typer.Typer(help="The government data catalogue (政务数据目录): items, terms, signed versions.",
                            no_args_is_help=True)
requests_app = typer.Typer(help="Sharing requests: file, review (approve / refuse / return once), resubmit, "
                                "withdraw, dispute, deadlines, closure.", no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(requests_app, name="requests")


def _service() -> SharingService:
    from exchange.sharing.service import SharingService

    return SharingService(_hub())


def _print_json(text: str) -> None:
    print(text)  # plain: scripts read it


# --- catalogue ------------------------------------------------------------------------------------------


@catalogue_app.command("publish")
def catalogue_publish() -> None:
    """Build the items from the contracts and exchange/catalogue/metadata.yaml; sign each changed item with its
    providing office's key and record it as a new version."""
    from exchange.sharing.service import publish_catalogue

    published = publish_catalogue(_hub())
    for signed in published:
        item = signed.item
        console.print(f"published {item.code} v{item.version} ({item.sharing_attribute}), signed by "
                      f"{item.provider_office}")
    if not published:
        console.print("catalogue unchanged: every item is current")


@catalogue_app.command("list")
def catalogue_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the current version of every published item."""
    from exchange.catalogue.models import ATTRIBUTE_ZH
    from exchange.catalogue.store import Catalogue
    from exchange.sharing.service import catalogue_dir

    current = Catalogue(catalogue_dir(_hub())).current()
    if as_json:
        _print_json(json.dumps([s.item.model_dump(mode="json") for s in current.values()], ensure_ascii=False,
                               indent=1))
        return
    table = Table("code", "v", "name", "provider", "attribute", "methods")
    for signed in current.values():
        i = signed.item
        table.add_row(i.code, str(i.version), f"{i.name_zh} / {i.name_en}", i.provider_office,
                      f"{ATTRIBUTE_ZH[i.sharing_attribute]} ({i.sharing_attribute})", ", ".join(i.sharing_methods))
    console.print(table)


@catalogue_app.command("show")
def catalogue_show(code: Annotated[str, typer.Argument(help="Item code, e.g. YRD-DZZZ-000101-JS")],
                   history: Annotated[bool, typer.Option(help="Every version, not only the current one")] = False,
                   ) -> None:
    """Print one item (signed, as published) as JSON."""
    from exchange.catalogue.store import Catalogue
    from exchange.sharing.service import catalogue_dir

    catalogue = Catalogue(catalogue_dir(_hub()))
    versions = catalogue.history(code)
    shown = versions if history else versions[-1:]
    _print_json(json.dumps([s.model_dump(mode="json") for s in shown] if history else shown[0].model_dump(mode="json"),
                           ensure_ascii=False, indent=1))


@catalogue_app.command("export")
def catalogue_export(out: Annotated[Path, typer.Option(help="File to write (schemas/catalogue-export.schema.json)")],
                     ) -> None:
    """Export the current signed version of every item in the documented JSON form."""
    from exchange.catalogue.store import Catalogue
    from exchange.sharing.service import catalogue_dir

    export = Catalogue(catalogue_dir(_hub())).export()
    write_text(out, export.model_dump_json(indent=1))
    console.print(f"{len(export.items)} items -> {out}")


@catalogue_app.command("verify")
def catalogue_verify(file: Annotated[Path, typer.Argument(help="An export from `catalogue export`")],
                     trust_bundle: Annotated[Path, typer.Option(help="Trust bundle exported by the hub")]) -> None:
    """Check every item of an export against its providing office's key (offline)."""
    from exchange.catalogue.models import CatalogueExport
    from exchange.catalogue.store import verify_item
    from exchange.signing.trust import TrustBundle

    export = read_model(file, CatalogueExport, "a catalogue export")
    bundle = read_model(trust_bundle, TrustBundle, "a trust bundle")
    for signed in export.items:
        verify_item(signed, bundle)
    console.print(f"authentic: {len(export.items)} items, each signed by its providing office", style="green")


# --- requests -----------------------------------------------------------------------------------------


def _row(req: SharingRequest, service: SharingService) -> list[str]:
    from exchange.sharing.machine import overdue

    due = service.deadlines(req)
    late = overdue(req, service.today())
    return [req.id, req.form.department, ", ".join(s.item for s in req.form.items), req.provider_office,
            req.state + (f" (overdue: {late})" if late else ""), _due(due.review, due.provisional),
            _due(due.reply, due.provisional)]


def _due(day: object, provisional: bool) -> str:
    """A deadline as shown: marked when counted over a year whose holidays are not loaded yet."""
    return f"{day} (provisional)" if provisional else str(day)


@requests_app.command("file")
def requests_file(form: Annotated[Path, typer.Argument(help="Request as JSON (schemas/request-form.schema.json)")],
                  ) -> None:
    """File a sharing request; a request for 无条件 items only is approved at once (recorded as such)."""
    from exchange.errors import BadFile
    from exchange.provenance import events
    from exchange.sharing.models import RequestForm

    hub = _hub()
    try:
        parsed = read_model(form, RequestForm, "a sharing request form")
    except BadFile as bad:
        try:
            claimed = str(json.loads(form.read_bytes()).get("department") or "operator")
        except (OSError, ValueError, AttributeError):
            claimed = "operator"
        hub.log.append(hub.signer, events.RequestRefused(attempt="file", reason=str(bad)), actor=claimed,
                       subject="request")
        raise
    service = _service()
    req = service.file(parsed)
    due = service.deadlines(req)
    console.print(f"filed {req.id}: {req.state}" + (f", grants {', '.join(req.grants)}" if req.grants else
                                                    f"; review by {_due(due.review, due.provisional)}, "
                                                    f"reply by {_due(due.reply, due.provisional)}"))
    if not req.filed_on_workday:
        console.print("filed on a non-working day: the clock starts on the next working day")


@requests_app.command("list")
def requests_list(
    department: Annotated[str | None, typer.Option(help="Only this department's")] = None,
    office: Annotated[str | None, typer.Option(help="Only those to this office")] = None,
    state: Annotated[str | None, typer.Option(help="Only in this state")] = None,
) -> None:
    """List requests with their state and deadlines."""
    service = _service()
    table = Table("id", "department", "items", "office", "state", "review by", "reply by")
    for req in service.requests(department=department, office=office, state=state):
        table.add_row(*_row(req, service))
    console.print(table)


@requests_app.command("show")
def requests_show(request_id: Annotated[str, typer.Argument(help="Request id")]) -> None:
    """Print one request with its whole history as JSON."""
    _print_json(_service().get(request_id).model_dump_json(indent=1))


Office = Annotated[str, typer.Option("--office", help="Reviewing office, e.g. jiangsu.data_office")]


@requests_app.command("approve")
def requests_approve(
    request_id: Annotated[str, typer.Argument(help="Request id")], office: Office,
    narrowed: Annotated[Path | None, typer.Option(help="JSON list of item scopes: the approved, narrower scope")]
    = None,
    until: Annotated[str | None, typer.Option(help="Approved last day (YYYY-MM-DD), if shorter than asked")] = None,
    note: Annotated[str, typer.Option(help="Note to the department")] = "",
) -> None:
    """Approve (possibly narrowed); the grants are created and linked to the request."""
    from pydantic import TypeAdapter

    from exchange.errors import BadFile, BadInput
    from exchange.sharing.models import ItemScope

    scope = None
    if narrowed is not None:
        try:
            scope = TypeAdapter(list[ItemScope]).validate_json(narrowed.read_bytes())
        except (OSError, ValueError) as exc:
            raise BadFile(narrowed, f"not a list of item scopes: {' '.join(str(exc).split())[:300]}") from None
    try:
        period = date.fromisoformat(until) if until else None
    except ValueError:
        raise BadInput(f"--until {until!r} is not a date (YYYY-MM-DD)") from None
    req = _service().decide(request_id, office, "approve", reason=note, narrowed=scope, period_until=period)
    console.print(f"approved {req.id}: grants {', '.join(req.grants)}")


@requests_app.command("refuse")
def requests_refuse(request_id: Annotated[str, typer.Argument(help="Request id")], office: Office,
                    reason: Annotated[str, typer.Option(help="The written reason (mandatory)")] = "") -> None:
    """Refuse, with a written reason."""
    req = _service().decide(request_id, office, "refuse", reason=reason)
    console.print(f"refused {req.id}: {req.refusal_reason}")


@requests_app.command("return")
def requests_return(request_id: Annotated[str, typer.Argument(help="Request id")], office: Office,
                    missing: Annotated[list[str] | None, typer.Option(help="One missing item (repeat: the notice "
                                                                             "lists everything, once)")] = None,
                    note: Annotated[str, typer.Option(help="Note to the department")] = "") -> None:
    """Return the request once, with the complete list of missing materials (一次性告知); the clock pauses."""
    req = _service().decide(request_id, office, "return", reason=note, missing=missing or [])
    console.print(f"returned {req.id}; missing: {'; '.join(req.missing)}")


@requests_app.command("apply-decision")
def requests_apply_decision(file: Annotated[Path, typer.Argument(help="A signed decision (JSON) made by an "
                                                                       "office with its own key")]) -> None:
    """Apply an office decision signed outside the hub (verified: signature, office, step; a replay is refused)."""
    from exchange.sharing.models import SignedDecision

    req = _service().apply_decision(read_model(file, SignedDecision, "a signed decision"))
    console.print(f"{req.id}: {req.state}")


Department = Annotated[str, typer.Option("--department", help="Filing department id")]


@requests_app.command("resubmit")
def requests_resubmit(request_id: Annotated[str, typer.Argument(help="Request id")], department: Department,
                      material: Annotated[list[str], typer.Option(help="Material now supplied (repeat)")],
                      purpose: Annotated[str | None, typer.Option(help="Corrected purpose")] = None,
                      legal_basis: Annotated[str | None, typer.Option(help="Corrected legal basis")] = None,
                      note: Annotated[str, typer.Option(help="What changed")] = "") -> None:
    """Send a returned request back with the missing materials; the clock resumes."""
    from exchange.sharing.models import Resubmission

    service = _service()
    req = service.resubmit(request_id, department, Resubmission(materials=material, purpose=purpose,
                                                                legal_basis=legal_basis, note=note))
    due = service.deadlines(req)
    console.print(f"resubmitted {req.id}; reply by {_due(due.reply, due.provisional)}")


@requests_app.command("withdraw")
def requests_withdraw(request_id: Annotated[str, typer.Argument(help="Request id")], department: Department,
                      note: Annotated[str, typer.Option(help="Why")] = "") -> None:
    """Withdraw an undecided request."""
    console.print(f"withdrew {_service().withdraw(request_id, department, note).id}")


@requests_app.command("dispute")
def requests_dispute(request_id: Annotated[str, typer.Argument(help="Request id")], department: Department,
                     statement: Annotated[str, typer.Option(help="The department's statement")] = "") -> None:
    """Take a refusal to the coordinating authority."""
    console.print(f"disputed {_service().dispute(request_id, department, statement).id}")


@requests_app.command("statement")
def requests_statement(request_id: Annotated[str, typer.Argument(help="Request id")], office: Office,
                       statement: Annotated[str, typer.Option(help="The office's statement")] = "") -> None:
    """The providing office's side of a dispute."""
    console.print(f"recorded {office}'s statement on {_service().office_statement(request_id, office, statement).id}")


@requests_app.command("evidence")
def requests_evidence(request_id: Annotated[str, typer.Argument(help="Request id")]) -> None:
    """Print the evidence bundle of a request (both statements, decisions, the whole history, log entries)."""
    _print_json(_service().evidence(request_id).model_dump_json(indent=1))


@requests_app.command("decide-dispute")
def requests_decide_dispute(
    request_id: Annotated[str, typer.Argument(help="Request id")],
    outcome: Annotated[str, typer.Option(help="uphold (the refusal stands) or overturn (review again)")],
    reasoning: Annotated[str, typer.Option(help="Why (mandatory)")] = "",
    authority: Annotated[str, typer.Option(help="Deciding authority actor")] = "authority",
) -> None:
    """The coordinating authority decides a dispute (signed with its key)."""
    from exchange.errors import BadInput

    if outcome not in ("uphold", "overturn"):
        raise BadInput(f"--outcome must be uphold or overturn, not {outcome!r}")
    decided: Literal["uphold", "overturn"] = "uphold" if outcome == "uphold" else "overturn"
    req = _service().decide_dispute(request_id, authority, decided, reasoning)
    console.print(f"{req.id}: dispute decided ({outcome}), now {req.state}")


@requests_app.command("overdue")
def requests_overdue(
    escalate: Annotated[bool, typer.Option(help="Escalate those not escalated yet to the coordinating authority")]
    = False,
    alert: Annotated[bool, typer.Option(help="Escalate and write the daily alert file under reports/alerts/")]
    = False,
) -> None:
    """List requests past their review or reply deadline (the coordinating authority's list)."""
    service = _service()
    if alert:
        console.print(f"alert written: {service.write_alert()}")
    late = service.escalate_overdue() if escalate or alert else service.overdue()
    table = Table("id", "department", "office", "missed", "deadline", "escalated")
    for o in late:
        table.add_row(o.request, o.department, o.provider_office, o.missed, _due(o.deadline, o.provisional),
                      f"{o.escalated_at:%Y-%m-%d}" if o.escalated_at else "")
    console.print(table)


@requests_app.command("close")
def requests_close(request_id: Annotated[str, typer.Argument(help="Request id")], department: Department,
                   note: Annotated[str, typer.Option(help="How the purpose was met")] = "") -> None:
    """The department declares the purpose met: every grant of the request ends at once."""
    req = _service().close(request_id, department, "purpose_met", note)
    console.print(f"closed {req.id}; grants ended: {', '.join(req.grants)}")


@requests_app.command("close-expired")
def requests_close_expired() -> None:
    """Close every approved request whose period has ended (run daily)."""
    closed = _service().close_expired()
    console.print(f"closed {len(closed)} request(s) whose period ended" +
                  (f": {', '.join(r.id for r in closed)}" if closed else ""))


@requests_app.command("consent")
def requests_consent(grant_id: Annotated[str, typer.Argument(help="Grant id")], office: Office,
                     to: Annotated[str, typer.Option(help="Department the data may be passed on to")],
                     purpose: Annotated[str, typer.Option(help="For what")] = "") -> None:
    """The providing office consents to onward sharing of a grant's data (signed, recorded)."""
    c = _service().consent(grant_id, office, to, purpose)
    console.print(f"recorded {c.office}'s consent: {c.grant_id} -> {c.to_department}")


@requests_app.command("onward")
def requests_onward(grant_id: Annotated[str, typer.Argument(help="Grant id")], department: Department,
                    to: Annotated[str, typer.Option(help="Department to pass the data to")]) -> None:
    """Check that data of a grant may be passed on (refused, and logged, without the provider's consent)."""
    c = _service().check_onward(grant_id, department, to)
    console.print(f"allowed: {c.office} consented on {c.at:%Y-%m-%d} ({c.purpose})")


@requests_app.command("token")
def requests_token(party: Annotated[str, typer.Argument(help="<province>.data_office or authority")],
                   days: Annotated[int, typer.Option(help="Days until it expires")] = 90) -> None:
    """Issue an API token to a province data office or the coordinating authority (secret shown once)."""
    from exchange.sharing.parties import issue
    from exchange.sharing.service import sharing_dir
    from exchange.sharing.store import SharingStore

    record, bearer = issue(SharingStore(sharing_dir(_hub())), party, days)
    console.print(f"token {record.id} for {party}, expires {record.expires_at:%Y-%m-%d %H:%M} UTC")
    print(bearer)


retention_app = typer.Typer(help="Retention of the access records (at least three years).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("show")
def retention_show() -> None:
    """List the provenance archives with the date each must be kept until; nothing younger is ever pruned."""
    from datetime import UTC, datetime

    from exchange.provenance.retention import RETENTION_YEARS, retention_plan

    hub = _hub()
    table = Table("archive", "seq", "written", "keep until", "may be pruned")
    for r in retention_plan(hub.layout.provenance, datetime.now(UTC)):
        table.add_row(r.path.name, f"{r.first_seq}..{r.last_seq}", f"{r.written:%Y-%m-%d}", f"{r.keep_until:%Y-%m-%d}",
                      "yes" if r.prunable else "no")
    console.print(table)
    console.print(f"The live log is never pruned; archives are kept at least {RETENTION_YEARS} years.")
