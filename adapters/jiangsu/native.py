"""Jiangsu's native file format: CSV with a Chinese header row, encoded GB18030 (UTF-8 tolerated).

Shared by the adapter (reading drops) and the sandbox (writing them, and reading a day's file back
when more records for that day are seeded), so both sides agree on encoding, quoting and nulls.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from exchange.errors import SourceFormatError

ENCODING = "gb18030"
# Bounded chunks: each record batch the reader yields covers about this many bytes of (UTF-8) CSV.
BLOCK_SIZE = 4 << 20
_HINT = "Jiangsu drops must be GB18030 (UTF-8 is accepted too); re-export the file with that encoding"


def decode(payload: bytes, source: str) -> str:
    """Decode a drop: UTF-8 with BOM, else strict UTF-8, else strict GB18030.

    Raises SourceFormatError naming `source` and the byte offset of the first undecodable byte.
    """
    if payload.startswith(codecs.BOM_UTF8):
        try:
            return payload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            # utf-8-sig reports offsets after the BOM it stripped.
            raise _decode_error(payload, source, exc.start + len(codecs.BOM_UTF8), "not valid UTF-8") from exc
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass  # GB18030 is the documented encoding; UTF-8 was only the cheaper first guess.
    try:
        return payload.decode(ENCODING)
    except UnicodeDecodeError as exc:
        raise _decode_error(payload, source, exc.start, "not valid GB18030") from exc


def _decode_error(payload: bytes, source: str, offset: int, problem: str) -> SourceFormatError:
    line = payload.count(b"\n", 0, offset) + 1
    bad = payload[offset : offset + 4].hex(" ")
    return SourceFormatError(source, f"byte {offset}", f"{problem} (line {line}, bytes {bad})", _HINT)


def header(text: str, source: str) -> list[str]:
    """The column names of a decoded CSV (its first record)."""
    first = next(csv.reader(io.StringIO(text)), None)
    if not first:
        raise SourceFormatError(source, "byte 0", "empty file: no header row", "drops start with a header")
    return first


def read_batches(text: str, source: str) -> Iterator[pa.RecordBatch]:
    """Stream a decoded CSV as record batches of strings, every column typed as string.

    An unquoted empty field is null and a quoted one ("") the empty string, matching :func:`to_bytes`.
    A structurally broken row (wrong number of fields) raises SourceFormatError naming `source`.
    """
    names = header(text, source)
    # pyarrow.csv reads bytes; it only understands UTF-8, hence the re-encoding of the decoded text.
    data = io.BytesIO(text.encode("utf-8"))
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    try:
        options = pacsv.ReadOptions(block_size=BLOCK_SIZE)
        yield from pacsv.open_csv(data, read_options=options, convert_options=convert)
    except pa.ArrowInvalid as exc:
        hint = "each row needs one field per header column"
        raise SourceFormatError(source, "csv", str(exc), hint) from exc


def read_table(payload: bytes, source: str) -> pa.Table:
    """Read a whole native file (bytes as dropped) into a table of strings."""
    text = decode(payload, source)
    batches = list(read_batches(text, source))
    if not batches:
        return pa.table({name: pa.array([], pa.string()) for name in header(text, source)})
    return pa.Table.from_batches(batches)


def to_bytes(table: pa.Table, columns: Sequence[str]) -> bytes:
    """Render native columns as a GB18030 CSV file with a header row."""
    strings = pa.table({name: table.column(name).cast(pa.string()) for name in columns})
    out = io.BytesIO()
    pacsv.write_csv(strings, out, pacsv.WriteOptions(quoting_style="needed"))
    return out.getvalue().decode("utf-8").encode(ENCODING)


def write_atomically(path: Path, payload: bytes) -> None:
    """Write `<name>.tmp` then rename, so a reader never sees a half-written drop."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
