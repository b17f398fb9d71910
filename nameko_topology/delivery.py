"""What a delivery carries besides its body: checked before anyone uses it, made safe to copy.

A delivery's headers and properties are whatever its publisher put there. The framework reads
some of them (the original route, the attempt count) and nameko reads others (its ``nameko.*``
context headers, which it copies into every message the worker sends on), so a table where a
string belongs would raise deep inside either. :func:`check_delivery` refuses such a delivery
with a reason naming the header; the consumer dead-letters it. The dead-letter copy must never
fail on what the message holds either, so :func:`copied_headers` and :func:`copied_properties`
give forms of them that AMQP can always carry.
"""
import reprlib
from datetime import datetime

from nameko.constants import HEADER_PREFIX

from nameko_topology.constants import MAX_MESSAGE_BYTES_CONFIG_KEY
from nameko_topology.exceptions import InvalidMessage, MessageTooLarge
from nameko_topology.messages import (
    ATTEMPT_HEADER, MAX_CORRELATION_ID_LENGTH, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
)

#: AMQP short strings (exchange names, routing keys, most properties) hold 255 bytes of UTF-8
MAX_SHORTSTR_BYTES = 255
#: nameko's context headers, each a string, except for the ids of the calls that led here
NAMEKO_HEADER_PREFIX = f"{HEADER_PREFIX}."
CALL_ID_STACK_HEADER = f"{HEADER_PREFIX}.call_id_stack"
#: properties the framework reads, which must be strings if present
STRING_PROPERTIES = ("correlation_id", "message_id", "content_type", "content_encoding")
#: string properties a dead-letter or retry copy keeps
COPIED_PROPERTIES = ("message_id", "correlation_id", "type", "app_id")
#: tables and lists nested deeper than this are not copied (py-amqp encodes them recursively)
MAX_COPIED_DEPTH = 32
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1


def check_delivery(message, max_bytes):
    """The (exchange, routing key) ``message`` was first published with, across re-publishes.

    :raises InvalidMessage: naming what in ``message`` the framework or nameko could not use: a
        body over ``max_bytes`` (:class:`MessageTooLarge`), or a header, property or delivery
        detail of the wrong type.
    """
    # every delivery passes here: the reasons are only formatted for the ones refused
    _check_size(message.body, max_bytes)
    headers = message.headers
    check_headers(headers)
    properties = message.properties
    for name in STRING_PROPERTIES:
        value = properties.get(name)
        if value is not None and type(value) is not str:
            raise _wrong_type(f"property {name!r}", "a string", value)
    correlation_id = properties.get("correlation_id")
    if correlation_id is not None and len(correlation_id) > MAX_CORRELATION_ID_LENGTH:
        raise InvalidMessage(f"property 'correlation_id' is {len(correlation_id)} characters "
                             f"long; at most {MAX_CORRELATION_ID_LENGTH} are allowed")
    info = message.delivery_info
    exchange, routing_key = info.get("exchange", ""), info.get("routing_key", "")
    for name, value in (("exchange", exchange), ("routing_key", routing_key)):
        if not is_short_string(value):
            raise _not_short_string(f"delivery {name}", value)
    if headers:  # checked above
        exchange = headers.get(ORIGINAL_EXCHANGE_HEADER, exchange)
        routing_key = headers.get(ORIGINAL_ROUTING_KEY_HEADER, routing_key)
    return exchange, routing_key


def _check_size(body, max_bytes):
    if not isinstance(body, (bytes, str)):
        raise InvalidMessage(f"body must be bytes, not {type(body).__name__}")
    size = len(body)
    if isinstance(body, str) and size * 4 > max_bytes:  # py-amqp decoded it: count its bytes
        size = len(body.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise MessageTooLarge(f"body of {size} bytes is over the limit of {max_bytes} bytes "
                              f"({MAX_MESSAGE_BYTES_CONFIG_KEY})")


def check_headers(headers):
    """Raise :class:`InvalidMessage` naming the first header of ``headers`` that the framework
    or nameko reads and could not use."""
    if not headers:
        return
    if not isinstance(headers, dict):
        raise InvalidMessage(f"headers must be a table, not {type(headers).__name__}")
    for name in (ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER):
        if name in headers and not is_short_string(headers[name]):
            raise _not_short_string(f"header {name!r}", headers[name])
    for name, value in headers.items():
        if type(name) is not str:
            raise InvalidMessage(f"header names must be strings, not {type(name).__name__}")
        if name == CALL_ID_STACK_HEADER:
            if not (type(value) is list and all(type(i) is str for i in value)):
                raise _wrong_type(f"header {name!r}", "a list of strings", value)
        elif type(value) is not str and name.startswith(NAMEKO_HEADER_PREFIX):
            raise _wrong_type(f"header {name!r}", "a string", value)


def _wrong_type(what, expected, value):
    return InvalidMessage(f"{what} must be {expected}, not {_type_of(value)}")


def _not_short_string(what, value):
    if not isinstance(value, str):
        return _wrong_type(what, "a string", value)
    return InvalidMessage(f"{what} is {len(value.encode('utf-8', 'surrogatepass'))} bytes "
                          f"long; AMQP allows at most {MAX_SHORTSTR_BYTES}")


def is_short_string(value):
    """Whether ``value`` fits an AMQP short string: a str of at most 255 bytes of UTF-8."""
    return isinstance(value, str) and (
        len(value) * 4 <= MAX_SHORTSTR_BYTES
        or len(value.encode("utf-8", "surrogatepass")) <= MAX_SHORTSTR_BYTES)


def _type_of(value):
    if isinstance(value, list):
        return "a list holding " + ", ".join(sorted({type(i).__name__ for i in value}))
    return type(value).__name__


def shown(value):
    """``value`` for a reason text: short, and never raising (the repr of a 5,000-digit int
    does)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10 ** 30:
            return str(value)
        return f"(an integer of {value.bit_length()} bits)"
    if isinstance(value, (str, bytes, bool, float)) or value is None:
        return reprlib.repr(value)
    return f"(a {type(value).__name__})"


def original_route(message):
    """:func:`check_delivery`'s route, for any message: a header that is not a short string is
    passed over for the delivery's own exchange and routing key, so that a dead-letter copy of
    even a message it refuses can be routed."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    return (_route_part(headers.get(ORIGINAL_EXCHANGE_HEADER), info.get("exchange")),
            _route_part(headers.get(ORIGINAL_ROUTING_KEY_HEADER), info.get("routing_key")))


def _route_part(original, delivered):
    if original is not None and is_short_string(original):
        return original
    return delivered if is_short_string(delivered) else ""


def attempt_of(message, max_attempts):
    """``(attempt, problem)``: the delivery's attempt number from ``x-attempt`` (1 without one),
    and ``None``; or, for a header that is no integer in ``1..max_attempts``, the last attempt
    and what is wrong with the header, for the dead-letter reason."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    attempt = headers.get(ATTEMPT_HEADER, 1)
    if type(attempt) is int and 1 <= attempt <= max_attempts:  # not bool, not a subclass
        return attempt, None
    if type(attempt) is int:
        problem = f"{ATTEMPT_HEADER} {shown(attempt)} is out of range 1..{max_attempts}"
    else:
        problem = f"{ATTEMPT_HEADER} {shown(attempt)} is not an integer"
    return max_attempts, f"{problem}: taken as the last attempt"


def copied_body(message):
    """``(body, content_encoding)`` for a copy of ``message``: bytes, whatever py-amqp made of
    the body (it decodes a body that names its encoding, and leaves an empty one a str)."""
    body, encoding = message.body, message.content_encoding
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass"), "utf-8"
    if not isinstance(body, bytes):
        return b"", "binary"  # check_delivery refuses it; the reason says what it was
    return body, encoding if is_short_string(encoding) and encoding else "binary"


def copied_properties(properties):
    """The properties a copy of a message keeps, each only if AMQP can carry it."""
    copy = {key: properties[key] for key in COPIED_PROPERTIES
            if is_short_string(properties.get(key))}
    timestamp = properties.get("timestamp")
    if type(timestamp) is int and 0 <= timestamp <= _UINT64_MAX:  # as py-amqp decodes it
        copy["timestamp"] = timestamp
    return copy


def copied_headers(headers):
    """``headers`` in a form AMQP can carry: what py-amqp cannot encode (an integer beyond 64
    bits, a name over 255 bytes, a date before 1970, a Decimal, a table nested too deep, any
    other type) is replaced by a short description of it."""
    if not isinstance(headers, dict):
        return {}
    return _carried(headers, 0)


def _carried(value, depth):
    if value is None or isinstance(value, (bool, float, str, bytes)):
        return value  # py-amqp encodes any str, lone surrogates included ('surrogatepass')
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else shown(value)
    if _is_carried_datetime(value):
        return value
    if depth < MAX_COPIED_DEPTH:
        if isinstance(value, dict):
            return {_carried_name(name): _carried(item, depth + 1) for name, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [_carried(item, depth + 1) for item in value]
    return shown(value)


def _carried_name(name):
    return name if is_short_string(name) else shown(name)


def _is_carried_datetime(value):
    # py-amqp sends a datetime as unsigned seconds since 1970
    return isinstance(value, datetime) and value.year > 1970
