"""The access policy, decided in one place: grant x catalogue terms x masking x row scope.

Every function here is pure: it takes the grant(s), the dataset's sharing terms (from its contract, the
published catalogue entry) and the facts it needs, and returns a decision: the thing allowed (a grant,
a view with its columns, masks and row filter) or a :class:`Denial` naming its reason in words a
department can act on. Reading the registry or the contract is the callers' business
(exchange/access/registry.py, exchange/access/terms.py); :func:`require` turns a denial into AccessDenied.

What the rules are:

- sharing type: ``not_shared`` admits no grant and no use of an existing one (the contract wins at access
  time, even over a grant approved earlier); ``conditional`` needs a purpose and a legal basis;
  ``unconditional`` needs neither.
- a grant is usable while it is neither revoked nor expired (its last day included).
- each column is masked by its field's classification (the contract's masking rule), unless the grant
  names it unmasked with a justification; a ``withhold`` column is only ever delivered that way.
- a row filter is a conjunction of structured conditions compiled to SQL whose values are parameters:
  no value ever enters the SQL text, and only the dataset's own columns can be named.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, TypeVar

import pyarrow as pa

from exchange.access.models import Grant, GrantRevocation, RowCondition, SignedGrant
from exchange.errors import AccessDenied
from exchange.lake.connect import duck_type

NOT_SHARED = "not_shared"
CONDITIONAL = "conditional"
CLEAR = "none"
WITHHOLD = "withhold"

# The SQL each masking rule applies, run inside the hub ({c} is the quoted column).
MASKS: dict[str, str] = {
    CLEAR: "{c}",
    # GB 11643 ID: keep the region (first 6) and the last 4, as the national masking practice does.
    "resident_id": "CASE WHEN {c} IS NULL THEN NULL ELSE left({c}, 6) || repeat('*', length({c}) - 10) "
    "|| right({c}, 4) END",
    # Chinese names: keep the surname.
    "name": "CASE WHEN {c} IS NULL THEN NULL ELSE left({c}, 1) || repeat('*', length({c}) - 1) END",
    "mobile": "CASE WHEN {c} IS NULL THEN NULL ELSE left({c}, 3) || '****' || right({c}, 4) END",
}

DenialReason = Literal[
    # issuing a grant
    "unknown_column",        # a column (granted or filtered on) the dataset does not have
    "not_shared",            # the contract shares the dataset with nobody
    "conditions_unmet",      # conditionally shared, but the grant lacks a purpose or a legal basis
    "unjustified_unmasked",  # columns granted unmasked without a justification
    "grant_id_revoked",      # the id of a revoked grant cannot be reused
    # using one
    "no_grant",              # the department holds no grant on the dataset
    "grant_revoked",
    "grant_expired",
    "no_usable_grant",       # a query: none of the department's grants is usable
    "column_withheld",       # a withheld column the grant does not name unmasked
    "unknown_mask",          # the contract names a masking rule the hub does not know: hide, never leak
    "bad_row_filter",        # a condition that cannot be compiled (e.g. between without two values)
    "no_extract_key",        # an encrypted extract for a department that registered no key
    # the catalogue: requests and the grants their approval creates
    "item_not_shared",       # a 不予共享 catalogue item: never requested, never granted
    "beyond_item",           # columns, period, sharing method or approving office beyond the item's terms
    "no_purpose",            # a request or grant without a purpose or a legal basis
    "onward_sharing",        # passing a grant's data on without the provider's recorded consent
]

T = TypeVar("T")


@dataclass(frozen=True)
class Denial:
    """A refusal and its reason."""

    reason: DenialReason
    message: str

    def error(self) -> AccessDenied:
        """The AccessDenied to raise (its message goes to the department and the provenance log)."""
        return AccessDenied(self.message)


def require(decision: T | Denial) -> T:
    """The allowed value, or raise the denial as AccessDenied."""
    if isinstance(decision, Denial):
        raise decision.error()
    return decision


@dataclass(frozen=True)
class Terms:
    """What the catalogue entry (the dataset's contract) says about sharing it."""

    dataset: str
    sharing_type: str  # unconditional, conditional or not_shared
    masking: Mapping[str, str] = field(default_factory=dict)  # column -> masking rule by classification


@dataclass(frozen=True)
class MaskedColumn:
    """One delivered column: its masking rule ('none' = clear) and the SELECT expression applying it."""

    name: str
    mask: str
    sql: str


@dataclass(frozen=True)
class RowFilter:
    """A parameterized WHERE clause: `sql` holds only column names and placeholders, `params` the values."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class View:
    """What a grant lets its department see of a dataset: masked columns and the rows the filter keeps."""

    grant_id: str
    dataset: str
    columns: tuple[MaskedColumn, ...]
    row_filter: RowFilter

    @property
    def select(self) -> str:
        """The masked SELECT list."""
        return ", ".join(c.sql for c in self.columns)

    @property
    def masking(self) -> dict[str, str]:
        """The masking rule per delivered column (what an extract manifest records)."""
        return {c.name: c.mask for c in self.columns}


# --- issuing and choosing grants ------------------------------------------------------------------------


def sharing_denial(terms: Terms, what: str) -> Denial | None:
    """A denial when the dataset is not shared at all: `what` says what cannot happen."""
    if terms.sharing_type == NOT_SHARED:
        return Denial("not_shared", f"{terms.dataset} is not shared under its {what}")
    return None


def _unknown_columns(grant: Grant, named: Sequence[str], known: Sequence[str]) -> Denial | None:
    columns = set(known)
    unknown = [c for c in named if c not in columns]
    if unknown:
        return Denial("unknown_column", f"grant {grant.id}: unknown column(s) {', '.join(unknown)} in {grant.dataset}")
    return None


def review_grant(grant: Grant, terms: Terms, known_columns: Sequence[str],
                 revoked_ids: Container[str]) -> Denial | None:
    """Whether a grant may be recorded: its columns exist, the sharing type admits it, unmasked columns are
    justified and its id is not a revoked grant's. None when it may."""
    refused = (_unknown_columns(grant, [*grant.columns, *(r.column for r in grant.row_filter)], known_columns)
               or sharing_denial(terms, "contract; no grant is possible"))
    if refused is not None:
        return refused
    if terms.sharing_type == CONDITIONAL and not (grant.purpose.strip() and grant.legal_basis.strip()):
        return Denial("conditions_unmet",
                      f"{grant.dataset} is conditionally shared: a grant needs a purpose and a legal basis")
    if grant.unmasked and not grant.justification.strip():
        return Denial("unjustified_unmasked", f"grant {grant.id}: unmasked columns need an explicit justification")
    if grant.id in revoked_ids:
        return Denial("grant_id_revoked", f"grant id {grant.id} was revoked and cannot be reused; choose a new id")
    return None


GrantStatus = Literal["active", "revoked", "expired"]


def grant_status(grant: Grant, revoked: Container[str], today: date) -> GrantStatus:
    """Whether a grant is in force `today`: revoked (ids in `revoked`) beats expired (after its last day)."""
    if grant.id in revoked:
        return "revoked"
    return "expired" if grant.expires_on < today else "active"


def usable_grant(department: str, dataset: str, grants: Sequence[SignedGrant],
                 revoked: Mapping[str, GrantRevocation], terms: Terms, today: date) -> SignedGrant | Denial:
    """The department's grant on `dataset` it may use `today` (the latest recorded), or why there is none.

    Usable: not revoked, not expired, and the contract still shares the dataset (a contract can be
    tightened after a grant was approved; the contract wins).
    """
    mine = [g for g in grants if g.grant.department == department and g.grant.dataset == dataset]
    if not mine:
        return Denial("no_grant", f"{department} holds no grant on {dataset}")
    status = {g.grant.id: grant_status(g.grant, revoked, today) for g in mine}
    unrevoked = [g for g in mine if status[g.grant.id] != "revoked"]
    if not unrevoked:
        last = revoked[mine[-1].grant.id]
        return Denial("grant_revoked", f"{department}'s grant {last.grant_id} on {dataset} was revoked on "
                                       f"{last.revoked_at:%Y-%m-%d} by {last.revoked_by}")
    live = [g for g in unrevoked if status[g.grant.id] == "active"]
    if not live:
        return Denial("grant_expired", f"{department}'s grant {unrevoked[-1].grant.id} on {dataset} expired on "
                                       f"{unrevoked[-1].grant.expires_on}")
    return sharing_denial(terms, f"current contract; grant {live[-1].grant.id} cannot be used") or live[-1]


def query_scope(department: str, usable: Sequence[SignedGrant], unusable: Sequence[str]) -> Denial | None:
    """A department may query when it holds at least one usable grant; otherwise say why none is."""
    if usable:
        return None
    return Denial("no_usable_grant",
                  f"{department} holds no usable grant" + (f": {'; '.join(unusable)}" if unusable else ""))


def extract_key(department: str, public_key: str | None) -> str | Denial:
    """The key an encrypted extract is sealed to: the department's registered X25519 key, or a denial."""
    if public_key is None:
        return Denial("no_extract_key", f"{department} has no extract public key to encrypt to; register one with "
                                        "`exchange departments set-key` (or `departments keygen` for a demo)")
    return public_key


# --- columns and rows ----------------------------------------------------------------------------------


def column_masks(grant: Grant, terms: Terms) -> dict[str, str]:
    """The masking rule per granted column: the contract's by classification, 'none' where granted unmasked.

    A column the contract does not list is withheld: an unknown column must hide, never leak.
    """
    return {c: (CLEAR if c in grant.unmasked else terms.masking.get(c, WITHHOLD)) for c in grant.columns}


def masked_column(column: str, mask: str) -> MaskedColumn | Denial:
    """The SELECT expression delivering `column` under `mask` (quoted, aliased to the column name)."""
    quoted = f'"{column}"'
    if mask == WITHHOLD:
        return Denial("column_withheld", f"column {column} is withheld unless a grant names it with a justification")
    template = MASKS.get(mask)
    if template is None:
        return Denial("unknown_mask", f"column {column}: unknown masking rule {mask!r}")
    return MaskedColumn(column, mask, f"{template.format(c=quoted)} AS {quoted}")


def row_filter(conditions: Sequence[RowCondition], schema: pa.Schema) -> RowFilter | Denial:
    """Compile structured conditions into a parameterized WHERE clause (values never enter the SQL text).

    Only the dataset's columns can be named (anything else is denied before it could reach SQL). An
    `in` or `prefix_in` with no values keeps no row.
    """
    parts: list[str] = []
    params: list[Any] = []
    for cond in conditions:
        if cond.column not in schema.names:
            return Denial("unknown_column", f"row filter: unknown column {cond.column!r}")
        column = f'"{cond.column}"'
        ctype = duck_type(schema.field(cond.column).type)
        if cond.op in ("in", "prefix_in") and not cond.values:
            parts.append("FALSE")
        elif cond.op == "in":
            parts.append(f"{column} IN ({', '.join(f'CAST(? AS {ctype})' for _ in cond.values)})")
        elif cond.op == "prefix_in":
            parts.append("(" + " OR ".join(f"starts_with(CAST({column} AS VARCHAR), ?)" for _ in cond.values) + ")")
        elif len(cond.values) != 2:
            return Denial("bad_row_filter", f"between on {cond.column} needs exactly two values")
        else:
            parts.append(f"{column} BETWEEN CAST(? AS {ctype}) AND CAST(? AS {ctype})")
        params += cond.values
    return RowFilter(" AND ".join(parts) or "TRUE", tuple(params))


def view(grant: Grant, terms: Terms, schema: pa.Schema) -> View | Denial:
    """The grant's view of its dataset (schema: the canonical one): masked columns and row filter, or why not.

    Checked again at every use, not only when the grant was recorded: the contract may have changed since.
    """
    refused = (sharing_denial(terms, f"current contract; grant {grant.id} cannot be used")
               or _unknown_columns(grant, grant.columns, schema.names))
    if refused is not None:
        return refused
    columns: list[MaskedColumn] = []
    for name, mask in column_masks(grant, terms).items():
        column = masked_column(name, mask)
        if isinstance(column, Denial):
            return column
        columns.append(column)
    rows = row_filter(grant.row_filter, schema)
    if isinstance(rows, Denial):
        return rows
    return View(grant.id, grant.dataset, tuple(columns), rows)


# --- the catalogue (2025 Regulations on Government Data Sharing) --------------------------------------------


@dataclass(frozen=True)
class ItemTerms:
    """What a published catalogue item admits (exchange/catalogue builds it from the signed item)."""

    code: str
    dataset: str
    attribute: str  # unconditional, conditional or not_shared
    columns: tuple[str, ...]
    max_period_days: int
    methods: tuple[str, ...]
    provider_office: str
    basis: str | None = None  # legal basis of 不予共享


def item_scope_denial(item: ItemTerms, columns: Sequence[str], row_columns: Sequence[str], purpose: str,
                      legal_basis: str, until: date, method: str, today: date) -> Denial | None:
    """Whether a request (or an approval) for `item` stays inside the item's published terms. None when it does.

    不予共享 admits nothing; columns, row-scope columns, the sharing method and the period must be the item's;
    a purpose and a legal basis are always required of a request (the Regulations ask them of every request,
    even for 无条件 items, because use is bound to the stated purpose).
    """
    if item.attribute == NOT_SHARED:
        return Denial("item_not_shared", f"{item.code} is 不予共享 (not shared): {item.basis or 'no basis given'}")
    if not (purpose.strip() and legal_basis.strip()):
        return Denial("no_purpose", f"{item.code}: a request needs a purpose and a legal basis")
    unknown = [c for c in [*columns, *row_columns] if c not in item.columns]
    if unknown:
        return Denial("beyond_item", f"{item.code} has no column(s) {', '.join(dict.fromkeys(unknown))}; it offers "
                                     f"{', '.join(item.columns)}")
    if not item.methods:
        return Denial("beyond_item", f"{item.code} names no sharing method: nothing can be granted on it until "
                                     f"{item.provider_office} republishes it with one")
    if method not in item.methods:
        return Denial("beyond_item", f"{item.code} is not shared by {method}; allowed: {', '.join(item.methods)}")
    if until < today:
        return Denial("beyond_item", f"{item.code}: the period ends {until}, before today ({today})")
    limit = date.fromordinal(today.toordinal() + item.max_period_days)
    if until > limit:
        return Denial("beyond_item", f"{item.code}: the period may run {item.max_period_days} days at most "
                                     f"(until {limit}), not until {until}")
    return None


def item_grant_denial(grant: Grant, item: ItemTerms, method: str | None = None) -> Denial | None:
    """Whether a grant stays inside its catalogue item: never more than the item's attribute, columns, period
    and approving office allow (checked besides :func:`review_grant`, which holds it to the contract). `method`:
    the sharing method requested (None for a grant recorded by hand, which names none)."""
    if grant.dataset != item.dataset:
        return Denial("beyond_item", f"grant {grant.id} is on {grant.dataset}, item {item.code} on {item.dataset}")
    if grant.approved_by != item.provider_office:
        return Denial("beyond_item", f"grant {grant.id}: only {item.provider_office} grants {item.code}, not "
                                     f"{grant.approved_by}")
    return item_scope_denial(item, grant.columns, [r.column for r in grant.row_filter], grant.purpose,
                             grant.legal_basis, grant.expires_on, method or (item.methods[0] if item.methods else ""),
                             grant.issued_at.date())


def without_review(items: Sequence[ItemTerms]) -> bool:
    """A request may be approved without review only when every item it asks for is 无条件 (unconditional)."""
    return bool(items) and all(i.attribute == "unconditional" for i in items)


def onward_denial(grant: Grant, to_department: str, consented: Container[tuple[str, str]]) -> Denial | None:
    """Data received under `grant` may pass to another department only with the provider's recorded consent
    (`consented` holds (grant id, department) pairs)."""
    if (grant.id, to_department) in consented:
        return None
    return Denial("onward_sharing", f"grant {grant.id}: passing {grant.dataset} on to {to_department} needs the "
                                    f"consent of {grant.approved_by}, and none is recorded")


def licence_check(terms: Terms) -> Denial | None:
    """A minimal-disclosure licence check needs no grant, but the dataset must be shared at all."""
    return sharing_denial(terms, "current contract; licences cannot be checked")


# What a licence check may say beyond "valid" / "not valid", column by column.
CHECK_DETAILS = ("status", "issuing_authority", "issued_on", "valid_until")


@dataclass(frozen=True)
class CheckDisclosure:
    """What a licence check may add to valid / not valid: these details, for licences inside these rows."""

    details: tuple[str, ...]
    rows: RowFilter


NO_DISCLOSURE = CheckDisclosure((), RowFilter("FALSE"))


def check_disclosure(grant: Grant | None, terms: Terms, schema: pa.Schema) -> CheckDisclosure:
    """The details a licence check may disclose to a department holding `grant` (its usable grant on the
    licence dataset, if any) when the licence id and holder id asked match.

    The check itself needs no grant and then answers only valid / not valid. A grant is the office's explicit
    permission to see more: its clear (unmasked) detail columns, for licences inside its row filter, so the
    check never returns what the department could not read through its grant anyway.
    """
    if grant is None:
        return NO_DISCLOSURE
    granted = view(grant, terms, schema)
    if isinstance(granted, Denial):
        return NO_DISCLOSURE
    details = tuple(c.name for c in granted.columns if c.mask == CLEAR and c.name in CHECK_DETAILS)
    return CheckDisclosure(details, granted.row_filter) if details else NO_DISCLOSURE
