"""Who may sign what: the one table binding each kind of signed thing to the roles whose keys may sign it.

A valid signature is not enough: a province office's key is in the trust bundle so that the hub can check
the province's exports, not so that it can write the hub's history. Every verifier asks :func:`check_signer`
after the signature itself checked out. The role of a key is the role of its owner
(:func:`exchange.provenance.events.role_of`): ``hub`` is the hub, ``<province>.data_office`` a province's
office, and so on. Provenance entries take their signer roles from the event vocabulary (``Event.signers``);
everything else the hub or a province signs is listed in :data:`SIGNERS`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from exchange.errors import VerificationError
from exchange.provenance.events import Event, Role, role_of, spec
from exchange.provenance.problems import Mismatch

if TYPE_CHECKING:
    from exchange.signing.signers import Signature
    from exchange.signing.trust import TrustBundle, TrustedKey


class Signed(StrEnum):
    """A kind of signed document other than a provenance entry (whose kind is its entry's action)."""

    TRUST_BUNDLE = "trust bundle"
    BATCH_MANIFEST = "batch manifest"
    EXTRACT_MANIFEST = "extract manifest"
    GRANT = "grant"
    GRANT_REVOCATION = "grant revocation"
    LICENCE_CHECK = "licence check answer"
    ARCHIVE_HEADER = "provenance archive header"
    PROVINCE_EXPORT = "province export"
    HEAD_COUNTERSIGNATURE = "log head countersignature"
    CATALOGUE_ITEM = "catalogue item"
    REVIEW_DECISION = "review decision"
    DISPUTE_DECISION = "dispute decision"


_HUB = frozenset({Role.HUB})

SIGNERS: dict[Signed, frozenset[Role]] = {
    Signed.TRUST_BUNDLE: _HUB,
    Signed.BATCH_MANIFEST: _HUB,
    Signed.EXTRACT_MANIFEST: _HUB,
    # An office approves or withdraws a grant; the hub, which enforces it, signs the record of it.
    Signed.GRANT: _HUB,
    Signed.GRANT_REVOCATION: _HUB,
    Signed.LICENCE_CHECK: _HUB,
    Signed.ARCHIVE_HEADER: _HUB,
    # What a province vouches for: its own exports, and (witnessing) the hub's log heads it has seen.
    Signed.PROVINCE_EXPORT: frozenset({Role.PROVINCE_OFFICE}),
    Signed.HEAD_COUNTERSIGNATURE: frozenset({Role.PROVINCE_OFFICE}),
    # The Regulations' acts: an office publishes its items and decides on requests for them; the
    # coordinating authority decides disputes (exchange/catalogue, exchange/sharing).
    Signed.CATALOGUE_ITEM: frozenset({Role.PROVINCE_OFFICE}),
    Signed.REVIEW_DECISION: frozenset({Role.PROVINCE_OFFICE}),
    Signed.DISPUTE_DECISION: frozenset({Role.AUTHORITY}),
}
"""Signer roles of every signed thing that is not a provenance entry."""

# Entries of a kind the vocabulary no longer has (read leniently) are still the hub's log.
_RETIRED_KIND_SIGNERS = _HUB


def signer_roles(thing: Signed | str) -> frozenset[Role]:
    """The roles whose keys may sign `thing`: a :class:`Signed` document or a provenance entry kind's name."""
    if isinstance(thing, Signed):
        return SIGNERS[thing]
    cls: type[Event] | None = spec(thing)
    return cls.signers if cls is not None else _RETIRED_KIND_SIGNERS


def describe(thing: Signed | str) -> str:
    """How a problem names `thing`: 'a batch manifest', 'an access_denied entry'."""
    name = thing.value if isinstance(thing, Signed) else f"{thing} entry"
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def check_signer(bundle: TrustBundle, signature: Signature, thing: Signed | str, item: str) -> TrustedKey:
    """Raise VerificationError naming `item`, the key and its owner's role unless that role may sign `thing`.

    Call it besides the signature check (:func:`exchange.signing.trust.verify_signature`): it says whose
    signature it is, not whether it is valid. Returns the signing key's record.
    """
    try:
        key = bundle.key(signature.key_id)
    except VerificationError:
        raise VerificationError(item, f"signed by key {signature.key_id}, which is not in the trust bundle") from None
    role = role_of(key.owner)
    allowed = signer_roles(thing)
    if role not in allowed:
        names = " or ".join(sorted(r.value for r in allowed))
        raise Mismatch(item, f"signed by a key that is not the {names}'s: key {key.key_id} of {key.owner} has "
                             f"role {role.value}, and {describe(thing)} may be signed only by {names}",
                       expected=f"a key of role {names}", found=f"{key.key_id} ({key.owner}, role {role.value})")
    return key
