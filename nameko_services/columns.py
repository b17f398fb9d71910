"""Column types shared by the services' tables."""
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

ELLIPSIS = "\u2026"


class TruncatedString(TypeDecorator):
    """A ``String(length)`` column that stores at most ``length`` characters of any value,
    ending a cut one with an ellipsis.

    For texts that come from messages (a failure reason, a notice built from one): SQLite
    stores a longer string as it is, but PostgreSQL refuses it, failing the whole transaction
    and every message of its batch. A reason cut short is still a reason.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        length = self.impl.length
        if value is None or len(value) <= length:
            return value
        return value[:length - 1] + ELLIPSIS
