"""The HTTP API departments use: FastAPI, bearer tokens, the same access service as the CLI."""
