"""The access log: one line per request, on the logger ``gateway.access``, when the config's
``ACCESS_LOG`` is true.

Each line's message is ``METHOD path status duration_ms``, and its fields (``LOG_FORMAT=json``)
are ``method``, ``path``, ``status``, ``duration_ms`` and ``request_id``. The path is without
its query string: a query may carry what does not belong in a log.
"""
import logging
import time

from flask import g, request

log = logging.getLogger("gateway.access")


def init_app(app):
    """Log each request of ``app``, if its ``ACCESS_LOG`` is true."""
    if not app.config.get("ACCESS_LOG"):
        return
    app.before_request(_start_clock)
    app.after_request(_log_request)


def _start_clock():
    g.access_started = time.perf_counter()


def _log_request(response):
    started = g.get("access_started")
    duration_ms = (None if started is None
                   else round((time.perf_counter() - started) * 1000, 3))
    log.info("%s %s %s %s ms", request.method, request.path, response.status_code, duration_ms,
             extra={"method": request.method, "path": request.path,
                    "status": response.status_code, "duration_ms": duration_ms,
                    "request_id": g.get("request_id")})
    return response
