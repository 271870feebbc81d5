"""Issue 20, target 1, for the file provinces: which native read is the honest limit for Jiangsu's GB18030
CSV drops and Anhui's XML exports.

Every candidate reads all of a province's daily files (every native column as strings, no filter, no check)
into Arrow tables, each in a fresh subprocess against the same seeded sandbox, in the same run, the
candidates taking turns when repeated. The fastest is what :func:`benchmarks.sources.native_tables` uses as
the limit (FASTEST, checked against each measurement by the scenario's target rows).

``python -m benchmarks files --records 1000000 --repeat 3``
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.table import Table

from benchmarks.harness import Stopwatch, run_task
from benchmarks.report import Target, ratio

# The reader the limit contender uses per province: the fastest measured (BENCHMARKS.md, "File readers").
FASTEST = {"jiangsu": "pyarrow-encoding", "anhui": "lxml-parse"}
CHUNK = 10_000
Reader = Callable[[list[Path], list[str]], Iterator[pa.Table]]


def _files(root: Path, province: str, dataset: str) -> tuple[list[Path], list[str]]:
    """A province sandbox's daily files of `dataset`, in day order, and the dataset's native columns."""
    from benchmarks.sources import _mapping

    dm = _mapping(province).dataset(dataset)
    folder, suffix = ("drop", "csv") if province == "jiangsu" else ("exports", "xml")
    return sorted((root / folder).glob(f"{dm.source}_*.{suffix}")), list(dm.native_columns)


# --- Jiangsu: GB18030 CSV with a header row ---------------------------------------------------------------


def _header(path: Path) -> list[str]:
    with path.open("rb") as f:
        return next(csv.reader([f.readline().decode("gb18030")]))


def _csv_strings(names: list[str]) -> Any:
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)


def _js_reencode(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """Decode each file whole (Python's GB18030 codec), re-encode UTF-8, `pyarrow.csv.read_csv` (the old limit)."""
    import pyarrow.csv as pacsv

    for path in files:
        data = path.read_bytes().decode("gb18030").encode("utf-8")
        yield pacsv.read_csv(io.BytesIO(data), convert_options=_csv_strings(_header(path)))


def _js_pyarrow_encoding(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """`pyarrow.csv.read_csv` with ReadOptions(encoding="gb18030"): pyarrow transcodes (Python's codec) on
    its reader thread while it parses."""
    import pyarrow.csv as pacsv

    for path in files:
        options = pacsv.ReadOptions(encoding="gb18030")
        yield pacsv.read_csv(path, read_options=options, convert_options=_csv_strings(_header(path)))


def _js_duckdb(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """DuckDB's read_csv with the encodings extension (duckdb-extension-encodings, ICU's GB18030), all varchar."""
    import duckdb

    from benchmarks.sql_readers import _extension

    con = duckdb.connect()
    con.execute(f"LOAD '{_extension('encodings', 'encodings')}'")
    for path in files:
        yield con.execute(
            "SELECT * FROM read_csv(?, encoding = 'gb18030', header = true, all_varchar = true)", [str(path)]
        ).to_arrow_table()


# --- Anhui: XML, one element per record, one child element per field --------------------------------------


def _fill(records: Sequence[Any], columns: list[str]) -> pa.Table:
    """One string column per field from the records' children, by position (an absent element is a null)."""
    position = {n: i for i, n in enumerate(columns)}
    values: list[list[str | None]] = [[None] * len(records) for _ in columns]
    for row, record in enumerate(records):
        for child in record:
            column = position.get(child.tag)
            if column is not None:
                values[column][row] = child.text
    return pa.table({n: pa.array(c, pa.string()) for n, c in zip(columns, values, strict=True)})


def _ah_parse(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """lxml `etree.parse` of the whole file, `findall` the records, fill columns (the old limit)."""
    from lxml import etree

    from adapters.anhui import export

    for path in files:
        yield _fill(etree.parse(str(path)).getroot().findall(export.RECORD), columns)


def _ah_iterparse(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """lxml `iterparse` on the record tag, each record's children read, read records dropped every CHUNK."""
    from lxml import etree

    from adapters.anhui import export

    position = {n: i for i, n in enumerate(columns)}
    for path in files:
        rows: list[list[str | None]] = []
        for _, record in etree.iterparse(str(path), events=("end",), tag=export.RECORD):
            row: list[str | None] = [None] * len(columns)
            for child in record:
                column = position.get(child.tag)
                if column is not None:
                    row[column] = child.text
            rows.append(row)
            if len(rows) % CHUNK == 0:  # drop read records in slices (one at a time cost 10 % more CPU)
                del record.getparent()[:CHUNK]
        values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        yield pa.table({n: pa.array(list(c), pa.string()) for n, c in zip(columns, values, strict=True)})


def _ah_elementtree(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """The standard library's C ElementTree (expat): parse, findall, fill columns."""
    import xml.etree.ElementTree as ET

    from adapters.anhui import export

    for path in files:
        yield _fill(ET.parse(path).getroot().findall(export.RECORD), columns)


def _xslt_to_csv(columns: list[str]) -> Any:
    """An XSLT 1.0 stylesheet writing one CSV row per record: a present, non-empty value quoted (quotes doubled),
    an absent or empty one left unquoted (read as null)."""
    from lxml import etree

    def field(i: int, name: str) -> str:
        value = f"$v{i}"
        return (
            f'<xsl:variable name="v{i}" select="string({name})"/>'
            f"<xsl:if test=\"{value} != ''\">\"<xsl:call-template name=\"esc\">"
            f'<xsl:with-param name="s" select="{value}"/></xsl:call-template>"</xsl:if>'
            + ("<xsl:text>,</xsl:text>" if i < len(columns) - 1 else "<xsl:text>&#10;</xsl:text>")
        )

    text = (
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:output method="text" encoding="UTF-8"/>'
        f'<xsl:template match="/"><xsl:for-each select="*/*">{"".join(field(i, n) for i, n in enumerate(columns))}'
        "</xsl:for-each></xsl:template>"
        '<xsl:template name="esc"><xsl:param name="s"/><xsl:choose>'
        "<xsl:when test=\"contains($s, '&quot;')\"><xsl:value-of select=\"substring-before($s, '&quot;')\"/>"
        '<xsl:text>""</xsl:text><xsl:call-template name="esc">'
        "<xsl:with-param name=\"s\" select=\"substring-after($s, '&quot;')\"/></xsl:call-template></xsl:when>"
        '<xsl:otherwise><xsl:value-of select="$s"/></xsl:otherwise></xsl:choose></xsl:template>'
        "</xsl:stylesheet>"
    )
    return etree.XSLT(etree.fromstring(text.encode("utf-8")))


def _ah_xslt(files: list[Path], columns: list[str]) -> Iterator[pa.Table]:
    """lxml parse, libxslt transform to CSV (C only, no Python per record), `pyarrow.csv` of the result."""
    import pyarrow.csv as pacsv
    from lxml import etree

    transform = _xslt_to_csv(columns)
    read = pacsv.ReadOptions(column_names=columns)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in columns}, strings_can_be_null=True,
                                   quoted_strings_can_be_null=False)
    for path in files:
        text = bytes(transform(etree.parse(str(path))))
        if not text:
            yield pa.table({n: pa.array([], pa.string()) for n in columns})
            continue
        yield pacsv.read_csv(io.BytesIO(text), read_options=read, parse_options=parse, convert_options=convert)


READERS: dict[str, dict[str, Reader]] = {
    "jiangsu": {"reencode": _js_reencode, "pyarrow-encoding": _js_pyarrow_encoding, "duckdb": _js_duckdb},
    "anhui": {"lxml-parse": _ah_parse, "lxml-iterparse": _ah_iterparse, "elementtree": _ah_elementtree,
              "lxml-xslt-csv": _ah_xslt},
}


def read_files(province: str, reader: str, root: Path, dataset: str) -> Iterator[pa.Table]:
    """Every daily file of the province sandbox at `root` through `reader`."""
    files, columns = _files(root, province, dataset)
    yield from READERS[province][reader](files, columns)


def run_file_reader(spec: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
    """Worker task: one reader over the sandbox once (imports before the clock), the rows counted."""
    import importlib

    for module in ("pyarrow.csv", "lxml.etree", "xml.etree.ElementTree", "duckdb", "adapters.anhui.export"):
        importlib.import_module(module)
    rows = 0
    with Stopwatch() as watch:
        for table in read_files(spec["province"], spec["reader"], Path(spec["root"]), spec["dataset"]):
            rows += table.num_rows
    return watch.seconds, rows, {}


@dataclass
class FileReadersResult:
    """Every candidate of every file province, in one run."""

    records: int
    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    peak_rss_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def best(self, province: str) -> dict[str, float]:
        return {reader: min(runs) for reader, runs in self.seconds.get(province, {}).items()}

    def table(self) -> Table:
        """One row per province and reader: fastest seconds (all runs), ratio to the fastest, peak RSS."""
        table = Table(title=f"File readers: {self.records:,} e-licence records into Arrow (strings)")
        for col in ("province", "reader", "seconds (runs)", "/ fastest", "peak RSS MB"):
            table.add_column(col, justify="right")
        for province in self.seconds:
            best = self.best(province)
            fastest = min(best.values())
            for reader, seconds in sorted(best.items(), key=lambda kv: kv[1]):
                runs = ", ".join(f"{s:.2f}" for s in self.seconds[province][reader])
                table.add_row(province, reader, f"{seconds:.2f} ({runs})", f"{ratio(seconds, fastest) or 0:.2f}",
                              f"{self.peak_rss_mb[province][reader]:.0f}")
            for reader, error in self.errors.get(province, {}).items():
                table.add_row(province, reader, "failed", error[:60], "")
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {"records": self.records, "seconds": self.seconds, "peak_rss_mb": self.peak_rss_mb,
                "errors": self.errors, "targets": [t.to_json() for t in self.targets]}


def run_file_readers(dataset: str, records: int, *, workdir: Path | None = None, repeat: int = 1,
                     provinces: Sequence[str] = ("jiangsu", "anhui")) -> FileReadersResult:
    """Seed each file province's sandbox, then time every candidate in a fresh subprocess, taking turns."""
    from benchmarks.sources import prepare, sandbox_root

    root = Path(tempfile.mkdtemp(prefix="bench-files-", dir=workdir))
    result = FileReadersResult(records)
    try:
        for province in provinces:
            home = root / province
            home.mkdir()
            prepare(home, province, dataset, records)
            spec = {"province": province, "dataset": dataset, "root": str(sandbox_root(home, province))}
            for _ in range(repeat):
                for reader in READERS[province]:
                    if reader in result.errors.get(province, {}):
                        continue
                    try:
                        run = run_task("file_reader", {**spec, "reader": reader})
                    except Exception as exc:  # noqa: BLE001 - a candidate that cannot read is reported, not fatal
                        result.errors.setdefault(province, {})[reader] = str(exc).strip().splitlines()[-1]
                        continue
                    if int(run["rows"]) != records:
                        result.errors.setdefault(province, {})[reader] = f"read {run['rows']} rows"
                        continue
                    result.seconds.setdefault(province, {}).setdefault(reader, []).append(float(run["seconds"]))
                    peaks = result.peak_rss_mb.setdefault(province, {})
                    peaks[reader] = max(peaks.get(reader, 0.0), float(run["peak_rss_mb"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for province in result.seconds:
        best = result.best(province)
        fastest = min(best, key=lambda r: best[r])
        chosen = best.get(FASTEST[province])
        # The limit's reader must be the fastest measured (within the run-to-run noise of a shared machine).
        result.targets.append(Target(f"{province}: limit reader {FASTEST[province]} / fastest ({fastest})",
                                     ratio(chosen, best[fastest]) if chosen else None, 1.3))
    return result
