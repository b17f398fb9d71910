"""What the framework writes on a message that failed: the headers of a retry copy and of a
complete dead-letter record (the contract the DLQ tools read; README "Operating failures").

Everything here runs on the failure path only, and never raises: whatever an exception's
``__str__`` does, a dead letter is still written.
"""
import traceback
import uuid
from datetime import datetime, timezone

from nameko_topology.delivery import is_short_string
from nameko_topology.messages import (
    ATTEMPT_HEADER, DEAD_LETTER_ID_HEADER, EXCEPTION_MESSAGE_HEADER, EXCEPTION_TYPE_HEADER,
    FIRST_FAILURE_HEADER, HANDLER_HEADER, LAST_FAILURE_HEADER, QUEUE_HEADER, REASON_HEADER,
    SERVICE_HEADER, TRACEBACK_HEADER,
)
from nameko_topology.uris import redact_text

#: the longest reason a dead letter's ``x-rejected-reason`` header carries
MAX_REASON_LENGTH = 1000
#: the longest ``x-exception-message``
MAX_EXCEPTION_MESSAGE_LENGTH = 1000
#: the longest ``x-exception-traceback``: its end, where the error is, is what it keeps. All
#: headers travel in one AMQP frame (128 KiB), the original's own headers too.
MAX_TRACEBACK_LENGTH = 4000


def now_text():
    """The time now as the failure headers carry it: ISO-8601, UTC, microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def first_failure(headers, now):
    """The ``x-first-failure-at`` a retry or dead letter of a message with ``headers`` carries:
    the one of an earlier attempt, else ``now``."""
    earlier = headers.get(FIRST_FAILURE_HEADER) if isinstance(headers, dict) else None
    return earlier if is_short_string(earlier) and earlier else now


def retry_headers(headers, next_attempt):
    """The headers a retry copy of a message with ``headers`` adds: the attempt it will be,
    and when its first attempt failed."""
    return {ATTEMPT_HEADER: next_attempt, FIRST_FAILURE_HEADER: first_failure(headers, now_text())}


def dead_letter_headers(headers, reason, queue, service, handler, attempt, exc=None):
    """The headers of the dead-letter record of a message with ``headers`` (which the copy
    keeps, ``x-death`` included): a new ``x-dead-letter-id``, the ``reason``, the ``queue``
    it was consumed from, the ``service`` and ``handler`` that failed it, the ``attempt``
    that failed, the failure times, and, if ``exc`` (what was raised) is given, the
    exception's type, message and the end of its traceback."""
    now = now_text()
    record = {
        DEAD_LETTER_ID_HEADER: uuid.uuid4().hex,
        REASON_HEADER: reason[:MAX_REASON_LENGTH],
        QUEUE_HEADER: queue,
        SERVICE_HEADER: service,
        HANDLER_HEADER: handler,
        ATTEMPT_HEADER: attempt,
        FIRST_FAILURE_HEADER: first_failure(headers, now),
        LAST_FAILURE_HEADER: now,
    }
    if exc is not None:
        record.update(exception_headers(exc))
    return record


def exception_headers(exc):
    """``x-exception-type`` (``module.QualifiedName``), ``x-exception-message`` and
    ``x-exception-traceback`` of ``exc``, bounded, URI passwords masked."""
    kind = type(exc)
    module = kind.__module__
    return {
        EXCEPTION_TYPE_HEADER: f"{module}.{kind.__qualname__}" if module else kind.__qualname__,
        # a password in a URI of the text (a database URL in a driver's error) is masked
        EXCEPTION_MESSAGE_HEADER: redact_text(safe_str(exc))[:MAX_EXCEPTION_MESSAGE_LENGTH],
        TRACEBACK_HEADER: tail(redact_text(_formatted_traceback(exc)), MAX_TRACEBACK_LENGTH),
    }


def described(exc):
    """``Type: message`` of ``exc``, for a reason."""
    return f"{type(exc).__name__}: {safe_str(exc)}"


def safe_str(exc):
    """``str(exc)``, or a note saying it failed: an exception may raise from ``__str__``."""
    try:
        return str(exc)
    except Exception as failure:
        return f"(str() of the exception failed: {type(failure).__name__})"


def _formatted_traceback(exc):
    try:
        return "".join(traceback.format_exception(exc))
    except Exception as failure:
        return f"(formatting the traceback failed: {type(failure).__name__})"


def tail(text, limit):
    """The end of ``text``, at most ``limit`` characters, saying what was cut."""
    if len(text) <= limit:
        return text
    kept = limit - 40  # room for the note
    return f"... ({len(text) - kept} characters cut)\n" + text[-kept:]
