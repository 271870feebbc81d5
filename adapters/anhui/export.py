"""Anhui's export file convention, shared by the adapter (reader) and the sandbox (writer).

One UTF-8 file per dataset per local day of update: ``<source>_<YYYYMMDD>.xml``, root ``<source>数据``
with the attributes 省份, 数据日期 and 记录数, one ``<记录>`` per record. Files are written as
``<name>.tmp`` and renamed, so a reader never sees a half-written export under its final name.

Exports come from outside the hub, so before lxml reads one, :func:`refuse_hostile` checks its prolog by
defusedxml's rules: no DTD at all (which rules out entity expansion bombs, external entities and DTD
retrieval); XInclude is never processed, and an XInclude element is refused by the reader.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser
from lxml import etree

from exchange.errors import SourceFormatError

RECORD = "记录"
PROVINCE_ATTR = "省份"
DAY_ATTR = "数据日期"
COUNT_ATTR = "记录数"
PROVINCE_NAME = "安徽省"
_DAY = re.compile(r"_(\d{8})\.xml\Z")
XINCLUDE_NS = "http://www.w3.org/2001/XInclude"
_HOSTILE_HINT = "Anhui exports must be plain XML without DTD, entities or XInclude; the file was not read"
_BLOCK = 64 * 1024


def root_element(source: str) -> str:
    """The root element name of a dataset's export, e.g. 电子证照数据."""
    return f"{source}数据"


def file_name(source: str, day: date) -> str:
    """The export file name for one dataset and day, e.g. 电子证照_20240501.xml."""
    return f"{source}_{day:%Y%m%d}.xml"


def file_day(source: str, path: Path) -> date:
    """The day an export file covers; ValueError if its name does not follow the convention."""
    match = _DAY.search(path.name)
    if not path.name.startswith(f"{source}_") or match is None or match.start() != len(source):
        raise ValueError(f"{path.name} is not named {source}_YYYYMMDD.xml")
    try:
        return datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"{path.name} does not name a valid day") from None


def schema_path(dataset: str) -> Path:
    """The XSD an export of `dataset` must conform to."""
    return Path(__file__).parent / f"{dataset}.xsd"


PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False,
}
"""lxml options that never fetch or expand external content (defence in depth behind refuse_hostile)."""


def parser() -> etree.XMLParser:
    """A parser that never fetches or expands external content (exports come from outside the hub)."""
    return etree.XMLParser(**PARSER_OPTIONS)


class _RootReached(Exception):
    """The prolog is over: what follows is the document's content, which lxml reads."""


class _StopAtRoot:
    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _RootReached


def refuse_hostile(path: Path, name: str) -> None:
    """Refuse a file whose prolog declares a DTD, entities or external references (defusedxml's rules).

    Only the prolog is read (a DTD can appear nowhere else), with defusedxml's expat parser, which
    stops at the `<!DOCTYPE` itself: no entity is declared, expanded or fetched, so a billion-laughs
    file is refused in microseconds. Raises SourceFormatError naming `name`, the position and what was refused.
    """
    parser = DefusedXMLParser(target=_StopAtRoot(), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    expat: Any = parser.parser
    try:
        with path.open("rb") as source:
            while block := source.read(_BLOCK):
                parser.feed(block)
            parser.close()
    except _RootReached:
        return
    except DTDForbidden as exc:
        fetch = f", which would fetch {exc.sysid or exc.pubid}" if exc.sysid or exc.pubid else ""
        problem = f"refused: the file declares a DTD <!DOCTYPE {exc.name}>{fetch} (entity expansion / DTD retrieval)"
        raise _refused(name, expat, problem) from None
    except EntitiesForbidden as exc:
        raise _refused(name, expat, f"refused: the file declares the entity {exc.name!r}") from None
    except ExternalReferenceForbidden as exc:
        raise _refused(name, expat, f"refused: the file references the external resource {exc.sysid!r}") from None
    except ParseError as exc:
        line, column = exc.position
        raise SourceFormatError(
            name, f"line {line} column {column}", f"not well-formed XML: {exc}", "re-export the file"
        ) from None


def _refused(name: str, expat: Any, problem: str) -> SourceFormatError:
    return SourceFormatError(
        name, f"line {expat.CurrentLineNumber} column {expat.CurrentColumnNumber}", problem, _HOSTILE_HINT
    )


def refuse_xinclude(element: etree._Element, name: str) -> None:
    """Refuse an XInclude element anywhere under `element` (XInclude is never processed)."""
    found = next(element.iter(f"{{{XINCLUDE_NS}}}*"), None)
    if found is not None:
        raise SourceFormatError(
            name, f"line {found.sourceline}", f"refused: XInclude element <{found.tag}>", _HOSTILE_HINT
        )


# --- the signed export manifest beside each export ------------------------------------------------------

MANIFEST_SUFFIX = ".manifest.json"


def manifest_name(export_name: str) -> str:
    """The manifest beside an export, e.g. 电子证照_20240501.manifest.json (its signature adds ``.sig``)."""
    return export_name.removesuffix(".xml") + MANIFEST_SUFFIX


def render_manifest(export_name: str, payload: bytes, records: int) -> bytes:
    """The export manifest Anhui's exporter writes (and its data office signs): file, SHA-256, record count."""
    doc = {"file": export_name, "sha256": hashlib.sha256(payload).hexdigest(), "records": records}
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")
