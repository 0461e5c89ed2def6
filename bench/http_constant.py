"""The lookup figure's bare baseline: the same HTTP round trip, answered with a constant.

``uvicorn --factory bench.http_constant:create_app`` serves the broker's lookup
path on the same stack as ``broker serve`` (uvicorn, FastAPI, a synchronous
route run in the thread pool). The route reads and parses the JSON body, as
any endpoint must, then returns a fixed answer: no authentication, no
validation, no database, no logging. The batch path does the same for
``bench.stages``, which subtracts what a bare route costs.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ANSWER: dict[str, Any] = {"matched": True, "pseudonym": "ps_constant", "holdings": []}


def create_app() -> FastAPI:
    """An app that answers every lookup and every batch with ``ANSWER``."""
    app = FastAPI()

    @app.post("/v1/agreements/{agreement_id}/lookups")
    def lookup(agreement_id: str, body: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001 - as the broker's path; parsed, not used
        return ANSWER

    @app.post("/v1/agreements/{agreement_id}/datasets/{dataset_id}/batches", status_code=201)
    def batch(agreement_id: str, dataset_id: str, body: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001 - as above
        return ANSWER

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
