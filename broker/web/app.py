"""The FastAPI app factory: settings in, an app out. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import broker
from broker.bootstrap import Runtime
from broker.web.errors import install_error_handlers
from broker.web.middleware import GuardMiddleware
from broker.web.routes import agreements, audit, audit_search, health, ingest, lookup


def create_app(runtime: Runtime) -> FastAPI:
    """Build the HTTP API around a prepared runtime (see ``broker.bootstrap.build_runtime``)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.engine.dispose()

    app = FastAPI(
        title="Accord broker API",
        version=broker.__version__,
        description=(
            "Agency systems post records and look up what partners hold about a young "
            "person, within the information-sharing agreements their DPOs signed."
        ),
        lifespan=lifespan,
    )
    app.state.broker = runtime.broker
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body_bytes=runtime.settings.max_body_bytes)
    for module in (health, agreements, ingest, lookup, audit, audit_search):
        app.include_router(module.router)
    return app
