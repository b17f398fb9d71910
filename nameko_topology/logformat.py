"""The log formats, ``text`` and ``json``, and the masking of secrets that both apply.

``LOG_FORMAT=json`` writes one JSON object per line (python-json-logger): ``time``, ``level``,
``service``, ``logger``, ``message``, the fields bound by
:mod:`~nameko_topology.logcontext` (``correlation_id``, ``message_id``, ``order_id``...),
whatever a call passed as ``extra``, and ``exception`` with the traceback. ``text`` is one
human line, as before.

Both formats mask secrets in the finished line, whatever part of the record carried them
(message, arguments, traceback): the password of every URI (``scheme://user:password@``),
``Authorization`` header values, and the values of the secrets this process was given
(:data:`SECRET_VARIABLES`, the passwords in :data:`URI_VARIABLES`), when they are long enough
to be told from ordinary words.
"""
import logging
import os
import re
from urllib.parse import urlsplit

from pythonjsonlogger.json import JsonFormatter

from nameko_topology.logcontext import current_fields
from nameko_topology.uris import nodes, redact_text

LOG_FORMATS = ("text", "json")
DEFAULT_TEXT_FORMAT = "%(asctime)s %(processName)s[%(process)d] %(levelname)s %(name)s: %(message)s"

#: environment variables holding a secret, masked wherever their value appears
SECRET_VARIABLES = ("ADMIN_TOKEN",)
#: environment variables holding URIs, whose passwords are masked wherever they appear
URI_VARIABLES = ("AMQP_URI", "DATABASE_URL", "RABBITMQ_MANAGEMENT_URL")
#: a secret shorter than this is masked only inside a URI: alone, it could be any word
MIN_LITERAL_SECRET = 8
MASK = "********"
#: the fields every JSON line begins with, in this order
LEADING_FIELDS = ("time", "level", "service", "logger", "message")

# an Authorization header's value, in a dict's repr, a JSON object or an HTTP dump
_AUTHORIZATION = re.compile(
    r"""(?P<head>authorization\\?["']?\s*[:=]\s*\\?["']?)(?:(?:bearer|basic|token)\s+)?"""
    r"""[^\s"'\\,;}]+""", re.I)
_BEARER = re.compile(r"\b(?P<head>bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)


def environment_secrets(environ=os.environ):
    """The secret values found in ``environ``: :data:`SECRET_VARIABLES` and the passwords of
    the URIs in :data:`URI_VARIABLES`."""
    secrets = {environ[name] for name in SECRET_VARIABLES if environ.get(name)}
    for name in URI_VARIABLES:
        for uri in nodes(environ.get(name) or ""):
            try:
                password = urlsplit(uri).password
            except ValueError:  # not a URI at all: nothing to take from it
                continue
            if password:
                secrets.add(password)
    return secrets


class Redactor:
    """Masks secrets in finished log lines (see the module's docstring)."""

    def __init__(self, secrets=()):
        self.secrets = sorted({secret for secret in secrets if len(secret) >= MIN_LITERAL_SECRET},
                              key=len, reverse=True)

    def __call__(self, text):
        text = redact_text(text)
        text = _AUTHORIZATION.sub(rf"\g<head>{MASK}", text)
        text = _BEARER.sub(rf"\g<head>{MASK}", text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class TextFormatter(logging.Formatter):
    """``logging.Formatter``, with secrets masked."""

    def __init__(self, fmt=DEFAULT_TEXT_FORMAT, redactor=None, **kwargs):
        super().__init__(fmt, **kwargs)
        self.redact = redactor or Redactor()

    def format(self, record):
        return self.redact(super().format(record))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record, with the bound log fields, secrets masked."""

    def __init__(self, redactor=None, service=None):
        super().__init__(["levelname", "name", "message"], timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger",
                                        "exc_info": "exception", "stack_info": "stack"})
        self.redact = redactor or Redactor()
        self.service = service

    def add_fields(self, log_data, record, message_dict):
        super().add_fields(log_data, record, message_dict)
        if self.service:
            log_data.setdefault("service", self.service)
        for name, value in current_fields().items():
            log_data.setdefault(name, value)

    def process_log_record(self, log_data):
        # the same fields first on every line, for a reader's eye; masked before encoding: a
        # secret holding a quote or a backslash is escaped in the JSON
        ordered = {name: log_data.pop(name) for name in LEADING_FIELDS if name in log_data}
        ordered.update(log_data)
        return {name: self.redact(value) if isinstance(value, str) else value
                for name, value in ordered.items()}

    def format(self, record):
        # after encoding too: a secret inside a value that is not a string (an `extra` dict)
        return self.redact(super().format(record))


def formatter(log_format="text", text_format=DEFAULT_TEXT_FORMAT, service=None):
    """The formatter of ``LOG_FORMAT`` ``log_format``, masking this process's secrets; for
    ``logging.config.dictConfig``, as ``{"()": "nameko_topology.logformat.formatter", ...}``.

    ``service`` names the process in JSON lines written outside any service's worker (the
    gateway's, say); a service's own lines are named by
    :class:`~nameko_topology.logcontext.WorkerLogContext`.
    """
    log_format = (log_format or "text").strip().lower()
    redactor = Redactor(environment_secrets())
    if log_format == "text":
        return TextFormatter(text_format, redactor=redactor)
    if log_format == "json":
        # a warning would otherwise reach stderr as a bare line, not as a JSON object
        logging.captureWarnings(True)
        return JsonLineFormatter(redactor=redactor, service=service)
    raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
