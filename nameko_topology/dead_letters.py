"""Reading dead letters: where they are, and what the framework wrote on each."""
import json

from nameko_topology.messages import QUEUE_HEADER, REASON_HEADER


def dead_letter_queue(topology):
    """The one queue bound to the exchanges that the topology's queues dead-letter to;
    ``ValueError`` if there is none or more than one (then the caller must name it)."""
    exchanges = {spec.dead_letter.exchange for spec in topology.queues.values()
                 if spec.dead_letter is not None}
    queues = sorted({binding.queue for binding in topology.bindings
                     if binding.exchange in exchanges})
    if len(queues) != 1:
        raise ValueError(f"name the dead-letter queue: the dead-letter exchanges "
                         f"{sorted(exchanges)} feed {queues or 'no queue'}")
    return queues[0]


def as_record(message):
    """A dict of ``message`` (``body`` bytes, ``headers``, ``properties``, ``routing_key``)
    plus what the framework wrote on it: ``reason``, ``queue`` (where it was rejected) and
    ``payload`` (the JSON body, or None)."""
    headers = message["headers"]
    try:
        payload = json.loads(message["body"])
    except ValueError:
        payload = None
    return {**message, "reason": _text(headers.get(REASON_HEADER)),
            "queue": _text(headers.get(QUEUE_HEADER)), "payload": payload}


def peek(connection, queue, limit=10):
    """Up to ``limit`` records (:func:`as_record`) from the head of ``queue``, leaving every
    message in it: they are read unacknowledged and go back when the channel closes."""
    records = []
    channel = connection.channel()
    try:
        for _ in range(limit):
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            records.append(as_record(raw_message(message)))
    finally:
        channel.close()  # the broker puts back what was read
    return records


def raw_message(message):
    """``body`` (bytes), ``headers``, ``properties`` and ``routing_key`` of a py-amqp
    message."""
    body = message.body  # py-amqp decodes bodies that declare an encoding
    return {"body": body.encode() if isinstance(body, str) else body,
            "headers": dict(message.headers or {}), "properties": dict(message.properties),
            "routing_key": message.delivery_info["routing_key"]}


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
