"""Contract column types and ODCS versions: one mapping from the canonical Arrow types to what a contract
declares, and each contract checked against the JSON Schema of the ODCS version it declares."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pyarrow as pa
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from exchange.contracts import coltypes
from exchange.contracts.lint import ODCS_SCHEMAS, default_paths, odcs_schema_problems
from exchange.contracts.load import default_contracts_dir, load_contract
from exchange.datasets import DATASETS

CANONICAL = sorted({f.type for d in DATASETS.values() for f in d.schema}, key=str)
KNOWN = [pa.string(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64(),
         pa.date32(), pa.timestamp("us", tz="UTC")]


@pytest.mark.parametrize("arrow", CANONICAL, ids=str)
def test_every_canonical_type_has_one_declaration_that_maps_back(arrow: pa.DataType) -> None:
    declared = coltypes.declared(arrow)
    assert coltypes.arrow_type(declared.physical) == arrow
    assert coltypes.arrow_type(str(arrow)) == arrow  # the spelling contracts used before ODCS v3.1


def test_a_type_without_a_mapping_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="decimal128"):
        coltypes.declared(pa.decimal128(10, 2))


def test_the_shipped_contracts_declare_what_the_mapping_says() -> None:
    for name, ds in DATASETS.items():
        contract = load_contract(name)
        raw = {p.name: p for p in contract.raw.schema_[0].properties or []}  # type: ignore[index]
        for f in ds.schema:
            declared = coltypes.declared(f.type)
            assert (raw[f.name].logicalType, raw[f.name].physicalType) == (declared.logical, declared.physical)


@st.composite
def _spellings(draw: st.DrawFn) -> tuple[pa.DataType, str]:
    arrow = draw(st.sampled_from(KNOWN))
    words = coltypes.declared(arrow).physical.split()
    cased = [draw(st.sampled_from([w.lower(), w.upper(), w.capitalize()])) for w in words]
    gaps = [draw(st.sampled_from([" ", "  ", "\t"])) for _ in words[1:]]
    text = cased[0] + "".join(g + w for g, w in zip(gaps, cased[1:], strict=True))
    return arrow, draw(st.sampled_from(["", " "])) + text + draw(st.sampled_from(["", " "]))


@given(_spellings())
def test_physical_names_are_read_whatever_their_case_and_spacing(case: tuple[pa.DataType, str]) -> None:
    arrow, spelling = case
    assert coltypes.arrow_type(spelling) == arrow
    assert coltypes.same_type(spelling, coltypes.declared(arrow).physical)


@given(st.sampled_from(KNOWN), st.sampled_from(KNOWN))
def test_widening_is_a_partial_order_and_the_same_type_always_widens(a: pa.DataType, b: pa.DataType) -> None:
    x, y = coltypes.declared(a).physical, coltypes.declared(b).physical
    assert coltypes.widens(x, x) and coltypes.widens(str(a), x)
    if coltypes.widens(x, y) and coltypes.widens(y, x):
        assert a == b
    if coltypes.widens(x, y) and a != b:  # only to a wider type of the same kind
        same_kind = all(map(pa.types.is_integer, (a, b))) or all(map(pa.types.is_floating, (a, b)))
        assert same_kind and b.bit_width > a.bit_width


def test_unknown_physical_types_neither_widen_nor_match() -> None:
    assert coltypes.arrow_type("geometry") is None and coltypes.arrow_type(None) is None
    assert not coltypes.widens("geometry", "geometry") and not coltypes.same_type("geometry", "geometry")


# --- ODCS version ------------------------------------------------------------------------------------------


def _shipped(name: str = "e_license") -> dict[str, Any]:
    return yaml.safe_load((default_contracts_dir() / f"{name}.odcs.yaml").read_text("utf-8"))


@pytest.mark.parametrize("version", ODCS_SCHEMAS)
def test_each_schema_file_is_the_one_of_its_version(version: str) -> None:
    package, name = ODCS_SCHEMAS[version]
    schema = json.loads(resources.files(package).joinpath(name).read_text("utf-8"))
    assert schema["properties"]["apiVersion"]["default"] == version


@pytest.mark.parametrize("path", default_paths(), ids=lambda p: p.name)
def test_shipped_contracts_declare_v3_1_0_and_need_it(path: Any) -> None:
    data = yaml.safe_load(path.read_text("utf-8"))
    assert data["apiVersion"] == "v3.1.0" and odcs_schema_problems(data) == []
    as_302 = {**data, "apiVersion": "v3.0.2"}
    problems = odcs_schema_problems(as_302)
    assert problems and all(where.endswith(".logicalType") and "v3.0.2" in why and "'timestamp'" in why
                            for where, why in problems)
    assert odcs_schema_problems({**data, "apiVersion": "v3.2.0"}) == []  # the newer version accepts it too


def test_the_newest_schema_alone_would_have_passed_the_mislabelled_contract() -> None:
    """Why lint picks the declared version: the v3.2.0 schema lists v3.0.2 among its apiVersions."""
    data = {**_shipped(), "apiVersion": "v3.0.2"}
    from exchange.contracts.lint import odcs_validator

    assert list(odcs_validator("v3.2.0").iter_errors(data)) == []
    assert odcs_schema_problems(data)


@pytest.mark.parametrize("declared", ["v3.0.1", "v2.2.2", "3.1.0", None, 3.1])
def test_an_api_version_without_a_schema_here_is_named_not_guessed(declared: Any) -> None:
    data = copy.deepcopy(_shipped())
    data["apiVersion"] = declared
    ((where, why),) = odcs_schema_problems(data)
    assert where == "apiVersion" and repr(declared) in why and "v3.1.0" in why
