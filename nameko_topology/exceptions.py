"""Errors raised by the topology framework, and the library errors it treats as one kind."""
from amqp.exceptions import ConnectionError as AmqpConnectionError
from kombu.exceptions import OperationalError

#: what settling a message or publishing raises when the broker connection is gone: amqp's own
#: errors, socket errors (ECONNRESET, EPIPE) and kombu's wrapper after its retries
CONNECTION_ERRORS = (AmqpConnectionError, OSError, OperationalError)


class TopologyError(Exception):
    """A topology file that cannot be used: unreadable, not YAML, or invalid.

    ``problems`` is a list of ``(path, message)`` pairs, where ``path`` is the place in the
    file (``queues[1].dead_letter.exchange``; empty for the whole file).
    """

    def __init__(self, source, problems):
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {len(self.problems)} problem(s):"]
        lines += [f"  {source}: {path or '<file>'}: {message}" for path, message in self.problems]
        super().__init__("\n".join(lines))


class TopologyMismatch(Exception):
    """The broker already holds an entity declared with different arguments (406)."""


class InvalidMessage(Exception):
    """A delivered or outgoing message that does not match its declared shape."""


class MessageTooLarge(InvalidMessage):
    """A message body over the configured ``MAX_MESSAGE_BYTES``."""


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: dead-letter it at once.

    Any other exception from a handler is treated as transient and retried, up to the queue's
    ``retry.max_attempts``.
    """
