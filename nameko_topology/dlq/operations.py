"""The dead-letter operations that ``nameko-topology dlq`` and the gateway's ``/admin`` API share.

Every operation reads the queue from head to tail with a :class:`~.reader.QueueReader`, acks
only what it removes, and closes its channel, so the broker puts back everything else. A
replayed or moved message is removed from the dead-letter queue only after the broker has
confirmed its copy; a copy that cannot be routed (``basic.return``) or is refused leaves the
dead letter where it was, and the outcome says why. A process killed in between leaves the
message in the queue (and perhaps its copy delivered too), never neither.
"""
import datetime
import re
import socket
import time

import amqp
import kombu
from amqp.exceptions import AccessRefused, ChannelError
from kombu.exceptions import OperationalError

from nameko_topology.dead_letters import dead_letter_queue, raw_message
from nameko_topology.delivery import copied_body, copied_headers, copied_properties, is_short_string
from nameko_topology.dlq.reader import QueueReader
from nameko_topology.dlq.records import (
    SHOW_TEXT_CHARS, first_death, original_route, pretty_body, record, record_id,
    replay_headers,
)
from nameko_topology.management import ManagementApi, ManagementError
from nameko_topology.messages import DEAD_LETTER_ID_HEADER, REASON_HEADER
from nameko_topology.uris import redact

#: seconds to wait for the broker's confirm of one copy
CONFIRM_TIMEOUT = 10.0
PERSISTENT = 2


class DlqError(Exception):
    """An operation could not be done (no broker, no such queue, ...); the text says why and
    never holds a password."""


class NoSuchQueue(DlqError):
    """The queue to read does not exist."""


class Selection:
    """Which dead letters an operation takes: ``ids``, or those whose reason contains
    ``reason`` (case-insensitive), or ``all``; and only those dead-lettered at or after
    ``since`` (an aware datetime; a record with no time does not match it)."""

    def __init__(self, ids=(), reason=None, all=False, since=None):
        self.ids = list(dict.fromkeys(ids))
        self.reason = reason.lower() if reason else None
        self.all = all or (not self.ids and self.reason is None)
        self.since = since

    def matches(self, message, rec=None):
        if self.ids and record_id(message) not in self.ids:
            return False
        if self.reason is not None or self.since is not None:
            rec = rec or record(message)
            if self.reason is not None and self.reason not in (rec["reason"] or "").lower():
                return False
            if self.since is not None and (
                    rec["dead_lettered_at"] is None
                    or datetime.datetime.fromisoformat(rec["dead_lettered_at"]) < self.since):
                return False
        return True


class DeadLetters:
    """The dead letters of the topology's vhost at ``amqp_uri``.

    ``queue`` is the dead-letter queue operations read by default (else the one the topology's
    dead-letter exchanges feed); ``management_url`` the management API (else derived from the
    URI: :class:`~nameko_topology.management.ManagementApi`).
    """

    def __init__(self, amqp_uri, topology, queue=None, management_url=None, window=None):
        self.amqp_uri = amqp_uri
        self.topology = topology
        self.default_queue = queue
        self.management_url = management_url
        self.window = window

    # -- reading ------------------------------------------------------------------------------

    def list(self, queue=None, reason=None, since=None, limit=None):
        """Records of the dead letters matching ``reason`` / ``since``, head first, at most
        ``limit``; the queue keeps every message, in its order."""
        selection = Selection(reason=reason, since=since)
        # without a filter, the first `limit` messages are all it reads
        window = limit if limit and reason is None and since is None else self.window
        records = []
        with self._reader(queue, window) as reader:
            for message in reader:
                raw = raw_message(message)
                rec = record(raw, self.topology)
                if selection.matches(raw, rec):
                    records.append(rec)
                    if limit is not None and len(records) >= limit:
                        break
        return records

    def show(self, dead_letter_id, queue=None):
        """The full record of dead letter ``dead_letter_id`` (every header, ``body`` pretty
        when JSON), or None."""
        with self._reader(queue) as reader:
            for message in reader:
                raw = raw_message(message)
                if record_id(raw) == dead_letter_id:
                    rec = record(raw, self.topology, text_chars=SHOW_TEXT_CHARS)
                    rec["body"] = pretty_body(raw["body"])
                    return rec
        return None

    def queue_stats(self):
        """``{queue: {"messages", "ready", "unacked", "consumers"}}`` of every declared queue,
        from the management API (its figures lag by up to one statistics interval); a queue
        missing on the broker has ``"missing": True``."""
        api = self._management()
        try:
            listed = api.get(api.path("queues", api.vhost) + "?columns=name,messages,"
                             "messages_ready,messages_unacknowledged,consumers")
        except ManagementError as exc:
            raise DlqError(f"cannot read the queues: {exc}") from None
        found = {queue.get("name"): queue for queue in listed or ()}
        stats = {}
        for name in self.topology.queues:
            queue = found.get(name)
            stats[name] = {"missing": True} if queue is None else {
                "messages": queue.get("messages", 0),
                "ready": queue.get("messages_ready", 0),
                "unacked": queue.get("messages_unacknowledged", 0),
                "consumers": queue.get("consumers", 0)}
        return stats

    # -- acting -------------------------------------------------------------------------------

    def replay(self, selection, to_queue=None, dry_run=False, rate=None, queue=None):
        """Publish the selected dead letters back, each to its original exchange and routing
        key (or to ``to_queue``), as fresh messages (see
        :func:`~nameko_topology.dlq.records.replay_headers`); at most ``rate`` a second.

        :returns: ``{"replayed": [{"id", "exchange", "routing_key"}], "not_replayed":
            [{"id", "error"}], "missing": [ids not found]}``; with ``dry_run`` nothing is
            published or removed and ``replayed`` lists what would be.
        """
        def target(raw):
            headers = raw["headers"]
            framework = DEAD_LETTER_ID_HEADER in headers or REASON_HEADER in headers
            exchange, routing_key = original_route(headers, first_death(headers), framework)
            if to_queue is not None:
                return "", to_queue, replay_headers(headers, exchange, routing_key)
            return exchange, routing_key, replay_headers(headers, exchange, routing_key)

        return self._republish(selection, target, "replayed", dry_run, rate, queue)

    def move(self, selection, to_queue, queue=None):
        """Move the selected dead letters, as they are (every header kept), to ``to_queue``:
        a parking queue. Returns what :meth:`replay` does, under ``"moved"``."""
        return self._republish(selection, lambda raw: ("", to_queue, raw["headers"]),
                               "moved", False, None, queue)

    def purge(self, selection, queue=None):
        """Delete the selected dead letters: ``{"purged": [ids], "missing": [ids]}``."""
        purged = []
        with self._reader(queue) as reader:
            for message in reader:
                raw = raw_message(message)
                if selection.matches(raw):
                    reader.ack(message)
                    purged.append(record_id(raw))
        # the channel's close-ok comes after the broker has handled every ack before it
        return {"purged": purged, "missing": _missing(selection, purged)}

    def _republish(self, selection, target, done_key, dry_run, rate, queue):
        done, failed = [], []
        interval = 1.0 / rate if rate else 0.0
        next_at = time.monotonic()
        with self._reader(queue) as reader:
            publisher = _ConfirmedPublisher(reader.connection)
            for message in reader:
                raw = raw_message(message)
                if not selection.matches(raw):
                    continue
                dead_letter_id = record_id(raw)
                exchange, routing_key, headers = target(raw)
                if exchange is None or routing_key is None:
                    failed.append({"id": dead_letter_id, "error": "its original exchange and "
                                   "routing key are unknown: give a queue to send it to"})
                    continue
                if dry_run:
                    done.append({"id": dead_letter_id, "exchange": exchange,
                                 "routing_key": routing_key})
                    continue
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the --rate cap
                next_at = max(next_at, time.monotonic()) + interval
                error = publisher.publish(message, exchange, routing_key, headers)
                if error is None:
                    reader.ack(message)  # only now: its copy is confirmed
                    done.append({"id": dead_letter_id, "exchange": exchange,
                                 "routing_key": routing_key})
                else:
                    failed.append({"id": dead_letter_id, "error": error})
            publisher.close()
        seen = [item["id"] for item in done + failed]
        return {done_key: done, "not_" + done_key: failed, "missing": _missing(selection, seen)}

    def _reader(self, queue, window=None):
        queue = queue or self.dead_letter_queue()
        spec = self.topology.queues.get(queue)
        if spec is not None and spec.delivery_limit is not None:
            # RabbitMQ 3.10 counts each requeue as a delivery: a few reads would drop them
            raise DlqError(f"queue {queue!r} is a quorum queue with a delivery_limit: every "
                           "read puts its messages back with x-delivery-count + 1, and RabbitMQ "
                           "drops (or dead-letters) them past the limit; declare the "
                           "dead-letter queue without one")
        return _Session(self, queue, window or self.window, whole=self._is_quorum(queue))

    def _is_quorum(self, queue):
        """Whether ``queue`` is a quorum queue: as the topology declares it, else as the
        management API says; when neither can tell, taken as one (reading it whole is slower,
        never wrong)."""
        spec = self.topology.queues.get(queue)
        if spec is not None:
            return spec.type == "quorum"
        try:
            api = self._management()
            return api.entity("queue", queue).get("type") != "classic"
        except ManagementError:
            return True

    def _management(self):
        return ManagementApi(self.amqp_uri, url=self.management_url)

    def dead_letter_queue(self):
        if self.default_queue:
            return self.default_queue
        try:
            return dead_letter_queue(self.topology)
        except ValueError as exc:
            raise DlqError(f"{exc} (--queue)") from None


def _missing(selection, seen):
    seen = set(seen)
    return [dead_letter_id for dead_letter_id in selection.ids if dead_letter_id not in seen]


class _Session(QueueReader):
    """A :class:`QueueReader` on a connection of its own, opened and closed with it; broker
    errors become :class:`DlqError`."""

    def __init__(self, dead_letters, queue, window, whole):
        self._kombu = kombu.Connection(dead_letters.amqp_uri, connect_timeout=5)
        super().__init__(None, queue, window, whole)
        self._uri = redact(dead_letters.amqp_uri)

    def __enter__(self):
        errors = (OperationalError, AccessRefused, OSError, *self._kombu.connection_errors)
        try:
            self._kombu.connect()
        except errors as exc:
            self._kombu.release()
            raise DlqError(f"cannot reach the broker at {self._uri}: {exc}") from None
        self.connection = self._kombu
        try:
            return super().__enter__()
        except ChannelError as exc:
            self._kombu.release()
            error = NoSuchQueue if getattr(exc, "code", None) == 404 else DlqError
            raise error(f"cannot read queue {self.queue!r} at {self._uri}: {exc}") from None

    def __exit__(self, *exc_info):
        try:
            super().__exit__(*exc_info)
        finally:
            self._kombu.release()


class _ConfirmedPublisher:
    """Publishes one message at a time, persistent and mandatory, and waits for its confirm.

    One at a time, so that a ``basic.return`` (which RabbitMQ sends before the confirm of the
    same message) belongs to the message just published.
    """

    def __init__(self, connection):
        self.connection = connection
        self.channel = None

    def publish(self, message, exchange, routing_key, headers):
        """None once the broker confirmed the copy, else why not."""
        if self.channel is None:
            self._open()
        body, content_encoding = copied_body(message)
        properties = copied_properties(message.properties)
        content_type = message.properties.get("content_type")
        if is_short_string(content_type) and content_type:
            properties["content_type"] = content_type
        priority = message.properties.get("priority")
        if type(priority) is int and 0 <= priority <= 255:
            properties["priority"] = priority
        self._returned = self._confirmed = None
        self._sequence += 1
        try:
            self.channel.basic_publish(
                amqp.Message(body, application_headers=copied_headers(headers),
                             content_encoding=content_encoding, delivery_mode=PERSISTENT,
                             **properties),
                exchange=exchange, routing_key=routing_key, mandatory=True)
            deadline = time.monotonic() + CONFIRM_TIMEOUT
            while self._confirmed is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                self.connection.drain_events(timeout=remaining)
        except socket.timeout:
            self.close()  # a late confirm must not be taken for the next message's
            return f"no confirm from the broker within {CONFIRM_TIMEOUT:g} s"
        except ChannelError as exc:  # e.g. the exchange does not exist: the channel is closed
            self.channel = None
            return f"the broker refused it: {exc}"
        if self._returned is not None:
            return f"unroutable: {self._returned}"
        return None if self._confirmed else "the broker refused it (basic.nack)"

    def _open(self):
        self.channel = self.connection.channel()
        self.channel.confirm_select()
        self._sequence = 0
        self.channel.events["basic_return"].add(self._on_return)
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    def _on_return(self, exc, exchange, routing_key, message):
        self._returned = f"{exc.reply_text} (exchange {exchange!r}, routing key {routing_key!r})"

    def _on_ack(self, delivery_tag, multiple):
        self._on_confirm(delivery_tag, multiple, True)

    def _on_nack(self, delivery_tag, multiple):
        self._on_confirm(delivery_tag, multiple, False)

    def _on_confirm(self, delivery_tag, multiple, positive):
        if delivery_tag == self._sequence or (multiple and delivery_tag > self._sequence):
            self._confirmed = positive

    def close(self):
        if self.channel is not None:
            try:
                self.channel.close()
            except (OSError, *self.connection.connection_errors,
                    *self.connection.channel_errors):
                pass
            self.channel = None


_SINCE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text, now=None):
    """``--since``: an ISO-8601 time (UTC if it names no zone) or a duration ago (``30s``,
    ``15m``, ``2h``, ``7d``) as an aware datetime; ``ValueError`` otherwise."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    match = _SINCE.match(text.strip())
    if match:
        return now - datetime.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO-8601 time nor a duration such as "
                         "30s, 15m, 2h or 7d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)
