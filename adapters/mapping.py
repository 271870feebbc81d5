"""Declarative native <-> canonical mappings, applied column-wise with Arrow compute.

Each province keeps a ``mapping.yaml`` beside its adapter:

    province: jiangsu
    timezone: Asia/Shanghai          # naive native timestamps are local time here
    datasets:
      e_license:
        source: 电子证照               # file prefix / endpoint / view / element: the adapter decides
        fields:
          license_id: {from: 证照编号}
          status: {from: 证照状态, codes: {有效: valid, 注销: revoked, 过期: expired}}
          issued_on: {from: 发证日期, date: "%Y%m%d"}
          updated_at: {from: 更新时间, timestamp: "%Y-%m-%d %H:%M:%S"}
        deleted: {from: SCBZ, value: "1"}  # optional: a soft-delete flag column and its "deleted" value

A native code with no mapping is kept as-is, so the contract's enumeration rule quarantines the record
with the offending value instead of the hub guessing.

Schema drift: a native field the mapping does not know is reported (a logged warning and a
:class:`Drift` in the active :func:`collect_drift` list, which the pull stage records in provenance) and
ignored until mapped. A mapped field that is missing, or whose values no longer read as the mapped type
(text in a number column, dates in another format), fails the pull naming the field and the mapping file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from exchange import intake
from exchange.datasets import TIMESTAMP, Dataset, dataset
from exchange.errors import SourceFormatError
from exchange.province_config import adapters_path

log = logging.getLogger(__name__)

# Fewer values than this that all fail to parse may just be bad records (quarantined); more is a format change.
DRIFT_MIN_VALUES = 3


@dataclass(frozen=True)
class Drift:
    """A native field the province sends that its mapping does not map (ignored until it is mapped)."""

    province: str
    dataset: str
    field: str
    source: str
    mapping_file: str

    @property
    def message(self) -> str:
        """The warning an operator reads."""
        return (
            f"{self.province} {self.dataset}: new native field {self.field!r} in {self.source} is not mapped and "
            f"was ignored; map it in {self.mapping_file} to receive it"
        )

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form for pull.json and the provenance entry."""
        return {"province": self.province, "dataset": self.dataset, "field": self.field,
                "source": self.source, "mapping_file": self.mapping_file}


_DRIFT: ContextVar[list[Drift] | None] = ContextVar("adapters_mapping_drift", default=None)


@contextmanager
def collect_drift() -> Iterator[list[Drift]]:
    """Collect the drift reported while the block runs (each new field once per dataset)."""
    found: list[Drift] = []
    token = _DRIFT.set(found)
    try:
        yield found
    finally:
        _DRIFT.reset(token)


@dataclass(frozen=True)
class FieldMapping:
    """How one canonical field is read from one native field."""

    canonical: str
    native: str
    codes: dict[str, str] | None = None
    date: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class DeleteFlag:
    """A native soft-delete flag: rows whose `native` column equals `value` are deletions, not records."""

    native: str
    value: str


@dataclass(frozen=True)
class DatasetMapping:
    """The mapping of one dataset for one province."""

    dataset: Dataset
    source: str
    timezone: str
    fields: tuple[FieldMapping, ...]
    deleted: DeleteFlag | None = None
    province: str = ""
    mapping_file: str = "mapping.yaml"

    @property
    def native_columns(self) -> list[str]:
        return [f.native for f in self.fields]

    def _update_hint(self) -> str:
        return f"{self.province} {self.dataset.name}: update {self.mapping_file} if the province changed this field"

    def report_drift(self, fields: Iterable[str], source: str) -> None:
        """Report native fields the mapping does not know: logged, collected, and otherwise ignored."""
        known = {*self.native_columns, *([self.deleted.native] if self.deleted else [])}
        found = _DRIFT.get()
        for name in fields:
            if name in known:
                continue
            drift = Drift(self.province, self.dataset.name, name, source, self.mapping_file)
            if found is not None:
                if any(d.field == name and d.dataset == drift.dataset for d in found):
                    continue
                found.append(drift)
            log.warning("schema drift: %s", drift.message)

    def type_error(self, native: str, source: str, problem: str) -> SourceFormatError:
        """A mapped field whose values no longer read as its mapped type: the pull fails, naming the mapping."""
        return SourceFormatError(source, f"field {native}", problem, self._update_hint())

    def native_name(self, canonical: str) -> str:
        """The native field name that carries `canonical`."""
        for f in self.fields:
            if f.canonical == canonical:
                return f.native
        raise KeyError(canonical)

    def to_canonical(self, native: pa.Table, source: str, as_sent: pa.Array | None = None) -> pa.Table:
        """Map a table of native columns (strings or typed) onto the canonical schema.

        A value that does not read as its field's type (a date that is no date, text in a number field)
        becomes null and is recorded, as sent, in the AS_SENT column (exchange.intake), merged with what the
        adapter already found unreadable (`as_sent`); the column is present only when there is something in
        it. Raises SourceFormatError naming `source` if a native column is missing, or if every value of a
        field fails to read (the province changed the field's format: a mapping matter, not bad records).
        """
        missing = [c for c in self.native_columns if c not in native.column_names]
        if missing:
            raise SourceFormatError(
                source, "header", f"missing native field(s) {', '.join(missing)}",
                f"expected the {self.source} columns {', '.join(self.native_columns)}; {self._update_hint()}",
            )
        self.report_drift(native.column_names, source)
        columns: dict[str, pa.ChunkedArray] = {}
        entries: list[pa.Array | pa.ChunkedArray] = []
        for f in self.fields:
            sent = native.column(f.native)
            columns[f.canonical], unreadable, why = self._read(f, sent, source)
            if unreadable is not None:
                entries.append(intake.problem(f.canonical, unreadable, sent, why))
        table = pa.table([columns[field.name] for field in self.dataset.schema], schema=self.dataset.schema)
        found = intake.column(entries, native.num_rows) if entries else None
        return intake.attach(table, intake.merge(as_sent, found, native.num_rows))

    def read_column(self, canonical: str, native: pa.ChunkedArray, source: str) -> pa.ChunkedArray:
        """One native column read as canonical field `canonical` (codes, dates and times applied)."""
        spec = next(f for f in self.fields if f.canonical == canonical)
        return self._read(spec, native, source)[0]

    def from_canonical(self, canonical: pa.Table) -> pa.Table:
        """Render canonical records in the province's native form (used by the sandboxes)."""
        arrays = {f.native: self._write(f, canonical.column(f.canonical)) for f in self.fields}
        return pa.table(arrays)

    def _read(
        self, f: FieldMapping, column: pa.ChunkedArray, source: str
    ) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None, str]:
        """The canonical column, which values were present but unreadable (None: all read), and why."""
        target = self.dataset.schema.field(f.canonical).type
        if f.codes is not None:
            column = _recode(column.cast(pa.string()), f.codes)
        if f.date is not None:
            dates = _strict_dates(column, self._parsed(f, column, f.date, source), f.date)
            return dates, _unreadable(column, dates), f"not a date in the format {f.date}"
        if f.timestamp is not None:
            parsed = self._parsed(f, column, f.timestamp, source)
            if parsed.type.tz is None:
                parsed = pc.assume_timezone(parsed, self.timezone)
            return parsed.cast(TIMESTAMP), _unreadable(column, parsed), f"not a time in the format {f.timestamp}"
        if pa.types.is_string(target) and not pa.types.is_string(column.type):
            return column.cast(pa.string()), None, ""
        try:
            return column.cast(target), None, ""
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if not (pa.types.is_string(column.type) and (pa.types.is_integer(target) or pa.types.is_floating(target))):
                raise self.type_error(f.native, source, f"values no longer read as {target} ({exc})") from exc
            # Text in a number field: the values that are not numbers are bad records, unless none is a number.
            trimmed = pc.utf8_trim_whitespace(column)
            numeric = pc.fill_null(pc.match_substring_regex(trimmed, _INTEGER if pa.types.is_integer(target)
                                                            else _NUMBER), False)
            bad = pc.and_(pc.is_valid(column), pc.invert(numeric))
            failed, present = pc.sum(bad).as_py() or 0, pc.sum(pc.is_valid(column)).as_py() or 0
            if failed >= DRIFT_MIN_VALUES and failed == present:
                raise self.type_error(f.native, source, f"values no longer read as {target} ({exc})") from exc
            cleaned = pc.if_else(numeric, trimmed, pa.scalar(None, pa.string()))
            return cleaned.cast(target), bad, f"not a number ({target})"

    def _parsed(self, f: FieldMapping, column: pa.ChunkedArray, fmt: str, source: str) -> pa.ChunkedArray:
        """Parse a date/time column; a column none of whose values parse changed format (the pull fails)."""
        parsed, present = _parse(column, fmt)
        unreadable = pc.and_(present, pc.is_null(parsed))
        failed = pc.sum(unreadable).as_py() or 0
        if failed >= DRIFT_MIN_VALUES and failed == (pc.sum(present).as_py() or 0):
            example = column.filter(unreadable)[0].as_py()
            raise self.type_error(
                f.native, source, f"none of its {failed} values reads as {fmt!r} (e.g. {example!r}): format changed"
            )
        return parsed

    def _write(self, f: FieldMapping, column: pa.ChunkedArray) -> pa.ChunkedArray:
        if f.date is not None:
            return pc.strftime(column.cast(pa.timestamp("s")), format=f.date)
        if f.timestamp is not None:
            local = column.cast(pa.timestamp("s", tz=self.timezone))
            return pc.strftime(local, format=f.timestamp)
        if f.codes is not None:
            reverse = {canonical: native for native, canonical in f.codes.items()}
            return _recode(column, reverse)
        return column


_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_INTEGER = r"^[-+]?\d+$"


def _unreadable(sent: pa.ChunkedArray, read: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values the province sent (not null, not blank) that did not read (null after parsing)."""
    text = sent if pa.types.is_string(sent.type) else sent.cast(pa.string())
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
    return pc.and_(pc.invert(blank), pc.is_null(read))


def _recode(column: pa.ChunkedArray, codes: dict[str, str]) -> pa.ChunkedArray:
    """Replace each value found in `codes` by its mapping; leave unknown values untouched."""
    keys = pa.array(list(codes), pa.string())
    values = pa.array(list(codes.values()), pa.string())
    index = pc.index_in(column, value_set=keys)
    return pc.coalesce(pc.take(values, index), column)


def _strict_dates(column: pa.ChunkedArray, parsed: pa.ChunkedArray, fmt: str) -> pa.ChunkedArray:
    """Null impossible dates in `parsed`: Arrow's strptime rolls 2024-02-30 over to 2024-03-01.

    A rolled-over date always lands on day 1-3 of the next month, so only those rows are formatted back
    and compared with their text (formatting every row cost a fifth of a 1M-row pull).
    """
    suspects = np.flatnonzero(pc.fill_null(pc.less_equal(pc.day(parsed), 3), False).to_numpy(zero_copy_only=False))
    if len(suspects):
        text = column if pa.types.is_string(column.type) else column.cast(pa.string())
        take = pa.array(suspects)
        same = pc.equal(pc.strftime(parsed.take(take), format=fmt), pc.utf8_trim_whitespace(text.take(take)))
        rolled = suspects[~pc.fill_null(same, False).to_numpy(zero_copy_only=False)]
        if len(rolled):
            mask = np.zeros(len(parsed), dtype=bool)
            mask[rolled] = True
            parsed = pc.if_else(pa.array(mask), pa.scalar(None, parsed.type), parsed)
    return parsed.cast(pa.date32())


def _parse(column: pa.ChunkedArray, fmt: str) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Parse date/time strings, and which values were present (not blank).

    An unparsable value becomes null, so the not-null rule quarantines it.
    """
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)
    cleaned = pc.if_else(blank, pa.scalar(None, pa.string()), column)
    return pc.strptime(cleaned, format=fmt, unit="us", error_is_null=True), pc.invert(blank)


@dataclass(frozen=True)
class ProvinceMapping:
    """All dataset mappings of one province, loaded from its mapping.yaml."""

    province: str
    timezone: str
    datasets: dict[str, DatasetMapping]

    @classmethod
    def load(cls, path: Path) -> ProvinceMapping:
        """Parse a mapping.yaml, checking every canonical field is mapped exactly once."""
        doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        tz = doc.get("timezone", "Asia/Shanghai")
        mappings: dict[str, DatasetMapping] = {}
        for name, spec in doc["datasets"].items():
            ds = dataset(name)
            fields = tuple(
                FieldMapping(
                    canonical=canonical,
                    native=str(f["from"]),
                    codes={str(k): str(v) for k, v in f["codes"].items()} if "codes" in f else None,
                    date=f.get("date"),
                    timestamp=f.get("timestamp"),
                )
                for canonical, f in spec["fields"].items()
            )
            unmapped = set(ds.schema.names) - {f.canonical for f in fields}
            extra = {f.canonical for f in fields} - set(ds.schema.names)
            if unmapped or extra:
                raise ValueError(f"{path}: {name} mapping: unmapped {sorted(unmapped)}, unknown {sorted(extra)}")
            flag = spec.get("deleted")
            deleted = DeleteFlag(str(flag["from"]), str(flag["value"])) if flag else None
            mappings[name] = DatasetMapping(
                ds, str(spec["source"]), tz, fields, deleted, province=str(doc["province"]),
                mapping_file=adapters_path(path),
            )
        return cls(str(doc["province"]), tz, mappings)

    def dataset(self, name: str) -> DatasetMapping:
        """The mapping of one dataset, with an error naming what this province provides."""
        try:
            return self.datasets[name]
        except KeyError:
            raise KeyError(f"{self.province} provides no {name!r}; it provides {', '.join(self.datasets)}") from None
