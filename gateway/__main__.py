"""``python -m gateway``: serve the gateway with Granian, a production HTTP server.

Granian parses HTTP and manages connections in Rust, outside the GIL. It calls the app through
its ASGI interface: :class:`gateway.server.RequestBuffer` reads each body in the event loop,
then runs the Flask app on a pool of Python threads. Its worker process builds the app with
:func:`server_app`.

Environment: ``PORT`` (default 8080), ``GATEWAY_THREADS`` (threads running requests, default
32), ``GATEWAY_CONNECTION_LIMIT`` (connections open at once, default 10000, at most the hard
limit on open files less 256; more wait to be accepted), ``GATEWAY_BODY_TIMEOUT`` (seconds for
a request body to arrive, default 10, else 408), ``GATEWAY_IDLE_TIMEOUT`` (seconds a
connection may wait for, or send, the headers of its next request, default 5), ``AMQP_URI``,
``LOG_LEVEL`` (default INFO), ``LOG_FORMAT`` (``text``, the default, or ``json``: see
:mod:`nameko_topology.logformat`), ``ACCESS_LOG`` (see :mod:`gateway.access_log`),
``GC_FREEZE_AT_START`` (default true: see :func:`server_app`).
"""
import gc
import logging
import logging.config
import os
import resource

from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings

from gateway.app import create_app
from gateway.server import RequestBuffer
from nameko_topology.constants import DEFAULT_AMQP_URI
from nameko_topology.uris import redact

log = logging.getLogger("gateway")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level, log_format="text"):
    """The logging of both gateway processes: everything at ``level`` and above to stderr, in
    ``log_format`` (``LOG_FORMAT``), Granian's own too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": "nameko_topology.logformat.formatter",
                                   "log_format": log_format, "text_format": TEXT_FORMAT,
                                   "service": "gateway"}},
        "handlers": {"console": {"class": "logging.StreamHandler",
                                 "stream": "ext://sys.stderr", "formatter": "default"}},
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {"_granian": {"level": level, "handlers": [], "propagate": True},
                    # a line at INFO for every client that leaves before its answer: anyone
                    # could fill the log with them
                    "_granian.asgi.io": {"level": "WARNING"}},
    }


def setting(name, default, kind=int):
    """The environment variable ``name`` as a ``kind``, ``default`` when unset."""
    return kind(os.environ.get(name, default))


def server_app():
    """The app the server runs: :func:`gateway.app.create_app` in a
    :class:`gateway.server.RequestBuffer`, then ``gc.freeze()`` unless ``GC_FREEZE_AT_START``
    is false.

    Freezing keeps the objects of start-up (Flask, Werkzeug, kombu: most of what the process
    holds) out of the collector's full passes, which otherwise stop every request thread for
    tens of milliseconds (measured: 25-76 ms under load); see
    ``nameko_topology/gcfreeze.py``, which does the same for the services.
    """
    app = create_app()
    server = RequestBuffer(app, threads=setting("GATEWAY_THREADS", 32),
                           body_timeout=setting("GATEWAY_BODY_TIMEOUT", 10, float),
                           max_body_bytes=app.config["MAX_CONTENT_LENGTH"])
    if os.environ.get("GC_FREEZE_AT_START", "true").strip().lower() not in ("0", "false", "no"):
        gc.freeze()
    return server


# Files the process holds besides client connections: the listener, the broker connection,
# logs, the interpreter's own.
OTHER_FILES = 256


def connections_allowed(wanted):
    """How many of ``wanted`` connections the process can hold open: Granian raises the soft
    limit on open files to the hard one at start-up, but past the hard one it cannot accept."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, hard - OTHER_FILES))


def main():
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    log_config = logging_config(level, os.environ.get("LOG_FORMAT", "text"))
    logging.config.dictConfig(log_config)
    port = setting("PORT", 8080)
    wanted = setting("GATEWAY_CONNECTION_LIMIT", 10000)
    idle_timeout = setting("GATEWAY_IDLE_TIMEOUT", 5, float)
    connection_limit = connections_allowed(wanted)
    if connection_limit < wanted:
        # past its open-file limit the server could not accept, however many slots it had
        log.warning("GATEWAY_CONNECTION_LIMIT %d lowered to %d: the hard limit on open files is"
                    " %d", wanted, connection_limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    log.info("gateway starting on http://0.0.0.0:%s (threads=%d, connections=%d, broker=%s)",
             port, setting("GATEWAY_THREADS", 32), connection_limit,
             redact(os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)))
    # One worker process: the app's RPC client multiplexes every request's call over one
    # connection, and a second worker would only add a second client competing for the cores.
    # Granian stops on SIGINT and SIGTERM, letting requests in flight finish.
    Granian(
        "gateway.__main__:server_app", factory=True, interface=Interfaces.ASGI,
        address="0.0.0.0", port=port, workers=1, websockets=False,
        # HTTP/1 only: with HTTP/2 detection on, Granian waits without limit for a new
        # connection's first bytes, so the header timeout never closed one that sent nothing
        http=HTTPModes.http1,
        # one timeout for the headers of every request, the first included: it closes idle
        # keep-alive connections and connections that never send a request
        http1_settings=HTTP1Settings(header_read_timeout=int(idle_timeout * 1000)),
        # Granian holds a backpressure slot per open connection, not per request: a limit of
        # `threads` would leave client number threads+1 unserved until another leaves
        backpressure=connection_limit, log_dictconfig=log_config,
    ).serve()
    log.info("gateway stopped")


if __name__ == "__main__":
    main()
