"""Anhui's export file convention, shared by the adapter (reader) and the sandbox (writer).

One UTF-8 file per dataset per local day of update: ``<source>_<YYYYMMDD>.xml``, root ``<source>数据``
with the attributes 省份, 数据日期 and 记录数, one ``<记录>`` per record. Files are written as
``<name>.tmp`` and renamed, so a reader never sees a half-written export under its final name.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from lxml import etree

RECORD = "记录"
PROVINCE_ATTR = "省份"
DAY_ATTR = "数据日期"
COUNT_ATTR = "记录数"
PROVINCE_NAME = "安徽省"
_DAY = re.compile(r"_(\d{8})\.xml\Z")


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


def parser() -> etree.XMLParser:
    """A parser that never fetches or expands external content (exports come from outside the hub)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
