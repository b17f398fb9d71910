"""The gateway's server side: each request's body is read in full, within a deadline, before
the Flask app is given a thread.

A WSGI server hands a request to a thread as soon as its headers are in, and the thread then
blocks on the body: 33 clients uploading a byte every 0.2 s took all 32 threads and kept
``/health`` waiting for 9.8 s. Here Granian runs the ASGI interface instead; :class:`RequestBuffer`
reads the body in the event loop, where a slow upload costs a coroutine, not a thread, and
answers 408 to one that has not arrived within the deadline. Only then does a2wsgi's adapter
run the WSGI app on its thread pool.

It also answers a request line or headers over the gateway's limits with a JSON 414 or 431.
Granian's HTTP library has its own limits, far above these (a target of 65,534 bytes or more,
over 100 headers, a head well over its 408 KiB read buffer), and answers them itself, before
any Python runs, with an empty body; so it does a request it cannot parse (400). Those are the
only answers that are not JSON.
"""
import asyncio
import json
import logging

from a2wsgi import WSGIMiddleware

log = logging.getLogger(__name__)

# Headers that describe how the body travelled; once the body is buffered they are replaced by
# the Content-Length of what was read.
FRAMING_HEADERS = (b"content-length", b"transfer-encoding")

# Above any URL the API makes (ids are at most 100 characters) and at the common proxy limit.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024


class RequestBuffer:
    """ASGI app running the WSGI app ``wsgi_app`` on ``threads`` threads, each request's body
    read first: within ``body_timeout`` seconds (else ``408``), and no more than
    ``max_body_bytes`` + 1 bytes of it.

    A body over ``max_body_bytes`` is cut there and handed on with that length, so the app
    (whose limit it is) answers ``413`` in its own words, without anyone holding the rest.
    A chunked body reaches the app with a ``Content-Length``, as it would behind a buffering
    proxy: Werkzeug reads no body at all from a WSGI server that gives it neither a length
    nor ``wsgi.input_terminated``, and a2wsgi gives neither.
    """

    def __init__(self, wsgi_app, *, threads, body_timeout, max_body_bytes):
        self.wsgi_app = wsgi_app
        self.body_timeout = body_timeout
        self.max_body_bytes = max_body_bytes
        self.app = WSGIMiddleware(wsgi_app, workers=threads)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = head_refusal(scope)
        if refusal:
            return await send_error(send, *refusal)
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self.read_body(receive)
        except TimeoutError:
            return await send_error(
                send, 408, f"the request body did not arrive within {self.body_timeout:g} s",
                field="body")
        if body is None:
            # Granian reports a malformed chunked body as a disconnect too, and a client that
            # only closed its sending side still reads: both get an answer.
            return await send_error(send, 400, "the request body is malformed or cut off",
                                    field="body")
        await self.run_app(with_length(scope, len(body)), replay(body), send)

    async def run_app(self, scope, receive, send):
        """Run the app; if it fails before it answers (a2wsgi raises what the WSGI side
        raises), answer a JSON 500 rather than leave Granian to answer in plain text."""
        started = False

        async def tracking_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed in the server", scope["method"], scope["path"])
            if not started:
                await send_error(send, 500, "internal error")

    async def read_body(self, receive):
        """The request body, at most ``max_body_bytes`` + 1 bytes of it; None on a disconnect."""
        chunks, size = [], 0
        while size <= self.max_body_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)[:self.max_body_bytes + 1]


def head_refusal(scope):
    """(status, error) when the request line or headers of ``scope`` are over the limits."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
    if target > MAX_TARGET_BYTES:
        return 414, f"the request target is over {MAX_TARGET_BYTES} bytes"
    # as on the wire: "name: value\r\n"
    if sum(len(name) + len(value) + 4 for name, value in scope["headers"]) > MAX_HEADER_BYTES:
        return 431, f"the request headers are over {MAX_HEADER_BYTES} bytes"
    return None


def with_length(scope, length):
    """``scope`` with its framing headers replaced by ``Content-Length: length``."""
    headers = [(name, value) for name, value in scope["headers"]
               if name.lower() not in FRAMING_HEADERS]
    headers.append((b"content-length", str(length).encode("ascii")))
    return {**scope, "headers": headers}


def replay(body):
    """An ASGI ``receive`` that gives ``body`` in one message, then a disconnect.

    It is a coroutine function: a2wsgi's body reader passes what ``receive()`` returns to
    ``asyncio.run_coroutine_threadsafe``, which refuses the awaitable that Granian's own
    ``receive()`` returns (TypeError: every request with a body failed)."""
    messages = [{"type": "http.disconnect"},
                {"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop() if len(messages) > 1 else messages[0]

    return receive


async def send_error(send, status, error, field=None):
    """Answer ``status`` with the JSON ``{"error": error}`` (and ``"field"``, if given) and close
    the connection: what the client has not sent yet would be read as its next request."""
    body = json.dumps({"error": error} if field is None else {"error": error, "field": field})
    body = body.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode("ascii")),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
