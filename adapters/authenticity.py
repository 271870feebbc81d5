"""Province signatures on what the hub pulls: the sandboxes sign, the adapters verify.

A province never signs its payload directly but a small statement about it, so one format serves a
page, a file and a batch of database rows alike: the RFC 8785 canonical JSON of

    {"province": "jiangsu", "subject": "电子证照_20261101.manifest.json", "sha256": "<hex>", "signed_at": "...Z"}

signed with the province data office's Ed25519 key (owner ``<province>.data_office`` in the hub's trust
bundle). The adapter recomputes the SHA-256 of the bytes it received, checks that the statement is about
this province and this subject, and verifies the signature with the bundle's key valid at ``signed_at``.
What verified is kept on the :class:`~adapters.base.Landing` and recorded in the pull's provenance entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from exchange.config import settings as current_settings
from exchange.errors import SourceAuthenticityError, VerificationError
from exchange.signing.anchor import pinned_anchor
from exchange.signing.canonical import canonical_bytes, utc_z
from exchange.signing.keyring import Keyring
from exchange.signing.signers import Signature, Signer, algorithm_name
from exchange.signing.trust import TrustBundle, verify_bundle, verify_signature

SIGNATURE_SUFFIX = ".sig"
# Shanghai's API signs each page: "<key id>:<base64 signature>" and the signing time (ISO 8601).
SIGNATURE_HEADER = "X-Province-Signature"
SIGNED_AT_HEADER = "X-Province-Signed-At"
USER_ID_HEADER = "X-Province-Signature-User-Id"  # SM2 only: the signer's ID hashed into Z_A
_REGISTER = "register the office's public key in the hub's trust bundle (adapters/CONFIGURATION.md)"
_REDELIVER = "ask the province to re-deliver it; never edit a delivered payload by hand"


def office(province: str) -> str:
    """The trust-bundle owner whose key signs a province's exports."""
    return f"{province}.data_office"


class SignedStatement(BaseModel, frozen=True):
    """A province's signature over the SHA-256 of one payload (a page, a manifest, a change batch)."""

    province: str = Field(description="The province that signed, e.g. 'jiangsu'")
    subject: str = Field(description="What was signed: a page, a file name, a view's change batch")
    sha256: str = Field(description="Hex SHA-256 of the signed payload bytes")
    signed_at: datetime = Field(description="When the province signed (decides which of its keys was valid)")
    signature: Signature = Field(description="The office's signature over the statement's canonical JSON")

    def statement(self) -> bytes:
        """The canonical bytes the office signs (everything but the signature)."""
        return statement_bytes(self.province, self.subject, self.sha256, self.signed_at)

    def to_bytes(self) -> bytes:
        """The statement as a detached signature file's bytes."""
        return self.model_dump_json(indent=2).encode("utf-8")


def statement_bytes(province: str, subject: str, sha256: str, signed_at: datetime) -> bytes:
    """RFC 8785 canonical JSON of what a province signs."""
    return canonical_bytes({"province": province, "subject": subject, "sha256": sha256, "signed_at": utc_z(signed_at)})


def sign(signer: Signer, province: str, subject: str, payload: bytes, at: datetime | None = None) -> SignedStatement:
    """Sign `payload` as `province`'s statement about `subject` (what a province's exporter does)."""
    return sign_digest(signer, province, subject, hashlib.sha256(payload).hexdigest(), at)


def sign_digest(
    signer: Signer, province: str, subject: str, sha256: str, at: datetime | None = None
) -> SignedStatement:
    """Sign an already computed SHA-256 (for payloads hashed as they stream, e.g. database rows)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    signature = signer.sign(statement_bytes(province, subject, sha256, at))
    return SignedStatement(province=province, subject=subject, sha256=sha256, signed_at=at, signature=signature)


@dataclass(frozen=True)
class VerifiedSource:
    """A province signature the adapter checked: what the provenance log records for the pull."""

    province: str
    subject: str
    sha256: str
    key_id: str
    owner: str
    signed_at: datetime

    def record(self) -> dict[str, Any]:
        """JSON for the provenance entry and pull.json."""
        return {"subject": self.subject, "sha256": self.sha256, "key_id": self.key_id, "owner": self.owner,
                "signed_at": utc_z(self.signed_at)}


class SourceTrust:
    """The hub's trust bundle as the adapters use it: re-read for each pull, so a revocation takes effect."""

    def __init__(self, keys_dir: Path, anchor: str | None = None) -> None:
        self.keys_dir = keys_dir
        self.anchor = anchor  # EXCHANGE_TRUST_ANCHOR: with it, a bundle not chaining to it is refused

    def verifier(self, province: str) -> SourceVerifier:
        """A verifier for one pull from `province`, holding the bundle as it is now."""
        keyring = Keyring(self.keys_dir)
        bundle = keyring.trust_bundle()
        pinned = pinned_anchor(self.anchor, home=self.keys_dir.parent)
        if bundle.signature is not None or pinned is not None:  # an absent bundle is empty: every key is unknown
            verify_bundle(bundle, pinned.key_ids if pinned else None, item=f"trust bundle {keyring.trust_bundle_path}")
        return SourceVerifier(province, bundle, str(keyring.trust_bundle_path))


def parse_statement(payload: bytes | str, province: str, item: str) -> SignedStatement:
    """A detached signature's bytes as a statement; SourceAuthenticityError if they are not one."""
    try:
        return SignedStatement.model_validate_json(payload)
    except ValidationError as exc:
        raise SourceAuthenticityError(
            province, item, f"the signature is not a signed statement ({exc.error_count()} problem(s): "
            f"{exc.errors()[0]['msg']})", _REDELIVER,
        ) from None


class SourceVerifier:
    """Checks one province's statements against one trust bundle."""

    def __init__(self, province: str, bundle: TrustBundle, where: str) -> None:
        self.province = province
        self.bundle = bundle
        self.where = where

    def verify(
        self, signed: SignedStatement | None, subject: str, sha256: str, item: str
    ) -> VerifiedSource:
        """Verify that `signed` is this province's office's signature over `sha256` for `subject`.

        `item` names what the operator should look at (a page, a file, a view and day). Every refusal
        is a SourceAuthenticityError saying what is wrong and what to do.
        """
        p = self.province
        if signed is None:
            raise SourceAuthenticityError(
                p, item, "unsigned: no province signature came with it",
                f"the hub reads only data signed by {office(p)}; ask the office to sign its exports",
            )
        if signed.province != p or signed.subject != subject:
            raise SourceAuthenticityError(
                p, item, f"the signature is {signed.province}'s for {signed.subject!r}, not for {subject!r}",
                f"a signature was copied from another payload; {_REDELIVER}",
            )
        try:
            key = self.bundle.key(signed.signature.key_id)
        except VerificationError:
            raise SourceAuthenticityError(
                p, item, f"signed by key {signed.signature.key_id}, which is not in the hub's trust bundle "
                f"({self.where})", f"if it is {office(p)}'s new key, {_REGISTER}",
            ) from None
        if key.owner != office(p):
            raise SourceAuthenticityError(
                p, item, f"signed by {key.key_id} of {key.owner}, not by a key of {office(p)}",
                f"the payload did not come from {p}'s exporter; {_REDELIVER}",
            )
        if signed.sha256 != sha256:
            raise SourceAuthenticityError(
                p, item, f"content changed after signing: SHA-256 {sha256}, signed {signed.sha256}",
                f"the payload was tampered with or damaged on the way; {_REDELIVER}",
            )
        try:
            verify_signature(self.bundle, signed.signature, signed.statement(), signed.signed_at, item)
        except VerificationError as exc:
            hint = (f"the payload was tampered with or damaged on the way; {_REDELIVER}" if "does not match" in
                    exc.problem else f"ask {office(p)} to re-sign with its current key, or {_REGISTER}")
            raise SourceAuthenticityError(p, item, exc.problem, hint) from None
        return VerifiedSource(p, subject, sha256, key.key_id, key.owner, signed.signed_at)


def sandbox_keyring(root: Path) -> Keyring:
    """The keyring a sandbox signs with: the hub's (``<home>/keys``) when the sandbox lives in
    ``<home>/sandboxes/<province>`` as the embedded default lays it out, else its own under `root`.

    New office keys get EXCHANGE_KEY_ALGORITHM's algorithm, as the hub's own do, so an SM2 hub's demo
    offices sign with SM2 too."""
    algorithm = current_settings().key_algorithm
    if root.resolve().parent.name == "sandboxes":
        return Keyring(root.resolve().parent.parent / "keys", algorithm=algorithm)
    return Keyring(root.resolve() / "keys", algorithm=algorithm)


def hub_trust(home: Path | None = None, anchor: str | None = None) -> SourceTrust:
    """The trust of the hub at `home`, whose trust bundle is ``<home>/keys``, checked against `anchor`; without
    `home`, EXCHANGE_HOME's, checked against EXCHANGE_TRUST_ANCHOR."""
    from exchange.config import Layout

    if home is None:
        configured = current_settings()
        home, anchor = configured.home, configured.trust_anchor
    return SourceTrust(Layout(home).keys, anchor)


def signature_headers(signed: SignedStatement) -> dict[str, str]:
    """A statement as the HTTP headers Shanghai's API sends with each page (SM2 adds the signer's user ID)."""
    headers = {SIGNATURE_HEADER: f"{signed.signature.key_id}:{signed.signature.value}",
               SIGNED_AT_HEADER: utc_z(signed.signed_at)}
    if signed.signature.user_id is not None:
        headers[USER_ID_HEADER] = signed.signature.user_id
    return headers


def from_headers(
    headers: Mapping[str, str], province: str, subject: str, sha256: str, item: str
) -> SignedStatement | None:
    """The statement a page's headers carry about `subject` (None if unsigned)."""
    value, signed_at = headers.get(SIGNATURE_HEADER), headers.get(SIGNED_AT_HEADER)
    if value is None:
        return None
    key_id, _, signature = value.rpartition(":")
    try:
        at = datetime.fromisoformat(signed_at or "")
        if at.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError as exc:
        raise SourceAuthenticityError(
            province, item, f"{SIGNED_AT_HEADER} {signed_at!r} is not an ISO 8601 time with zone: {exc}",
            "the API must send the signing time with each signed page",
        ) from None
    # The header carries only the key id, whose prefix is the algorithm in lower case ("sm2-sm3:..."); a
    # Signature names it canonically ("SM2-SM3"), as the trust bundle does. An unknown prefix stays as sent,
    # for the trust check to name.
    prefix = key_id.partition(":")[0]
    try:
        algorithm = algorithm_name(prefix)
    except ValueError:
        algorithm = prefix
    return SignedStatement(province=province, subject=subject, sha256=sha256, signed_at=at,
                           signature=Signature(key_id=key_id, algorithm=algorithm, value=signature,
                                               user_id=headers.get(USER_ID_HEADER)))
