"""The provenance log: chained, signed, tamper-evident, and safe with concurrent writers."""

from __future__ import annotations

import fcntl
import io
import json
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exchange.access.lakeshare import lock_waiters
from exchange.config import ExchangeSettings
from exchange.errors import VerificationError
from exchange.provenance.archive import history_lines
from exchange.provenance.events import Commit
from exchange.provenance.log import (
    GENESIS,
    LogUnavailable,
    ProvenanceLog,
    _pieces_backwards,
    _torn,
    verify_chain,
)
from exchange.provenance.verify import verify_home
from exchange.signing.keyring import Keyring
from tests.unit.sample_events import H, InFlight, pull


def _append_many(home: str, worker: int, n: int) -> None:
    keyring = Keyring(Path(home) / "keys")
    log = ProvenanceLog(Path(home) / "provenance")
    for i in range(n):
        log.append(keyring.signer(), pull(), actor=f"adapter:worker-{worker}", subject=f"b{worker}-{i}")


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    first = log.append(keyring.signer(), pull(3), actor="hub", subject="b1")
    second = log.append(keyring.signer(), Commit(snapshot_id=1, accepted=3, quarantined=0, manifest="m.json"),
                        actor="hub", subject="b1", digests={"manifest": H})
    assert first.prev_hash == GENESIS and second.prev_hash == first.entry_hash
    assert second.seq == 2
    assert verify_chain(log, keyring.trust_bundle()) == 2


def test_private_key_is_0600_and_reused(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    signer = keyring.signer()
    assert (tmp_path / "keys" / "hub.ed25519.pem").stat().st_mode & 0o777 == 0o600
    assert Keyring(tmp_path / "keys").signer().key_id == signer.key_id
    assert signer.key_id.startswith("ed25519:")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda lines: lines[1].replace('"pulled":3', '"pulled":4'), "entry was altered"),
        (lambda lines: lines[1].replace('"actor":"hub"', '"actor":"eve"'), "entry was altered"),
    ],
)
def test_an_edited_entry_is_named(tmp_path: Path, edit: object, expected: str) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    for i in range(3):
        log.append(keyring.signer(), pull(3), actor="hub", subject=f"b{i}")
    lines = log.path.read_text().splitlines()
    lines[1] = edit(lines)  # type: ignore[operator]
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(VerificationError, match=expected) as err:
        verify_chain(log, keyring.trust_bundle())
    assert "log.jsonl:2" in str(err.value)


def test_a_removed_entry_breaks_the_chain(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    for i in range(3):
        log.append(keyring.signer(), pull(), actor="hub", subject=f"b{i}")
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.raises(VerificationError, match="sequence gap|chain broken"):
        verify_chain(log, keyring.trust_bundle())


def test_a_resigned_entry_with_a_foreign_key_fails(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    log.append(keyring.signer(), pull(), actor="hub", subject="b0")
    forger = Keyring(tmp_path / "other-keys").signer()
    forged = ProvenanceLog(tmp_path / "provenance")
    forged.append(forger, pull(), actor="hub", subject="b0")
    with pytest.raises(VerificationError, match="not in the trust bundle"):
        verify_chain(log, keyring.trust_bundle())


def test_concurrent_writers_never_fork_the_chain(tmp_path: Path) -> None:
    Keyring(tmp_path / "keys").signer()  # create the key once, as the hub does before its workers start
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    log = ProvenanceLog(tmp_path / "provenance")
    assert verify_chain(log, Keyring(tmp_path / "keys").trust_bundle()) == 100
    seqs = [json.loads(line)["seq"] for line in log.path.read_text().splitlines()]
    assert seqs == list(range(1, 101))


def _finish_once_read(path: str, rest: bytes, locked: Event, reader_done: Event) -> None:
    """An appender half-way through its line: holds the log's lock until a reader waits for it (or, if the
    reader never waits, has returned), then writes the rest of the line and lets go."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        locked.set()
        for _ in range(6000):  # a hang guard (60 s), not a timing hope: either event ends the wait
            if lock_waiters(Path(path)) or reader_done.is_set():
                break
            time.sleep(0.01)
        handle.write(rest)
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def _verified(log: ProvenanceLog) -> tuple[bool, int, list[str]]:
    report = verify_home(ExchangeSettings(home=log.dir.parent), record=False)
    return report.ok, report.entries, [str(p) for p in report.problems]


_READERS: dict[str, Callable[[ProvenanceLog], object]] = {
    "verify": _verified,
    "head": lambda log: log.head(),
    "read": lambda log: log.read(),
    "trace's history": lambda log: [json.loads(line)["seq"] for line in history_lines(log)],
    "torn tail (recover)": lambda log: log.torn_tail(),
}


@pytest.mark.parametrize("reader", _READERS)
def test_a_reader_never_sees_an_append_half_written(tmp_path: Path, reader: str) -> None:
    """Readers take no part in the appenders' lock order, yet must never parse a line another process is still
    writing: verify would call it a torn tail ("run exchange recover"), head/read/trace would fail on it."""
    if not Path("/proc/locks").exists():
        pytest.skip("the appender sees the reader wait through /proc/locks (Linux)")
    keyring = Keyring(tmp_path / "keys")
    log = ProvenanceLog(tmp_path / "provenance")
    for i in range(3):
        log.append(keyring.signer(), pull(), actor="hub", subject=f"b{i}")
    flight = InFlight(log, keyring)  # the fourth entry: half its line is on disk
    whole = log.path.read_bytes() + flight.rest
    ctx = multiprocessing.get_context("fork")
    locked, reader_done = ctx.Event(), ctx.Event()
    appender = ctx.Process(target=_finish_once_read, args=(str(log.path), flight.rest, locked, reader_done))
    appender.start()
    try:
        assert locked.wait(60), "the appender never took the log's lock"
        during = _READERS[reader](log)
    finally:
        reader_done.set()
        appender.join(60)
    assert appender.exitcode == 0
    assert log.path.read_bytes() == whole
    assert during == _READERS[reader](log)  # what it reads once the append is done
    assert len(log.read()) == 4 and log.torn_tail() == 0


@pytest.fixture(scope="module")
def four_entries(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    home = tmp_path_factory.mktemp("four")
    _append_many(str(home), 0, 4)
    return (home / "provenance" / "log.jsonl").read_bytes()


@given(junk=st.binary(min_size=1, max_size=300).filter(lambda b: b"\n" not in b)
       | st.text(" \t\r{}\"", min_size=1).map(str.encode))
@example(junk=b" ")
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_torn_tail_is_exactly_the_bytes_after_the_last_newline(four_entries: bytes, tmp_path: Path,
                                                               junk: bytes) -> None:
    # Whatever a dead writer (or someone editing the file) left after the last complete line, blanks included,
    # recover measures and cuts exactly that, never a complete entry before it.
    log = ProvenanceLog(tmp_path / "provenance")
    log.path.parent.mkdir(parents=True, exist_ok=True)
    log.path.write_bytes(four_entries + junk)
    assert log.torn_tail() == len(junk)
    # Nothing is appended (nor a step begun that must be logged) until recovery has cut it: glued to the
    # unfinished line, the next entry would be unreadable.
    signer = Keyring(tmp_path / "keys").signer()
    for attempt in (log.ensure_writable, lambda: log.append(signer, pull(), actor="hub", subject="b")):
        with pytest.raises(LogUnavailable, match="ends in an unfinished line .* run `exchange recover`"):
            attempt()
    assert log.path.read_bytes() == four_entries + junk
    assert log.cut_torn_tail() == junk
    assert log.path.read_bytes() == four_entries and log.torn_tail() == 0 and log.cut_torn_tail() == b""


@given(content=st.lists(st.sampled_from([b"\n", b" ", b"{", b"}", b"\x00", b"ab"]), max_size=40).map(b"".join),
       block=st.integers(1, 9))
def test_the_log_is_read_backwards_across_block_boundaries_as_it_reads_forwards(content: bytes, block: int) -> None:
    pieces = list(_pieces_backwards(io.BytesIO(content), block, len(content)))
    assert pieces == list(reversed(content.split(b"\n")))
    assert _torn(io.BytesIO(content), len(content)) == content.rpartition(b"\n")[2]
