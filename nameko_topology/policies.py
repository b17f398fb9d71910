"""RabbitMQ policies declared in the ``policies:`` section of ``topology.yaml``.

A policy carries settings (``message-ttl``, ``max-length``, ``dead-letter-exchange``, ...) that
RabbitMQ applies to every queue or exchange whose name its pattern matches. Unlike a queue's
``x-`` arguments it can change without re-creating the queue, which is why RabbitMQ recommends
policies for any setting that may change. They are set through the management API: by
``nameko-topology apply``, and by a service whose config names ``RABBITMQ_MANAGEMENT_URL``.

This module knows nothing of the model: the validation imports it before the model exists.
"""
import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: policy definition key -> the queue ``x-`` argument of the same setting
ARGUMENT_OF_KEY = {
    "message-ttl": "x-message-ttl",
    "expires": "x-expires",
    "max-length": "x-max-length",
    "max-length-bytes": "x-max-length-bytes",
    "overflow": "x-overflow",
    "dead-letter-exchange": "x-dead-letter-exchange",
    "dead-letter-routing-key": "x-dead-letter-routing-key",
    "dead-letter-strategy": "x-dead-letter-strategy",
    "delivery-limit": "x-delivery-limit",
    "max-in-memory-length": "x-max-in-memory-length",
    "max-in-memory-bytes": "x-max-in-memory-bytes",
    "queue-mode": "x-queue-mode",
    "queue-version": "x-queue-version",
    "queue-master-locator": "x-queue-master-locator",
    "alternate-exchange": "alternate-exchange",
}
#: topology.yaml queue option -> the ``x-`` argument it becomes (as in the model)
_OPTION_ARGUMENTS = {
    "message_ttl": "x-message-ttl",
    "max_length": "x-max-length",
    "overflow": "x-overflow",
    "delivery_limit": "x-delivery-limit",
}
#: the arguments every retry queue is declared with (see model._retry_queue)
_RETRY_QUEUE_ARGUMENTS = {"x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key"}
_QUORUM_RETRY_QUEUE_ARGUMENTS = {"x-overflow", "x-dead-letter-strategy"}


@dataclass(frozen=True)
class PolicySpec:
    """One policy of the vhost, as the management API takes it."""

    name: str
    pattern: str
    apply_to: str = "queues"
    priority: int = 0
    definition: dict = field(default_factory=dict)

    @property
    def broker_settings(self):
        """The body of ``PUT /api/policies/<vhost>/<name>``, and what ``GET`` returns."""
        return {"pattern": self.pattern, "apply-to": self.apply_to,
                "priority": self.priority, "definition": dict(self.definition)}


def queues_pattern(names):
    """The anchored pattern matching exactly the queues ``names``."""
    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


def policies_of_document(document):
    """name -> :class:`PolicySpec` of a validated document's ``policies:``."""
    policies = {}
    for entry in document.get("policies", []):
        pattern = entry.get("pattern") or queues_pattern(entry["queues"])
        policies[entry["name"]] = PolicySpec(
            name=entry["name"], pattern=pattern, apply_to=entry.get("apply_to", "queues"),
            priority=entry.get("priority", 0), definition=dict(entry["definition"]))
    return policies


def apply_policies(api, policies):
    """Create or update in place each of ``policies`` (a :class:`PolicySpec` iterable) in the
    vhost of ``api`` (a :class:`~nameko_topology.management.ManagementApi`); a policy that is
    already as declared is left alone, and no other policy is touched. Returns the names of
    the policies set."""
    held = {p["name"]: p for p in api.policies()}
    changed = []
    for spec in policies:
        if _settings_of(held.get(spec.name)) != spec.broker_settings:
            api.put_policy(spec.name, spec.broker_settings)
            log.info("set policy %s on vhost %s", spec.name, api.vhost)
            changed.append(spec.name)
    return changed


def _settings_of(policy):
    if policy is None:
        return None
    return {key: policy.get(key) for key in ("pattern", "apply-to", "priority", "definition")}


# -- validation across entries (called by validation.py) ------------------------------------

def policy_problems(entries, retry_queue_names):
    """``(path parts, message)`` of each problem of the accepted ``entries.policies``:
    duplicate names, ``pattern`` and ``queues`` both or neither given, undeclared queues, a
    pattern that does not compile or matches nothing declared, and a setting a matched queue
    already has as an argument of its own (the two would fight: RabbitMQ lets the argument
    win for most keys and the lower value for others). ``retry_queue_names`` maps each queue
    entry's name to the names of its retry queues."""
    seen = {}
    for i, policy in entries.policies:
        earlier = seen.setdefault(policy["name"], i)
        if earlier != i:
            yield ("policies", i, "name"), (
                f"{policy['name']!r} is already declared by policies[{earlier}]")
        yield from _selection_problems(entries, i, policy, retry_queue_names)


def _selection_problems(entries, i, policy, retry_queue_names):
    if ("pattern" in policy) == ("queues" in policy):
        yield ("policies", i), "give either pattern or queues (the queues it applies to)"
        return
    queues = _declared_queues(entries, retry_queue_names)
    if "queues" in policy:
        for k, name in enumerate(policy["queues"]):
            if name not in queues:
                yield ("policies", i, "queues", k), f"queue {name!r} is not declared under queues"
        pattern = queues_pattern(policy["queues"])
    else:
        pattern = policy["pattern"]
        try:
            re.compile(pattern)
        except re.error as exc:
            yield ("policies", i, "pattern"), (
                f"{pattern!r} is not a valid regular expression: {exc}")
            return
    apply_to = policy.get("apply_to", "queues")
    names = {"queues": set(queues), "exchanges": entries.exchange_names,
             "all": set(queues) | entries.exchange_names}[apply_to]
    matched = sorted(name for name in names if re.search(pattern, name))
    if "pattern" in policy and not matched:
        yield ("policies", i, "pattern"), (
            f"{pattern!r} matches no declared {'queue' if apply_to == 'queues' else 'entity'}")
    for key in policy["definition"]:
        argument = ARGUMENT_OF_KEY.get(key)
        for name in matched:
            if argument is not None and argument in queues.get(name, ()):
                yield ("policies", i, "definition", key), (
                    f"queue {name!r} sets {argument} itself; a policy and a queue argument "
                    f"for the same setting fight: remove one of them")


def _declared_queues(entries, retry_queue_names):
    """queue name -> the names of the ``x-`` arguments it is declared with, retry queues
    included."""
    queues = {}
    for _, queue in entries.queues:
        arguments = {argument for option, argument in _OPTION_ARGUMENTS.items() if option in queue}
        if queue.get("dead_letter"):
            arguments.add("x-dead-letter-exchange")
            if "routing_key" in queue["dead_letter"]:
                arguments.add("x-dead-letter-routing-key")
            if "strategy" in queue["dead_letter"]:
                arguments.add("x-dead-letter-strategy")
        arguments.update(queue.get("arguments", {}))
        queues[queue["name"]] = arguments
        retry_arguments = set(_RETRY_QUEUE_ARGUMENTS)
        if queue.get("type") == "quorum":
            retry_arguments |= _QUORUM_RETRY_QUEUE_ARGUMENTS
        for name in retry_queue_names.get(queue["name"], ()):
            queues[name] = retry_arguments
    return queues
