"""A fake RPC client for the list routes, paging as the services do (nameko_topology.pages); and
``server()``, the gateway's server app (gateway/server.py) on it, for Granian in a test."""
import os

from gateway.app import create_app
from gateway.rpc import RpcTimeout
from gateway.server import RequestBuffer


class PagingRpc:
    """Serves ``rows[service]`` a page at a time, as ``read_page`` does: the cursor is the
    position (1-based) of the last row of the previous page, in decimal. Records each call."""

    def __init__(self, rows):
        self.rows = rows
        self.calls = []
        self.fail_at = None  # the call number that raises, if any

    def call(self, service, method, timeout=None, context=None, **kwargs):
        self.calls.append((method, kwargs))
        if self.fail_at == len(self.calls):
            raise RpcTimeout("no reply within 3s")
        key = "after" if method == "list_notifications" else "cursor"
        after = int(kwargs[key] or 0)
        rows = [row for row in self.rows[method]
                if all(kwargs.get(name) in (None, row[name]) for name in ("status", "item")
                       if isinstance(row, dict) and name in row)]
        positions = [(position, row) for position, row in enumerate(rows, 1) if position > after]
        chosen = positions[:kwargs["limit"]]
        next_key = chosen[-1][0] if chosen else after
        return {"items": [row for _, row in chosen],
                "next": next_key if key == "after" else str(next_key),
                "more": len(positions) > kwargs["limit"]}

    def check_broker(self, timeout=1.0):
        pass

    @classmethod
    def with_rows(cls, count):
        """``count`` orders (every third REJECTED, odd ones of gadget-X), processed ids and
        notices."""
        return cls({
            "list_orders": [order(n, status="REJECTED" if n % 3 == 0 else "CONFIRMED",
                                  item="gadget-X" if n % 2 else "widget-A")
                            for n in range(1, count + 1)],
            "list_processed": [f"o-{n}" for n in range(1, count + 1)],
            "list_notifications": [{"id": n, "order_id": f"o-{n}"}
                                   for n in range(1, count + 1)],
        })


def order(n, status="CONFIRMED", item="widget-A"):
    return {"order_id": f"o-{n}", "item": item, "quantity": 1, "status": status,
            "reason": None, "correlation_id": None, "created_at": float(n)}


def server():
    """Granian's factory: the gateway on a PagingRpc of ``PAGING_ROWS`` rows whose call number
    ``PAGING_FAIL_AT`` (if set) times out."""
    rpc = PagingRpc.with_rows(int(os.environ["PAGING_ROWS"]))
    if os.environ.get("PAGING_FAIL_AT"):
        rpc.fail_at = int(os.environ["PAGING_FAIL_AT"])
    app = create_app({"AMQP_URI": "amqp://unused", "RPC_TIMEOUT": 3}, rpc=rpc)
    return RequestBuffer(app, threads=4, body_timeout=5,
                         max_body_bytes=app.config["MAX_CONTENT_LENGTH"])
