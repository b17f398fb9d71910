"""A lean HTTP/1.1 client: one persistent connection, one request at a time.

The load driver runs on the machine it measures, so every microsecond it spends per request is
taken from the system under test. ``http.client`` parses each response's headers with the
``email`` package and wraps the socket in buffered file objects; this client writes a request
in one send and reads the answer itself (measured at C=32 on this stack: the driver's CPU per
order fell from 270-350 us to 120-150). It speaks only what the benchmark needs: a request with
an optional body, and an answer framed by ``Content-Length``, chunked transfer coding, or the
end of the connection.
"""
import socket
from urllib.parse import urlsplit

__all__ = ["KeepAlive", "ProtocolError", "HTTP_ERRORS"]

MAX_HEAD_BYTES = 65536  # status line plus headers; a longer head is refused, not buffered
RECV_BYTES = 65536


class ProtocolError(Exception):
    """The server's answer is not an HTTP/1.x response this client can read."""


#: what :meth:`KeepAlive.request` raises when a request fails (socket errors, timeouts, a
#: connection closed mid-answer, a malformed answer)
HTTP_ERRORS = (OSError, ProtocolError)


class KeepAlive:
    """One persistent HTTP/1.1 connection to a base URL (``http://host:port/prefix``).

    Connects on the first request and again on the next one after an error or after the server
    said it would close. Never retries a request: a failed request is the caller's to count.
    """

    def __init__(self, base_url, timeout):
        u = urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"not an http:// URL: {base_url!r}")
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.connects = 0
        self._sock = None
        self._buffer = b""
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == 80 else f"{host}:{self.port}"

    def request(self, method, path, body=None):
        """Send ``method prefix+path`` with the JSON ``body`` (bytes) if given; return
        ``(status, body bytes)`` of the final response. Raises one of :data:`HTTP_ERRORS`."""
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        if self._sock is None:
            self._connect()
        try:
            self._sock.sendall(data)
            status, content, close = self._read_response(method)
        except HTTP_ERRORS:
            self.close()
            raise
        if close:
            self.close()
        return status, content

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""

    def _connect(self):
        self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        # small requests on a persistent connection: without this, Nagle's algorithm holds a
        # request back until the previous answer's ACK
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1

    def _read_response(self, method):
        """(status, body, the connection closes after it)."""
        while True:
            version, status, headers = self._read_head()
            if status >= 200 or status == 101:
                break  # 1xx answers are interim: the final one follows
        connection = headers.get("connection", "").lower()
        close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if method == "HEAD" or status in (101, 204, 304):
            return status, b"", close
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, self._read_chunked(), close
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                length = -1
            if length < 0:
                raise ProtocolError(f"bad Content-Length: {headers['content-length']!r}")
            return status, self._read_exactly(length), close
        return status, self._read_to_close(), True

    def _read_head(self):
        lines = self._read_until(b"\r\n\r\n", MAX_HEAD_BYTES).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"malformed header line: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        return version, int(code), headers

    def _read_chunked(self):
        parts = []
        while True:
            size_line = self._read_until(b"\r\n", MAX_HEAD_BYTES).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                size = -1
            if size < 0:
                raise ProtocolError(f"bad chunk size: {size_line[:40]!r}")
            if size == 0:
                while self._read_until(b"\r\n", MAX_HEAD_BYTES):  # trailers, then a blank line
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            if self._read_exactly(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")

    def _read_until(self, delimiter, limit):
        """The bytes before ``delimiter`` (which is consumed too)."""
        start = 0
        while (end := self._buffer.find(delimiter, start)) < 0 and len(self._buffer) <= limit:
            start = max(0, len(self._buffer) - len(delimiter) + 1)
            self._fill()
        if end < 0 or end > limit:
            raise ProtocolError(f"no {delimiter!r} in the first {limit} bytes")
        found, self._buffer = self._buffer[:end], self._buffer[end + len(delimiter):]
        return found

    def _read_exactly(self, n):
        while len(self._buffer) < n:
            self._fill()
        found, self._buffer = self._buffer[:n], self._buffer[n:]
        return found

    def _read_to_close(self):
        while self._receive():
            pass
        found, self._buffer = self._buffer, b""
        return found

    def _fill(self):
        if not self._receive():
            raise ConnectionAbortedError("the server closed the connection mid-answer")

    def _receive(self):
        """Append what the socket holds to the buffer; False at the end of the stream."""
        chunk = self._sock.recv(RECV_BYTES)
        self._buffer += chunk
        return bool(chunk)
