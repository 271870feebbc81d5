"""Lake data files wherever the data path is: a local folder or object storage (s3://bucket/prefix/).

Commit hashes every file a snapshot added into the signed manifest and verify re-hashes them; both resolve,
hash and list files through here, so a folder and a bucket are treated alike. Remote files are read through
the lake connection itself (httpfs with the lake's S3 secret): no second client or set of credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from exchange.signing.canonical import file_sha256


def is_remote(location: str) -> bool:
    """Whether a data path or file location is a URL (s3://...) rather than a local path."""
    return "://" in location


def join(base: str, part: str) -> str:
    """`part` under `base`, keeping a URL's scheme and slashes intact (pathlib would fold s3:// to s3:/)."""
    if is_remote(base):
        return (base if base.endswith("/") else base + "/") + part
    return str(Path(base) / part)


def relative_to(root: str, location: str) -> str:
    """A location as manifests name it: relative to the data path when under it, else in full."""
    if is_remote(root):
        prefix = root if root.endswith("/") else root + "/"
        if prefix.startswith("file://") and location.startswith("/"):
            location = "file://" + location  # DuckDB's glob answers a file:// pattern with plain paths
        return location[len(prefix):] if location.startswith(prefix) else location
    try:
        return str(Path(location).relative_to(Path(root)))
    except ValueError:
        return location


def resolve(root: str, parts: Sequence[tuple[str, bool]]) -> str:
    """A file's location from DuckLake's (path, path_is_relative) chain: schema, table, file."""
    location = root
    for value, is_relative in parts:
        location = join(location, value) if is_relative else value
    return location


def local_digest(path: Path) -> tuple[str, int] | None:
    """(SHA-256 hex, size in bytes) of a local file, streamed, or None if there is no such file."""
    if not path.is_file():
        return None
    return file_sha256(path), path.stat().st_size


def digest(con: duckdb.DuckDBPyConnection, location: str) -> tuple[str, int] | None:
    """(SHA-256 hex, size in bytes) of a lake file, or None if there is no such file.

    Local files are streamed; a remote object is read whole by DuckDB (read_blob) and hashed there, so memory
    is bounded by the largest data file (DuckLake's target file size), not by the lake.
    """
    if not is_remote(location):
        return local_digest(Path(location))
    try:
        row = con.execute("SELECT sha256(content), size FROM read_blob(?)", [location]).fetchone()
    except duckdb.HTTPException as exc:
        if exc.status_code == 404:
            return None
        raise
    if row is None:
        return None
    return str(row[0]), int(row[1])


def parquet_files(con: duckdb.DuckDBPyConnection, root: str) -> list[str]:
    """Every Parquet file under the data path, relative to it (a bucket prefix is listed via DuckDB's glob)."""
    if not is_remote(root):
        folder = Path(root)
        return [str(p.relative_to(folder)) for p in sorted(folder.rglob("*.parquet"))] if folder.is_dir() else []
    rows = con.execute("SELECT file FROM glob(?) ORDER BY file", [join(root, "**/*.parquet")]).fetchall()
    return [relative_to(root, str(file)) for (file,) in rows]


def remove(location: str) -> bool:
    """Delete a local lake file; return False for object storage, which DuckDB cannot delete one object of."""
    if is_remote(location):
        return False
    Path(location).unlink(missing_ok=True)
    return True
