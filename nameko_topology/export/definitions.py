"""The topology as RabbitMQ definitions: what ``rabbitmqctl import_definitions``, the
management API's ``POST /api/definitions[/<vhost>]`` and the broker's boot-time
``definitions.local.path`` import. Retry queues are declared entities, so they are in it."""


def definitions(topology, vhost):
    """The definitions document of ``topology`` in virtual host ``vhost``."""
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {"name": spec.name, "vhost": vhost, "type": spec.type, "durable": spec.durable,
             "auto_delete": spec.auto_delete, "internal": False,
             "arguments": dict(spec.arguments)}
            for spec in topology.exchanges.values()],
        "queues": [
            {"name": spec.name, "vhost": vhost, "durable": spec.durable, "auto_delete": False,
             "arguments": spec.broker_arguments}
            for spec in topology.declared_queues.values()],
        "bindings": [
            {"source": b.exchange, "vhost": vhost, "destination": b.queue,
             "destination_type": "queue", "routing_key": key, "arguments": dict(b.arguments)}
            for b in topology.bindings for key in b.routing_keys],
        "policies": [
            {"vhost": vhost, "name": spec.name, **spec.broker_settings}
            for spec in topology.policies.values()],
    }
