"""The access log: one line per request, on the logger ``gateway.access``, when the config's
``ACCESS_LOG`` is true.

Each line's message is ``METHOD path status duration_ms``, and its fields (``LOG_FORMAT=json``)
are ``method``, ``path``, ``status``, ``duration_ms`` and ``request_id``. The path is without
its query string: a query may carry what does not belong in a log.
"""
import logging

from flask import g, request

from gateway.request_id import elapsed

log = logging.getLogger("gateway.access")


def init_app(app):
    """Log each request of ``app``, if its ``ACCESS_LOG`` is true."""
    if not app.config.get("ACCESS_LOG"):
        return
    app.after_request(_log_request)


def _log_request(response):
    seconds = elapsed()
    duration_ms = None if seconds is None else round(seconds * 1000, 3)
    log.info("%s %s %s %s ms", request.method, request.path, response.status_code, duration_ms,
             extra={"method": request.method, "path": request.path,
                    "status": response.status_code, "duration_ms": duration_ms,
                    "request_id": g.get("request_id")})
    return response
