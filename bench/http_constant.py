"""The lookup figure's bare baseline: the same HTTP round trip, answered with a constant.

``uvicorn --factory bench.http_constant:create_app`` serves the broker's lookup
path on the same stack as ``broker serve`` (uvicorn, FastAPI, a synchronous
route run in the thread pool). The route reads and parses the JSON body, as
any endpoint must, then returns a fixed answer: no authentication, no
validation, no database, no logging.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ANSWER: dict[str, Any] = {"matched": True, "pseudonym": "ps_constant", "holdings": []}


def create_app() -> FastAPI:
    """An app whose only route answers every lookup with ``ANSWER``."""
    app = FastAPI()

    @app.post("/v1/agreements/{agreement_id}/lookups")
    def lookup(agreement_id: str, body: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001 - as the broker's path; parsed, not used
        return ANSWER

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
