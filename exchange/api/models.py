"""Request and response bodies of the department API (they make up its OpenAPI document)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from exchange.access.check import HOLDER_ID_PATTERN, LICENSE_ID_PATTERN
from exchange.access.extract import SignedExtractManifest
from exchange.access.models import Department, RowCondition

DATASET_PATTERN = r"^[a-z][a-z_]{0,63}$"


class ErrorBody(BaseModel):
    """Every error the API returns: a stable code and a reason a person can act on."""

    error: str = Field(description="unauthenticated, forbidden, bad_query, too_large, timeout, rate_limited, "
                                   "not_found, invalid_request or server_error")
    reason: str = Field(description="Why, in words; never contains a data value")


class GrantView(BaseModel):
    """One usable grant as its holder sees it."""

    id: str = Field(description="Grant id")
    dataset: str = Field(description="Canonical dataset")
    columns: list[str] = Field(description="Columns the department may see")
    masking: dict[str, str] = Field(description="Masking rule applied per column ('none' = clear)")
    row_filter: list[RowCondition] = Field(description="Conditions every visible row meets")
    purpose: str = Field(description="Why the department needs the data")
    legal_basis: str = Field(description="Law or regulation that permits the sharing")
    approved_by: str = Field(description="Approving province data office")
    expires_on: date = Field(description="Last day the grant is valid")


class Me(BaseModel):
    """Who the token belongs to and what it may see."""

    department: Department = Field(description="The authenticated department")
    token_id: str = Field(description="Id of the token used")
    token_expires_at: datetime = Field(description="When the token stops working")
    grants: list[GrantView] = Field(description="Usable grants (unexpired, unrevoked, dataset shared)")


class DatasetView(BaseModel):
    """A dataset the department can query, as a table of the same name in its sandbox."""

    dataset: str = Field(description="Dataset and sandbox table name")
    title: str = Field(description="Official title")
    grant_id: str = Field(description="Grant the view is built from")
    columns: list[str] = Field(description="Visible columns")
    masking: dict[str, str] = Field(description="Masking rule per column")
    row_filter: list[RowCondition] = Field(description="Conditions every visible row meets")


# The access log records the requested snapshot in RFC 8785 JSON, which admits integers up to 2**53 - 1 only.
MAX_SNAPSHOT = 2**53 - 1


class QueryRequest(BaseModel):
    """One read-only SELECT over the caller's permitted views."""

    sql: str = Field(min_length=1, max_length=20_000, description="A single SELECT statement")
    snapshot: int | None = Field(default=None, ge=0, le=MAX_SNAPSHOT,
                                 description="Lake snapshot to query (default: latest)")


class ColumnInfo(BaseModel):
    """A result column."""

    name: str = Field(description="Column name")
    type: str = Field(description="Arrow type")


class QueryResponse(BaseModel):
    """A query's rows and what the access log recorded about them."""

    columns: list[ColumnInfo] = Field(description="Result columns in order")
    rows: list[list[Any]] = Field(description="Result rows, values in column order")
    row_count: int = Field(description="Number of rows")
    snapshot_id: int = Field(description="Lake snapshot the views were built from")
    grants: dict[str, str] = Field(description="Dataset -> grant id of each view in the sandbox")
    result_sha256: str = Field(description="SHA-256 of the result as one Arrow IPC stream (as logged)")
    sql_sha256: str = Field(description="SHA-256 of the SQL text (as logged)")


class ExtractRequest(BaseModel):
    """Cut an extract of one granted dataset."""

    dataset: str = Field(pattern=DATASET_PATTERN, description="Dataset the grant covers")
    snapshot: int | None = Field(default=None, ge=0, le=MAX_SNAPSHOT, description="Lake snapshot (default: latest)")
    encrypt: bool = Field(default=False, description="Encrypt the files to your registered X25519 extract key "
                                                     "(decrypt with `exchange verify-extract --key`)")


class ExtractResponse(BaseModel):
    """The signed manifest of a new extract and where to download its files."""

    extract_id: str = Field(description="Extract id (folder under the department's extracts)")
    manifest: SignedExtractManifest = Field(description="The hub-signed extract manifest")
    downloads: list[str] = Field(description="API paths of the manifest and every data file")


class LicenceCheckRequest(BaseModel):
    """Is this e-licence valid, and held by this person? The check answers only for the pair."""

    license_id: str = Field(pattern=LICENSE_ID_PATTERN, description="Licence number as printed on the licence")
    holder_id: str = Field(pattern=HOLDER_ID_PATTERN,
                           description="Holder's resident ID (18 characters) to compare; never stored, logged or "
                                       "returned")
