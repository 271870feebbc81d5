"""A batch checked in parts (bounded memory) gives exactly the whole batch's result."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from adapters.base import sandbox_for
from exchange.contracts.parts import key_hash, key_parts
from exchange.hub import Hub
from exchange.lake.connect import LAKE, connect
from exchange.pipeline import commit as commit_stage
from exchange.pipeline import pull, validate
from exchange.provenance.verify import verify_home
from exchange.synthetic import generate
from tests.hubs import sandbox_hub

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)


def test_parts_keep_every_copy_of_a_key_together_in_input_order(tmp_path: Path) -> None:
    keys = [f"k{i % 700}" for i in range(5000)] + [None] * 10  # every key repeats, spread over the file
    staged = tmp_path / "pulled.parquet"
    pq.write_table(pa.table({"key": keys, "row": list(range(len(keys)))}), staged, row_group_size=999)
    parts = list(key_parts(staged, "key", 1000, tmp_path / "parts"))
    assert len(parts) == 6
    assert sum(p.num_rows for p in parts) == len(keys)
    assert max(p.num_rows for p in parts) <= 1200  # about the requested size
    seen: set[str | None] = set()
    for part in parts:
        rows = part.column("row").to_pylist()
        assert rows == sorted(rows), "input order is kept within a part"
        here = set(part.column("key").to_pylist())
        assert not here & seen, "a key's copies are all in one part"
        seen |= here
    assert not (tmp_path / "parts").exists(), "the scattered files are removed"


def test_equal_keys_hash_alike_wherever_they_sit() -> None:
    keys = pa.array(["DZZZ3200001", "", None, "DZZZ3200002", "DZZZ3200001", "王五", None, "DZZZ3200002"])
    hashes = key_hash(keys)
    assert hashes[0] == hashes[4] and hashes[3] == hashes[7] and hashes[2] == hashes[6] == 0
    assert len({int(h) for h in hashes[[0, 1, 3, 5]]}) == 4
    assert list(key_hash(keys.slice(3))) == list(hashes[3:]), "a slice of a batch hashes as the whole"
    assert list(key_hash(pa.chunked_array([keys.slice(0, 3), keys.slice(3)]))) == list(hashes)


def test_a_small_file_is_one_part_read_as_it_is(tmp_path: Path) -> None:
    staged = tmp_path / "pulled.parquet"
    table = pa.table({"key": ["a", "b", "a"]})
    pq.write_table(table, staged)
    assert [p.to_pylist() for p in key_parts(staged, "key", 1000, tmp_path / "parts")] == [table.to_pylist()]


def _run(home: Path, sandbox_dir: Path, part_rows: int) -> tuple[dict[str, object], Hub]:
    shutil.copytree(sandbox_dir / "keys", home / "keys")  # the hub trusts the office key the sandbox signs with
    hub = sandbox_hub(home, sandbox_for("jiangsu", sandbox_dir))
    hub.settings.validate_part_rows = part_rows
    batch = pull("jiangsu", "e_license", START, END, hub).batch_id
    validate(batch, hub)
    checked = json.loads((hub.staging(batch) / "validation.json").read_text())
    commit_stage(batch, hub)
    return checked, hub


def _lake(hub: Hub, sql: str) -> list[tuple[object, ...]]:
    with connect(hub.settings, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_batch_checked_in_parts_commits_what_the_whole_batch_would(tmp_path: Path) -> None:
    sandbox_dir = tmp_path / "sandbox"
    table = generate("e_license", "jiangsu", 6000, seed=11, start=START, end=datetime(2026, 11, 5, tzinfo=UTC))
    sandbox_for("jiangsu", sandbox_dir).seed("e_license", table)
    whole, whole_hub = _run(tmp_path / "whole", sandbox_dir, 500_000)
    split, split_hub = _run(tmp_path / "split", sandbox_dir, 1000)
    for field in ("pulled", "accepted", "quarantined", "warned", "gx_success", "held", "rules"):
        assert split[field] == whole[field], field
    rules = {r["rule_id"]: r["unexpected"] for r in whole["rules"]}  # type: ignore[attr-defined]
    assert rules["license_id.unique_in_batch"] > 0, "the batch repeats keys (the generator's duplicate_key defect)"
    for sql in (
        f"SELECT * FROM {LAKE}.e_license ORDER BY ALL",
        f"SELECT record_key, rule_id, reason, record_json FROM {LAKE}.quarantine ORDER BY ALL",
    ):
        assert _lake(split_hub, sql) == _lake(whole_hub, sql)
    assert verify_home(split_hub.settings).ok
