"""Test homes that `make mutation` builds once per version of the code instead of once per mutant.

mutmut runs a mutant's covering tests in a new pytest session each time, so a module-scoped fixture that builds a
home with a committed lake (seconds, more on a busy machine) was built again for every mutant: most of the time a
mutant of the store checks or of recovery took. Under mutmut (which sets MUTANT_UNDER_TEST) :func:`built_once`
keeps the built folder in a cache keyed by a digest of the code and contracts that build it and by the day (homes
hold dates, such as a grant's start). Only a run with no mutant active writes the cache (mutmut's first, traced
run of every test), so a mutant never builds what later runs reuse, and each session works on its own copy.
Outside mutmut every session builds afresh: the suite keeps testing the build itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

CACHE = Path(tempfile.gettempdir()) / "exchange-test-cache"
MUTANT = "MUTANT_UNDER_TEST"
CLEAN = ("", "stats")  # mutmut's values for a run of the unmutated code


def source_key() -> str:
    """A digest of the code and contracts that build a home, and today's date (UTC)."""
    import adapters
    import exchange
    from exchange.contracts.load import contract_path

    digest = hashlib.sha256(datetime.now(UTC).date().isoformat().encode())
    for package in (Path(exchange.__file__).parent, Path(adapters.__file__).parent, contract_path("e_license").parent):
        for path in sorted(package.rglob("*")):
            if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".json", ".sql"}:
                digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def built_once(name: str, build: Callable[[Path], object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder `build` filled, fresh for this session: built here, or under mutmut copied from the cache."""
    root = tmp_path_factory.mktemp(name)
    mutant = os.environ.get(MUTANT)
    if mutant is None:
        build(root)
        return root
    cached = CACHE / f"{name}-{source_key()}"
    if cached.is_dir():
        shutil.copytree(cached, root, symlinks=True, dirs_exist_ok=True)
        return root
    build(root)
    if mutant in CLEAN:
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
        shutil.copytree(root, staging, symlinks=True, dirs_exist_ok=True)
        try:
            staging.rename(cached)  # atomic: a concurrent builder's copy wins, this one is dropped
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return root
