"""A dataset's sharing terms (sharing type, masking per field) from its contract, cached by file state.

Parsing an ODCS YAML contract costs ~0.2 s; a department's request needs the terms several times. The
cache key includes the file's path, size and modification time, so an edited or swapped contract (a
tightened sharing type) is read again on the next request: the contract still wins at access time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exchange.contracts.model import Contract


def contract_terms(dataset: str) -> Contract:
    """The dataset's current contract (reloaded when the file changes)."""
    # Imported here: the ODCS loader costs ~0.1-0.3 s of imports, and verify and an API start reach this
    # module (through access.extract) without ever asking for a contract.
    from exchange.contracts.load import contract_path, load_contract

    path = contract_path(dataset)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return load_contract(dataset)  # raises the loader's own error naming the missing file
    return _load(dataset, path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _load(dataset: str, path: Path, size: int, mtime_ns: int) -> Contract:
    from exchange.contracts.load import load_contract

    return load_contract(dataset, path.parent)
