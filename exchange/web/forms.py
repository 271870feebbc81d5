"""What the web forms post, turned into the sharing service's typed inputs (pure: no I/O).

Bad input raises FieldError: one bilingual line naming the field, which the page shows above the form it
re-renders. Whether the content is acceptable (columns within the item, period within its limit, a step the
state allows...) is not decided here but by the service, as for the CLI and the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, cast

from pydantic import ValidationError

from exchange.access.models import RowCondition
from exchange.errors import BadInput
from exchange.sharing.models import ItemScope, RequestForm, Resubmission

Fields = Mapping[str, Sequence[str]]
"""A posted form: each field name with its values (checkboxes post several)."""

LABELS: dict[str, str] = {
    "item": "目录项", "columns": "字段", "scope_column": "行范围字段", "scope_op": "行范围条件",
    "scope_values": "行范围取值", "purpose": "用途", "legal_basis": "法律依据", "period_until": "使用期限",
    "sharing_method": "共享方式", "contact": "联系人", "materials": "材料", "note": "说明", "outcome": "决定",
    "reason": "理由", "missing": "缺少的材料", "approved_columns": "批准的字段", "statement": "陈述",
    "reasoning": "理由", "token": "令牌",
}
_REQUIRED = ("必填", "is required")


class FieldError(BadInput):
    """Bad input in one form field: the message is one line, in Chinese and English, naming the field."""

    def __init__(self, field: str, zh: str, en: str) -> None:
        self.field = field
        super().__init__(f"{LABELS.get(field, field)}（{field}）：{zh} / {field}: {en}")


def _one(data: Fields, name: str, required: bool = True) -> str:
    values = data.get(name) or []
    text = " ".join((values[0] if values else "").split())
    if required and not text:
        raise FieldError(name, *_REQUIRED)
    return text


def _lines(data: Fields, name: str) -> list[str]:
    values = data.get(name) or []
    return [line.strip() for v in values for line in v.splitlines() if line.strip()]


def _date(data: Fields, name: str, required: bool = True) -> date | None:
    text = _one(data, name, required)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FieldError(name, "日期格式应为 YYYY-MM-DD", "expected a date as YYYY-MM-DD") from None


def _pydantic(error: ValidationError, fallback: str) -> FieldError:
    first = error.errors()[0]
    names = [str(p) for p in first["loc"] if isinstance(p, str)]
    field = next((n for n in reversed(names) if n in LABELS), fallback)
    return FieldError(field, "不符合要求", first["msg"])


def row_scope(data: Fields) -> list[RowCondition]:
    """The one structured row condition the form offers (column, operator, comma-separated values), or none."""
    column = _one(data, "scope_column", required=False)
    if not column:
        return []
    op = _one(data, "scope_op")
    if op not in ("in", "prefix_in", "between"):
        raise FieldError("scope_op", "应为 in、prefix_in 或 between", "must be in, prefix_in or between")
    values = [v.strip() for v in _one(data, "scope_values").split(",") if v.strip()]
    if op == "between" and len(values) != 2:
        raise FieldError("scope_values", "between 需要两个值（起,止）", "between needs two values: from,to")
    return [RowCondition(column=column, op=cast(Literal["in", "prefix_in", "between"], op), values=values)]


def request_form(department: str, data: Fields) -> RequestForm:
    """A department's request from the filing form (one item; the department is the session's)."""
    item = _one(data, "item")
    columns = [c for c in data.get("columns") or [] if c.strip()]
    if not columns:
        raise FieldError("columns", "至少选择一个字段", "choose at least one column")
    values = {"purpose": _one(data, "purpose"), "legal_basis": _one(data, "legal_basis"),
              "period_until": _date(data, "period_until"), "sharing_method": _one(data, "sharing_method"),
              "contact": _one(data, "contact")}
    try:
        scope = ItemScope(item=item, columns=columns, row_scope=row_scope(data))
        return RequestForm.model_validate({"department": department, "items": [scope],
                                           "materials": _lines(data, "materials"), **values})
    except ValidationError as bad:
        raise _pydantic(bad, "item") from None


def resubmission(data: Fields) -> Resubmission:
    """A returned request sent back: the materials now supplied (one a line) and optional corrections."""
    materials = _lines(data, "materials")
    if not materials:
        raise FieldError("materials", "请逐行列出补充的材料", "list the materials now supplied, one a line")
    return Resubmission(materials=materials, purpose=_one(data, "purpose", required=False) or None,
                        legal_basis=_one(data, "legal_basis", required=False) or None,
                        note=_one(data, "note", required=False))


@dataclass(frozen=True)
class DecisionInput:
    """An office's decision as the review form gives it."""

    outcome: Literal["approve", "refuse", "return"]
    reason: str
    missing: list[str]
    narrowed: list[ItemScope] | None
    period_until: date | None


def decision(data: Fields, asked: Sequence[ItemScope]) -> DecisionInput:
    """The review form: approve (optionally fewer columns, a shorter period), refuse (reason), return (list)."""
    outcome = _one(data, "outcome")
    if outcome not in ("approve", "refuse", "return"):
        raise FieldError("outcome", "应为批准、拒绝或退回补正", "must be approve, refuse or return")
    reason = _one(data, "reason", required=outcome == "refuse")
    missing = _lines(data, "missing")
    if outcome == "return" and not missing:
        raise FieldError("missing", "一次性逐行列出全部缺少的材料", "list everything missing, one a line, at once")
    narrowed = None
    until = None
    if outcome == "approve":
        until = _date(data, "period_until", required=False)
        chosen = set(data.get("approved_columns") or [])
        if chosen:
            narrowed = [s.model_copy(update={"columns": [c for c in s.columns if c in chosen]}) for s in asked]
            if any(not s.columns for s in narrowed):
                raise FieldError("approved_columns", "每个目录项至少批准一个所申请的字段",
                                 "approve at least one of the columns asked for")
    return DecisionInput(outcome=cast(Literal["approve", "refuse", "return"], outcome), reason=reason,
                         missing=missing, narrowed=narrowed, period_until=until)


def statement(data: Fields, name: str = "statement") -> str:
    """A dispute statement or note (required)."""
    return _one(data, name)


def dispute_decision(data: Fields) -> tuple[Literal["uphold", "overturn"], str]:
    """The coordinating authority's decision: uphold or overturn the refusal, and why."""
    outcome = _one(data, "outcome")
    if outcome not in ("uphold", "overturn"):
        raise FieldError("outcome", "应为维持或撤销拒绝", "must be uphold or overturn")
    return cast(Literal["uphold", "overturn"], outcome), _one(data, "reasoning")
