"""The FastAPI app factory: settings in, an app out. Nothing is built at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

import broker
from broker.bootstrap import Runtime
from broker.jobs import JobRunner
from broker.notify import WebhookPolicy
from broker.startup import SchemaWatch
from broker.telemetry import Telemetry
from broker.web.authorise import authorise
from broker.web.errors import install_error_handlers
from broker.web.gauges import watch_broker
from broker.web.json_guard import JsonLimits
from broker.web.middleware import GuardMiddleware, ObserveMiddleware, SecurityHeadersMiddleware
from broker.web.routes import (
    aggregates,
    agreements,
    audit,
    audit_search,
    auth,
    health,
    ingest,
    linkage,
    lookup,
    notifications,
)
from broker.web.routes import telemetry as telemetry_health


def create_app(
    runtime: Runtime, *, telemetry: Telemetry | None = None, jobs: JobRunner | None = None
) -> FastAPI:
    """Build the HTTP API around a prepared runtime (see ``broker.bootstrap.build_runtime``).

    Telemetry comes from the ``OTEL_*`` environment variables unless
    ``telemetry`` is given; the app shuts down only telemetry it built.
    ``jobs`` (see ``broker.startup.job_runner_for``) run in the background from
    start-up until shutdown; without them this worker runs none.
    """
    observed = telemetry or Telemetry.from_environment()
    runtime.broker.instruments = observed
    watch_broker(observed, runtime.broker, jobs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if jobs is not None:
            jobs.start()
        yield
        if jobs is not None:
            # Off the event loop: a job under way finishes before the engine goes.
            await asyncio.to_thread(jobs.stop)
        # Rate-limit refusal windows still open are audited with their counts so far.
        await asyncio.to_thread(runtime.broker.settle_rate_refusals, final=True)
        runtime.engine.dispose()
        if telemetry is None:
            observed.shutdown()

    app = FastAPI(
        title="Accord broker API",
        version=broker.__version__,
        description=(
            "Agency systems post records and look up what partners hold about a young "
            "person, within the information-sharing agreements their DPOs signed."
        ),
        lifespan=lifespan,
        # The permission matrix, enforced before every route (broker.permissions).
        dependencies=[Depends(authorise)],
    )
    app.state.broker = runtime.broker
    app.state.schema = SchemaWatch(runtime.engine)
    app.state.telemetry = observed
    # Plain http webhooks to loopback addresses serve local development only.
    app.state.webhook_policy = WebhookPolicy(
        allow_loopback_http=runtime.settings.environment == "development"
    )
    # Each worker keeps its own buckets and enforces its share of every limit.
    runtime.broker.configure_rate_limits(workers=runtime.settings.workers)
    install_error_handlers(app)
    auth.install_auth_errors(app)
    # The last added runs first: the observer must see (and label) the guard's refusals.
    settings = runtime.settings
    app.add_middleware(
        GuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        json_limits=JsonLimits(settings.max_json_depth, settings.max_json_string_chars),
    )
    app.add_middleware(ObserveMiddleware, telemetry=observed)
    app.add_middleware(SecurityHeadersMiddleware, tls=settings.served_over_tls)
    for module in (health, telemetry_health, agreements, ingest, lookup, audit, audit_search):
        app.include_router(module.router)
    app.include_router(notifications.router)
    app.include_router(aggregates.router)
    app.include_router(linkage.router)
    app.include_router(auth.router)
    return app
