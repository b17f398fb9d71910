"""The list routes' responses, from the services' pages (:mod:`nameko_topology.pages`).

With ``limit``, one page: its items as a JSON array and, when there is more, a
``Link: <...>; rel="next"`` header naming the next page. ``X-Next-Cursor`` gives the cursor
after the page on every page, the last one included, so a client that reached the end can ask
again later for what was added since. Without it, the whole list, as the
routes have always answered, but streamed: the gateway asks for one page after another and
writes each out as it comes (chunked), so no process holds the whole list and no RPC reply is
larger than one page.
"""
import logging
from urllib.parse import urlencode

from flask import Response, current_app, jsonify, request, stream_with_context

from nameko_topology.pages import MAX_PAGE_SIZE

log = logging.getLogger(__name__)


def respond(fetch, limit, cursor, cursor_parameter):
    """The response of a list route.

    :Parameters:
        fetch: ``fetch(cursor, limit)`` returns the page after ``cursor`` (``None``: the first)
            from the service, ``{"items": [...], "next": ..., "more": ...}``.
        limit: the ``limit`` asked for, or ``None`` for the whole list.
        cursor: where to start, as the client gave it (``None``: at the beginning).
        cursor_parameter: the query parameter a next page's link sets (``cursor``, ``after``).
    """
    if limit is not None:
        page = fetch(cursor, limit)
        response = jsonify(page["items"])
        response.headers["X-Next-Cursor"] = str(page["next"])
        if page["more"]:
            response.headers["Link"] = f'<{_link(cursor_parameter, page["next"])}>; rel="next"'
        return response
    # the first page before the response starts: a service that is down is still a 503
    first = fetch(cursor, MAX_PAGE_SIZE)
    return Response(stream_with_context(_array(fetch, first)), mimetype="application/json")


def _array(fetch, page):
    """The JSON array of every item from ``page`` on, one chunk a page."""
    dumps = current_app.json.dumps
    opening = b"["
    try:
        while True:
            if page["items"]:
                yield opening + ",".join(dumps(item) for item in page["items"]).encode()
                opening = b","
            if not page["more"]:
                break
            page = fetch(page["next"], MAX_PAGE_SIZE)
    except Exception:
        # The status line and part of the array are out: raising drops the connection
        # before the chunked body's end, so the client sees a cut-off response, never a
        # shorter list that looks whole.
        log.exception("%s %s: the list stopped after its status was sent", request.method,
                      request.path)
        raise
    yield b"[]\n" if opening == b"[" else b"]\n"


def _link(cursor_parameter, cursor):
    """This request's URL (path and query) with ``cursor_parameter`` set to ``cursor``."""
    query = [(name, value) for name, value in request.args.items(multi=True)
             if name != cursor_parameter]
    return request.path + "?" + urlencode(query + [(cursor_parameter, cursor)])
