"""The topology model: what ``topology.yaml`` declares, as immutable objects.

:func:`load_topology` reads and validates a file and returns a :class:`Topology`; every other
framework piece (declarer, consumer entrypoint, publisher, outbox, CLI) works from that object
and builds its kombu entities from it, so that every declaration of an entity - at start-up,
after a reconnect, from the CLI - carries exactly the same arguments.
"""
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import yaml
from kombu import Exchange, Queue, binding

from nameko_topology.exceptions import TopologyError
from nameko_topology.policies import policies_of_document
from nameko_topology.retries import (
    DEFAULT_DELAY_MS, DEFAULT_MAX_ATTEMPTS, block_delays, block_max_attempts, retry_queue_name,
)
from nameko_topology.validation import validate_document, whole_value_pattern

FIELD_TYPES = ("string", "integer", "number", "boolean", "object", "array")

#: queue option -> RabbitMQ ``x-`` argument it becomes
QUEUE_OPTION_ARGUMENTS = {
    "message_ttl": "x-message-ttl",
    "max_length": "x-max-length",
    "overflow": "x-overflow",
    "delivery_limit": "x-delivery-limit",
}


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str = "topic"
    durable: bool = True
    auto_delete: bool = False
    arguments: dict = field(default_factory=dict)

    def to_kombu(self):
        return Exchange(
            self.name,
            type=self.type,
            durable=self.durable,
            auto_delete=self.auto_delete,
            arguments=dict(self.arguments) or None,
        )


@dataclass(frozen=True)
class DeadLetterSpec:
    exchange: str
    routing_key: str = None
    strategy: str = None  # quorum queues: at-most-once (the broker's default) or at-least-once


@dataclass(frozen=True)
class RetrySpec:
    """How often a transient handler failure is retried, and after which delays, before the
    message is dead-lettered.

    ``delays`` are the milliseconds a message waits in a retry queue before retry 1, 2, ...;
    the last one repeats for the retries after it. ``jitter`` (0..1) lets each message wait
    between ``delay * (1 - jitter)`` and ``delay``.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    delays: tuple = (DEFAULT_DELAY_MS,)
    jitter: float = 0.0

    @classmethod
    def from_document(cls, block):
        """The policy of a validated ``retry:`` block (see :mod:`~nameko_topology.retries`)."""
        return cls(max_attempts=block_max_attempts(block), delays=block_delays(block),
                   jitter=block.get("jitter", 0.0))

    def delay_after(self, attempt):
        """Milliseconds to wait after attempt ``attempt`` (1 = the first) failed."""
        return self.delays[min(attempt, len(self.delays)) - 1]

    @property
    def levels(self):
        """The distinct delays of the retries, in the order they are first used: one retry
        queue each."""
        return tuple(dict.fromkeys(self.delays[:self.max_attempts - 1]))

    def attempts_at(self, delay):
        """The attempts after whose failure a message waits ``delay``."""
        return tuple(attempt for attempt in range(1, self.max_attempts)
                     if self.delay_after(attempt) == delay)


#: the policy of retry queues themselves: their messages are never handled
NO_RETRY = RetrySpec(max_attempts=1, delays=())


@dataclass(frozen=True)
class QueueSpec:
    name: str
    durable: bool = True
    type: str = "classic"
    dead_letter: DeadLetterSpec = None
    message_ttl: int = None
    max_length: int = None
    overflow: str = None
    delivery_limit: int = None
    arguments: dict = field(default_factory=dict)
    retry: RetrySpec = field(default_factory=RetrySpec)
    consumer: str = None  # the service consuming it, for exports (documentation only)
    max_message_bytes: int = None  # None: the container's MAX_MESSAGE_BYTES
    retry_for: str = None  # a retry queue: the queue its messages return to; else None

    @property
    def broker_arguments(self):
        """The queue's ``x-`` arguments exactly as they are declared on the broker."""
        arguments = {}
        if self.type != "classic":
            arguments["x-queue-type"] = self.type
        if self.dead_letter is not None:
            arguments["x-dead-letter-exchange"] = self.dead_letter.exchange
            if self.dead_letter.routing_key is not None:
                arguments["x-dead-letter-routing-key"] = self.dead_letter.routing_key
            if self.dead_letter.strategy is not None:
                arguments["x-dead-letter-strategy"] = self.dead_letter.strategy
        for option, argument in QUEUE_OPTION_ARGUMENTS.items():
            value = getattr(self, option)
            if value is not None:
                arguments[argument] = value
        arguments.update(self.arguments)
        return arguments


@dataclass(frozen=True)
class BindingSpec:
    exchange: str
    queue: str
    routing_keys: tuple = ("",)
    arguments: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = True
    min_length: int = None
    max_length: int = None
    minimum: float = None
    maximum: float = None
    pattern: str = None  # the whole value must match it

    def json_schema(self):
        schema = {"type": self.type}
        for keyword, value in (
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("pattern", None if self.pattern is None else whole_value_pattern(self.pattern)),
        ):
            if value is not None:
                schema[keyword] = value
        return schema


@dataclass(frozen=True)
class MessageSpec:
    name: str
    exchange: str
    routing_key: str
    fields: tuple = ()
    publisher: str = None  # the service publishing it, for exports (documentation only)
    additional_fields: bool = True  # the tolerant reader: fields a consumer does not know pass

    @cached_property
    def json_schema(self):
        """The JSON Schema a body of this message type must satisfy."""
        return {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": self.additional_fields,
        }


@dataclass(frozen=True)
class Topology:
    """Everything one ``topology.yaml`` declares, keyed by name."""

    source: str
    exchanges: dict
    queues: dict
    bindings: tuple
    messages: dict
    #: name -> :class:`~nameko_topology.policies.PolicySpec`
    policies: dict = field(default_factory=dict)

    def message(self, name):
        """The :class:`MessageSpec` called ``name``; ``KeyError`` naming it if undeclared."""
        try:
            return self.messages[name]
        except KeyError:
            raise KeyError(f"message type {name!r} is not declared in {self.source}") from None

    def queue(self, name):
        """The :class:`QueueSpec` called ``name``; ``KeyError`` naming it if undeclared."""
        try:
            return self.queues[name]
        except KeyError:
            raise KeyError(f"queue {name!r} is not declared in {self.source}") from None

    @cached_property
    def retry_queues(self):
        """name -> :class:`QueueSpec` of the retry queues the framework derives: one per
        distinct delay of each queue's retry policy (``<queue>.retry.<delay>``, see
        :mod:`~nameko_topology.retries`), with ``retry_for`` the queue it returns to."""
        return {spec.name: spec for queue in self.queues.values()
                for spec in map(partial(_retry_queue, queue), queue.retry.levels)}

    @cached_property
    def declared_queues(self):
        """name -> :class:`QueueSpec` of every queue the broker holds for this topology: the
        ``queues`` of the file, then the :attr:`retry_queues`."""
        return {**self.queues, **self.retry_queues}

    def message_for_route(self, exchange, routing_key):
        """The message type published on ``exchange`` with ``routing_key``, or None."""
        return self._messages_by_route.get((exchange, routing_key))

    @cached_property
    def _messages_by_route(self):
        return {(m.exchange, m.routing_key): m for m in self.messages.values()}

    def bindings_of(self, queue_name):
        return [b for b in self.bindings if b.queue == queue_name]

    def kombu_queue(self, name):
        """A kombu ``Queue`` declaring queue ``name`` (declared or a retry queue) with all of
        its bindings.

        kombu re-declares a consumer's queue and bindings on every reconnect, so this must be
        the only place a consumer's queue is built.
        """
        spec = self.declared_queues.get(name) or self.queue(name)
        bindings = [
            binding(
                self.exchanges[b.exchange].to_kombu(),
                routing_key=key,
                arguments=dict(b.arguments) or None,
            )
            for b in self.bindings_of(name)
            for key in b.routing_keys
        ]
        return Queue(
            spec.name,
            bindings=bindings or None,
            durable=spec.durable,
            auto_delete=False,
            queue_arguments=spec.broker_arguments or None,
        )


def _retry_queue(parent, delay):
    """The retry queue of ``parent`` for ``delay`` ms: its messages expire after the delay and
    the broker dead-letters them back to ``parent`` through the default exchange. A quorum
    queue's retry queue is a quorum queue, dead-lettering at least once (which RabbitMQ
    allows only with ``reject-publish`` overflow): no replica loss drops a waiting message."""
    quorum = parent.type == "quorum"
    return QueueSpec(
        name=retry_queue_name(parent.name, delay),
        type=parent.type,
        dead_letter=DeadLetterSpec(exchange="", routing_key=parent.name),
        message_ttl=delay,
        overflow="reject-publish" if quorum else None,
        arguments={"x-dead-letter-strategy": "at-least-once"} if quorum else {},
        retry=NO_RETRY,
        retry_for=parent.name,
    )


def _build(document, source):
    queues = {}
    for q in document.get("queues", []):
        q = dict(q)
        if q.get("dead_letter") is not None:
            q["dead_letter"] = DeadLetterSpec(**q["dead_letter"])
        q["retry"] = RetrySpec.from_document(q.get("retry", {}))
        queues[q["name"]] = QueueSpec(**q)
    return Topology(
        source=source,
        exchanges={e["name"]: ExchangeSpec(**e) for e in document.get("exchanges", [])},
        queues=queues,
        bindings=tuple(
            BindingSpec(**{**b, "routing_keys": tuple(b.get("routing_keys", ("",)))})
            for b in document.get("bindings", [])
        ),
        messages={
            m["name"]: MessageSpec(
                **{**m, "fields": tuple(FieldSpec(**f) for f in m.get("fields", []))}
            )
            for m in document.get("messages", [])
        },
        policies=policies_of_document(document),
    )


def load_topology(path):
    """Read, validate and build the topology in ``path``.

    :raises TopologyError: naming the file and every problem found, each with its place in
        the file (``queues[1].dead_letter.exchange``) and what is wrong with it.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(source, [("", f"cannot read the file: {exc.strerror}")]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(source, [("", f"not valid YAML: {exc}")]) from None
    problems = validate_document(document)
    if problems:
        raise TopologyError(source, problems)
    return _build(document, source)
