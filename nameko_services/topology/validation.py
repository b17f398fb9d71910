"""Validation of a topology document: the JSON Schema, then the checks across entries.

``schema.json`` (which editors can use too) checks every entry on its own. The checks here need
several entries at once: names that must be unique or declared, routing keys whose syntax
depends on their exchange's type, dead-letter loops.
"""
import json
from functools import cache
from importlib import resources

from jsonschema import Draft202012Validator

SECTIONS = ("exchanges", "queues", "bindings", "messages")
MAX_ROUTING_KEY_BYTES = 255
X_MATCH_VALUES = ("all", "any", "all-with-x", "any-with-x")
TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}
#: field option pairs, and the field types they apply to
FIELD_BOUNDS = (
    ("min_length", "max_length", ("string",)),
    ("minimum", "maximum", ("integer", "number")),
)


def validate_document(document):
    """Return every problem in ``document`` as ``(path, message)`` pairs; empty when valid.

    ``path`` is the place of the offending value, like ``queues[1].dead_letter.exchange``.
    All problems are reported at once: entries the schema rejects are left out of the checks
    across entries (which could only guess at them), the others are checked as usual.
    """
    if not isinstance(document, dict):
        return [("", "the file must be a mapping with exchanges, queues, bindings, messages")]
    errors = list(_validator().iter_errors(document))
    problems = [problem for error in errors for problem in _schema_problems(error)]
    entries = _Entries(document, errors)
    for check in CHECKS:
        problems.extend(check(entries))
    # jsonschema reports every missing key of an object as a separate error without naming
    # it, so each of those errors yields all of them
    return list(dict.fromkeys(problems))


@cache
def _validator():
    schema = json.loads(resources.files(__package__).joinpath("schema.json").read_text())
    return Draft202012Validator(schema)


def _path(*parts):
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# -- schema errors, in words ----------------------------------------------------------------

_MESSAGES = {
    "type": lambda e: f"must be {TYPE_NAMES[e.validator_value]}, not {e.instance!r}",
    "enum": lambda e: f"{e.instance!r} is not one of {', '.join(map(str, e.validator_value))}",
    "minimum": lambda e: f"must be at least {e.validator_value}, not {e.instance!r}",
    "maxLength": lambda e: f"must be at most {e.validator_value} characters long",
    # the schema only ever asks for at least one character or item
    "minLength": lambda e: "must not be empty",
    "minItems": lambda e: "must not be an empty list",
}


def _schema_problems(error):
    path = _path(*error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = ", ".join(error.schema["properties"])
        for key in error.instance:
            if key not in error.schema["properties"]:
                yield path, f"unknown key {key!r}; allowed: {allowed}"
    elif error.validator == "required":
        for key in error.validator_value:
            if key not in error.instance:
                yield path, f"missing required key {key!r}"
    else:
        describe = _MESSAGES.get(error.validator)
        yield path, describe(error) if describe else error.message


# -- checks across entries ------------------------------------------------------------------

class _Entries:
    """The ``(index, entry)`` pairs of each section that the schema accepted."""

    def __init__(self, document, schema_errors):
        malformed = {tuple(error.absolute_path)[:2] for error in schema_errors}
        sections = {name: _section(document, name) for name in SECTIONS}
        self.exchanges, self.queues, self.bindings, self.messages = (
            [(i, entry) for i, entry in enumerate(sections[name]) if (name, i) not in malformed]
            for name in SECTIONS
        )
        # a malformed entry still declares its name: references to it are not the problem
        self.exchange_names = _names(sections["exchanges"])
        self.queue_names = _names(sections["queues"])
        # how a malformed exchange routes is anybody's guess, so routing checks skip it
        self.exchange_types = {e["name"]: e.get("type", "topic") for _, e in self.exchanges}


def _section(document, name):
    entries = document.get(name)
    return entries if isinstance(entries, list) else []  # the schema reports anything else


def _names(entries):
    return {e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}


def _duplicates(keyed):
    """``(index, first_index, key)`` for every ``(index, key)`` pair whose key came before."""
    first = {}
    for index, key in keyed:
        earlier = first.setdefault(key, index)
        if earlier != index:
            yield index, earlier, key


def _check_duplicate_names(entries):
    for section in ("exchanges", "queues", "messages"):
        named = ((i, entry["name"]) for i, entry in getattr(entries, section))
        for i, first, name in _duplicates(named):
            yield _path(section, i, "name"), f"{name!r} is already declared by {section}[{first}]"


def _check_duplicate_routes(entries):
    # the consumer maps a delivery's exchange and routing key back to its message type
    routes = ((i, (m["exchange"], m["routing_key"])) for i, m in entries.messages)
    for i, first, (exchange, routing_key) in _duplicates(routes):
        yield _path("messages", i, "routing_key"), (
            f"messages[{first}] is already published on exchange {exchange!r} with routing key "
            f"{routing_key!r}; consumers could not tell the two message types apart"
        )


def _check_duplicate_fields(entries):
    for i, message in entries.messages:
        named = ((k, f["name"]) for k, f in enumerate(message.get("fields", [])))
        for k, first, name in _duplicates(named):
            yield _path("messages", i, "fields", k, "name"), (
                f"{name!r} is already declared by fields[{first}]"
            )


def _check_references(entries):
    exchanges, queues = entries.exchange_names, entries.queue_names
    for i, binding in entries.bindings:
        if binding["exchange"] not in exchanges:
            yield _undeclared("exchange", binding["exchange"], "bindings", i, "exchange")
        if binding["queue"] not in queues:
            yield _undeclared("queue", binding["queue"], "bindings", i, "queue")
    for i, queue in entries.queues:
        dead_letter = queue.get("dead_letter")
        if dead_letter and dead_letter["exchange"] not in exchanges:
            yield _undeclared(
                "exchange", dead_letter["exchange"], "queues", i, "dead_letter", "exchange"
            )
    for i, message in entries.messages:
        if message["exchange"] not in exchanges:
            yield _undeclared("exchange", message["exchange"], "messages", i, "exchange")


def _undeclared(kind, name, *path):
    return _path(*path), f"{kind} {name!r} is not declared under {kind}s"


def _check_reserved_exchange_names(entries):
    for i, exchange in entries.exchanges:
        if exchange["name"].startswith("amq."):
            yield _path("exchanges", i, "name"), (
                f"{exchange['name']!r}: exchange names starting with 'amq.' are reserved by "
                f"RabbitMQ"
            )


def _check_queue_types(entries):
    for i, queue in entries.queues:
        quorum = queue.get("type") == "quorum"
        if quorum and not queue.get("durable", True):
            yield _path("queues", i, "durable"), (
                "quorum queues are always durable; remove durable: false"
            )
        if not quorum and "delivery_limit" in queue:
            yield _path("queues", i, "delivery_limit"), (
                "delivery_limit only applies to quorum queues; add type: quorum or remove it"
            )


def _check_binding_keys(entries):
    for i, binding in entries.bindings:
        exchange_type = entries.exchange_types.get(binding["exchange"])
        if exchange_type is None:
            continue  # undeclared or malformed: reported elsewhere
        keys = binding.get("routing_keys")
        if exchange_type == "headers":
            yield from _headers_binding_problems(i, binding)
        elif keys is None:
            if exchange_type != "fanout":
                yield _path("bindings", i), (
                    f"missing required key 'routing_keys': {exchange_type} exchanges route by "
                    f"routing key"
                )
        else:
            for k, key in enumerate(keys):
                problem = _routing_key_problem(exchange_type, key)
                if problem:
                    yield _path("bindings", i, "routing_keys", k), problem


def _headers_binding_problems(i, binding):
    if "routing_keys" in binding:
        yield _path("bindings", i, "routing_keys"), (
            "headers exchanges route on the binding's arguments, not on routing keys; "
            "omit routing_keys"
        )
    x_match = binding.get("arguments", {}).get("x-match")
    if x_match is not None and x_match not in X_MATCH_VALUES:
        yield _path("bindings", i, "arguments", "x-match"), (
            f"{x_match!r} is not one of {', '.join(X_MATCH_VALUES)}"
        )


def _check_published_keys(entries):
    for i, message in entries.messages:
        problem = _published_key_problem(entries, message["exchange"], message["routing_key"])
        if problem:
            yield _path("messages", i, "routing_key"), problem
    for i, queue in entries.queues:
        dead_letter = queue.get("dead_letter", {})
        if "routing_key" in dead_letter:
            problem = _published_key_problem(
                entries, dead_letter["exchange"], dead_letter["routing_key"]
            )
            if problem:
                yield _path("queues", i, "dead_letter", "routing_key"), problem


def _published_key_problem(entries, exchange, key):
    exchange_type = entries.exchange_types.get(exchange)
    return _routing_key_problem(exchange_type, key, concrete=True)


def _routing_key_problem(exchange_type, key, concrete=False):
    """What is wrong with ``key`` on an exchange of ``exchange_type``, or None.

    ``concrete`` keys are those messages are published with; only binding keys are patterns.
    """
    size = len(key.encode())
    if size > MAX_ROUTING_KEY_BYTES:
        return f"routing keys are at most {MAX_ROUTING_KEY_BYTES} bytes long, this one is {size}"
    if exchange_type == "topic":
        return _topic_key_problem(key, concrete)
    if concrete:
        return None
    if exchange_type == "direct" and ("*" in key or "#" in key):
        return f"{key!r}: wildcards have no meaning on a direct exchange"
    if exchange_type == "fanout" and key:
        return f"{key!r}: fanout exchanges ignore routing keys; omit routing_keys"
    return None


def _topic_key_problem(key, concrete):
    words = key.split(".")
    if "" in words:
        return f"{key!r} has an empty word; topic routing keys are words separated by single dots"
    for word in words:
        if word in ("*", "#"):
            if concrete:
                return (
                    f"{key!r} contains the wildcard {word!r}; messages are published with "
                    f"concrete routing keys, only binding keys are patterns"
                )
        elif "*" in word or "#" in word:
            return (
                f"{key!r}: '*' and '#' must be whole words, as in 'order.*', not part of {word!r}"
            )
    return None


def _check_dead_letter_loops(entries):
    # the framework dead-letters by rejecting, and RabbitMQ only breaks dead-letter cycles
    # without rejections, so such a message would circle between the queue and its DLX forever
    for i, queue in entries.queues:
        dead_letter = queue.get("dead_letter")
        dlx_type = entries.exchange_types.get(dead_letter["exchange"]) if dead_letter else None
        if dlx_type is None:
            continue
        for j, binding in entries.bindings:
            if (binding["exchange"], binding["queue"]) != (dead_letter["exchange"], queue["name"]):
                continue
            # without a dead-letter routing key messages keep theirs, so those that reached the
            # queue through this binding match it again, whatever its keys
            keys = binding.get("routing_keys", [""])
            if "routing_key" in dead_letter:
                keys = [k for k in keys if _routes(dlx_type, k, dead_letter["routing_key"])]
            if keys:
                yield _path("queues", i, "dead_letter", "exchange"), (
                    f"dead-lettered messages would route back into {queue['name']!r} itself "
                    f"through binding bindings[{j}] ({keys[0]!r}), an endless loop"
                )


def _routes(exchange_type, binding_key, routing_key):
    """Whether a binding with ``binding_key`` passes on messages with ``routing_key``."""
    if exchange_type == "topic":
        return _topic_matches(_words(binding_key), _words(routing_key))
    if exchange_type == "direct":
        return binding_key == routing_key
    # fanout ignores routing keys; headers bindings match on headers nobody can know here
    return True


def _words(key):
    # RabbitMQ takes the empty routing key for no words at all
    return key.split(".") if key else []


def _topic_matches(pattern, words):
    """Whether the words of a routing key match a binding key's words.

    ``*`` in the pattern stands for exactly one word, ``#`` for zero or more.
    """
    if not pattern:
        return not words
    if pattern[0] == "#":
        return any(_topic_matches(pattern[1:], words[n:]) for n in range(len(words) + 1))
    return bool(words) and pattern[0] in ("*", words[0]) and _topic_matches(pattern[1:], words[1:])


def _check_field_bounds(entries):
    for i, message in entries.messages:
        for k, field in enumerate(message.get("fields", [])):
            for option, problem in _field_bound_problems(field):
                yield _path("messages", i, "fields", k, option), problem


def _field_bound_problems(field):
    for low, high, types in FIELD_BOUNDS:
        for option in (low, high):
            if option in field and field["type"] not in types:
                yield option, (
                    f"{option} only applies to {' and '.join(types)} fields, "
                    f"not to {field['type']} fields"
                )
        if low in field and high in field and field[low] > field[high]:
            yield low, f"{low} {field[low]} is greater than {high} {field[high]}"


CHECKS = (
    _check_duplicate_names,
    _check_duplicate_routes,
    _check_duplicate_fields,
    _check_references,
    _check_reserved_exchange_names,
    _check_queue_types,
    _check_binding_keys,
    _check_published_keys,
    _check_dead_letter_loops,
    _check_field_bounds,
)
