"""Rules resolved against the lake: parameters checked at load, the pure resolution, and a real DuckLake.

* uniqueness against the lake: a record whose key the lake already holds at the same or a later
  updated_at is a re-delivery or an out-of-order stale copy and is quarantined; a newer version passes;
* across datasets: a penalty's party must be registered in the lake's enterprise registrations.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exchange.config import ExchangeSettings
from exchange.contracts.load import default_contracts_dir, load_contract
from exchange.contracts.model import ContractError, Rule
from exchange.contracts.reference import (
    EmptyLake,
    LakeReference,
    TableLake,
    gx_parameter_name,
    kept_versions,
    parse_lake_parameter,
    resolve_lake_parameters,
)
from exchange.contracts.validate import QUARANTINE_SCHEMA, ValidationOutcome, validate
from exchange.datasets import DATASETS, TIMESTAMP
from exchange.lake.commit import commit_batch
from exchange.lake.connect import catalog_and_data, connect, ensure_table
from exchange.lake.reference import DuckLakeReference
from exchange.stages import LedgerRow
from exchange.synthetic import DEFECT_COLUMN, generate

START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 8, tzinfo=UTC)
TODAY = date(2024, 5, 8)
T0 = datetime(2024, 5, 3, 12, tzinfo=UTC)


def _clean(dataset: str, n: int, seed: int = 5) -> pa.Table:
    table = generate(dataset, "zhejiang", n, seed=seed, start=START, end=END, defect_rate=0.0)
    return table.drop_columns([DEFECT_COLUMN])


def _run(table: pa.Table, dataset: str, lake: LakeReference | None) -> ValidationOutcome:
    return validate(table, load_contract(dataset), province="zhejiang", batch_id="b", today=TODAY, lake=lake)


# --- parameters are checked when the contract is loaded -----------------------------------------------


def test_lake_parameters_parse() -> None:
    parsed = parse_lake_parameter("lake:enterprise_registration.uscc")
    assert parsed is not None and (parsed.kind, parsed.dataset, parsed.column) == (
        "lake",
        "enterprise_registration",
        "uscc",
    )
    assert parsed.name == "lake:enterprise_registration.uscc"
    assert parse_lake_parameter("province") is None and parse_lake_parameter("today") is None
    for bad, problem in [
        ("lake:enterprise_registration", "must be written"),
        ("lake_absent:enterprise.uscc", "unknown dataset"),
        ("lake:enterprise_registration.usc", "no column"),
        ("lake_stale:e_license.holder_id", "key is license_id"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_lake_parameter(bad)


def test_gx_parameter_names_are_identifiers_and_distinct() -> None:
    names = [
        f"{kind}:{d.name}.{c}" for kind in ("lake", "lake_absent", "lake_stale") for d in DATASETS.values()
        for c in d.schema.names
    ]
    mapped = [gx_parameter_name(n) for n in names]
    assert len(set(mapped)) == len(names)
    assert all(m.replace("$", "").replace("_", "").isalnum() and m[0].isalpha() for m in mapped)
    assert gx_parameter_name("province") == "province"


PENALTY = (default_contracts_dir() / "administrative_penalty.odcs.yaml").read_text("utf-8")
REGISTERED = 'value_set: {$PARAMETER: "lake_absent:enterprise_registration.uscc"}'
STALE = 'value_set: {$PARAMETER: "lake_stale:administrative_penalty.decision_no"}'
NOT_FUTURE = "kwargs: {column: decided_on, max_value: {$PARAMETER: today}}"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (REGISTERED, REGISTERED.replace("lake_absent:", "lake_missing:"), "unknown run parameter 'lake_missing:"),
        (REGISTERED, REGISTERED.replace("enterprise_registration", "enterprise"), "unknown dataset 'enterprise'"),
        (REGISTERED, REGISTERED.replace(".uscc", ".credit_code"), "no column 'credit_code'"),
        (REGISTERED, REGISTERED.replace(".uscc", ".established_on"), "cannot match"),
        (STALE, STALE.replace("administrative_penalty.decision_no", "e_license.license_id"), "own key"),
        (NOT_FUTURE, NOT_FUTURE.replace("{$PARAMETER: today}", "{$PARAMETER: tomorrow}"), "'tomorrow'"),
        (NOT_FUTURE, NOT_FUTURE.replace("column: decided_on", "column: violation_type"), "sits under"),
        (
            "kwargs: {column: region_code, province: {$PARAMETER: province}",
            'kwargs: {column: region_code, province: {$PARAMETER: "lake:enterprise_registration.region_code"}',
            "only supply a value_set",
        ),
    ],
)
def test_bad_run_parameters_are_refused_at_load(tmp_path: Path, old: str, new: str, problem: str) -> None:
    assert old in PENALTY, old
    path = tmp_path / "administrative_penalty.odcs.yaml"
    path.write_text(PENALTY.replace(old, new, 1), "utf-8")
    with pytest.raises(ContractError, match=problem) as raised:
        load_contract("administrative_penalty", tmp_path)
    assert raised.value.path == str(path)
    assert "rule " in raised.value.problem  # names the rule, i.e. where in the file


def test_a_date_bound_on_a_text_column_is_refused_at_load(tmp_path: Path) -> None:
    # A date bound on a number would only fail when a batch runs; the load dry-runs the rule instead.
    old = "kwargs: {column: fine_amount, min_value: 0, max_value: 1000000000}"
    assert old in PENALTY
    text = PENALTY.replace(old, "kwargs: {column: fine_amount, max_value: {$PARAMETER: today}}", 1)
    (tmp_path / "administrative_penalty.odcs.yaml").write_text(text, "utf-8")
    with pytest.raises(ContractError, match="fine_amount.within_bounds: does not fit the column type"):
        load_contract("administrative_penalty", tmp_path)


# --- the pure resolution ------------------------------------------------------------------------------


def _versions(pairs: list[tuple[str | None, datetime | None]]) -> pa.Table:
    keys = pa.array([p[0] for p in pairs], pa.string())
    return pa.table({"license_id": keys, "updated_at": pa.array([p[1] for p in pairs], TIMESTAMP)})


def test_stale_means_the_lake_has_the_same_or_a_later_version() -> None:
    lake = TableLake({"e_license": _versions([("a", T0), ("b", T0), ("c", T0), ("c", T0 - timedelta(days=9))])})
    second = timedelta(seconds=1)
    incoming = _versions([("a", T0), ("b", T0 - second), ("c", T0 + second), ("d", T0)])
    assert sorted(lake.stale_keys("e_license", "license_id", incoming).to_pylist()) == ["a", "b"]
    assert EmptyLake().stale_keys("e_license", "license_id", incoming).to_pylist() == []
    assert TableLake({}).stale_keys("e_license", "license_id", incoming).to_pylist() == []


def test_staleness_is_judged_on_the_record_a_key_keeps() -> None:
    # The first copy of "a" is a newer version, the second a stale one: "a" is not stale (the first is kept
    # and committed; the second fails in-batch uniqueness anyway).
    batch = _versions([("a", T0 + timedelta(hours=1)), ("a", T0 - timedelta(hours=1)), (None, T0), ("b", None)])
    kept = kept_versions(batch, "license_id").to_pylist()
    assert kept == [{"license_id": "a", "updated_at": T0 + timedelta(hours=1)}]


def test_a_lake_value_set_only_asks_about_this_batch() -> None:
    asked: list[list[str]] = []

    class Recording(TableLake):
        def present(self, dataset: str, column: str, values: pa.Array) -> pa.Array:
            asked.append(sorted(values.to_pylist()))
            return super().present(dataset, column, values)

    registrations = pa.table({"uscc": ["U1", "U2", "U3", "U4"]})
    contract = load_contract("administrative_penalty")
    batch = pa.table({"party_uscc": ["U2", "U9", None, "U2"], "decision_no": ["d1", "d2", "d3", "d4"],
                      "updated_at": pa.array([T0] * 4, TIMESTAMP)})
    resolved = resolve_lake_parameters(contract.rules, batch, Recording({"enterprise_registration": registrations}))
    assert asked == [["U2", "U9"]]
    assert resolved == {
        "lake_stale:administrative_penalty.decision_no": [],
        "lake_absent:enterprise_registration.uscc": ["U9"],
    }
    # The positive form, for expect_column_values_to_be_in_set: the batch's values the lake holds.
    in_set = Rule("party_uscc.in_lake", "x", "error", "expect_column_values_to_be_in_set",
                  {"column": "party_uscc", "value_set": {"$PARAMETER": "lake:enterprise_registration.uscc"}})
    lake = TableLake({"enterprise_registration": registrations})
    assert resolve_lake_parameters([in_set], batch, lake) == {"lake:enterprise_registration.uscc": ["U2"]}
    assert resolve_lake_parameters([in_set], batch, EmptyLake()) == {"lake:enterprise_registration.uscc": []}


# --- against a real DuckLake --------------------------------------------------------------------------


@pytest.fixture
def settings(home: Path) -> ExchangeSettings:
    return ExchangeSettings(home=home)


def _commit(settings: ExchangeSettings, dataset: str, table: pa.Table, batch_id: str) -> None:
    row = LedgerRow(
        batch_id=batch_id, province="zhejiang", dataset=dataset, window_start=START,
        window_end=END, watermark=pc.max(table.column("updated_at")).as_py(), pulled=table.num_rows,
        accepted=table.num_rows, quarantined=0, contract_id=f"urn:yrd:contract:{dataset}",
        contract_version=load_contract(dataset).version,
    )
    with connect(settings) as con:
        result = commit_batch(con, dataset=dataset, dataset_schema=DATASETS[dataset].schema, ledger_row=row,
                              accepted=table, quarantined=QUARANTINE_SCHEMA.empty_table())
    assert result.written


def test_before_anything_is_committed_the_lake_holds_nothing(settings: ExchangeSettings) -> None:
    reference = DuckLakeReference(settings)
    values = pa.array(["U1", "U2"])
    incoming = _versions([("a", T0)])
    assert reference.present("enterprise_registration", "uscc", values).to_pylist() == []
    assert reference.stale_keys("e_license", "license_id", incoming).to_pylist() == []
    assert not Path(catalog_and_data(settings)[0]).exists(), "asking must not create a catalog"
    with connect(settings) as con:  # a catalog with another table, but not these
        ensure_table(con, "exchange_batches", pa.schema([pa.field("batch_id", pa.string())]))
    assert reference.present("enterprise_registration", "uscc", values).to_pylist() == []
    assert reference.stale_keys("e_license", "license_id", incoming).to_pylist() == []


def test_duck_lake_reference_answers_like_the_pure_one(settings: ExchangeSettings) -> None:
    registrations = _clean("enterprise_registration", 50)
    _commit(settings, "enterprise_registration", registrations, "zhejiang.enterprise_registration.1")
    duck, pure = DuckLakeReference(settings), TableLake({"enterprise_registration": registrations})
    asked = pa.array([*registrations.column("uscc").to_pylist()[:5], "91330000MA0000000X"])
    assert sorted(duck.present("enterprise_registration", "uscc", asked).to_pylist()) == sorted(
        pure.present("enterprise_registration", "uscc", asked).to_pylist()
    ) == sorted(asked.to_pylist()[:5])
    incoming = registrations.select(["uscc", "updated_at"]).slice(0, 6)
    later = pc.add(incoming.column("updated_at"), pa.scalar(timedelta(seconds=1)))
    incoming = incoming.set_column(1, "updated_at", pa.concat_arrays([
        incoming.column("updated_at").combine_chunks()[:3], later.combine_chunks()[3:]]))
    expected = sorted(registrations.column("uscc").to_pylist()[:3])
    assert sorted(duck.stale_keys("enterprise_registration", "uscc", incoming).to_pylist()) == expected
    assert sorted(pure.stale_keys("enterprise_registration", "uscc", incoming).to_pylist()) == expected


def test_a_penalty_needs_its_party_registered_in_the_lake(settings: ExchangeSettings) -> None:
    penalties = _clean("administrative_penalty", 30)
    registrations = _clean("enterprise_registration", 30)  # the parties were drawn from these
    reference = DuckLakeReference(settings)

    before = _run(penalties, "administrative_penalty", reference)
    assert before.quarantined_count == 30 and before.held
    assert set(before.quarantined.column("rule_id").to_pylist()) == {"party_uscc.registered_in_lake"}
    reason = before.quarantined.column("reason").to_pylist()[0]
    party = penalties.column("party_uscc")[0].as_py()
    assert reason.startswith(f"party_uscc='{party}': 当事人统一社会信用代码在市场主体登记中查无此户")
    assert "replay the record once the registration has been exchanged" in reason

    _commit(settings, "enterprise_registration", registrations, "zhejiang.enterprise_registration.1")
    after = _run(penalties, "administrative_penalty", reference)
    assert after.quarantined_count == 0 and after.gx_success
    assert after.accepted.equals(penalties)

    # Deregister one party (drop it from what the lake holds): only its penalties are held back.
    gone = penalties.column("party_uscc")[0].as_py()
    with connect(settings) as con:
        con.execute('DELETE FROM lake."enterprise_registration" WHERE uscc = ?', [gone])
    partial = _run(penalties, "administrative_penalty", reference)
    expected = pc.sum(pc.equal(penalties.column("party_uscc"), gone)).as_py()
    assert partial.quarantined_count == expected > 0
    rule = next(r for r in partial.rules if r.rule_id == "party_uscc.registered_in_lake")
    assert rule.unexpected_count == expected and not rule.success


def test_a_redelivered_record_is_quarantined_and_a_newer_version_passes(settings: ExchangeSettings) -> None:
    licences = _clean("e_license", 40)
    reference = DuckLakeReference(settings)
    first = _run(licences, "e_license", reference)
    assert first.quarantined_count == 0
    _commit(settings, "e_license", first.accepted, "zhejiang.e_license.1")

    again = _run(licences, "e_license", reference)  # the same records, delivered a second time
    assert again.quarantined_count == 40 and again.accepted_count == 0
    assert set(again.quarantined.column("rule_id").to_pylist()) == {"license_id.newer_than_lake"}
    assert "re-delivery or an out-of-date copy" in again.quarantined.column("reason").to_pylist()[0]

    # Rows 0-9 changed at source (a later update time), rows 10-19 are older copies that arrive late.
    shift = [timedelta(minutes=5)] * 10 + [timedelta(minutes=-5)] * 10
    mixed = licences.slice(0, 20)
    moved = pc.add(mixed.column("updated_at"), pa.array(shift, pa.duration("us")))
    mixed = mixed.set_column(mixed.schema.get_field_index("updated_at"), "updated_at", moved)
    outcome = _run(mixed, "e_license", reference)
    assert outcome.accepted.column("license_id").to_pylist() == licences.column("license_id").to_pylist()[:10]
    assert outcome.quarantined.column("record_key").to_pylist() == licences.column("license_id").to_pylist()[10:20]
    assert set(outcome.quarantined.column("rule_id").to_pylist()) == {"license_id.newer_than_lake"}
    stale = next(r for r in outcome.rules if r.rule_id == "license_id.newer_than_lake")
    assert stale.unexpected_count == 10  # GX's count, reconciled with the predicate

    # Once the update is committed, the same update is itself a re-delivery.
    _commit(settings, "e_license", outcome.accepted, "zhejiang.e_license.2")
    assert _run(outcome.accepted, "e_license", reference).quarantined_count == 10


# --- wired into the pipeline's validate stage ---------------------------------------------------------


def test_the_pipeline_checks_penalties_against_committed_registrations(home: Path) -> None:
    from adapters.base import sandbox_for
    from exchange.errors import TerminalError
    from exchange.hub import Hub
    from exchange.pipeline import run_exchange

    sandbox = sandbox_for("jiangsu", home / "sandboxes" / "jiangsu")
    env = {k.removeprefix("EXCHANGE_").lower(): v for k, v in sandbox.env().items()}
    hub = Hub(ExchangeSettings.model_validate({"home": home, **env}))
    # The generator draws the parties from the registrations it makes for the same size, seed and window.
    registrations = generate("enterprise_registration", "jiangsu", 300, seed=3, start=START, end=END)
    penalties = generate("administrative_penalty", "jiangsu", 300, seed=3, start=START, end=END)
    sandbox.seed("enterprise_registration", registrations)
    sandbox.seed("administrative_penalty", penalties)

    # Penalties before their registrations: no party is registered yet, the batch is held whole.
    with pytest.raises(TerminalError, match="held"):
        run_exchange("jiangsu", "administrative_penalty", START, END, hub)
    assert run_exchange("jiangsu", "enterprise_registration", START, END, hub).status == "committed"
    # The same window again, now that the registrations are in the lake: only the defective records fail.
    result = run_exchange("jiangsu", "administrative_penalty", START, END, hub)
    assert result.status == "committed"
    assert result.quarantined == pc.sum(pc.is_valid(penalties.column(DEFECT_COLUMN))).as_py()
