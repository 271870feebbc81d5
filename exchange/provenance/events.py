"""The provenance vocabulary: every kind of event the hub records, who may record it, and what it carries.

One class per kind. Its docstring is the kind's meaning, its fields are the entry's ``details`` (validated
when the entry is written), and its class attributes say which roles may record it (``roles``), which
digests the entry must carry (``digests``; ``more_digests`` allows further ones named by file), what its
``subject`` names, and in which section of the auditor's report it appears. Defining a subclass of
:class:`Event` adds the kind to :data:`VOCABULARY`; the event table of docs/auditors.md, the JSON Schema of
the provenance entry, the auditor report and ``trace`` are derived from it (and tests hold them to it).

Writing is strict (:meth:`exchange.provenance.log.ProvenanceLog.append` takes only these events); reading is
lenient: entries written before the vocabulary existed, or of kinds since retired, keep verifying and are
read as plain action + details.

To add a kind: a :class:`Kind` member, its class here (in the same order), a sample in
tests/unit/sample_events.py (a test asks for one per kind), then ``make schemas`` (python -m exchange.schemas)
to regenerate the entry's JSON Schema and the table in docs/auditors.md. Changing a kind's details changes
what new entries carry; entries already written keep verifying whatever their details say.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.errors import InternalError, Refused


class Kind(StrEnum):
    """The name of an event kind, as written in an entry's ``action``."""

    PULL = "pull"
    VALIDATE = "validate"
    QUARANTINE = "quarantine"
    HOLD = "hold"
    COMMIT = "commit"
    COMMIT_INTENT = "commit_intent"
    RECOVERED = "recovered"
    CLEANUP = "cleanup"
    REPLAY = "replay"
    EXTRACT = "extract"
    DOWNLOAD = "download"
    LIST = "list"
    QUERY = "query"
    QUERY_FAILED = "query_failed"
    ACCESS_DENIED = "access_denied"
    LOCKOUT = "lockout"
    LICENSE_CHECK = "license_check"
    SHARING = "sharing"
    SHARING_DOWNLOAD = "sharing_download"
    GRANT = "grant"
    GRANT_REVOKE = "grant_revoke"
    DEPARTMENT_ADD = "department_add"
    DEPARTMENT_EXTRACT_KEY = "department_extract_key"
    TOKEN_ISSUE = "token_issue"
    TOKEN_REVOKE = "token_revoke"
    SUBJECT_TRACE = "subject_trace"
    KEY_TRUST = "key_trust"
    KEY_ROTATE = "key_rotate"
    KEY_REVOKE = "key_revoke"
    CHECKPOINT = "checkpoint"
    TRUNCATE = "truncate"
    COUNTERSIGN = "countersign"
    WITNESS = "witness"
    CATALOGUE_PUBLISH = "catalogue_publish"
    REQUEST_FILE = "request_file"
    REQUEST_DECISION = "request_decision"
    REQUEST_RESUBMIT = "request_resubmit"
    REQUEST_WITHDRAW = "request_withdraw"
    REQUEST_ESCALATE = "request_escalate"
    DISPUTE_RAISE = "dispute_raise"
    DISPUTE_STATEMENT = "dispute_statement"
    DISPUTE_DECIDE = "dispute_decide"
    GRANT_CLOSE = "grant_close"
    ONWARD_CONSENT = "onward_consent"
    REQUEST_REFUSED = "request_refused"


class Role(StrEnum):
    """Who an actor is, as far as the log is concerned."""

    HUB = "hub"
    PROVINCE_OFFICE = "province_office"
    DEPARTMENT = "department"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    AUTHORITY = "authority"  # the coordinating authority (主管部门): overdue requests and disputes


class Section(StrEnum):
    """The section of the auditor's report (its HTML id) where entries of a kind are counted."""

    BATCHES = "batches"
    KEYS = "keys"
    ACCESS = "access"
    CHAIN = "verdict"


class Subject(StrEnum):
    """What an entry's ``subject`` names."""

    BATCH = "batch id"
    EXTRACT = "extract id"
    DATASETS = "the datasets read, comma-separated ('query' when none)"
    REQUEST = "'query'"
    ATTEMPT = "what was asked for: a dataset, 'query', an extract id, a token id or a request path"
    LISTING = "what was listed: 'me' or 'datasets'"
    SHARED = "what a Delta Sharing call named: the share, or share.schema.table"
    DATASET = "dataset"
    GRANT = "grant id"
    DEPARTMENT = "department id"
    TOKEN = "token id"
    KEY_OWNER = "key owner, e.g. hub or jiangsu"
    KEY = "key id"
    RESIDENT = "hmac-sha256 of the resident ID (never the ID)"
    LOG = "'provenance'"
    SETTLED = "what recovery settled: a batch id, an extract id, or 'provenance' (a torn last log line)"
    RECOVERY = "'recovery'"
    ITEM = "catalogue item code"
    SHARING_REQUEST = "sharing request id"
    SHARING_ATTEMPT = "what was attempted on: a sharing request id, a catalogue item code or 'request' (a new one)"


class UnrecordableEvent(InternalError):
    """The hub tried to write an event the vocabulary does not allow (unknown kind, details not fitting its
    model, an actor whose role may not record it, a required digest missing): a bug, nothing is written."""


class RoleRefused(Refused):
    """An actor whose role may not record this kind of event, e.g. a grant revoked by someone other than a
    data office: callers check it before acting on a user's word (`exchange grants revoke --by`)."""


HUB = "hub"  # the hub's own actor name
_OFFICE = re.compile(r"[a-z][a-z0-9_-]*\.data_office")


def role_of(actor: str) -> Role:
    """The role an actor string stands for.

    ``hub`` and ``adapter:<province>`` (hub code pulling for a province) are the hub; ``<province>.data_office``
    a province's data office; ``auditor`` / ``auditor:<name>`` and ``operator`` / ``operator:<name>`` those
    roles; ``authority`` / ``authority:<name>`` the coordinating authority; any other name is a department id
    (``js.public_security``): the access paths log a refused caller under the name it claimed, so this never fails.
    """
    if actor == HUB or actor.startswith("adapter:"):
        return Role.HUB
    for role in (Role.AUDITOR, Role.OPERATOR, Role.AUTHORITY):
        if actor == role.value or actor.startswith(f"{role.value}:"):
            return role
    if _OFFICE.fullmatch(actor):
        return Role.PROVINCE_OFFICE
    return Role.DEPARTMENT


class Event(BaseModel):
    """The details of one kind of provenance entry; subclasses are the vocabulary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[Kind]
    roles: ClassVar[frozenset[Role]]
    # Who may sign the entry, as against who may record it: the hub signs every entry of its log, also one
    # recording a department's or an office's act, so a province or department key never writes hub history.
    signers: ClassVar[frozenset[Role]] = frozenset({Role.HUB})
    subject: ClassVar[Subject]
    section: ClassVar[Section]
    digests: ClassVar[tuple[str, ...]] = ()
    more_digests: ClassVar[str] = ""  # what further digest keys name, if the entry may carry others

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            return  # a base sharing fields between kinds (_Verdict, _AccessContext), not a kind itself
        if cls.kind in VOCABULARY:
            raise TypeError(f"{cls.__name__}: kind {cls.kind} is already {VOCABULARY[cls.kind].__name__}")
        VOCABULARY[cls.kind] = cls

    @classmethod
    def meaning(cls) -> str:
        """One line: what an entry of this kind says happened."""
        return " ".join((cls.__doc__ or "").split())

    def details(self) -> dict[str, Any]:
        """The entry's ``details``: the fields the caller set (an optional fact left out stays out)."""
        # No serializer warnings: admit() validates this dump and refuses what does not fit.
        return self.model_dump(mode="json", exclude_unset=True, warnings=False)


VOCABULARY: dict[Kind, type[Event]] = {}

_HUB = frozenset({Role.HUB})
_ADMIN = frozenset({Role.HUB, Role.OPERATOR})
_DEPARTMENT = frozenset({Role.DEPARTMENT})
_OFFICES = frozenset({Role.PROVINCE_OFFICE})


def _f(description: str, default: Any = ...) -> Any:
    return Field(default, description=description)


# --- a batch's way into the lake ---------------------------------------------------------------------


class Pull(Event):
    """An adapter landed a province's payload for one window and verified the province's signatures on it."""

    kind = Kind.PULL
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES
    more_digests = "SHA-256 of each landing file, by file name"

    pulled: int = _f("Records pulled")
    deleted: int = _f("Deletions the province reported in the window")
    since: str | None = _f("Watermark the pull started from (ISO 8601; null for a first pull)")
    window_end: str = _f("End of the window pulled (ISO 8601)")
    source_signatures: list[dict[str, Any]] = _f("The province signatures the adapter verified: who vouched "
                                                 "for which landed bytes")
    drift: list[dict[str, Any]] = _f("Schema drift seen in the payload (extra or missing native fields)")


class _Verdict(Event):
    pulled: int = _f("Records checked")
    accepted: int = _f("Records that passed the contract")
    quarantined: int = _f("Records that failed it")
    gx_success: bool = _f("Whether the Great Expectations run passed as a whole")
    held: bool = _f("Whether the batch was held (too many failures to commit)")


class Validate(_Verdict):
    """The hub checked a batch against its data contract."""

    kind = Kind.VALIDATE
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES
    digests = ("contract",)
    more_digests = "SHA-256 of the office rejection report files (CSV, HTML, summary JSON), by file name"


class Quarantine(Event):
    """The hub set aside a batch's failing records, each with its rule and reason."""

    kind = Kind.QUARANTINE
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES
    digests = ("quarantined.parquet",)

    quarantined: int = _f("Records quarantined")


class Hold(_Verdict):
    """The hub held a batch: more records failed than the contract's threshold allows; nothing committed."""

    kind = Kind.HOLD
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES


class Commit(Event):
    """The hub committed a batch to the lake as one snapshot and signed its manifest."""

    kind = Kind.COMMIT
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES
    digests = ("manifest",)

    snapshot_id: int = _f("The DuckLake snapshot of the batch")
    accepted: int = _f("Records committed")
    quarantined: int = _f("Records quarantined")
    manifest: str = _f("The signed batch manifest, relative to EXCHANGE_HOME")


class CommitIntent(Event):
    """The hub is about to commit a batch to the lake (the commit protocol's intent): these staged files, no
    other. A commit_intent without a commit after it is an interrupted commit, which recovery settles."""

    kind = Kind.COMMIT_INTENT
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES
    more_digests = "SHA-256 of each staged file the commit reads, by file name"

    staged: list[str] = _f("The staged files the commit reads (their digests are the entry's digests)")


class Recovered(Event):
    """Recovery settled what a crash interrupted: a commit completed from its staged files or found not
    committed (its files removed; on object storage left and named), an extract moved into place, or a torn log
    line cut off."""

    kind = Kind.RECOVERED
    roles = _HUB
    subject = Subject.SETTLED
    section = Section.BATCHES
    more_digests = "manifest: SHA-256 of the manifest recovery wrote or found"

    outcome: str = _f("committed, not_committed, extract_published or torn_line_removed")
    snapshot_id: int | None = _f("The batch's DuckLake snapshot (committed)", None)
    missing: str | None = _f("What the interrupted commit had not written yet (committed)", None)
    removed: list[str] = _f("Lake files of the interrupted attempt removed, relative to the data path", [])
    left: list[str] = _f("Lake files of the interrupted attempt left on object storage, which DuckDB cannot "
                         "delete from (an operator deletes them)", [])
    bytes: int | None = _f("Length of the torn log line cut off (torn_line_removed)", None)


class Cleanup(Event):
    """Recovery removed partial or unreferenced files a crash left (each with its size and why)."""

    kind = Kind.CLEANUP
    roles = _HUB
    subject = Subject.RECOVERY
    section = Section.BATCHES

    removed: list[dict[str, Any]] = _f("path (relative to EXCHANGE_HOME), size in bytes, and why, per file")


class Replay(Event):
    """The hub re-checked a batch's quarantined records under a (fixed) contract; a commit follows."""

    kind = Kind.REPLAY
    roles = _HUB
    subject = Subject.BATCH
    section = Section.BATCHES
    digests = ("origin_manifest", "replayed_records", "contract")

    origin: str = _f("The batch whose quarantined records were replayed")
    rule: str | None = _f("Only records quarantined by this rule (null: all pending)")
    replayed: int = _f("Records replayed")
    accepted: int = _f("Records that now pass")
    quarantined: int = _f("Records still failing")
    contract_version: str = _f("Contract version they were checked against")
    origin_contract_version: str = _f("Contract version the origin batch was checked against")


# --- departments' access ---------------------------------------------------------------------------


class Extract(Event):
    """A department received an extract cut from its grant at one snapshot, signed by the hub."""

    kind = Kind.EXTRACT
    roles = _DEPARTMENT
    subject = Subject.EXTRACT
    section = Section.ACCESS
    digests = ("extract_manifest",)
    more_digests = "SHA-256 of each extract file, by file name"

    grant: str = _f("The grant the extract was cut under")
    dataset: str = _f("Dataset")
    snapshot_id: int = _f("Lake snapshot read")
    rows: int = _f("Rows in the extract")
    columns: list[str] = _f("Columns in the extract")
    token_id: str | None = _f("API token used (null from the CLI)")
    out: str = _f("Where the extract was written")
    encrypted_to: str = _f("Key id of the department's X25519 key the files are sealed to (absent: "
                           "unencrypted)", None)


class Download(Event):
    """A department downloaded the manifest or a file of one of its extracts."""

    kind = Kind.DOWNLOAD
    roles = _DEPARTMENT
    subject = Subject.EXTRACT
    section = Section.ACCESS
    more_digests = "SHA-256 of the file downloaded, by file name"

    token_id: str = _f("API token used")
    file: str = _f("File downloaded")


class Listing(Event):
    """A department listed its grants or the datasets it can read (metadata only)."""

    kind = Kind.LIST
    roles = _DEPARTMENT
    subject = Subject.LISTING
    section = Section.ACCESS

    token_id: str = _f("API token used")
    grants: list[str] = _f("Grants listed")


class Query(Event):
    """A department ran a query over its permitted, masked views."""

    kind = Kind.QUERY
    roles = _DEPARTMENT
    subject = Subject.DATASETS
    section = Section.ACCESS
    digests = ("sql", "result")

    token_id: str | None = _f("API token used (null from the CLI)")
    grants: dict[str, str] = _f("Dataset -> grant id, for the views the query could read")
    snapshot_id: int = _f("Lake snapshot read")
    columns: list[str] = _f("Result columns")
    rows: int = _f("Result rows")


class _AccessContext(Event):
    token_id: str = _f("API token used (absent from the CLI)", None)
    sql_sha256: str = _f("SHA-256 of the SQL (queries)", None)
    snapshot_id: int = _f("Lake snapshot asked for or resolved", None)
    grants: dict[str, str] = _f("Dataset -> grant id, for the views the query could read", None)


class QueryFailed(_AccessContext):
    """A department's query failed (bad SQL, timeout, limits); only the error's kind is kept, never its text."""

    kind = Kind.QUERY_FAILED
    roles = _DEPARTMENT
    subject = Subject.REQUEST
    section = Section.ACCESS
    digests = ("sql",)

    error: str = _f("Exception class of the failure")


class AccessDenied(_AccessContext):
    """The hub refused a department's request, with the reason it gave."""

    kind = Kind.ACCESS_DENIED
    roles = _DEPARTMENT
    subject = Subject.ATTEMPT
    section = Section.ACCESS

    attempt: str = _f("What was attempted: an event kind (query, extract, download, license_check), "
                      "authenticate, request (a malformed one) or '<limit> request' (rate-limited)")
    reason: str = _f("Why it was refused (the hub's words: no values from the data)")
    # Unauthenticated refusals are aggregated per client address (exchange/api/ratelimit.py): one entry per
    # client per minute at most, so a flood of bad tokens cannot flood the log.
    count: int = _f("Refusals this entry stands for (absent: one); unauthenticated refusals of one client "
                    "address are aggregated, at most one entry per client per minute", None)
    client: str = _f("Client address of aggregated unauthenticated refusals", None)
    reasons: dict[str, int] = _f("Aggregated refusals per reason (at most 20 distinct reasons kept)", None)
    first_at: str = _f("First aggregated refusal (ISO 8601)", None)
    last_at: str = _f("Last aggregated refusal (ISO 8601)", None)
    check_id: str = _f("Id of the signed not_valid answer a failed e-licence holder check received", None)


class Lockout(Event):
    """A department (or one of its tokens) was locked out of e-licence checks after repeated failed holder
    checks; the hub raised an operator alert."""

    kind = Kind.LOCKOUT
    roles = _DEPARTMENT
    subject = Subject.DEPARTMENT
    section = Section.ACCESS

    scope: str = _f("What is locked: 'department' (all its tokens) or 'token' (one token)")
    token_id: str = _f("API token whose failed check crossed the limit")
    failures: int = _f("Failed holder checks counted in the window")
    window_seconds: float = _f("The window failures are counted over")
    locked_until: str = _f("End of the lockout (ISO 8601)")


class LicenseCheck(Event):
    """A department checked an e-licence; the hub signed the minimal answer (no licence number, no holder id)."""

    kind = Kind.LICENSE_CHECK
    roles = _DEPARTMENT
    subject = Subject.DATASET
    section = Section.ACCESS
    digests = ("answer",)

    token_id: str | None = _f("API token used (null from the CLI)")
    check_id: str = _f("Id of the signed answer")
    snapshot_id: int = _f("Lake snapshot read")
    answer: str = _f("valid or not_valid (answers written before 2026-12 also: expired, revoked, unknown, "
                     "holder_mismatch)")
    holder_checked: bool = _f("Whether a holder id was checked too")


class Sharing(Event):
    """A department's Delta Sharing client called the protocol: listed its share, schemas or tables, asked a
    table's version or metadata, or queried a table (its files handed out as short-lived signed URLs)."""

    kind = Kind.SHARING
    roles = _DEPARTMENT
    subject = Subject.SHARED
    section = Section.ACCESS

    token_id: str = _f("API token used")
    operation: str = _f("list_shares, get_share, list_schemas, list_tables, list_all_tables, table_version, "
                        "metadata or query")
    grants: list[str] = _f("Grants the answer covers (the tables listed or read)")
    snapshot_id: int = _f("Lake snapshot (table version) answered", None)
    rows: int = _f("Rows in the files handed out (query)", None)
    files: list[str] = _f("Files handed out as signed URLs (query)", None)
    urls_expire_at: str = _f("When the signed URLs handed out expire (ISO 8601; query)", None)


class SharingDownload(Event):
    """A department's Delta Sharing client read a file (or a byte range of it) through a signed URL, after the
    hub checked the URL's signature and expiry and that its token and grant are still in force."""

    kind = Kind.SHARING_DOWNLOAD
    roles = _DEPARTMENT
    subject = Subject.GRANT
    section = Section.ACCESS
    digests = ("file",)

    token_id: str = _f("API token the URL was issued to")
    dataset: str = _f("Dataset (the shared table)")
    snapshot_id: int = _f("Lake snapshot (table version) of the file")
    file: str = _f("File read")
    rows: int = _f("Rows in the file")
    range: str = _f("The HTTP Range asked for (absent: the whole file; HEAD: metadata only)", None)
    method: str = _f("GET or HEAD")


class GrantEvent(Event):
    """A province's data office approved a grant (purpose, columns, rows, expiry) to a department."""

    kind = Kind.GRANT
    roles = _OFFICES
    subject = Subject.GRANT
    section = Section.ACCESS

    department: str = _f("Department granted")
    dataset: str = _f("Dataset granted")


class GrantRevoke(Event):
    """A data office withdrew a grant; later access under it is refused, earlier extracts still verify."""

    kind = Kind.GRANT_REVOKE
    roles = _OFFICES
    subject = Subject.GRANT
    section = Section.ACCESS
    digests = ("revocation",)

    reason: str = _f("Why the grant was withdrawn")


class DepartmentAdd(Event):
    """A department was registered."""

    kind = Kind.DEPARTMENT_ADD
    roles = _ADMIN
    subject = Subject.DEPARTMENT
    section = Section.ACCESS

    name: str = _f("Official name")


class DepartmentExtractKey(Event):
    """A department's X25519 extract key was registered: its extracts are sealed to it from now on."""

    kind = Kind.DEPARTMENT_EXTRACT_KEY
    roles = _ADMIN
    subject = Subject.DEPARTMENT
    section = Section.ACCESS

    key_id: str = _f("Fingerprint of the public key")


class TokenIssue(Event):
    """An API token was issued to a department (only its SHA-256 is kept)."""

    kind = Kind.TOKEN_ISSUE
    roles = _ADMIN
    subject = Subject.TOKEN
    section = Section.ACCESS

    department: str = _f("Department the token is for")
    expires_at: str = _f("When it expires (ISO 8601)")


class TokenRevoke(Event):
    """An API token was revoked; requests bearing it are refused from now on."""

    kind = Kind.TOKEN_REVOKE
    roles = _ADMIN
    subject = Subject.TOKEN
    section = Section.ACCESS

    department: str = _f("Department the token was for")


class SubjectTrace(Event):
    """An auditor looked up which departments received records about one resident."""

    kind = Kind.SUBJECT_TRACE
    roles = frozenset({Role.AUDITOR})
    subject = Subject.RESIDENT
    section = Section.ACCESS

    disclosures: int = _f("Disclosures found")


# --- keys ------------------------------------------------------------------------------------------


class KeyTrust(Event):
    """The hub began trusting a key someone else holds (a province office's), received out of band."""

    kind = Kind.KEY_TRUST
    roles = _ADMIN
    subject = Subject.KEY_OWNER
    section = Section.KEYS

    key: str = _f("Key id trusted")
    algorithm: str = _f("ed25519 or sm2")
    from_: str = Field(alias="from", description="Trusted from (ISO 8601)")

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)


class KeyRotate(Event):
    """An owner's key was replaced; the old key endorses the new one and what it signed stays valid."""

    kind = Kind.KEY_ROTATE
    roles = _ADMIN
    subject = Subject.KEY_OWNER
    section = Section.KEYS

    new_key: str = _f("The new key id")
    algorithm: str = _f("Its algorithm")
    endorsed_by: str | None = _f("Key id of the old key that endorsed it")


class KeyRevoke(Event):
    """A key was revoked: every signature it made after revoked_at fails verification."""

    kind = Kind.KEY_REVOKE
    roles = _ADMIN
    subject = Subject.KEY
    section = Section.KEYS

    owner: str = _f("Owner of the key")
    revoked_at: str | None = _f("Revoked from (ISO 8601)")
    reason: str = _f("Why")


# --- the chain itself ------------------------------------------------------------------------------


class Checkpoint(Event):
    """The hub vouched for the chain head (the entry before) and recorded the lake's newest snapshot."""

    kind = Kind.CHECKPOINT
    roles = _HUB
    subject = Subject.LOG
    section = Section.CHAIN

    lake_snapshot: int | None = _f("The lake's newest snapshot then (null: no lake yet)")
    manifests: int = _f("Batch manifests on the hub then")
    verified_seq: int | None = _f("The head seq the last recorded verify covered (its signed verified.json)",
                                  None)
    archive_segment: int | None = _f("The archive segment this checkpoint closes (its archive must exist)", None)


class Truncate(Event):
    """The hub cut the live log back to the last archive's closing checkpoint (the archive holds the rest)."""

    kind = Kind.TRUNCATE
    roles = _HUB
    subject = Subject.LOG
    section = Section.CHAIN
    digests = ("archive",)

    archive: str = _f("File name of the archive that holds the dropped entries")
    segment: int = _f("Its segment number")
    first_seq: int = _f("The seq the live log now starts at")
    removed_entries: int = _f("Entries dropped from the live log")


class Countersign(Event):
    """A province data office countersigned the log head (seq, entry hash, time) with its office key: the
    document an office signs when asked to witness; the hub carries it in a witness entry and receipt."""

    kind = Kind.COUNTERSIGN
    # The office signs the statement itself (exchange.signing.roles: Signed.HEAD_COUNTERSIGNATURE, province
    # office keys only); as any entry, one recorded in the hub's log would be signed by the hub.
    roles = _OFFICES
    subject = Subject.LOG
    section = Section.CHAIN

    seq: int = _f("seq of the head entry countersigned")
    entry_hash: str = _f("Its entry_hash")
    time: str = _f("When the office countersigned (ISO 8601)")


class Witness(Event):
    """Parties other than the hub countersigned the head (the entry named): province offices with their keys
    and RFC 3161 time-stamping authorities; from then on nothing up to it can be rewritten unnoticed."""

    kind = Kind.WITNESS
    roles = _HUB
    subject = Subject.LOG
    section = Section.CHAIN
    digests = ("receipt",)
    more_digests = "SHA-256 of each time-stamp token, by `tsa:<authority>`"

    head_seq: int = _f("seq of the witnessed head")
    head_hash: str = _f("Its entry_hash")
    witnesses: list[str] = _f("Who countersigned: office actors and `tsa:<authority>`")
    countersignatures: list[dict[str, Any]] = _f("Each office's signature over the head: witness, key id, "
                                                 "algorithm, value, time")


# --- sharing under the Regulations (exchange/catalogue, exchange/sharing) ------------------------------------

_ALL = frozenset(Role)


class CataloguePublish(Event):
    """A province data office published (signed) a new version of one of its catalogue items."""

    kind = Kind.CATALOGUE_PUBLISH
    roles = _OFFICES
    subject = Subject.ITEM
    section = Section.ACCESS
    digests = ("item",)

    version: int = _f("Catalogue version published")
    dataset: str = _f("Dataset of the item")
    attribute: str = _f("Sharing attribute: unconditional, conditional or not_shared")


class RequestFile(Event):
    """A department filed a sharing request (items, columns, row scope, purpose, legal basis, period, method)."""

    kind = Kind.REQUEST_FILE
    roles = _DEPARTMENT
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS
    digests = ("form",)

    items: list[str] = _f("Catalogue items asked for")
    provider_office: str = _f("Office that reviews it")
    review_deadline: str = _f("Last day for the office's review (ISO date)")
    reply_deadline: str = _f("Last day for the office's reply (ISO date)")
    filed_on_workday: bool = _f("False: filed on a holiday or weekend, the clock started on the next working day")
    token_id: str = _f("API token used (absent from the CLI)", None)


class RequestDecision(Event):
    """The providing office approved (possibly narrowed), refused (with its reason) or returned a request (once,
    listing everything missing), with its signed decision; or the hub approved an unconditional request without
    review."""

    kind = Kind.REQUEST_DECISION
    roles = _OFFICES | _HUB
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS
    more_digests = "decision: SHA-256 of the signed decision (absent for an approval without review)"

    outcome: str = _f("approve, refuse or return")
    reason: str = _f("The written reason (refuse) or note", "")
    missing: list[str] = _f("Everything missing (return)", None)
    grants: list[str] = _f("Grants the approval created", None)
    without_review: bool = _f("True when approved without review (无条件 items)", None)


class RequestResubmit(Event):
    """The department sent a returned request back with the missing materials; the clock resumed."""

    kind = Kind.REQUEST_RESUBMIT
    roles = _DEPARTMENT
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS

    materials: list[str] = _f("Materials supplied")
    paused_workdays: int = _f("Working days the request stood returned in total")
    reply_deadline: str = _f("The reply deadline now (ISO date)")


class RequestWithdraw(Event):
    """The department withdrew a request the office had not decided."""

    kind = Kind.REQUEST_WITHDRAW
    roles = _DEPARTMENT
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS

    note: str = _f("Why, if given", "")


class RequestEscalate(Event):
    """The hub flagged an overdue request to the coordinating authority."""

    kind = Kind.REQUEST_ESCALATE
    roles = _HUB
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS

    missed: str = _f("review or reply: the deadline missed")
    deadline: str = _f("That deadline (ISO date)")
    provider_office: str = _f("The office that missed it")


class DisputeRaise(Event):
    """A refused department took the refusal to the coordinating authority, with its statement."""

    kind = Kind.DISPUTE_RAISE
    roles = _DEPARTMENT
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS

    statement: str = _f("The department's statement")


class DisputeStatement(Event):
    """The providing office stated its side of a dispute."""

    kind = Kind.DISPUTE_STATEMENT
    roles = _OFFICES
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS

    statement: str = _f("The office's statement")


class DisputeDecide(Event):
    """The coordinating authority decided a dispute on the evidence bundle (both statements and the request's
    whole history): the refusal stands, or the office must review again."""

    kind = Kind.DISPUTE_DECIDE
    roles = frozenset({Role.AUTHORITY})
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS
    digests = ("decision", "evidence")

    outcome: str = _f("uphold or overturn")
    reasoning: str = _f("Why")


class GrantClose(Event):
    """A grant's use ended: its purpose was met (the department declared it), its period ended, or the office
    revoked it; tokens, queries and standing extracts under it end at once."""

    kind = Kind.GRANT_CLOSE
    roles = _DEPARTMENT | _OFFICES | _HUB
    subject = Subject.SHARING_REQUEST
    section = Section.ACCESS

    reason: str = _f("purpose_met, period_ended or revoked")
    grants: list[str] = _f("Grants closed (each revoked)")


class OnwardConsent(Event):
    """A providing office consented to a department passing a grant's data on to another department."""

    kind = Kind.ONWARD_CONSENT
    roles = _OFFICES
    subject = Subject.GRANT
    section = Section.ACCESS
    digests = ("consent",)

    to_department: str = _f("Who may receive the data")
    purpose: str = _f("For what")


class RequestRefused(Event):
    """The hub refused a step of the sharing process (a request beyond its item, a second return, a forged or
    replayed decision, onward sharing without consent, ...), with the reason it gave."""

    kind = Kind.REQUEST_REFUSED
    roles = _ALL
    subject = Subject.SHARING_ATTEMPT
    section = Section.ACCESS

    attempt: str = _f("The step attempted: file, approve, refuse, return, resubmit, withdraw, dispute, "
                      "decide_dispute, close, onward, ...")
    reason: str = _f("Why it was refused (the hub's words)")


def spec(kind: str) -> type[Event] | None:
    """The event class of a kind name, or None for a name the vocabulary does not have (e.g. retired)."""
    try:
        return VOCABULARY.get(Kind(kind))
    except ValueError:
        return None


def kinds(*, section: Section | None = None, subject: Subject | None = None) -> tuple[Kind, ...]:
    """The kinds shown in a report section and/or naming a given subject, in vocabulary order."""
    return tuple(k for k, cls in VOCABULARY.items()
                 if (section is None or cls.section == section) and (subject is None or cls.subject == subject))


def may_record(kind: Kind, actor: str) -> None:
    """Raise RoleRefused unless `actor`'s role may record `kind` (callers check before acting)."""
    cls = VOCABULARY[kind]
    role = role_of(actor)
    if role not in cls.roles:
        allowed = ", ".join(sorted(r.value for r in cls.roles))
        raise RoleRefused(f"{actor!r} ({role.value}) may not record {kind.value}: only {allowed} may")


def admit(event: Event, actor: str, digests: dict[str, str]) -> tuple[Kind, dict[str, Any]]:
    """The action and details to write for `event` by `actor`, after checking it against the vocabulary.

    Raises UnrecordableEvent for a kind the vocabulary lacks (or a class standing in for it), details that do
    not fit the kind's model, a role that may not record it, or digests missing a required key (or naming
    others where the kind has none).
    """
    cls = type(event)
    kind = getattr(cls, "kind", None)
    if kind is None or VOCABULARY.get(kind) is not cls:
        raise UnrecordableEvent(f"{cls.__name__} is not an event kind of the provenance vocabulary")
    details = event.details()
    try:  # again from the dumped form: a model_construct()ed event skipped validation
        cls.model_validate(details)
    except ValidationError as exc:
        raise UnrecordableEvent(f"{kind.value} details do not fit {cls.__name__}: {exc}") from None
    try:
        may_record(kind, actor)
    except RoleRefused as refused:
        raise UnrecordableEvent(str(refused)) from None
    missing = [k for k in cls.digests if k not in digests]
    extra = [k for k in digests if k not in cls.digests]
    if missing or (extra and not cls.more_digests):
        raise UnrecordableEvent(f"{kind.value} digests: missing {missing or 'none'}, unexpected {extra or 'none'}")
    return kind, details


def event_from(kind: str, details: dict[str, Any]) -> Event:
    """Build the event of a kind named by a string (the CLI, tests); UnrecordableEvent if it is not one."""
    cls = spec(kind)
    if cls is None:
        raise UnrecordableEvent(f"unknown event kind {kind!r}; known: {', '.join(VOCABULARY)}")
    try:
        return cls.model_validate(details)
    except ValidationError as exc:
        raise UnrecordableEvent(f"{kind} details do not fit {cls.__name__}: {exc}") from None


def _details_cell(cls: type[Event]) -> str:
    fields = [f"{info.alias or name}{'' if info.is_required() else '?'}" for name, info in cls.model_fields.items()]
    return ", ".join(f"`{f}`" for f in fields) or "-"


def _digests_cell(cls: type[Event]) -> str:
    named = [f"`{d}`" for d in cls.digests]
    return ", ".join(named + ([cls.more_digests] if cls.more_digests else [])) or "-"


def event_table() -> str:
    """The vocabulary as the Markdown table docs/auditors.md shows (`python -m exchange.schemas` writes it)."""
    lines = ["| kind | actor's role | subject | details (`?`: may be absent) | digests | report section | meaning |",
             "|---|---|---|---|---|---|---|"]
    for kind, cls in VOCABULARY.items():
        roles = ", ".join(r.value for r in Role if r in cls.roles)
        lines.append(f"| `{kind.value}` | {roles} | {cls.subject.value} | {_details_cell(cls)} | "
                     f"{_digests_cell(cls)} | {cls.section.value} | {cls.meaning()} |")
    return "\n".join(lines) + "\n"


def entry_conditions() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """JSON Schema pieces for a version-2 entry: the details models ($defs) and, per kind, what it requires.

    Version-1 entries (no `version`) match no condition: they were written before the vocabulary.
    """
    defs: dict[str, Any] = {}
    rules: list[dict[str, Any]] = [{
        "if": {"properties": {"version": {"const": 2}}, "required": ["version"]},
        "then": {"properties": {"action": {"enum": [k.value for k in VOCABULARY]}}},
    }]
    for kind, cls in VOCABULARY.items():
        schema = cls.model_json_schema(mode="serialization", ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        schema["x-recorded-by"] = [r.value for r in Role if r in cls.roles]
        schema["x-subject"] = cls.subject.value
        defs[cls.__name__] = schema
        digests: dict[str, Any] = {"required": list(cls.digests)}
        if not cls.more_digests:
            digests["propertyNames"] = {"enum": list(cls.digests)}
        rules.append({
            "if": {"properties": {"version": {"const": 2}, "action": {"const": kind.value}},
                   "required": ["version", "action"]},
            "then": {"properties": {"details": {"$ref": f"#/$defs/{cls.__name__}"}, "digests": digests}},
        })
    return defs, rules
