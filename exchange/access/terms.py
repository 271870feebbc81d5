"""A dataset's sharing terms (sharing type, masking per field) from its contract, cached by file state.

The decisions taken on these terms are exchange/access/policy.py's; this module reads the contract and hands
its terms to the policy.

Parsing an ODCS YAML contract costs ~0.2 s; a department's request needs the terms several times. The
cache key includes the file's path, size and modification time, so an edited or swapped contract (a
tightened sharing type) is read again on the next request: the contract still wins at access time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from exchange.access.models import Grant, RowCondition
from exchange.access.policy import RowFilter, Terms, View, column_masks, require, row_filter, view
from exchange.datasets import dataset as canonical_dataset

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


def sharing_terms(dataset: str) -> Terms:
    """What the dataset's current contract says about sharing it: sharing type and masking per field."""
    contract = contract_terms(dataset)
    return Terms(dataset, contract.sharing_type, {f.name: f.masking for f in contract.fields})


def grant_masking(grant: Grant) -> dict[str, str]:
    """The masking rule per granted column under the dataset's current terms (policy.column_masks)."""
    return column_masks(grant, sharing_terms(grant.dataset))


def grant_row_filter(conditions: Sequence[RowCondition], dataset: str) -> RowFilter:
    """The parameterized WHERE clause of a grant's row conditions on `dataset` (policy.row_filter), or AccessDenied."""
    return require(row_filter(conditions, canonical_dataset(dataset).schema))


def grant_view(grant: Grant) -> View:
    """The grant's view under its dataset's current terms (exchange.access.policy.view), or AccessDenied."""
    return require(view(grant, sharing_terms(grant.dataset), canonical_dataset(grant.dataset).schema))
