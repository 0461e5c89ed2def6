"""Structured logs: one JSON object per line, carrying the request id and the trace ids.

Every line has ``time``, ``level``, ``logger``, ``message``, ``request_id``,
``trace_id`` and ``span_id`` (``null`` outside a request); access lines add
``method``, ``route`` (the route's template), ``status`` and ``duration_ms``.

An exception is logged as its type and its frames (file, line, function),
never its message or locals: those may hold the values a request carried.
Messages are the caller's responsibility; the broker's own never hold data.

``install_json_logging(level)`` sets this up for a whole process; under uvicorn,
pass ``log_config=json_log_config(level)`` instead so uvicorn applies it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_request_id: ContextVar[str | None] = ContextVar("accord_request_id", default=None)

# Keys a log call may pass in ``extra=`` that the formatter writes out; nothing else
# from a record reaches the line, so a stray ``extra`` cannot carry data into it.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")


def bind_request_id(request_id: str) -> Token[str | None]:
    """Make ``request_id`` the current request's id; pass the token to ``reset_request_id``."""
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Forget the request id bound by ``bind_request_id``."""
    _request_id.reset(token)


def current_request_id() -> str | None:
    """The id of the request being served on this task or thread, if any."""
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        context = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
            "trace_id": format(context.trace_id, "032x") if context.is_valid else None,
            "span_id": format(context.span_id, "016x") if context.is_valid else None,
        }
        for name in ACCESS_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            entry["error_type"] = kind.__qualname__
            entry["stack"] = [
                f"{frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(tb)
            ]
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: JSON lines on stderr for every logger.

    Uvicorn's own access log is silenced (it writes the raw path and query
    string); the broker writes its own access lines under ``broker.access``.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
            "discard": {"class": "logging.NullHandler"},
        },
        "root": {"level": level, "handlers": ["json"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": ["discard"], "propagate": False},
        },
    }


def install_json_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines, at ``level`` and above."""
    logging.config.dictConfig(json_log_config(level))
