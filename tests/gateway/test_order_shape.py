"""nameko_topology.messages.field_problems, which the gateway answers a bad POST /order with.

(A framework function, tested here beside its one user; it belongs with tests/nameko_topology's
test_messages.py.)
"""
import pytest
from hypothesis import given, settings, strategies as st

from gateway.app import ORDER_PLACED
from nameko_topology import load_topology
from nameko_topology.constants import DEFAULT_TOPOLOGY_FILE
from nameko_topology.exceptions import InvalidMessage
from nameko_topology.messages import check_payload, field_problems

SPEC = load_topology(DEFAULT_TOPOLOGY_FILE).message(ORDER_PLACED)
VALID = {"order_id": "o-1", "item": "widget", "quantity": 2}


def test_a_valid_payload_has_no_problems():
    assert field_problems(SPEC, VALID) == []


@pytest.mark.parametrize("change, problems", [
    ({"quantity": 0}, [("quantity", "quantity must be at least 1")]),
    ({"quantity": 1_000_001}, [("quantity", "quantity must be at most 1000000")]),
    ({"quantity": 2.0}, [("quantity", "quantity must be of type integer")]),
    ({"quantity": True}, [("quantity", "quantity must be of type integer")]),
    ({"item": ""}, [("item", "item must be at least 1 character long")]),
    ({"item": "w" * 101}, [("item", "item must be at most 100 characters long")]),
    ({"item": "\ud800"}, [("item", "item must not hold a lone surrogate (no encoding can "
                                   "store it)")]),
    ({"order_id": "x\n"}, [("order_id", "order_id must match ^[A-Za-z0-9][A-Za-z0-9._:-]*$ as "
                                        "a whole")]),
    ({"order_id": None}, [("order_id", "order_id must be of type string")]),
])
def test_each_problem_names_its_field_and_rule(change, problems):
    assert field_problems(SPEC, dict(VALID, **change)) == problems


def test_problems_come_in_the_order_of_the_fields_and_never_echo_the_value():
    hostile = "x\r\nSet-Cookie: a=b" + "y" * 10_000
    problems = field_problems(SPEC, {"quantity": "3", "item": hostile})
    assert problems == [("order_id", "order_id is required"),
                        ("item", "item must be at most 100 characters long"),
                        ("quantity", "quantity must be of type integer")]


@pytest.mark.parametrize("payload", [[1], "x", None, 3])
def test_a_body_that_is_no_object_is_a_problem_of_no_field(payload):
    [(field, message)] = field_problems(SPEC, payload)
    assert field is None and "JSON object" in message


SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=120)
           | st.sampled_from(["o-1", "\ud800", "x\n", "w" * 100, "w" * 101, 1.0, 0, 10 ** 6]))
PAYLOADS = st.dictionaries(st.sampled_from(["order_id", "item", "quantity", "extra"]),
                           SCALARS | st.lists(SCALARS, max_size=3))


@settings(max_examples=500, deadline=None)
@given(PAYLOADS)
def test_field_problems_and_check_payload_agree(payload):
    try:
        check_payload(SPEC, payload)
    except InvalidMessage:
        refused = True
    else:
        refused = False
    problems = field_problems(SPEC, payload)
    assert bool(problems) is refused
    assert all(field in payload or message.endswith(" is required")
               for field, message in problems)
