"""A department's age X25519 extract key: registering its public half, and making one for it (demo use)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchange.access.envelope import generate_private_key, key_id, parse_public_key, recipient, write_private_key
from exchange.access.registry import Registry
from exchange.errors import BadInput, Refused
from exchange.provenance.events import HUB, DepartmentExtractKey

if TYPE_CHECKING:
    from exchange.hub import Hub


def department_key_path(keys: Path, department: str) -> Path:
    """Where the hub keeps a private extract key it made for `department` (a 0700 folder under keys/)."""
    # The id becomes a file name: the registry's ids are already this shape, but never trust that here.
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,79}", department):
        raise BadInput(f"department id {department!r} cannot name a key file")
    folder = keys / "departments"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / f"{department}.age.key"


def register_extract_key(hub: Hub, registry: Registry, department: str, public_key: str) -> str:
    """Encrypt `department`'s extracts to `public_key` from now on; log it; its key id.

    `public_key` is an age recipient (``age1...``, what age-keygen prints) or base64 raw X25519 bytes; the
    registry stores it as an age recipient. BadInput if it is neither, UnknownName for an unknown department.
    """
    try:
        public = parse_public_key(public_key.strip())
    except ValueError as exc:
        raise BadInput(f"not an age X25519 recipient: {exc}") from None
    fingerprint = key_id(public)
    registry.set_extract_key(department, recipient(public))
    hub.log.append(hub.signer, DepartmentExtractKey(key_id=fingerprint), actor=HUB, subject=department)
    return fingerprint


def issue_extract_key(hub: Hub, registry: Registry, department: str,
                      path: Path | None = None) -> tuple[X25519PrivateKey, Path]:
    """Make an extract key for `department`, store it 0600 at `path` (never over an existing key: its
    extracts may need it) and register its public half. A real department makes its own."""
    registry.department(department)
    path = path or department_key_path(hub.layout.keys, department)
    if path.exists():
        raise Refused(f"{path} exists; refusing to overwrite a key its extracts may need")
    key = generate_private_key()
    write_private_key(key, path)
    register_extract_key(hub, registry, department, recipient(key.public_key()))
    return key, path
