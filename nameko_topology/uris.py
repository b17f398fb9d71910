"""Broker URIs: as they may be shown (logs, errors, banners), and failover lists.

``AMQP_URI`` may name several nodes of a cluster in kombu's failover form,
``amqp://u:p@h1:5672/v;amqp://u:p@h2:5672/v``: kombu tries them in turn.
"""
import re

from kombu.utils.url import maybe_sanitize_url

#: the password part of any ``scheme://user:password@`` in free text
_PASSWORD_IN_URI = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s;]*:)[^@\s;/]*@", re.I)


def redact(uri):
    """``uri`` with every password masked, also in a failover list (``amqp://...;amqp://...``),
    where kombu's ``maybe_sanitize_url`` alone masks only the first."""
    return ";".join(maybe_sanitize_url(part) for part in uri.split(";"))


def redact_text(text):
    """``text`` (a log line, an error message) with the password of every URI in it masked."""
    return _PASSWORD_IN_URI.sub(r"\g<head>**@", text)


def nodes(uri):
    """The URIs of a failover list, one per node (a plain URI: itself alone)."""
    return [part for part in (part.strip() for part in uri.split(";")) if part]


def connect(connection):
    """Connect kombu ``connection``, trying each node of its failover list once, in turn,
    without pausing; raises the last node's error if none answers.

    kombu's ``ensure_connection(max_retries=0)`` tries the current node only, so a client that
    makes a new ``Connection`` per attempt would keep asking the first node - dead - for ever.
    """
    connection.ensure_connection(max_retries=max(len(connection.alt), 1) - 1,
                                 interval_start=0, interval_step=0, interval_max=0)
    return connection
