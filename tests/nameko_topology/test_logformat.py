"""The log formats and their masking of secrets, and the log fields bound per greenthread."""
import io
import json
import logging
import logging.config

import eventlet
import pytest

from nameko_topology.logcontext import current_fields, log_context
from nameko_topology.logformat import (
    MASK, JsonLineFormatter, Redactor, TextFormatter, environment_secrets, formatter,
)


@pytest.fixture(autouse=True)
def warnings_not_captured():
    """The json format routes warnings to logging; give them back to pytest after each test."""
    yield
    logging.captureWarnings(False)


def logged(fmt, emit):
    """The lines ``emit(logger)`` writes through a handler with formatter ``fmt``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(fmt)
    logger = logging.getLogger(f"test_logformat.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_a_json_line_has_the_fields_and_the_bound_context():
    def emit(logger):
        with log_context(correlation_id="req-1", order_id="o-1", message_id=None):
            logger.warning("reserved %d of %s", 2, "widget", extra={"attempt": 3})
    line, = logged(JsonLineFormatter(service="gateway"), emit)
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["message"] == "reserved 2 of widget"
    assert record["service"] == "gateway"
    assert record["logger"].startswith("test_logformat.")
    assert record["correlation_id"] == "req-1" and record["order_id"] == "o-1"
    assert "message_id" not in record  # None is not bound
    assert record["attempt"] == 3
    assert record["time"].startswith("20")


def test_an_exception_stays_on_one_line_as_a_field():
    def emit(logger):
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logger.exception("failed")
    line, = logged(JsonLineFormatter(), emit)
    record = json.loads(line)
    assert "RuntimeError: boom\nsecond line" in record["exception"]


def test_fields_bound_in_one_greenthread_never_show_in_another():
    seen = {}

    def worker(name):
        with log_context(correlation_id=name):
            eventlet.sleep(0)  # the other greenthread runs, and binds, meanwhile
            seen[name] = dict(current_fields())
        seen[name + " after"] = dict(current_fields())

    threads = [eventlet.spawn(worker, name) for name in ("a", "b")]
    for thread in threads:
        thread.wait()
    assert seen["a"]["correlation_id"] == "a" and seen["b"]["correlation_id"] == "b"
    assert "correlation_id" not in seen["a after"]


def test_contexts_nest_and_restore():
    with log_context(correlation_id="outer", order_id="1"):
        with log_context(order_id="2"):
            assert current_fields() == {"correlation_id": "outer", "order_id": "2"}
        assert current_fields() == {"correlation_id": "outer", "order_id": "1"}
    assert "correlation_id" not in current_fields()


@pytest.mark.parametrize("text, secret", [
    ("connecting to amqp://user:s3cr3t-pass@h1:5672//;amqp://user:s3cr3t-pass@h2//",
     "s3cr3t-pass"),
    ("headers {'Authorization': 'Bearer tok-123456789'}", "tok-123456789"),
    ('{"authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz"),
    ("Authorization: Bearer abcdefghijkl", "abcdefghijkl"),
    ("sent bearer zyxwvutsrq", "zyxwvutsrq"),
])
def test_secrets_in_free_text_are_masked(text, secret):
    assert secret not in Redactor()(text)


def test_the_processes_own_secrets_are_masked_wherever_they_appear():
    environ = {"ADMIN_TOKEN": "admin-token-0123456789",
               "AMQP_URI": "amqp://app:broker-pass-0123@h1//;amqp://app:other-pass-9876@h2//",
               "DATABASE_URL": "postgresql://db:db-pass-4567@pg/app"}
    secrets = environment_secrets(environ)
    assert secrets == {"admin-token-0123456789", "broker-pass-0123", "other-pass-9876",
                       "db-pass-4567"}
    redact = Redactor(secrets)
    line = redact("token admin-token-0123456789, password broker-pass-0123 and db-pass-4567")
    assert line == f"token {MASK}, password {MASK} and {MASK}"
    # too short to tell from a word: masked inside URIs only
    assert Redactor({"guest"})("a guest") == "a guest"


def test_both_formats_mask_what_the_record_carries(monkeypatch):
    monkeypatch.setenv("ADMIN_TOKEN", "admin-token-0123456789")

    def emit(logger):
        logger.info("token %s", "admin-token-0123456789")
        try:
            raise ValueError("amqp://u:hunter22@broker//")
        except ValueError:
            logger.exception("while connecting")
        logger.info("a quote", extra={"headers": {"Authorization": 'Bearer "x-admin-token-0123456789'}})

    for fmt in (formatter("text"), formatter("json")):
        lines = "\n".join(logged(fmt, emit))
        assert "admin-token-0123456789" not in lines and "hunter22" not in lines


def test_the_format_is_chosen_by_name_and_an_unknown_one_is_refused():
    assert isinstance(formatter("text"), TextFormatter)
    assert isinstance(formatter(" JSON "), JsonLineFormatter)
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json, got 'xml'"):
        formatter("xml")


def test_the_services_logging_config_takes_the_formatter(tmp_path):
    config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"default": {"()": "nameko_topology.logformat.formatter",
                                   "log_format": "json"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(tmp_path / "log"),
                              "formatter": "default"}},
        "loggers": {"test_logformat.config": {"handlers": ["file"], "level": "INFO",
                                               "propagate": False}},
    }
    logging.config.dictConfig(config)
    logger = logging.getLogger("test_logformat.config")
    logger.info("hello")
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    assert json.loads((tmp_path / "log").read_text())["message"] == "hello"
