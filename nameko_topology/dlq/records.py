"""What a dead letter says: a record of a raw message, whoever dead-lettered it.

A message with ``x-dead-letter-id`` or ``x-rejected-reason`` was dead-lettered by the framework:
its fields come from its headers (any ``x-death`` entries are retry-queue hops and are ignored).
Any other message was dead-lettered by RabbitMQ itself (TTL expiry, max-length, delivery-limit,
``reject``): its fields come from the first (newest) ``x-death`` entry. Every header may be
missing or of any type: what cannot be read is ``None``, never an error.
"""
import base64
import datetime
import decimal
import hashlib
import json

from nameko_topology.messages import (
    ATTEMPT_HEADER, DEAD_LETTER_ID_HEADER, EXCEPTION_MESSAGE_HEADER, EXCEPTION_TYPE_HEADER,
    FIRST_FAILURE_HEADER, HANDLER_HEADER, LAST_FAILURE_HEADER, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER, QUEUE_HEADER, REASON_HEADER, REPLAY_COUNT_HEADER,
    SERVICE_HEADER, TRACEBACK_HEADER,
)

#: characters of the body a listing shows
PREVIEW_CHARS = 120
#: the longest text of a header value in a listing, and in ``show``
LIST_TEXT_CHARS = 500
SHOW_TEXT_CHARS = 100_000
#: nesting of header tables shown before "..." (AMQP allows deep tables)
MAX_DEPTH = 8
#: an id the framework wrote is kept only if it is a plain short string
MAX_ID_CHARS = 200

#: headers a replay drops: the framework's record of the failure and RabbitMQ's own, so the
#: replayed message starts afresh (x-attempt 1)
RECORD_HEADERS = frozenset({
    ATTEMPT_HEADER, REASON_HEADER, QUEUE_HEADER, EXCEPTION_TYPE_HEADER,
    EXCEPTION_MESSAGE_HEADER, TRACEBACK_HEADER, FIRST_FAILURE_HEADER, LAST_FAILURE_HEADER,
    DEAD_LETTER_ID_HEADER, SERVICE_HEADER, HANDLER_HEADER, "x-death", "x-first-death-reason",
    "x-first-death-queue", "x-first-death-exchange", "x-last-death-reason",
    "x-last-death-queue", "x-last-death-exchange", "x-delivery-count",
})
#: headers a quorum queue changes on redelivery: not part of a message's identity
VOLATILE_HEADERS = frozenset({"x-delivery-count"})


def record(message, topology=None, text_chars=LIST_TEXT_CHARS):
    """The record of ``message`` (``body`` bytes, ``headers``, ``properties``, as
    :func:`nameko_topology.dead_letters.raw_message` gives), JSON-serialisable.

    ``message_type`` is the topology's message for the original exchange and routing key,
    else None. Header and property values are shown as JSON (bytes as text, times in
    ISO-8601, texts cut to ``text_chars``).
    """
    headers = message["headers"] if isinstance(message["headers"], dict) else {}
    death = first_death(headers)
    framework = DEAD_LETTER_ID_HEADER in headers or REASON_HEADER in headers
    if framework:
        source = "framework"
        queue = text(headers.get(QUEUE_HEADER))
        reason = text(headers.get(REASON_HEADER))
        attempts = integer(headers.get(ATTEMPT_HEADER))
        dead_lettered_at = timestamp(headers.get(LAST_FAILURE_HEADER))
    else:
        source = "broker" if death else "unknown"
        queue = text(death.get("queue"))
        reason = text(death.get("reason"))
        attempts = integer(death.get("count"))
        dead_lettered_at = timestamp(death.get("time"))
    exchange, routing_key = original_route(headers, death, framework)
    message_type = None
    if topology is not None and exchange is not None and routing_key is not None:
        spec = topology.message_for_route(exchange, routing_key)
        message_type = spec.name if spec is not None else None
    return {
        "id": record_id(message),
        "source": source,
        "dead_lettered_at": dead_lettered_at,
        "queue": queue,
        "reason": reason[:text_chars] if reason else reason,
        "attempts": attempts,
        "message_type": message_type,
        "exchange": exchange,
        "routing_key": routing_key,
        "exception_type": text(headers.get(EXCEPTION_TYPE_HEADER)),
        "service": text(headers.get(SERVICE_HEADER)),
        "handler": text(headers.get(HANDLER_HEADER)),
        "replay_count": integer(headers.get(REPLAY_COUNT_HEADER)) or 0,
        "body_preview": preview(message["body"]),
        "body_bytes": len(message["body"]),
        "headers": jsonable(headers, text_chars),
        "properties": jsonable(_properties(message), text_chars),
    }


def record_id(message):
    """The framework's ``x-dead-letter-id``, or else a digest of the message.

    The digest (32 hex digits of SHA-256 over the properties, the headers but
    ``x-delivery-count``, and the body) is the same on every read, so an id from ``dlq list``
    names the message in a later ``dlq show``. Two messages alike in every byte get the same
    id: nothing tells them apart, and a command on the id acts on each.
    """
    headers = message["headers"] if isinstance(message["headers"], dict) else {}
    given = headers.get(DEAD_LETTER_ID_HEADER)
    if isinstance(given, str) and 0 < len(given) <= MAX_ID_CHARS and given.isprintable():
        return given
    identity = json.dumps(
        [jsonable(_properties(message), None),
         jsonable({k: v for k, v in headers.items() if k not in VOLATILE_HEADERS}, None),
         base64.b64encode(message["body"]).decode()],
        sort_keys=True, default=repr)
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def first_death(headers):
    """The newest ``x-death`` entry (a dict), or an empty dict."""
    deaths = headers.get("x-death")
    if isinstance(deaths, (list, tuple)) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def original_route(headers, death, framework):
    """(exchange, routing key) the message was first published with, each None if unknown."""
    exchange = text(headers.get(ORIGINAL_EXCHANGE_HEADER))
    routing_key = text(headers.get(ORIGINAL_ROUTING_KEY_HEADER))
    if not framework and death:
        exchange = text(death.get("exchange"))
        keys = death.get("routing-keys")
        routing_key = text(keys[0]) if isinstance(keys, (list, tuple)) and keys else None
    return exchange, routing_key


def replay_headers(headers, exchange, routing_key):
    """The headers of a replayed copy: the application's, without the record, with
    ``x-replay-count`` one more, and the original route (which tells a consumer the message
    type, also when the copy is sent straight to a queue)."""
    fresh = {key: value for key, value in headers.items() if key not in RECORD_HEADERS}
    fresh[REPLAY_COUNT_HEADER] = (integer(headers.get(REPLAY_COUNT_HEADER)) or 0) + 1
    if exchange is not None and routing_key is not None:
        fresh[ORIGINAL_EXCHANGE_HEADER] = exchange
        fresh[ORIGINAL_ROUTING_KEY_HEADER] = routing_key
    return fresh


def preview(body, chars=PREVIEW_CHARS):
    """The start of ``body`` as one line of text."""
    shown = body[:chars * 4].decode("utf-8", "replace")
    shown = " ".join(shown.split())
    return shown[:chars] + ("..." if len(shown) > chars or len(body) > chars * 4 else "")


def pretty_body(body):
    """``body`` pretty-printed when it is JSON, else as text (or base64 if it is no UTF-8)."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "(not UTF-8; base64) " + base64.b64encode(body).decode()


def text(value):
    """A header value as text, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(jsonable(value, LIST_TEXT_CHARS))


def integer(value):
    """A header value as an int, or None (bools and anything else are not counts)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def timestamp(value):
    """A time header (ISO-8601 text, or an AMQP timestamp) as ISO-8601 UTC text, or None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) <= 64:
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:  # py-amqp reads AMQP timestamps as naive UTC
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat()
    return None


def jsonable(value, text_chars, depth=0):
    """``value`` (a header, a table, a property) as JSON data; texts cut to ``text_chars``
    (None: whole), tables deeper than :data:`MAX_DEPTH` as ``"..."``."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if text_chars is not None and len(value) > text_chars:
            return value[:text_chars] + f"... ({len(value)} characters)"
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(key): jsonable(item, text_chars, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item, text_chars, depth + 1) for item in value]
    if isinstance(value, datetime.datetime):
        return timestamp(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return repr(value)[:text_chars]


def _properties(message):
    return {key: value for key, value in message["properties"].items()
            if key != "application_headers"}
