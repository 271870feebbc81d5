"""The published catalogue under EXCHANGE_HOME/catalogue: every signed version of every item (append-only).

``items.json`` holds the list of SignedCatalogueItem documents; the current version of an item is its highest.
Writes hold ``.lock`` and go through exchange/atomic.py. Publishing signs each changed item with its
providing office's key (exchange.signing.roles: Signed.CATALOGUE_ITEM, province office keys only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from exchange.atomic import write_text
from exchange.catalogue.build import build_all
from exchange.catalogue.models import CatalogueExport, CatalogueItem, SignedCatalogueItem
from exchange.errors import NotFound, VerificationError
from exchange.locking import file_lock
from exchange.signing.canonical import canonical_bytes
from exchange.signing.signers import Signer
from exchange.signing.trust import TrustBundle, verify_signature


class Catalogue:
    """The signed, versioned catalogue items of one hub."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "items.json"

    def versions(self) -> list[SignedCatalogueItem]:
        """Every published version of every item, oldest first."""
        if not self.path.exists():
            return []
        return [SignedCatalogueItem.model_validate(d) for d in json.loads(self.path.read_text(encoding="utf-8"))]

    def current(self) -> dict[str, SignedCatalogueItem]:
        """The current (highest) version of each item, by code."""
        latest: dict[str, SignedCatalogueItem] = {}
        for signed in self.versions():
            held = latest.get(signed.item.code)
            if held is None or signed.item.version > held.item.version:
                latest[signed.item.code] = signed
        return dict(sorted(latest.items()))

    def item(self, code: str) -> CatalogueItem:
        """The current version of one item, or NotFound naming the published codes."""
        current = self.current()
        if code not in current:
            known = ", ".join(current) or "none: run `exchange catalogue publish`"
            raise NotFound(f"unknown catalogue item {code!r}; published: {known}")
        return current[code].item

    def history(self, code: str) -> list[SignedCatalogueItem]:
        """Every version of one item, oldest first."""
        found = [s for s in self.versions() if s.item.code == code]
        if not found:
            raise NotFound(f"unknown catalogue item {code!r}; `exchange catalogue list` shows the published ones")
        return sorted(found, key=lambda s: s.item.version)

    def publish(self, signer_for: Callable[[str], Signer], items: list[CatalogueItem] | None = None,
                now: datetime | None = None) -> list[SignedCatalogueItem]:
        """Sign and record a new version of every item whose content changed; returns the new versions.

        `signer_for(office)` gives the providing office's signer. An unchanged item keeps its version.
        """
        now = now or datetime.now(UTC)
        built = items if items is not None else build_all(now)
        with file_lock(self.dir / ".lock"):
            current = self.current()
            published: list[SignedCatalogueItem] = []
            for item in built:
                held = current.get(item.code)
                if held is not None and held.item.content_key() == item.content_key():
                    continue
                fresh = item.model_copy(update={"version": held.item.version + 1 if held else 1,
                                                "published_at": now})
                signer = signer_for(fresh.provider_office)
                published.append(SignedCatalogueItem(
                    item=fresh, signature=signer.sign(canonical_bytes(fresh.model_dump(mode="json")))))
            if published:
                self.dir.mkdir(parents=True, exist_ok=True)
                everything = [s.model_dump(mode="json") for s in [*self.versions(), *published]]
                write_text(self.path, json.dumps(everything, ensure_ascii=False, indent=1))
        return published

    def export(self, now: datetime | None = None) -> CatalogueExport:
        """The current signed version of each item, in the documented export form."""
        return CatalogueExport(exported_at=now or datetime.now(UTC), items=list(self.current().values()))


def verify_item(signed: SignedCatalogueItem, bundle: TrustBundle) -> None:
    """Check an item's signature and that its signer is the item's own providing office (VerificationError)."""
    from exchange.signing.roles import Signed, check_signer

    item = f"catalogue item {signed.item.code} v{signed.item.version}"
    verify_signature(bundle, signed.signature, canonical_bytes(signed.item.model_dump(mode="json")),
                     signed.item.published_at, item)
    key = check_signer(bundle, signed.signature, Signed.CATALOGUE_ITEM, item)
    if key.owner != signed.item.provider_office:
        raise VerificationError(item, f"signed by {key.owner}, not by its providing office "
                                      f"{signed.item.provider_office}")
