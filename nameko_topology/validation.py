"""Validation of a topology document: the JSON Schema, then the checks across entries.

``schema.json`` (which editors can use too) checks every entry on its own. The checks here need
several entries at once: names that must be unique or declared, routing keys whose syntax
depends on their exchange's type, message types that no binding routes, dead-letter loops.
"""
import json
import re
from functools import cache
from importlib import resources

from jsonschema import Draft202012Validator

from nameko_topology.policies import policy_problems
from nameko_topology.retries import queue_retry_problems, retry_queues_of_entry

SECTIONS = ("exchanges", "queues", "bindings", "messages")
MAX_ROUTING_KEY_BYTES = 255
#: AMQP carries names as short strings: 255 bytes of UTF-8 (the schema can only count characters)
MAX_NAME_BYTES = 255
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
# fastjsonschema compiles a pattern with each unescaped "$" made "\Z" (the end of the string,
# where Python's "$" also matches before a final newline); every check of a pattern does so
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def whole_value_pattern(pattern):
    """The JSON Schema ``pattern`` of a field's ``pattern`` option: the whole value must match
    it, not just a part (JSON Schema's patterns are searched for)."""
    return f"^(?:{pattern})$"


def field_pattern(schema_pattern):
    """The field's ``pattern`` option that :func:`whole_value_pattern` made ``schema_pattern``."""
    return schema_pattern.removeprefix("^(?:").removesuffix(")$")


@cache
def field_pattern_regex(schema_pattern):
    """``schema_pattern`` compiled as fastjsonschema compiles it; ``re.error`` if it cannot
    be."""
    return re.compile(_UNESCAPED_DOLLAR.sub(r"\\Z", schema_pattern))


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
    "type": lambda e: f"must be {_type_names(e.validator_value)}, not {e.instance!r}",
    "enum": lambda e: f"{e.instance!r} is not one of {', '.join(map(str, e.validator_value))}",
    "minimum": lambda e: f"must be at least {e.validator_value}, not {e.instance!r}",
    "maximum": lambda e: f"must be at most {e.validator_value}, not {e.instance!r}",
    "maxLength": lambda e: f"must be at most {e.validator_value} characters long",
    # the schema only ever asks for at least one character or item
    "minLength": lambda e: "must not be empty",
    "minItems": lambda e: "must not be an empty list",
}


def _type_names(types):
    if isinstance(types, str):
        return TYPE_NAMES[types]
    return " or ".join(TYPE_NAMES[name] for name in types)


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
        self.policies = [(i, entry) for i, entry in enumerate(_section(document, "policies"))
                         if ("policies", i) not in malformed]
        # a malformed entry still declares its name: references to it are not the problem
        self.exchange_names = _names(sections["exchanges"])
        self.queue_names = _names(sections["queues"])
        # how a malformed exchange routes is anybody's guess, so routing checks skip it
        self.exchange_types = {e["name"]: e.get("type", "topic") for _, e in self.exchanges}
        # nor can anybody tell what a malformed binding routes from its exchange
        self.malformed_binding_exchanges = {
            b["exchange"] for i, b in enumerate(sections["bindings"])
            if ("bindings", i) in malformed and isinstance(b, dict)
            and isinstance(b.get("exchange"), str)}


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


def _check_name_sizes(entries):
    for section in ("exchanges", "queues"):
        for i, entry in getattr(entries, section):
            size = len(entry["name"].encode())
            if size > MAX_NAME_BYTES:
                yield _path(section, i, "name"), (
                    f"names are at most {MAX_NAME_BYTES} bytes long, this one is {size}"
                )


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


def _check_dead_letter_strategy(entries):
    """RabbitMQ ignores ``at-least-once`` (falling back to at-most-once, silently) on a classic
    queue, and on a quorum queue whose overflow is not ``reject-publish``."""
    for i, queue in entries.queues:
        strategy = (queue.get("dead_letter") or {}).get("strategy")
        if strategy is None:
            continue
        if queue.get("type") != "quorum":
            yield _path("queues", i, "dead_letter", "strategy"), (
                "a dead-letter strategy only applies to quorum queues; add type: quorum or "
                "remove it")
        elif strategy == "at-least-once" and queue.get("overflow") != "reject-publish":
            yield _path("queues", i, "overflow"), (
                "dead_letter.strategy at-least-once needs overflow: reject-publish (RabbitMQ "
                "falls back to at-most-once otherwise)")


def _check_binding_keys(entries):
    for i, binding in entries.bindings:
        yield from _binding_key_problems(entries, i, binding)


def _binding_key_problems(entries, i, binding):
    exchange_type = entries.exchange_types.get(binding["exchange"])
    if exchange_type is None:
        return  # undeclared or malformed: reported elsewhere
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


def _check_unrouted_messages(entries):
    # the outbox publishes with mandatory: a message no queue takes comes back as NO_ROUTE
    # and is retried for ever, so a message type that nothing routes is an error, not a hint
    guessed = _exchanges_with_faulty_bindings(entries)
    for i, message in entries.messages:
        exchange, key = message["exchange"], message["routing_key"]
        exchange_type = entries.exchange_types.get(exchange)
        if (exchange_type is None or exchange in guessed
                or _published_key_problem(entries, exchange, key)):
            continue  # what would route it is a guess: the faults are reported elsewhere
        if not any(_routes(exchange_type, binding_key, key)
                   for _, binding in entries.bindings if binding["exchange"] == exchange
                   for binding_key in binding.get("routing_keys", [""])):
            yield _path("messages", i), (
                f"{message['name']!r} is published on {exchange_type} exchange {exchange!r} "
                f"with routing key {key!r}, but no binding routes it to a queue; its mandatory "
                f"publishes would come back unrouted and be retried for ever"
            )


def _exchanges_with_faulty_bindings(entries):
    """The exchanges with a binding that the schema or the binding-key checks refuse."""
    faulty = set(entries.malformed_binding_exchanges)
    faulty.update(binding["exchange"] for i, binding in entries.bindings
                  if any(_binding_key_problems(entries, i, binding)))
    return faulty


def _check_dead_letter_loops(entries):
    # the framework dead-letters by rejecting, and RabbitMQ only breaks dead-letter cycles
    # without rejections, so such a message would circle through the queues and their DLXs
    # forever; one cycle is reported once, at the first queue whose search finds it
    routes = _DeadLetterRoutes(entries)
    reported = set()
    for i, queue in entries.queues:
        hops = routes.shortest_loop(queue["name"])
        if hops is None:
            continue
        # the same cycle found from another of its queues is the same problem
        steps = [(j, key) for j, key, _ in hops]
        canonical = min(tuple(steps[n:] + steps[:n]) for n in range(len(steps)))
        if canonical not in reported:
            reported.add(canonical)
            yield (_path("queues", i, "dead_letter", "exchange"),
                   _loop_problem(queue["name"], hops))


def _loop_problem(name, hops):
    if len(hops) == 1:
        [(j, key, _)] = hops
        return (f"dead-lettered messages would route back into {name!r} itself through "
                f"binding bindings[{j}] ({key!r}), an endless loop")
    cycle = " -> ".join([name] + [target for _, _, target in hops])
    through = ", ".join(f"bindings[{j}] ({key!r})" for j, key, _ in hops)
    return (f"dead-lettered messages would route back into {name!r} through other queues: "
            f"{cycle} (through {through}), an endless loop")


class _DeadLetterRoutes:
    """Where a queue's rejects go: to the queues its DLX's bindings route their key to.

    A message is followed with the routing key it carries: a concrete string once a
    ``dead_letter.routing_key`` has replaced it, else its own, unknown key, kept as the set of
    ``(exchange type, binding key)`` pairs it must have matched so far (a frozenset).
    """

    def __init__(self, entries):
        self.queues = {}
        for _, queue in entries.queues:
            self.queues.setdefault(queue["name"], queue)  # duplicates are reported elsewhere
        self.bindings = entries.bindings
        self.exchange_types = entries.exchange_types
        # every concrete key a message can carry into a queue whose DLX keeps it
        self.rewritten_keys = sorted({
            queue["dead_letter"]["routing_key"] for queue in self.queues.values()
            if "routing_key" in queue.get("dead_letter", {})})

    def hops(self, name, key):
        """``((binding index, binding key, queue), key)`` for each queue a reject reaches."""
        dead_letter = self.queues[name].get("dead_letter")
        dlx_type = self.exchange_types.get(dead_letter["exchange"]) if dead_letter else None
        if dlx_type is None:
            return  # no DLX, or an undeclared or malformed one: reported elsewhere
        key = dead_letter.get("routing_key", key)
        for j, binding in self.bindings:
            if (binding["exchange"] != dead_letter["exchange"]
                    or binding["queue"] not in self.queues):
                continue
            for binding_key in binding.get("routing_keys", [""]):
                passed = _passed(dlx_type, binding_key, key)
                if passed is not None:
                    yield (j, binding_key, binding["queue"]), passed

    def shortest_loop(self, name):
        """The hops of a shortest dead-letter cycle from queue ``name`` back to it, or None."""
        if "routing_key" in self.queues[name].get("dead_letter", {}):
            # every lap leaves with the same key, whichever one the message came back with
            return self._search(name, frozenset(), lambda key: True)
        # a message with any key of its own, or one a dead-letter routing key gave it, that
        # comes back with that key
        loops = [self._search(name, frozenset(), lambda key: isinstance(key, frozenset))]
        loops += [self._search(name, start, lambda key, start=start: key == start)
                  for start in self.rewritten_keys]
        return min((hops for hops in loops if hops), key=len, default=None)

    def _search(self, name, start, closes):
        """Breadth first over (queue, key) states from ``(name, start)``.

        A kept key that asks more of a message than another one already seen at the same queue
        is not followed: every way on that is open to it is open to the other one too.
        """
        seen = {name: [start]}
        frontier = [(name, start, [])]
        while frontier:
            following = []
            for queue, key, path in frontier:
                for hop, passed in self.hops(queue, key):
                    hops = path + [hop]
                    target = hop[2]
                    if target == name and closes(passed):
                        return hops
                    known = seen.setdefault(target, [])
                    if not any(_asks_no_more(other, passed) for other in known):
                        known.append(passed)
                        following.append((target, passed, hops))
            frontier = following
        return None


def _asks_no_more(key, other):
    """Whether every message that ``other`` describes, ``key`` describes too."""
    if isinstance(key, frozenset) and isinstance(other, frozenset):
        return key <= other
    return key == other


def _passed(exchange_type, binding_key, key):
    """The key of a message with ``key`` after a binding with ``binding_key``; None if stopped."""
    if isinstance(key, str):
        return key if _routes(exchange_type, binding_key, key) else None
    if exchange_type not in ("topic", "direct"):
        return key  # fanout and headers bindings ask nothing of the routing key
    key = key | {(exchange_type, binding_key)}
    return key if _one_key_matches(key) else None


def _one_key_matches(bindings):
    """Whether one routing key can match every ``(exchange type, binding key)`` pair."""
    exact = {binding_key for exchange_type, binding_key in bindings if exchange_type == "direct"}
    patterns = [_words(k) for exchange_type, k in bindings if exchange_type == "topic"]
    if exact:
        [key, *others] = exact
        return not others and all(_topic_matches(pattern, _words(key)) for pattern in patterns)
    return _topic_patterns_overlap(patterns)


def _topic_patterns_overlap(patterns):
    """Whether some routing key matches every topic binding key in ``patterns`` (word lists).

    Each pattern is read as an automaton whose states are positions in it; all of them are run
    together over the words the patterns name and one word that none of them names.
    """
    words = sorted({w for pattern in patterns for w in pattern if w not in ("*", "#")})
    vocabulary = words + [None]  # None: any other word
    start = tuple(_skip_hashes(pattern, {0}) for pattern in patterns)
    seen, frontier = {start}, [start]
    while frontier:
        state = frontier.pop()
        if all(len(pattern) in positions for pattern, positions in zip(patterns, state)):
            return True
        for word in vocabulary:
            following = tuple(_step(pattern, positions, word)
                              for pattern, positions in zip(patterns, state))
            if all(following) and following not in seen:
                seen.add(following)
                frontier.append(following)
    return False


def _step(pattern, positions, word):
    after = set()
    for i in positions:
        if i < len(pattern):
            if pattern[i] == "#":
                after.add(i)
            elif pattern[i] == "*" or pattern[i] == word:
                after.add(i + 1)
    return _skip_hashes(pattern, after)


def _skip_hashes(pattern, positions):
    # '#' also stands for no words at all
    reached = set()
    for i in positions:
        reached.add(i)
        while i < len(pattern) and pattern[i] == "#":
            i += 1
            reached.add(i)
    return frozenset(reached)


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


def _check_field_patterns(entries):
    for i, message in entries.messages:
        for k, field in enumerate(message.get("fields", [])):
            if "pattern" not in field:
                continue
            path = _path("messages", i, "fields", k, "pattern")
            if field["type"] != "string":
                yield path, f"pattern only applies to string fields, not to {field['type']} fields"
                continue
            try:
                # as written, so that the error's position is one in the file
                field_pattern_regex(field["pattern"])
            except re.error as exc:
                yield path, f"{field['pattern']!r} is not a valid regular expression: {exc}"


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


def _check_retries(entries):
    for i, queue in entries.queues:
        for parts, problem in queue_retry_problems(queue):
            yield _path("queues", i, *parts), problem


def _check_retry_queue_names(entries):
    # a retry queue is declared beside the file's queues: its name must be no other queue's
    owners = {}
    for i, queue in entries.queues:
        owners.setdefault(queue["name"], f"the queue of queues[{i}]")
    for i, queue in entries.queues:
        if (owners[queue["name"]] != f"the queue of queues[{i}]"
                or len(queue["name"].encode()) > MAX_NAME_BYTES):
            continue  # a duplicate or too long a name: reported by the checks of names
        for parts, name in retry_queues_of_entry(queue):
            size = len(name.encode())
            if size > MAX_NAME_BYTES:
                yield _path("queues", i, *parts), (
                    f"its retry queue name {name!r} is {size} bytes long; names are at most "
                    f"{MAX_NAME_BYTES}: shorten the queue name")
            elif name in owners:
                yield _path("queues", i, *parts), (
                    f"its retry queue {name!r} would have the name of {owners[name]}; rename "
                    f"that queue or change the delay")
            else:
                owners[name] = f"the retry queue of queues[{i}]"


def _check_policies(entries):
    retry_queue_names = {queue["name"]: [name for _, name in retry_queues_of_entry(queue)]
                         for _, queue in entries.queues}
    for parts, problem in policy_problems(entries, retry_queue_names):
        yield _path(*parts), problem


CHECKS = (
    _check_duplicate_names,
    _check_name_sizes,
    _check_duplicate_routes,
    _check_duplicate_fields,
    _check_references,
    _check_reserved_exchange_names,
    _check_queue_types,
    _check_dead_letter_strategy,
    _check_binding_keys,
    _check_published_keys,
    _check_unrouted_messages,
    _check_dead_letter_loops,
    _check_field_bounds,
    _check_field_patterns,
    _check_retries,
    _check_retry_queue_names,
    _check_policies,
)
