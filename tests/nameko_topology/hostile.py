"""Hypothesis strategies of hostile AMQP deliveries, for the unit and the integration fuzz.

A delivery starts valid (an OrderPlaced on ``orders`` / ``order.placed``) and gets up to three
of its parts replaced by something drawn from what a publisher could put there, and, for the
unit fuzz, from Python values no broker would deliver (wrong property types, non-string
header names).
"""
import json

from hypothesis import strategies as st

VALID_ORDER = {"order_id": "o-1", "item": "widget-A", "quantity": 2}
VALID_BODY = json.dumps(VALID_ORDER).encode()

#: every header name the framework or nameko reads
READ_HEADERS = (
    "x-original-exchange", "x-original-routing-key", "x-attempt", "x-rejected-reason",
    "x-rejected-queue", "nameko.call_id_stack", "nameko.user_id", "nameko.language",
    "nameko.auth_token", "nameko.user_agent",
)

any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=20)  # surrogates too
long_text = st.text(alphabet="ab\u00e9", min_size=200, max_size=300)  # over 255 bytes, often

# what AMQP tables can carry, and some they cannot (beyond 64 bits, dates before 1970)
wire_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 31, 2 ** 31), st.integers(-2 ** 80, 2 ** 80),
    st.floats(), any_text, long_text, st.binary(max_size=20),
    st.datetimes(), st.decimals(allow_nan=False, places=2),
)
header_names = st.one_of(st.sampled_from(READ_HEADERS), any_text, long_text)
wire_values = st.recursive(
    wire_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.one_of(any_text, long_text), children, max_size=3),
    max_leaves=8,
)
# plausible values under the read headers, so that valid deliveries carry them too
good_header_values = {
    "x-attempt": st.integers(1, 3),
    "nameko.call_id_stack": st.lists(st.text(max_size=20), max_size=3),
    "nameko.user_id": st.text(max_size=20),
}

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), any_text),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(any_text, children, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    st.binary(max_size=64),
    st.just(b""),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"order_id": any_text | st.just("o-1"),
                           "item": any_text | st.just("x"),
                           "quantity": st.integers(-2 ** 70, 2 ** 70) | st.just(1)})
    .map(lambda value: json.dumps(value).encode()),
    st.builds(lambda n: VALID_BODY[:-1] + b" " * n + b"}", st.integers(0, 4000)),  # big ones
    st.just(b"[" * 3000 + b"]" * 3000),  # deeper than json's recursion limit
)
content_types = st.one_of(
    st.sampled_from([None, "", "application/json", "application/json; charset=utf-8",
                     "APPLICATION/JSON;Charset=\"UTF-8\"", "application/json; charset=latin-1",
                     "application/json; charset*=utf-8''utf-8", "text/plain",
                     "application/data", "application/json\r\nx: y"]),
    any_text,
)
content_encodings = st.one_of(
    st.sampled_from([None, "", "utf-8", "UTF8", "binary", "gzip", "latin-1", "no-such-codec"]),
    any_text,
)
route_values = st.one_of(st.sampled_from(["orders", "order.placed", "", "inventory"]),
                         any_text, long_text)


@st.composite
def header_tables(draw, values=wire_values):
    """A valid delivery's headers with up to three entries added or replaced."""
    headers = {}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(header_names)
        good = good_header_values.get(name)
        headers[name] = draw(good | values if good is not None else values)
    return headers


def mostly(valid, hostile):
    """``valid`` three times in four, else something drawn from ``hostile``."""
    return st.integers(0, 3).flatmap(lambda n: st.just(valid) if n else hostile)


def wire_deliveries():
    """Deliveries a broker could deliver: ``(body, properties, headers, exchange, key)``."""
    return st.tuples(
        mostly(VALID_BODY, bodies),
        mostly({"content_type": "application/json"}, st.fixed_dictionaries({}, optional={
            "content_type": content_types, "content_encoding": content_encodings,
            "correlation_id": any_text | long_text, "message_id": any_text,
        })),
        mostly({}, header_tables()),
        mostly("orders", st.sampled_from(["", "inventory"])),
        mostly("order.placed", st.sampled_from(["", "order.other", "inventory.reserved"])),
    )
