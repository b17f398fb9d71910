"""``nameko-topology plan``: the differences between a topology and a live vhost.

AMQP cannot read an entity back, and RabbitMQ compares only some settings when one is
redeclared (an exchange's type, durable, auto_delete and ``alternate-exchange``): so the vhost
is read through the management API and every setting of every entity is compared here.

Each difference is a :class:`Change` of one of four actions:

- ``create``: missing on the broker; ``apply`` declares it;
- ``update``: a policy that differs; ``apply`` changes it in place;
- ``replace``: an exchange or queue declared with other settings (type, durable,
  auto_delete, arguments): it cannot be changed in place; ``apply`` refuses, and
  :attr:`Change.migration` says how to re-create it safely;
- ``extra``: on the broker, not in the file: information, drift only with ``--strict``.

Left out as not the file's: the default exchange, the ``amq.*`` exchanges and queues, and
nameko's own RPC entities, which services declare themselves (the ``nameko-rpc`` exchange,
the ``rpc-<service>`` queues, the ``rpc.reply-*`` reply queues, and their bindings).
"""
import json
from dataclasses import dataclass, field

from nameko_topology.management import ManagementError

ACTIONS = ("create", "update", "replace", "extra")
NAMEKO_RPC_EXCHANGE = "nameko-rpc"
_NAMEKO_QUEUE_PREFIXES = ("rpc-", "rpc.reply-", "amq.")
#: "no such setting": printed and written to JSON as null
ABSENT = None


@dataclass(frozen=True)
class Change:
    """One entity that differs. ``differences`` are ``(setting, in the file, on the broker)``
    triples, ``None`` standing for a setting one side does not have."""

    action: str
    kind: str  # exchange, queue, binding, policy
    name: str
    differences: tuple = ()
    note: str = ""
    migration: tuple = field(default=(), compare=False)

    def as_json(self):
        return {"action": self.action, "kind": self.kind, "name": self.name, "note": self.note,
                "differences": [{"setting": s, "file": f, "broker": b}
                                for s, f, b in self.differences],
                "migration": list(self.migration)}


@dataclass(frozen=True)
class Plan:
    vhost: str
    changes: tuple

    def of(self, action):
        return [change for change in self.changes if change.action == action]

    def drifted(self, strict=False):
        return any(change.action != "extra" or strict for change in self.changes)

    def as_json(self, strict=False):
        return {"vhost": self.vhost, "in_sync": not self.drifted(strict), "strict": strict,
                **{action: [c.as_json() for c in self.of(action)] for action in ACTIONS}}


def read_vhost(api):
    """The exchanges, queues, bindings and policies of ``api``'s vhost, as the management API
    lists them. :raises ManagementError: unreachable, refused, or no such vhost."""
    try:
        return {kind: api.vhost_entities(kind)
                for kind in ("exchanges", "queues", "bindings", "policies")}
    except ManagementError as exc:
        if "HTTP 404" in str(exc):
            raise ManagementError(f"the broker has no vhost {api.vhost!r}") from None
        raise


def plan(topology, broker, vhost="/", management_hint="the management API"):
    """The :class:`Plan` turning ``broker`` (see :func:`read_vhost`) into ``topology``."""
    exchanges = {e["name"]: e for e in broker["exchanges"] if _ours(e["name"], exchange=True)}
    queues = {q["name"]: q for q in broker["queues"] if _ours(q["name"])}
    policies = {p["name"]: p for p in broker["policies"]}
    changes = []
    changes += _entity_changes("exchange", topology.exchanges, exchanges, _exchange_settings,
                               lambda spec: _exchange_migration(topology, spec, vhost))
    changes += _entity_changes("queue", topology.declared_queues, queues, _queue_settings,
                               lambda spec: _queue_migration(topology, spec, vhost))
    changes += _binding_changes(topology, broker["bindings"])
    changes += _policy_changes(topology, policies)
    return Plan(vhost=vhost, changes=tuple(changes))


def _ours(name, exchange=False):
    if exchange:
        return bool(name) and name != NAMEKO_RPC_EXCHANGE and not name.startswith("amq.")
    return not name.startswith(_NAMEKO_QUEUE_PREFIXES)


# -- exchanges and queues: created, or re-created ------------------------------------------

def _entity_changes(kind, declared, held, settings_of, migration_of):
    for name, spec in declared.items():
        note = f"retry queue of {spec.retry_for}" if getattr(spec, "retry_for", None) else ""
        if name not in held:
            yield Change("create", kind, name, note=note)
            continue
        differences = _differences(settings_of(spec), _held_settings(kind, held[name]))
        if differences:
            yield Change("replace", kind, name, differences, note=note,
                         migration=tuple(migration_of(spec)))
    for name in held:
        if name not in declared:
            yield Change("extra", kind, name)


def _exchange_settings(spec):
    return {"type": spec.type, "durable": spec.durable, "auto_delete": spec.auto_delete,
            "arguments": dict(spec.arguments)}


def _queue_settings(spec):
    arguments = dict(spec.broker_arguments)
    arguments.pop("x-queue-type", None)  # compared as "type"
    return {"type": spec.type, "durable": spec.durable, "auto_delete": False,
            "arguments": arguments}


def _held_settings(kind, entity):
    arguments = dict(entity.get("arguments") or {})
    if kind == "queue":
        arguments.pop("x-queue-type", None)
    return {"type": entity.get("type"), "durable": entity.get("durable"),
            "auto_delete": entity.get("auto_delete"), "arguments": arguments}


def _differences(declared, held):
    """``(setting, declared, held)`` of each setting that differs, each argument on its own
    (``arguments.x-max-length``)."""
    differences = [(key, declared[key], held[key]) for key in ("type", "durable", "auto_delete")
                   if declared[key] != held[key]]
    for name in sorted(set(declared["arguments"]) | set(held["arguments"])):
        mine, theirs = declared["arguments"].get(name, ABSENT), held["arguments"].get(name, ABSENT)
        if mine != theirs:
            differences.append((f"arguments.{name}", mine, theirs))
    return tuple(differences)


# -- bindings: created, or extra ------------------------------------------------------------

def _binding_changes(topology, held_bindings):
    declared = {_binding_key(b.exchange, b.queue, key, b.arguments)
                for b in topology.bindings for key in b.routing_keys}
    held = {_binding_key(b["source"], b["destination"], b["routing_key"], b.get("arguments"))
            for b in held_bindings
            if b["source"] and b.get("destination_type") == "queue"
            and _ours(b["source"], exchange=True) and _ours(b["destination"])}
    for key in sorted(declared - held):
        yield Change("create", "binding", _binding_name(key))
    for key in sorted(held - declared):
        yield Change("extra", "binding", _binding_name(key))


def _binding_key(exchange, queue, routing_key, arguments):
    return exchange, queue, routing_key, json.dumps(arguments or {}, sort_keys=True)


def _binding_name(key):
    exchange, queue, routing_key, arguments = key
    name = f"{exchange} -> {queue} [routing key {routing_key!r}]"
    return name if arguments == "{}" else f"{name} arguments {arguments}"


# -- policies: created, or changed in place -------------------------------------------------

def _policy_changes(topology, held):
    for name, spec in topology.policies.items():
        if name not in held:
            yield Change("create", "policy", name)
            continue
        declared, broker = spec.broker_settings, held[name]
        differences = [(key, declared[key], broker.get(key))
                       for key in ("pattern", "apply-to", "priority")
                       if declared[key] != broker.get(key)]
        broker_definition = broker.get("definition") or {}
        for key in sorted(set(declared["definition"]) | set(broker_definition)):
            mine, theirs = declared["definition"].get(key), broker_definition.get(key)
            if mine != theirs:
                differences.append((f"definition.{key}", mine, theirs))
        if differences:
            yield Change("update", "policy", name, tuple(differences))
    for name in held:
        if name not in topology.policies:
            yield Change("extra", "policy", name)


# -- migration recipes ----------------------------------------------------------------------

def _queue_migration(topology, spec, vhost):
    """The steps that re-create queue ``spec.name`` as the file declares it, losing no
    message and delivering none twice: its messages wait in a holding queue meanwhile, while
    nothing publishes to or consumes from it (the framework's publishers keep their messages
    in the outbox until the broker takes them)."""
    name, holding = spec.name, f"{spec.name}.migrating"
    v = _shell_word(vhost)
    api_vhost = vhost.replace("/", "%2F")
    shovel = ('rabbitmqctl set_parameter -p {v} shovel {shovel} \'{{"src-protocol": "amqp091", '
              '"src-uri": "amqp://", "src-queue": "{src}", "dest-protocol": "amqp091", '
              '"dest-uri": "amqp://", "dest-queue": "{dest}", "src-delete-after": '
              '"queue-length"}}\'')
    retry_queues = [q.name for q in topology.declared_queues.values() if q.retry_for == name]
    steps = [f"stop the services that publish messages routed to {name!r} and those that "
             f"consume it"]
    if retry_queues:
        steps.append(f"wait until its retry queues are empty (their messages return to "
                     f"{name!r} after their delay): {', '.join(retry_queues)}")
    steps += [
        f"create a holding queue: curl -u USER -X PUT -H 'content-type: application/json' "
        f"-d '{{\"durable\": true}}' http://HOST:15672/api/queues/{api_vhost}/{holding}",
        "move the messages into it (needs `rabbitmq-plugins enable rabbitmq_shovel`): "
        + shovel.format(v=v, shovel=f"{name}-out", src=name, dest=holding)
        + f"; wait until `rabbitmqctl list_queues -p {v} name messages` shows {name} 0",
        f"delete the old queue: rabbitmqctl delete_queue -p {v} {name}",
        f"re-create it and its bindings as the file says: nameko-topology apply "
        f"{topology.source}",
        "move the messages back: "
        + shovel.format(v=v, shovel=f"{name}-back", src=holding, dest=name)
        + f"; wait until {holding} shows 0",
        f"delete the holding queue: rabbitmqctl delete_queue -p {v} {holding}",
        "start the services again",
    ]
    return steps


def _exchange_migration(topology, spec, vhost):
    """Exchanges hold no messages: re-creating one loses only what is published meanwhile,
    which mandatory publishes (the framework's) get back as unroutable and retry."""
    v = _shell_word(vhost)
    return [
        f"stop the services publishing to {spec.name!r}, or accept that their publishes are "
        f"returned unroutable (and retried) for a moment",
        f"delete the exchange (its bindings go with it): rabbitmqadmin -V {v} delete exchange "
        f"name={spec.name}, or curl -u USER -X DELETE "
        f"http://HOST:15672/api/exchanges/{vhost.replace('/', '%2F')}/{spec.name}",
        f"re-create it and its bindings as the file says: nameko-topology apply "
        f"{topology.source}",
    ]


def _shell_word(text):
    return text if text and all(c.isalnum() or c in "._-/" for c in text) else f"'{text}'"


# -- output ---------------------------------------------------------------------------------

_HEADINGS = {
    "create": "To create (apply declares them):",
    "update": "To change in place (apply updates them):",
    "replace": "Not changeable in place (apply refuses; re-create as below):",
    "extra": "On the broker, not in the file ({}):",
}


def render(plan, source, strict=False):
    """The plan as a readable text table."""
    lines = [f"plan: {source} against vhost {plan.vhost!r}"]
    for action in ACTIONS:
        changes = plan.of(action)
        if not changes:
            continue
        heading = _HEADINGS[action]
        if action == "extra":
            heading = heading.format("drift: --strict" if strict else "information only")
        lines += ["", heading]
        width = max(len(c.kind) for c in changes)
        for change in changes:
            note = f"  ({change.note})" if change.note else ""
            lines.append(f"  {change.kind:<{width}}  {change.name}{note}")
            if change.differences:
                setting_width = max(len(s) for s, _, _ in change.differences)
                for setting, declared, held in change.differences:
                    lines.append(f"      {setting:<{setting_width}}  file: {_value(declared)}"
                                 f"  broker: {_value(held)}")
            for number, step in enumerate(change.migration, 1):
                lines.append(f"      {number}. {step}")
    lines += ["", "drift" if plan.drifted(strict) else "in sync"]
    return "\n".join(lines)


def _value(value):
    return "(none)" if value is None else json.dumps(value, sort_keys=True)
