"""Shanghai's REST API settings from an Airflow Connection."""

from __future__ import annotations

from typing import Any

from adapters.connection import ConnectionLike, extra_of, port_suffix


def overrides(conn: ConnectionLike) -> dict[str, Any]:
    """The API's base URL and its bearer token, or its OAuth2 client credentials when extra.auth is oauth2.

    extra.base_url, when given, is used as it is; otherwise the URL is <extra.scheme or https>://host[:port].
    """
    extra = extra_of(conn)
    url = extra.get("base_url") or f"{extra.get('scheme', 'https')}://{conn.host}{port_suffix(conn)}"
    if extra.get("auth") == "oauth2":  # client-credentials: login/password are the client id/secret
        return {"shanghai_api_url": url, "shanghai_client_id": conn.login, "shanghai_client_secret": conn.password}
    return {"shanghai_api_url": url, "shanghai_api_token": conn.password}
