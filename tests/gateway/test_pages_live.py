"""The list routes over real HTTP: against the whole pipeline, following the Link headers and
reading the streamed lists; and against Granian serving the gateway on a fake that fails in the
middle of a streamed list, which must reach the client as a broken response, never as a
shorter array that looks complete."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from bench.load import free_port
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def walk(base, path):
    items, pages = [], 0
    while path:
        response = requests.get(base + path, timeout=10)
        assert response.status_code == 200, response.text
        items += response.json()
        pages += 1
        link = response.headers.get("Link")
        path = link and LINK.match(link)["url"]
    return items, pages


@pytest.fixture(scope="module")
def stack(pipeline):
    stack = pipeline("pages", env={"INITIAL_STOCK": '{"widget-A": 20, "gadget-X": 100}'})
    orders = [requests.post(stack.url + "/order", timeout=10,
                            json={"item": item, "quantity": 1}).json()["order_id"]
              for item in ["widget-A"] * 25 + ["gadget-X"] * 10]
    wait_for(lambda: len(requests.get(stack.url + "/notifications", timeout=10).json()) == 35,
             timeout=60, description="a notice for every order")
    return stack, orders


def test_links_and_streams_give_every_order_once_in_the_order_placed(stack):
    stack, placed = stack
    paged, pages = walk(stack.url, "/orders?limit=4")
    assert [order["order_id"] for order in paged] == placed
    assert pages == 9
    whole = requests.get(stack.url + "/orders", timeout=10)
    assert whole.headers["Transfer-Encoding"] == "chunked"
    assert whole.json() == paged
    processed, _ = walk(stack.url, "/processed?limit=10")
    assert sorted(processed) == sorted(placed)
    assert requests.get(stack.url + "/processed", timeout=10).json() == processed
    notices, _ = walk(stack.url, "/notifications?limit=6")
    assert [notice["order_id"] for notice in notices] == \
        [n["order_id"] for n in requests.get(stack.url + "/notifications", timeout=10).json()]


def test_the_filters_select_on_the_stored_orders(stack):
    stack, placed = stack
    rejected = requests.get(stack.url + "/orders?status=REJECTED", timeout=10).json()
    # 20 widget-A in stock: the last five of 25 were refused
    assert [order["order_id"] for order in rejected] == placed[20:25]
    gadgets, _ = walk(stack.url, "/orders?item=gadget-X&status=CONFIRMED&limit=3")
    assert [order["order_id"] for order in gadgets] == placed[25:]


@pytest.mark.parametrize("query, field", [
    ("limit=1001", "limit"), ("limit=0", "limit"), ("cursor=x", "cursor"),
    ("status=LOST", "status"), ("item=" + "x" * 101, "item"), ("item=%00", "item")])
def test_a_bad_parameter_is_a_json_400_naming_it(stack, query, field):
    stack, _ = stack
    response = requests.get(stack.url + "/orders?" + query, timeout=10)
    assert response.status_code == 400
    assert response.json()["field"] == field


def listed(stack, path):
    return requests.get(stack.url + path, timeout=10).json()


@pytest.mark.parametrize("path, parameter", [("/orders", "cursor"), ("/notifications", "after")])
def test_a_reader_at_the_end_gets_only_what_was_added_since(stack, path, parameter):
    # last of the stack's tests: it places orders of its own
    stack, _ = stack
    wait_for(lambda: len(listed(stack, "/notifications")) == len(listed(stack, "/orders")),
             timeout=60, description="a notice for every order so far")
    end = requests.get(stack.url + path + "?limit=1000", timeout=10)
    assert "Link" not in end.headers
    later = [requests.post(stack.url + "/order", timeout=10,
                           json={"item": "gadget-X", "quantity": 1}).json()["order_id"]
             for _ in range(2)]
    resumed = f"{path}?limit=1000&{parameter}={end.headers['X-Next-Cursor']}"
    wait_for(lambda: len(listed(stack, resumed)) == 2, timeout=60,
             description=f"the two new rows in {path}")
    assert [row["order_id"] for row in listed(stack, resumed)] == later


@pytest.fixture
def failing_gateway(tmp_path):
    """Granian serving the gateway on tests.gateway.paging's fake: 2,500 orders, and the
    second RPC call (the second page of a streamed list) times out."""
    port = free_port()
    log = open(tmp_path / "granian.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--port",
         str(port), "--workers", "1", "--http", "1", "tests.gateway.paging:server"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PAGING_ROWS": "2500", "PAGING_FAIL_AT": "2"})
    base = f"http://127.0.0.1:{port}"

    def answering():
        try:
            return requests.get(base + "/health/live", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert process.poll() is None, (tmp_path / "granian.log").read_text()
            return False

    wait_for(answering, timeout=30, description="the gateway on the fake")
    yield base
    process.terminate()
    process.wait(timeout=15)
    log.close()


def test_a_list_cut_short_breaks_the_response_instead_of_ending_it(failing_gateway):
    response = requests.get(failing_gateway + "/orders", timeout=10, stream=True)
    assert response.status_code == 200  # the first page was there
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content
