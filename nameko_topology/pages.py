"""Keyset pages: list methods that return one page at a time, and how to ask for the next.

A page is ``{"items": [...], "next": <cursor>, "more": <bool>}``: passing ``next`` back gets
the rows after the page's last one (or, for an empty page, after where it was asked to start),
and ``more`` says whether there were any when the page was read. A reader that has read to the
end keeps the last ``next`` to ask for what is added later. The key
is a column in commit order (:mod:`nameko_topology.positions`), so a reader that follows the
cursors sees every row exactly once, however many writers there are.
"""
from nameko_topology.exceptions import InvalidMessage

#: the most rows one page holds: no reply of a list method is larger
MAX_PAGE_SIZE = 1000
#: a page's rows when the caller gives no limit
DEFAULT_PAGE_SIZE = 100


def page_size(limit):
    """``limit`` checked: an integer from 1 to :data:`MAX_PAGE_SIZE`, or ``None`` for the
    default; ``InvalidMessage`` naming ``limit`` else."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidMessage(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, "
                             f"got {limit!r}")
    return limit


def cursor_position(cursor):
    """The position after which the page that ``cursor`` names starts: 0 for ``None`` (the
    first page); ``InvalidMessage`` naming ``cursor`` for anything no page gave."""
    if cursor is None:
        return 0
    if is_cursor(cursor):
        return int(cursor)
    raise InvalidMessage(f"cursor must be one a page gave as its 'next', got {cursor!r}")


def is_cursor(value):
    """True if ``value`` is a cursor a page could have given (a page's ``next``)."""
    # the position in decimal: opaque to clients, who only pass back what they were given
    return isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() \
        and value.isdigit()


def read_page(connection, query, key, after, limit, item=None, cursor_of=str):
    """The page of ``query``'s rows with ``key`` above ``after``, in ``key`` order.

    :Parameters:
        query: a ``select`` (filters included) whose rows have ``key`` among their columns.
        key: the column in commit order the page is keyed by; it needs an index, which a
            filter's columns should lead (``(status, position)`` for ``status = ...``).
        limit: the page size, as :func:`page_size` returns it.
        item: makes each row an item of the page (default: the row as a dict).
        cursor_of: makes a key (the last row's, or ``after``) the page's ``next``.
    """
    rows = connection.execute(query.where(key > after).order_by(key).limit(limit + 1)).all()
    more = len(rows) > limit  # one row more than the page: a next page has something
    rows = rows[:limit]
    item = item or (lambda row: dict(row._mapping))
    return {"items": [item(row) for row in rows],
            "next": cursor_of(rows[-1]._mapping[key.name] if rows else after),
            "more": more}
