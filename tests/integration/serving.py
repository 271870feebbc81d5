"""The hub's API under a real uvicorn server on an ephemeral loopback port, for tests with outside clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from exchange.api.app import create_app
from exchange.hub import Hub


@contextmanager
def serving(hub: Hub) -> Iterator[str]:
    """Serve `hub`'s API; yields its base URL and stops the server (lifespan shutdown) on exit."""
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # a hang guard: the loop ends as soon as uvicorn is up
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
