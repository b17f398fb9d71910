"""``python -m gateway``: serve the gateway with Granian, a production HTTP server.

Granian parses HTTP and manages connections in Rust, outside the GIL, and calls the Flask app on
a pool of Python threads. Its worker process builds the app with :func:`server_app`.

Environment: ``PORT`` (default 8080), ``GATEWAY_THREADS`` (threads running requests, default
32), ``GATEWAY_CONNECTION_LIMIT`` (connections served at once, default 1000), ``AMQP_URI``,
``LOG_LEVEL`` (default INFO), ``GC_FREEZE_AT_START`` (default true: see :func:`server_app`).
"""
import gc
import logging
import os

from granian import Granian
from granian.constants import Interfaces

from gateway.app import create_app
from nameko_topology.constants import DEFAULT_AMQP_URI
from nameko_topology.uris import redact

log = logging.getLogger("gateway")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level):
    """The worker's logging: everything at ``level`` and above to stderr, Granian's own too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}},
        "handlers": {"console": {"class": "logging.StreamHandler",
                                 "stream": "ext://sys.stderr", "formatter": "default"}},
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {"_granian": {"level": level, "handlers": [], "propagate": True}},
    }


def server_app():
    """The app the server runs: :func:`gateway.app.create_app`, then ``gc.freeze()`` unless
    ``GC_FREEZE_AT_START`` is false.

    Freezing keeps the objects of start-up (Flask, Werkzeug, kombu: most of what the process
    holds) out of the collector's full passes, which otherwise stop every request thread for
    tens of milliseconds (measured: 25-76 ms under load); see
    ``nameko_topology/gcfreeze.py``, which does the same for the services.
    """
    app = create_app()
    if os.environ.get("GC_FREEZE_AT_START", "true").strip().lower() not in ("0", "false", "no"):
        gc.freeze()
    return app


def main():
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format=LOG_FORMAT)
    port = int(os.environ.get("PORT", "8080"))
    threads = int(os.environ.get("GATEWAY_THREADS", "32"))
    connection_limit = int(os.environ.get("GATEWAY_CONNECTION_LIMIT", "1000"))
    log.info("gateway starting on http://0.0.0.0:%s (threads=%d, broker=%s)", port, threads,
             redact(os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)))
    # One worker process: the app's RPC client multiplexes every request's call over one
    # connection, and a second worker would only add a second client competing for the cores.
    # Granian stops on SIGINT and SIGTERM, letting requests in flight finish.
    Granian(
        "gateway.__main__:server_app", factory=True, interface=Interfaces.WSGI,
        address="0.0.0.0", port=port, workers=1, blocking_threads=threads,
        # Granian holds a backpressure slot per keep-alive connection, not per request: a
        # limit of `threads` would leave client number threads+1 unserved until another leaves
        backpressure=connection_limit, log_dictconfig=logging_config(level),
    ).serve()
    log.info("gateway stopped")


if __name__ == "__main__":
    main()
