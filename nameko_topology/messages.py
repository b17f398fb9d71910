"""Message bodies and headers: checking a payload against its declared shape, decoding bodies.

Both directions use the same checks, so a service can never publish a message that its own
consumers would dead-letter as malformed.
"""
import email.message
import email.utils
import json
import uuid

import fastjsonschema
from jsonschema import Draft202012Validator, ValidationError, validators

from nameko_topology.constants import DEFAULT_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES_CONFIG_KEY
from nameko_topology.exceptions import InvalidMessage, MessageTooLarge
from nameko_topology.validation import field_pattern, field_pattern_regex

#: headers the framework adds when it re-publishes a message (retry or dead-letter copy)
REASON_HEADER = "x-rejected-reason"
QUEUE_HEADER = "x-rejected-queue"
ORIGINAL_EXCHANGE_HEADER = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"
ATTEMPT_HEADER = "x-attempt"
#: what a dead letter carries besides the above: see README "Operating failures"
DEAD_LETTER_ID_HEADER = "x-dead-letter-id"
EXCEPTION_TYPE_HEADER = "x-exception-type"
EXCEPTION_MESSAGE_HEADER = "x-exception-message"
TRACEBACK_HEADER = "x-exception-traceback"
SERVICE_HEADER = "x-service"
HANDLER_HEADER = "x-handler"
FIRST_FAILURE_HEADER = "x-first-failure-at"
LAST_FAILURE_HEADER = "x-last-failure-at"
#: how often the DLQ tools have published a dead letter back
REPLAY_COUNT_HEADER = "x-replay-count"

JSON_CONTENT_TYPE = "application/json"
# what kombu labels a bytes body published without a content type
KOMBU_RAW_CONTENT_TYPE = "application/data"
#: charsets of a JSON body: RFC 8259 says UTF-8
JSON_CHARSETS = ("utf-8", "utf8")
#: content encodings of a JSON body: UTF-8 text, or bytes left as they are (kombu's "binary")
CONTENT_ENCODINGS = ("utf-8", "utf8", "binary")

#: the outbox stores a message's correlation id in a column of this size
MAX_CORRELATION_ID_LENGTH = 200


def max_message_bytes(config):
    """The ``MAX_MESSAGE_BYTES`` of a container's ``config``."""
    return config.get(MAX_MESSAGE_BYTES_CONFIG_KEY) or DEFAULT_MAX_MESSAGE_BYTES


def _whole_pattern(validator, pattern, instance, schema):
    # jsonschema's own "pattern" is re.search, where "$" also matches before a final newline;
    # the compiled check (fastjsonschema) reads "$" as the end of the string, and so must this
    if validator.is_type(instance, "string") and not field_pattern_regex(pattern).search(instance):
        yield ValidationError(
            f"{instance!r} does not match the pattern {field_pattern(pattern)!r}")


# JSON Schema's "integer" admits 1.0 and Python's bool is an int; a quantity of 1.0 or true
# is a bug in the sender, not a number.
_StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many({
        "integer": lambda checker, value: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda checker, value: (
            isinstance(value, (int, float)) and not isinstance(value, bool)),
    }),
    validators={"pattern": _whole_pattern},
)


class _PayloadChecker:
    """The checks of one message type: a fast yes/no, and the full list of problems.

    jsonschema walks the schema for every payload (about 90 us for a three-field message here,
    paid on every publish and every delivery); fastjsonschema compiles it to Python once (about
    3 us) but stops at the first problem and, as JSON Schema says, takes 1.0 as an integer.
    So a payload that passes the compiled check and has no float in an integer field is valid;
    anything else gets jsonschema's complete, strict verdict.
    """

    def __init__(self, spec):
        self.first_problem = fastjsonschema.compile(spec.json_schema)  # raises it, if any
        self.strict = _StrictValidator(spec.json_schema)
        self.integer_fields = tuple(f.name for f in spec.fields if f.type == "integer")

    def problems(self, payload):
        try:
            self.first_problem(payload)
        except fastjsonschema.JsonSchemaException as exc:
            refused = exc.message
        else:
            if not any(type(payload.get(name)) is float for name in self.integer_fields):
                return []
            refused = None
        problems = sorted(_describe(error) for error in self.strict.iter_errors(payload))
        # should the two checks ever disagree, the payload is refused all the same
        return problems or ([refused] if refused else [])


_checkers = {}


def check_payload(spec, payload):
    """Raise :class:`InvalidMessage` naming every field of ``payload`` that breaks ``spec``."""
    if not isinstance(payload, dict):
        raise InvalidMessage(
            f"{spec.name}: body must be a JSON object, got {type(payload).__name__}")
    problems = _checker_of(spec).problems(payload)
    problems += [f"field {name!r}: holds a lone surrogate, a string no encoding can store"
                 for name in _surrogate_fields(payload)]
    if problems:
        raise InvalidMessage(f"{spec.name}: " + "; ".join(problems))


def _checker_of(spec):
    checker = _checkers.get(spec)
    if checker is None:
        checker = _checkers[spec] = _PayloadChecker(spec)
    return checker


def _surrogate_fields(payload):
    """The fields of ``payload`` whose name or value holds a lone surrogate."""
    if _plain_text_only(payload):
        return []
    return [name for name, value in payload.items() if _holds_lone_surrogate(name, value)]


def _plain_text_only(payload):
    """Whether ``payload`` is flat, with ASCII keys and values: no surrogate can hide in it (the
    cheap test that almost every message passes)."""
    for value in payload.values():
        if type(value) is str:
            if not value.isascii():
                return False
        elif type(value) not in _SCALARS:
            return False
    try:
        return "".join(payload).isascii()
    except TypeError:  # a key that is no string: look closer
        return False


_SCALARS = (int, float, bool, type(None))


def _holds_lone_surrogate(*values):
    """Whether a string in ``values``, or nested in them, holds a lone surrogate (JSON lets
    ``"\\ud800"`` through; UTF-8, and so every database driver, refuses it)."""
    pending = list(values)
    while pending:  # no recursion: a body may nest deeper than Python's stack
        value = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and _unencodable(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _unencodable(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _describe(error):
    if error.validator == "required":
        return error.message.replace(" is a required property", " is missing").replace(
            "'", "field '", 1)
    if error.validator == "additionalProperties" and not error.absolute_path:
        undeclared = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return "fields the message type does not declare: " + ", ".join(
            repr(name) for name in undeclared)
    field = ".".join(str(part) for part in error.absolute_path)
    return f"field {field!r}: {error.message}"


def decode_body(message):
    """The JSON object in an AMQP message's body, decoded by us rather than kombu.

    kombu acks bodies it cannot decode; the framework must see them to dead-letter them.
    A message without a content type is accepted as JSON (plain clients often omit it), and so
    is ``application/json`` with parameters, as long as a charset, if any, is UTF-8.
    """
    _check_content_type(message.content_type)
    encoding = message.content_encoding
    if encoding and encoding.lower() not in CONTENT_ENCODINGS:
        raise InvalidMessage(f"unsupported content encoding {encoding!r}; expected one of "
                             f"{', '.join(CONTENT_ENCODINGS)}")
    body = message.body
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"body is not valid JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidMessage(f"body must be a JSON object, got {type(payload).__name__}")
    return payload


def _check_content_type(content_type):
    if content_type in (None, "", JSON_CONTENT_TYPE, KOMBU_RAW_CONTENT_TYPE):
        return  # the usual ones, without the cost of parsing
    header = email.message.Message()
    try:
        header["content-type"] = content_type
        media_type = header.get_content_type()
        charset = header.get_param("charset")
    except UnicodeError:
        media_type = charset = None
    if media_type != JSON_CONTENT_TYPE:
        raise InvalidMessage(
            f"unsupported content type {content_type!r}; expected {JSON_CONTENT_TYPE}")
    if charset is not None and email.utils.collapse_rfc2231_value(charset).lower() not in (
            JSON_CHARSETS):
        raise InvalidMessage(f"unsupported charset in content type {content_type!r}; JSON "
                             f"bodies are UTF-8")


def outgoing(spec, payload, message_id=None, correlation_id=None,
             max_bytes=DEFAULT_MAX_MESSAGE_BYTES):
    """Check ``payload`` and return the publish arguments of a ``spec`` message.

    Every message the framework sends carries its type, a ``message_id`` (the event id that
    consumers may dedupe on) and a ``correlation_id`` linking it to what caused it.

    :raises InvalidMessage: the payload breaks the shape of ``spec``;
        :class:`MessageTooLarge` if its body would be over ``max_bytes``, which consumers
        would dead-letter unread.
    """
    check_payload(spec, payload)
    body = json.dumps(payload, separators=(",", ":"))  # ASCII: as many bytes as characters
    if len(body) > max_bytes:
        raise MessageTooLarge(f"{spec.name}: a body of {len(body)} bytes is over the limit of "
                              f"{max_bytes} bytes ({MAX_MESSAGE_BYTES_CONFIG_KEY})")
    message_id = message_id or uuid.uuid4().hex
    return {
        "exchange": spec.exchange,
        "routing_key": spec.routing_key,
        "body": body,
        "content_type": JSON_CONTENT_TYPE,
        "content_encoding": "utf-8",
        "message_id": message_id,
        "correlation_id": correlation_id or message_id,
        "type": spec.name,
    }


def field_problems(spec, payload):
    """Every way ``payload`` breaks ``spec``, as ``(field, message)`` pairs; empty when valid.

    The same checks as :func:`check_payload` (the compiled fast path first, so a valid payload
    costs no more), for a caller that answers per field, such as an HTTP 400 naming the field.
    Each message names its field and the rule, never the value (which may be long or hostile):
    ``"quantity must be at most 1000000"``. ``field`` is None for the body as a whole. Pairs come
    in the order of the spec's fields.
    """
    if not isinstance(payload, dict):
        return [(None, f"body must be a JSON object, got {type(payload).__name__}")]
    checker = _checker_of(spec)
    refused = checker.problems(payload)
    surrogates = _surrogate_fields(payload)
    if not refused and not surrogates:
        return []
    problems = [(name, f"{name} is required") for name in spec.json_schema["required"]
                if name not in payload]
    problems += [_field_problem(error) for error in checker.strict.iter_errors(payload)
                 if error.validator != "required"]
    problems += [(name, f"{name} must not hold a lone surrogate (no encoding can store it)")
                 for name in surrogates]
    # should the two checks ever disagree, the payload is refused all the same
    problems = list(dict.fromkeys(problems)) or [(None, "; ".join(refused))]
    order = {f.name: index for index, f in enumerate(spec.fields)}
    return sorted(problems, key=lambda problem: order.get(problem[0], len(order)))


def _field_problem(error):
    field = str(error.absolute_path[0]) if error.absolute_path else None
    rule = _RULES.get(error.validator) if len(error.absolute_path) == 1 else None
    if rule is None:
        return field, f"{field or 'body'}: {error.message}"
    return field, f"{field} must {rule(error.validator_value)}"


def _characters(count):
    return f"{count} character" + ("" if count == 1 else "s")


# a field's schema holds only these keywords (model.FieldSpec.json_schema)
_RULES = {
    "type": lambda type_name: f"be of type {type_name}",
    "minLength": lambda count: f"be at least {_characters(count)} long",
    "maxLength": lambda count: f"be at most {_characters(count)} long",
    "minimum": lambda bound: f"be at least {bound}",
    "maximum": lambda bound: f"be at most {bound}",
    "pattern": lambda pattern: f"match {field_pattern(pattern)} as a whole",
}
