"""The trust anchor: the hub root key's fingerprint, held outside EXCHANGE_HOME.

Whoever can write EXCHANGE_HOME can replace ``keys/trust-bundle.json`` by a bundle self-signed with a new
"hub" key and re-sign the whole log with it; the bundle then vouches for itself. So verify checks the
bundle against fingerprints the verifier holds apart from the home: the operator's ``EXCHANGE_TRUST_ANCHOR``
setting (key ids, comma-separated, or the path of a file outside the home holding them, one per line) and
the auditor's own ``--anchor``. The hub's key history must chain from the anchor
(:func:`exchange.signing.trust.check_history`).

What is pinned are the hub's *root* keys (:func:`exchange.signing.trust.roots`): the first hub key, and a
key made after the hub key was revoked (a revoked key is presumed compromised, so it endorses nothing and
its successor must be pinned anew). Rotations need no new pin: the old key endorses the new one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exchange.errors import VerificationError
from exchange.signing.trust import TrustBundle, roots, verify_bundle

SETTING = "EXCHANGE_TRUST_ANCHOR"
_KEY_ID = re.compile(r"^[a-z0-9-]+:[0-9a-f]{32}$")


@dataclass(frozen=True)
class Anchor:
    """The hub key ids a verifier pinned, and where they came from (for the verdict and for problems)."""

    key_ids: frozenset[str]
    source: str

    def describe(self) -> str:
        """One line: what the bundle was checked against."""
        return f"{', '.join(sorted(self.key_ids))} ({self.source})"


def parse_anchor(value: str, source: str, home: Path | None = None) -> Anchor:
    """Key ids (comma-separated) or the path of a file holding them (one per line, '#' comments allowed).

    VerificationError naming `source` for a file that is missing, inside `home` (whoever writes the home
    could rewrite it), or holding something that is not a key id.
    """
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if tokens and all(_KEY_ID.match(t) for t in tokens):
        return Anchor(frozenset(tokens), source)
    path = Path(value).expanduser()
    item = f"trust anchor {source} ({path})"
    if home is not None and path.resolve().is_relative_to(home.resolve()):
        raise VerificationError(item, "is inside EXCHANGE_HOME: the anchor must be held outside it, or whoever can "
                                      "write the home can rewrite it")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VerificationError(item, f"neither hub key ids nor a readable file: {exc.strerror or exc}") from None
    ids = [line.split("#", 1)[0].strip() for line in lines]
    ids = [i for i in ids if i]
    bad = [i for i in ids if not _KEY_ID.match(i)]
    if bad or not ids:
        raise VerificationError(item, f"holds no hub key ids (e.g. ed25519:<32 hex>): {bad[:3] or 'empty'}")
    return Anchor(frozenset(ids), f"{source} {path}")


def pinned_anchor(setting: str | None, cli: Sequence[str] | None = None, home: Path | None = None) -> Anchor | None:
    """The anchor the verifier holds: `cli` (``--anchor``, the auditor's own copy) over `setting`
    (``EXCHANGE_TRUST_ANCHOR``, the operator's configuration); None when neither is given."""
    if cli:
        return parse_anchor(",".join(cli), "--anchor", home)
    if setting:
        return parse_anchor(setting, SETTING, home)
    return None


def when_unpinned(bundle: TrustBundle) -> Anchor | None:
    """What a verifier trusts when no anchor is pinned: nothing. Verify then checks everything else, names the
    hub's root key and how to pin it, and gives the non-intact verdict UNANCHORED (see :func:`pin_hint`).

    The one place that policy is decided (the test suite pins each test hub's root here, as an operator pins
    a hub's root when creating it)."""
    del bundle
    return None


def resolve_anchor(bundle: TrustBundle, setting: str | None, cli: Sequence[str] | None = None,
                   home: Path | None = None) -> Anchor | None:
    """The pinned anchor, else what :func:`when_unpinned` says."""
    return pinned_anchor(setting, cli, home) or when_unpinned(bundle)


def root_ids(bundle: TrustBundle) -> list[str]:
    """The key ids to pin for this bundle's hub (see the module docstring)."""
    return [k.key_id for k in roots(bundle)]


def pin_hint(bundle: TrustBundle) -> str:
    """What to run to pin this bundle's hub root key, after checking its fingerprint out of band."""
    ids = ",".join(root_ids(bundle)) or "<hub root key id>"
    return (f"hub root key: {ids}; check it against the hub's published fingerprint, then pin it outside "
            f"EXCHANGE_HOME: export {SETTING}={ids} (or a file holding it), or offline: --anchor {ids}")


def write_anchor(path: Path, bundle: TrustBundle, note: str = "") -> Anchor:
    """Write the bundle's hub root key ids to `path` (what an operator does once, when the hub is set up)."""
    ids = root_ids(bundle)
    if not ids:
        raise VerificationError(str(path), "the trust bundle has no hub key to pin")
    header = f"# hub root key(s) of the exchange hub{': ' + note if note else ''}; keep outside EXCHANGE_HOME\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(ids) + "\n", encoding="utf-8")
    return Anchor(frozenset(ids), f"{SETTING} {path}")


def check_anchored(bundle: TrustBundle, cli: Sequence[str] | None, setting: str | None,
                   item: str = "trust bundle") -> Anchor | None:
    """Check a bundle a department or an auditor received (signature, endorsements, the hub's key history from
    the anchor); VerificationError naming what failed. None when no anchor is pinned (see when_unpinned)."""
    anchor = resolve_anchor(bundle, setting, cli)
    verify_bundle(bundle, anchor.key_ids if anchor else None, item=item)
    return anchor
