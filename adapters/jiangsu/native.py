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
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pyarrow.csv as pacsv

from exchange.errors import SourceFormatError

ENCODING = "gb18030"
# Bounded chunks: each record batch the reader yields covers about this many bytes of (UTF-8) CSV.
BLOCK_SIZE = 4 << 20
_READ_BLOCK = 1 << 20
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
    first = next(csv.reader(_lines(text)), None)
    if not first:
        raise SourceFormatError(source, "byte 0", "empty file: no header row", "drops start with a header")
    return first


def _lines(text: str) -> Iterator[str]:
    """`text` line by line, as io.StringIO iterates it (split after each LF only), without copying it whole:
    csv.reader asks for a further line only inside a quoted field, so the header costs its own length
    (a StringIO of a whole decoded day file cost ~40 ms per 19 MB file)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def read_batches(text: str, source: str) -> Iterator[pa.RecordBatch]:
    """Stream a decoded CSV as record batches of strings, every column typed as string.

    An unquoted empty field is null and a quoted one ("") the empty string, matching :func:`to_bytes`.
    A structurally broken row (wrong number of fields) raises SourceFormatError naming `source`.
    """
    names = header(text, source)
    # pyarrow.csv reads bytes; it only understands UTF-8, hence the re-encoding of the decoded text.
    data = io.BytesIO(text.encode("utf-8"))
    try:
        options = pacsv.ReadOptions(block_size=BLOCK_SIZE)
        yield from pacsv.open_csv(data, read_options=options, convert_options=_string_columns(names))
    except pa.ArrowInvalid as exc:
        hint = "each row needs one field per header column"
        raise SourceFormatError(source, "csv", str(exc), hint) from exc


def detect_encoding(path: Path, source: str, *, check_gb18030: bool = True) -> str:
    """The encoding of a landed drop, read in blocks: UTF-8 with BOM, else strict UTF-8, else GB18030.

    Raises SourceFormatError naming `source` and the byte offset of the first undecodable byte. With
    `check_gb18030` false a GB18030 file is not decoded here (its reader reports a bad byte the same way).
    """
    with path.open("rb") as f:
        bom = f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
    if bom:
        offset = _first_undecodable(path, "utf-8", len(codecs.BOM_UTF8))
        if offset is not None:
            raise _decode_error_in_file(path, source, offset, "not valid UTF-8")
        return "utf-8-sig"
    if _first_undecodable(path, "utf-8", 0) is None:
        return "utf-8"
    offset = _first_undecodable(path, ENCODING, 0) if check_gb18030 else None
    if offset is not None:
        raise _decode_error_in_file(path, source, offset, "not valid GB18030")
    return ENCODING


def _first_undecodable(path: Path, encoding: str, start: int) -> int | None:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    with path.open("rb") as f:
        f.seek(start)
        consumed = start
        while True:
            block = f.read(_READ_BLOCK)
            pending = len(decoder.getstate()[0])  # bytes of a sequence split across blocks
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                return consumed - pending + exc.start
            if not block:
                return None
            consumed += len(block)


def _decode_error_in_file(path: Path, source: str, offset: int, problem: str) -> SourceFormatError:
    with path.open("rb") as f:
        head = f.read(offset)
        bad = f.read(4).hex(" ")
    line = head.count(b"\n") + 1
    return SourceFormatError(source, f"byte {offset}", f"{problem} (line {line}, bytes {bad})", _HINT)


class _Utf8Stream(io.RawIOBase):
    """A drop file re-encoded to UTF-8 block by block, for pyarrow's CSV reader (which reads only UTF-8)."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._buffer = b""
        self._pos = 0
        self._eof = False
        self._consumed = raw.tell()  # file offset of the next block
        self.failed_at: int | None = None  # file offset of the first undecodable byte, once met

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while len(self._buffer) - self._pos < len(target) and not self._eof:
            block = self._raw.read(_READ_BLOCK)
            self._eof = not block
            pending = len(self._decoder.getstate()[0])  # bytes of a sequence split across blocks
            try:
                text = self._decoder.decode(block, final=self._eof)
            except UnicodeDecodeError as exc:
                self.failed_at = self._consumed - pending + exc.start
                raise
            self._consumed += len(block)
            self._buffer = self._buffer[self._pos:] + text.encode("utf-8")
            self._pos = 0
        n = min(len(target), len(self._buffer) - self._pos)
        target[:n] = self._buffer[self._pos : self._pos + n]
        self._pos += n
        return n


def read_file_batches(path: Path, source: str) -> Iterator[pa.RecordBatch]:
    """Stream a landed drop file as record batches of strings; memory stays at a few blocks whatever its size.

    Same semantics as :func:`read_batches` (nulls, errors), without holding the file or its text.
    """
    # GB18030 is decoded once, by the re-encoder below (a separate checking pass cost 0.5 s per 1M records).
    encoding = detect_encoding(path, source, check_gb18030=False)
    with path.open("rb") as raw:
        if encoding == "utf-8-sig":
            raw.seek(len(codecs.BOM_UTF8))
        start = raw.tell()
        first = raw.read(_READ_BLOCK)
        if encoding == ENCODING:  # a bad byte in the first block is named before the header is parsed
            try:
                codecs.getincrementaldecoder(ENCODING)("strict").decode(first, final=len(first) < _READ_BLOCK)
            except UnicodeDecodeError as exc:
                raise _decode_error_in_file(path, source, start + exc.start, "not valid GB18030") from None
        names = header(first.decode(ENCODING if encoding == ENCODING else "utf-8", errors="ignore"), source)
        raw.seek(start)
        # UTF-8 needs no re-encoding: pyarrow reads the file itself.
        recoder = _Utf8Stream(raw, ENCODING) if encoding == ENCODING else None
        stream = raw if recoder is None else cast(BinaryIO, io.BufferedReader(recoder))
        options = pacsv.ReadOptions(block_size=BLOCK_SIZE, column_names=names, skip_rows=1)
        try:
            yield from pacsv.open_csv(stream, read_options=options, convert_options=_string_columns(names))
        except Exception as exc:
            # pyarrow reports the re-encoder's decoding error as its own: name the byte as the check would have.
            if recoder is not None and recoder.failed_at is not None:
                raise _decode_error_in_file(path, source, recoder.failed_at, "not valid GB18030") from None
            if isinstance(exc, pa.ArrowInvalid):
                hint = "each row needs one field per header column"
                raise SourceFormatError(source, "csv", str(exc), hint) from exc
            raise


def _string_columns(names: list[str]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )


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
