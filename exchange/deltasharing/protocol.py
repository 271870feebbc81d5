"""The Delta Sharing protocol as the hub speaks it: pure functions and the documents it returns.

One share per department (the recipient), named after the department id with '.' turned into '__' (the
official client splits ``share.schema.table`` on dots); one schema, ``datasets``; one table per usable grant,
named after the grant's dataset (a department holds at most one usable grant per dataset). A table's
version is a lake snapshot id: versions are global to the lake, so a table's versions are not consecutive.
Timestamps select snapshots by their commit time.

Reference: https://github.com/delta-io/delta-sharing/blob/main/PROTOCOL.md (response format ``parquet``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from exchange.errors import BadInput, InternalError

SCHEMA = "datasets"
PROTOCOL_LINE = {"protocol": {"minReaderVersion": 1}}

# The protocol's error codes by HTTP status (the body is {"errorCode": ..., "message": ...}).
ERROR_CODES: dict[int, str] = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    408: "REQUEST_TIMEOUT",
    413: "RESOURCE_EXHAUSTED",
    422: "MALFORMED_REQUEST",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


class ErrorBody(BaseModel):
    """The protocol's error body."""

    errorCode: str = Field(description="Error code, e.g. PERMISSION_DENIED")  # noqa: N815 (the protocol's name)
    message: str = Field(description="What went wrong, in the hub's words (never a data value)")


def error_body(status: int, message: str) -> dict[str, str]:
    """The protocol error body for an HTTP status."""
    return ErrorBody(errorCode=ERROR_CODES.get(status, "INTERNAL_ERROR"), message=message).model_dump()


def share_name(department: str) -> str:
    """The department's share name: its id with '.' as '__' (a share name cannot hold a dot)."""
    return department.replace(".", "__")


@dataclass(frozen=True)
class SharedTable:
    """One table of a department's share: a usable grant's view of its dataset."""

    share: str
    name: str  # the dataset
    grant_id: str

    def document(self) -> dict[str, str]:
        """The protocol's table object (the grant id is the table id)."""
        return {"name": self.name, "schema": SCHEMA, "share": self.share, "shareId": self.share, "id": self.grant_id}


def shared_tables(department: str, grants: Sequence[tuple[str, str]]) -> list[SharedTable]:
    """The department's tables from its usable grants given as (grant id, dataset), sorted by name."""
    share = share_name(department)
    return sorted((SharedTable(share, dataset, grant_id) for grant_id, dataset in grants), key=lambda t: t.name)


def find_table(tables: Sequence[SharedTable], share: str, schema: str, name: str) -> SharedTable | None:
    """The table the path names, or None."""
    if schema != SCHEMA:
        return None
    return next((t for t in tables if t.share == share and t.name == name), None)


# --- schema ----------------------------------------------------------------------------------------------

def delta_type(arrow: pa.DataType) -> str:
    """The Delta (Spark) type name of an Arrow type the hub's datasets use."""
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    simple = {pa.int64(): "long", pa.int32(): "integer", pa.int16(): "short", pa.int8(): "byte",
              pa.float64(): "double", pa.float32(): "float", pa.bool_(): "boolean", pa.date32(): "date",
              pa.binary(): "binary"}
    if arrow in simple:
        return simple[arrow]
    if pa.types.is_timestamp(arrow):
        # Delta "timestamp" is an instant (UTC-adjusted); the hub stores every timestamp with tz=UTC.
        return "timestamp"
    if pa.types.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    raise InternalError(f"no Delta type for Arrow type {arrow}")


def schema_string(schema: pa.Schema) -> str:
    """The metadata's schemaString: the Spark StructType JSON of the delivered columns."""
    fields = [{"name": f.name, "type": delta_type(f.type), "nullable": True, "metadata": {}} for f in schema]
    return json.dumps({"type": "struct", "fields": fields}, separators=(",", ":"))


def metadata_line(table: SharedTable, schema: pa.Schema, version: int, *, description: str,
                  size: int | None = None, num_files: int | None = None) -> dict[str, Any]:
    """The ``metaData`` line of a metadata or query response."""
    meta: dict[str, Any] = {
        "id": table.grant_id, "name": table.name, "description": description,
        "format": {"provider": "parquet"}, "schemaString": schema_string(schema), "partitionColumns": [],
        "configuration": {}, "version": version,
    }
    if size is not None:
        meta["size"] = size
    if num_files is not None:
        meta["numFiles"] = num_files
    return {"metaData": meta}


def file_line(url: str, file_id: str, size: int, rows: int, expires_at: datetime, version: int,
              timestamp_ms: int) -> dict[str, Any]:
    """The ``file`` line of a query response (parquet format) for one materialised file."""
    return {"file": {"url": url, "id": file_id, "partitionValues": {}, "size": size,
                     "stats": json.dumps({"numRecords": rows}, separators=(",", ":")),
                     "expirationTimestamp": int(expires_at.timestamp() * 1000), "version": version,
                     "timestamp": timestamp_ms}}


def cdf_line(url: str, file_id: str, size: int, expires_at: datetime, version: int,
             timestamp_ms: int) -> dict[str, Any]:
    """The ``cdf`` line of a changes response: one version's change file (it carries ``_change_type``)."""
    return {"cdf": {"url": url, "id": file_id, "partitionValues": {}, "size": size,
                    "expirationTimestamp": int(expires_at.timestamp() * 1000), "version": version,
                    "timestamp": timestamp_ms}}


def ndjson(lines: Sequence[dict[str, Any]]) -> str:
    """Newline-delimited JSON, the body of metadata and query responses."""
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)


# --- versions ----------------------------------------------------------------------------------------------

class Snapshot(BaseModel):
    """A lake snapshot as a table version: its id and commit time."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="Lake snapshot id (the table version)")
    time: datetime = Field(description="When the snapshot was committed (UTC)")


def parse_timestamp(text: str, what: str) -> datetime:
    """An ISO 8601 timestamp from a request (``2026-12-06T10:00:00Z``; without an offset: UTC), or BadInput."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{what}: {text!r} is not an ISO 8601 timestamp such as 2026-12-06T10:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def version_at(snapshots: Sequence[Snapshot], moment: datetime) -> int:
    """The table version at `moment`: the latest snapshot committed at or before it (a query's `timestamp`)."""
    earlier = [s for s in snapshots if s.time <= moment]
    if not earlier:
        first = min(snapshots, key=lambda s: s.time)
        raise BadInput(f"timestamp {moment.isoformat()} is before the first version ({first.id}, committed "
                       f"{first.time.isoformat()})")
    return max(earlier, key=lambda s: (s.time, s.id)).id


def version_starting(snapshots: Sequence[Snapshot], moment: datetime) -> int:
    """The first version committed at or after `moment` (the version endpoint's `startingTimestamp`)."""
    later = [s for s in snapshots if s.time >= moment]
    if not later:
        last = max(snapshots, key=lambda s: s.time)
        raise BadInput(f"startingTimestamp {moment.isoformat()} is after the latest version ({last.id}, committed "
                       f"{last.time.isoformat()})")
    return min(later, key=lambda s: (s.time, s.id)).id


class QueryBody(BaseModel):
    """The body of a query request; hints are accepted and ignored (the hub returns the whole view)."""

    model_config = ConfigDict(extra="allow")

    version: int | None = Field(default=None, ge=0, le=2**62, description="Table version (lake snapshot id)")
    timestamp: str | None = Field(default=None, description="Read the version at this ISO 8601 instant")
    limitHint: int | None = Field(default=None, description="Ignored")  # noqa: N815
    predicateHints: list[str] | None = Field(default=None, description="Ignored")  # noqa: N815
    jsonPredicateHints: str | None = Field(default=None, description="Ignored")  # noqa: N815
    startingVersion: int | None = Field(default=None, description="Not offered (change data feed)")  # noqa: N815
