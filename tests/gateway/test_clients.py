"""Slow, idle and oversized clients against the gateway as it is served: ``python -m gateway``
(Granian) in a stack of real processes, spoken to over raw sockets.

Every test process here is eventlet-patched (tests/conftest.py): the sockets are green, so one
green thread can pace hundreds of slow uploads.
"""
import http.client
import json
import socket
import time

import eventlet
import pytest
import requests

from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration

ORDER = b'{"item": "widget-A", "quantity": 1}'


@pytest.fixture(scope="module")
def patient(pipeline):
    """The whole pipeline, its gateway with timeouts long enough that no client of a test is
    closed while the test looks."""
    return pipeline("patient", env={"GATEWAY_BODY_TIMEOUT": "60", "GATEWAY_IDLE_TIMEOUT": "60"})


@pytest.fixture(scope="module")
def impatient(pipeline):
    """A gateway that gives a body, and an idle connection, one second."""
    return pipeline("impatient", services=("inventory",),
                    env={"GATEWAY_BODY_TIMEOUT": "1", "GATEWAY_IDLE_TIMEOUT": "1"})


def connect(stack):
    return socket.create_connection(("127.0.0.1", stack.gateway_port), timeout=30)


def exchange(stack, raw):
    """Send ``raw`` on a new connection; (status, JSON body or raw bytes, socket)."""
    sock = connect(stack)
    sock.sendall(raw)
    return read_response(sock) + (sock,)


def read_response(sock):
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    if response.getheader("Content-Type") == "application/json":
        body = json.loads(body)
    return response.status, body


def is_closed(sock):
    """True once the server has closed ``sock`` (it has nothing to read but the end)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def post_head(length):
    return (b"POST /order HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


class SlowUploads:
    """``count`` connections each uploading a POST /order body one byte every 0.2 s."""

    def __init__(self, stack, count, length=1000):
        self.socks = [connect(stack) for _ in range(count)]
        for sock in self.socks:
            sock.sendall(post_head(length))
        self.bytes_sent = 0
        self.thread = eventlet.spawn(self.drip, length)

    def drip(self, length):
        for _ in range(length - 1):  # never the last byte: the uploads stay unfinished
            for sock in self.socks:
                sock.sendall(b" ")
            self.bytes_sent += 1
            eventlet.sleep(0.2)  # the client's pace, which is what is under test

    def close(self):
        self.thread.kill()
        for sock in self.socks:
            sock.close()


def test_health_answers_within_a_second_while_200_slow_uploads_and_2000_idle_connections_are_open(
        patient):
    idle = [connect(patient) for _ in range(2000)]
    slow = SlowUploads(patient, 200)
    try:
        wait_for(lambda: slow.bytes_sent >= 3, description="the slow uploads under way")

        for _ in range(3):
            started = time.monotonic()
            health = requests.get(f"{patient.url}/health", timeout=10)
            assert time.monotonic() - started < 1.0  # the bound, the only timing here
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
        order = requests.post(f"{patient.url}/order", data=ORDER, timeout=10,
                              headers={"Content-Type": "application/json"})
        assert order.status_code == 202, order.text

        # they were all still open while the gateway answered
        assert not [sock for sock in idle + slow.socks if is_closed(sock)]
    finally:
        slow.close()
        for sock in idle:
            sock.close()


def test_a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_is_closed(impatient):
    status, body, sock = exchange(impatient, post_head(100) + b'{"item": ')

    assert status == 408
    assert body == {"error": "the request body did not arrive within 1 s", "field": "body"}
    wait_for(lambda: is_closed(sock), description="the server closing the connection")


def test_idle_connections_are_closed_after_the_idle_timeout(impatient):
    silent = connect(impatient)
    kept_alive, half_sent = connect(impatient), connect(impatient)
    kept_alive.sendall(b"GET /inventory HTTP/1.1\r\nHost: gateway\r\n\r\n")
    assert read_response(kept_alive)[0] == 200
    half_sent.sendall(b"GET /inventory HTTP/1.1\r\nHost: gat")

    wait_for(lambda: all(map(is_closed, (silent, kept_alive, half_sent))), timeout=10,
             description="the server closing all three connections")


def test_a_target_or_headers_over_the_gateways_limits_get_json_414_and_431(patient):
    status, body, _ = exchange(patient, b"GET /orders/" + b"a" * 9000 + b" HTTP/1.1\r\n"
                                        b"Host: gateway\r\n\r\n")
    assert (status, body) == (414, {"error": "the request target is over 8192 bytes"})

    status, body, _ = exchange(patient, b"GET /health HTTP/1.1\r\nHost: gateway\r\n"
                                        b"X-Padding: " + b"a" * 20000 + b"\r\n\r\n")
    assert (status, body) == (431, {"error": "the request headers are over 16384 bytes"})


@pytest.mark.parametrize("raw, status", [
    # a target of 65,534 bytes or more
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: gateway\r\n\r\n", 414),
    # more than 100 headers
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n",
     431),
    # a head well over the 408 KiB read buffer (just over it may still be read in full)
    (b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"a" * 2_000_000 + b"\r\n\r\n",
     431),
])
def test_beyond_the_http_librarys_own_limits_the_answer_has_an_empty_body(patient, raw, status):
    # Granian's HTTP library answers these itself, before the app is called: documented as the
    # exceptions to "errors are always JSON"
    assert exchange(patient, raw)[:2] == (status, b"")


def test_a_chunked_order_is_placed_and_an_oversized_or_malformed_chunked_body_refused(patient):
    chunked = (b"POST /order HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")

    status, order, _ = exchange(patient, chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(ORDER), ORDER))
    assert status == 202
    assert (order["item"], order["quantity"], order["status"]) == ("widget-A", 1, "PENDING")

    padded = ORDER + b" " * (16384 - len(ORDER))
    status, body, _ = exchange(patient, chunked + b"%x\r\n%s\r\n10\r\n%s\r\n0\r\n\r\n"
                               % (len(padded), padded, b" " * 16))
    assert status == 413
    assert body["field"] == "body"

    status, body, sock = exchange(patient, chunked + b"zz\r\n")
    assert (status, body) == (400, {"error": "the request body is malformed or cut off",
                                    "field": "body"})
    wait_for(lambda: is_closed(sock), description="the server closing the connection")
