"""Broker URIs as they may be shown: in logs, errors and banners."""
from kombu.utils.url import maybe_sanitize_url


def redact(uri):
    """``uri`` with every password masked, also in a failover list (``amqp://...;amqp://...``),
    where kombu's ``maybe_sanitize_url`` alone masks only the first."""
    return ";".join(maybe_sanitize_url(part) for part in uri.split(";"))
