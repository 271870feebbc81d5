"""Secrets on disk (URL-signing, session and subject keys, profiles, the Airflow UI's password): owner-only from
the first byte, never half-written, and a key two processes create at once is one key."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from exchange import atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_key_is_made_once_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "k.key"
    first = atomic.secret_key(path)
    assert len(first) == 32 and _mode(path) == 0o600
    assert atomic.secret_key(path) == first
    assert not [p for p in path.parent.iterdir() if p != path], "no temporary file is left"


def _make(path: str, out: str) -> None:
    Path(out).write_bytes(atomic.secret_key(Path(path)))


def test_processes_creating_the_same_key_at_once_all_get_the_one_that_won(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = tmp_path / f"k{round_}.key"
        outs = [tmp_path / f"out{round_}.{i}" for i in range(4)]
        workers = [ctx.Process(target=_make, args=(str(path), str(o))) for o in outs]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert {o.read_bytes() for o in outs} == {path.read_bytes()}


def test_a_private_file_is_0600_already_as_a_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_publish = atomic.publish

    def publish(tmp: Path, path: Path) -> None:
        seen.append(_mode(tmp))  # before the rename: what another user could have opened meanwhile
        real_publish(tmp, path)

    monkeypatch.setattr(atomic, "publish", publish)
    old = os.umask(0)  # even a permissive umask does not widen it
    try:
        atomic.write_private(tmp_path / "profile.share", b"secret")
    finally:
        os.umask(old)
    assert seen == [0o600] and _mode(tmp_path / "profile.share") == 0o600
    assert (tmp_path / "profile.share").read_bytes() == b"secret"


def test_a_failed_private_write_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    atomic.write_private(path, b"old")

    def broken(tmp: Path, final: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "publish", broken)
    with pytest.raises(OSError):
        atomic.write_private(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["secret"]
