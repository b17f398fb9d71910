"""``python -m gateway``: serve the gateway with waitress, a production WSGI server.

Environment: ``PORT`` (default 8080), ``GATEWAY_THREADS`` (default 32),
``GATEWAY_CONNECTION_LIMIT`` (default 1000), ``AMQP_URI``, ``LOG_LEVEL`` (default INFO).
"""
import logging
import os
import signal
import sys

import waitress

from gateway.app import create_app
from gateway.rpc import redact_uri

log = logging.getLogger("gateway")


def main():
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    port = int(os.environ.get("PORT", "8080"))
    threads = int(os.environ.get("GATEWAY_THREADS", "32"))
    # keep-alive clients hold a connection each; waitress's default of 100 turns client 101
    # away until another disconnects
    connection_limit = int(os.environ.get("GATEWAY_CONNECTION_LIMIT", "1000"))

    app = create_app()
    rpc = app.extensions["rpc"]
    server = waitress.create_server(
        app, host="0.0.0.0", port=port, threads=threads, connection_limit=connection_limit,
        # Flask answers bodies over MAX_BODY_BYTES with a JSON 413; this cap only keeps
        # waitress from buffering huge uploads before Flask gets to say so.
        max_request_body_size=max(1 << 20, app.config["MAX_BODY_BYTES"]),
        ident="gateway")
    log.info("gateway listening on http://0.0.0.0:%s (threads=%d, broker=%s)",
             server.effective_port, threads, redact_uri(app.config["AMQP_URI"]))
    # waitress stops on SystemExit/KeyboardInterrupt (letting running requests finish for a
    # few seconds); make SIGTERM, what process managers send, do the same.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.run()
    finally:
        rpc.close()
        log.info("gateway stopped")


if __name__ == "__main__":
    main()
