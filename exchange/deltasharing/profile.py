"""A department's Delta Sharing profile file: endpoint, bearer token and the token's expiry.

The token never outlives the grants it reads: it expires at the end of the last valid day of the department's
usable grant that ends first (or earlier, after `days`). A department holding grants that end on different
days asks for a new profile when the first one ends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from exchange.access.policy import Denial, require
from exchange.atomic import write_private

SHARE_CREDENTIALS_VERSION = 1


class Profile(BaseModel):
    """The profile file format of the Delta Sharing protocol (shareCredentialsVersion 1)."""

    model_config = ConfigDict(frozen=True)

    shareCredentialsVersion: int = Field(default=SHARE_CREDENTIALS_VERSION, description="Profile format version")  # noqa: N815
    endpoint: str = Field(description="The hub's Delta Sharing endpoint, e.g. https://hub.example/delta-sharing")
    bearerToken: str = Field(description="The department's bearer token")  # noqa: N815
    expirationTime: str = Field(description="When the token expires (ISO 8601, UTC)")  # noqa: N815


def token_expiry(department: str, last_days: Sequence[date], now: datetime, days: int) -> datetime | Denial:
    """When a profile's token expires: after `days`, but never after the end of the last valid day of the
    grant that ends first; a denial when the department has no usable grant (nothing to share)."""
    if not last_days:
        return Denial("no_usable_grant", f"{department} holds no usable grant: there is nothing to share")
    grants_end = datetime.combine(min(last_days) + timedelta(days=1), time.min, tzinfo=UTC)
    return min(now + timedelta(days=days), grants_end)


def profile_expiry(department: str, last_days: Sequence[date], now: datetime, days: int) -> datetime:
    """:func:`token_expiry`, or AccessDenied."""
    return require(token_expiry(department, last_days, now, days))


def write_profile(path: Path, profile: Profile) -> None:
    """Write the profile 0600, atomically (it holds the bearer secret)."""
    write_private(path, (json.dumps(profile.model_dump(), indent=2) + "\n").encode("utf-8"))
