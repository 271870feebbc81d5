"""What the API's routers (departments', sharing, Delta Sharing, web pages) read off the running app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from exchange.hub import Hub


def hub_of(request: Request) -> Hub:
    """The hub `create_app` was given (app.state.hub)."""
    hub: Hub = request.app.state.hub
    return hub
