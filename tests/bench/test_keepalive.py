"""The benchmark's HTTP client against real local servers: framing, keep-alive, and the errors it
raises for answers it cannot read."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.keepalive import HTTP_ERRORS, KeepAlive, ProtocolError


class EchoHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: answers with what it was sent."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(200, {"path": self.path, "body": body.decode(),
                           "type": self.headers["Content-Type"]})

    def do_GET(self):
        self._answer(404 if self.path.endswith("missing") else 200, {"path": self.path})

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api"
    server.shutdown()
    server.server_close()


HOLD = object()


class ScriptedServer:
    """Accepts connections and answers each request with the next of ``answers`` (raw bytes);
    ``None`` in their place closes the connection, ``HOLD`` keeps it open, the request
    unanswered, until the server is closed."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.answers:
            connection, _ = self.listener.accept()
            with connection:
                buffer = b""
                while self.answers:
                    if self.answers[0] is None:
                        self.answers.pop(0)
                        break
                    while b"\r\n\r\n" not in buffer:
                        chunk = connection.recv(65536)
                        if not chunk:
                            break
                        buffer += chunk
                    if b"\r\n\r\n" not in buffer:
                        break  # the client closed this connection
                    request, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.requests.append(request.decode())
                    answer = self.answers.pop(0)
                    if answer is HOLD:
                        self.closed.wait(10)
                        break
                    connection.sendall(answer)

    def close(self):
        self.closed.set()
        self.listener.close()


@pytest.fixture
def scripted():
    servers = []

    def start(*answers):
        servers.append(ScriptedServer(answers))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def test_requests_reuse_one_connection_and_carry_their_body(echo_url):
    client = KeepAlive(echo_url, timeout=5)
    answers = [client.request("POST", "/order", json.dumps({"n": n}).encode())
               for n in range(3)]
    status, missing = client.request("GET", "/missing")
    client.close()

    assert [status for status, _ in answers] == [200, 200, 200]
    assert [json.loads(body) for _, body in answers] == [
        {"path": "/api/order", "body": json.dumps({"n": n}), "type": "application/json"}
        for n in range(3)]
    assert (status, json.loads(missing)) == (404, {"path": "/api/missing"})
    assert client.connects == 1


def test_a_chunked_answer_is_put_together(scripted):
    server = scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
                      b"HTTP/1.1 204 No Content\r\n\r\n")
    client = KeepAlive(server.url, timeout=5)

    assert client.request("GET", "/a") == (200, b"hello, world")
    assert client.request("GET", "/b") == (204, b"")
    assert client.connects == 1


def test_interim_answers_are_skipped(scripted):
    server = scripted(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                      b"Content-Length: 2\r\n\r\nok")
    assert KeepAlive(server.url, timeout=5).request("POST", "/", b"{}") == (201, b"ok")


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\n\r\nok",  # no length: the body ends with the connection
], ids=["connection-close", "http-1.0", "close-delimited"])
def test_after_an_answer_that_ends_the_connection_the_next_request_reconnects(scripted, answer):
    server = scripted(answer, None, answer)
    client = KeepAlive(server.url, timeout=5)

    assert client.request("GET", "/") == (200, b"ok")
    assert client.request("GET", "/") == (200, b"ok")
    assert client.connects == 2
    assert len(server.requests) == 2


@pytest.mark.parametrize("answer, error", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "in the first 65536 bytes"),
])
def test_an_answer_it_cannot_read_raises_protocol_error(scripted, answer, error):
    server = scripted(answer)
    client = KeepAlive(server.url, timeout=5)

    with pytest.raises(ProtocolError, match=error):
        client.request("GET", "/")
    assert client._sock is None  # the connection is not reused after it


def test_a_connection_closed_mid_answer_is_an_error_not_a_short_body(scripted):
    server = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", None)

    with pytest.raises(HTTP_ERRORS, match="closed the connection mid-answer"):
        KeepAlive(server.url, timeout=5).request("GET", "/")


def test_no_answer_within_the_timeout_raises(scripted):
    server = scripted(HOLD)

    with pytest.raises(socket.timeout):
        KeepAlive(server.url, timeout=0.2).request("GET", "/")


def test_only_http_urls_are_accepted():
    with pytest.raises(ValueError, match="not an http:// URL"):
        KeepAlive("https://127.0.0.1:8443/", timeout=1)
