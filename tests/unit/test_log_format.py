"""JSON log lines: one object per line, with request and trace ids, and no exception messages."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from broker.log_format import (
    JsonFormatter,
    bind_request_id,
    current_request_id,
    install_json_logging,
    json_log_config,
    reset_request_id,
)


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_outside_a_request_has_every_key_with_null_ids(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.warning("checkpoint %s signed", 12)
    (line,) = _lines(stream)
    assert line["message"] == "checkpoint 12 signed"
    assert line["level"] == "WARNING"
    assert line["logger"] == "tests.log_format"
    assert line["time"].endswith("+00:00")
    assert line["request_id"] is None
    assert line["trace_id"] is None
    assert line["span_id"] is None


def test_request_and_trace_ids_come_from_the_context(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    token = bind_request_id("req-42")
    try:
        with tracer.start_as_current_span("request") as span:
            logger.info("inside")
            context = span.get_span_context()
    finally:
        reset_request_id(token)
    assert current_request_id() is None
    (line,) = _lines(stream)
    assert line["request_id"] == "req-42"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_only_access_fields_are_taken_from_extra(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info(
        "GET /health 200",
        extra={"route": "/health", "status": 200, "duration_ms": 1.5, "body": "Amira"},
    )
    (line,) = _lines(stream)
    assert line["route"] == "/health"
    assert line["status"] == 200
    assert line["duration_ms"] == 1.5
    assert "body" not in line
    assert "Amira" not in json.dumps(line)


def test_an_exception_is_its_type_and_frames_never_its_message(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    try:
        raise ValueError("date of birth 2011-03-14 for Amira Okafor")
    except ValueError:
        logger.exception("ingest failed")
    (line,) = _lines(stream)
    assert line["error_type"] == "ValueError"
    assert any("test_an_exception_is_its_type" in frame for frame in line["stack"])
    text = json.dumps(line)
    assert "Amira" not in text
    assert "2011-03-14" not in text


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the process's logging back as it was after a test installs its own."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    loggers = {
        name: (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
        for name in names
        for logger in [logging.getLogger(name)]
    }
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, (level, handlers, propagate, disabled) in loggers.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.disabled = disabled


def test_installed_logging_writes_json_and_silences_uvicorns_access_log(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    install_json_logging("INFO")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /?nhs=9434765919 HTTP/1.1" 200')
    logging.getLogger("broker.web").debug("below the level")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["Started server process"]
    assert lines[0]["logger"] == "uvicorn.error"


def test_the_uvicorn_config_is_a_valid_dict_config(restored_logging: None) -> None:
    config = json_log_config("WARNING")
    logging.config.dictConfig(config)
    assert logging.getLogger().level == logging.WARNING
