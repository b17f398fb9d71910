"""The list routes against a fake RPC client that pages as the services do: one page with
``limit`` and a Link to the next, the whole list streamed page by page without it, and a 400
naming the parameter for a bad limit, cursor, status or item."""
import re

import pytest

from gateway.app import create_app
from nameko_topology.pages import MAX_PAGE_SIZE
from tests.gateway.paging import PagingRpc

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


@pytest.fixture
def rpc():
    return PagingRpc.with_rows(2500)


@pytest.fixture
def client(rpc):
    app = create_app({"AMQP_URI": "amqp://unused", "RPC_TIMEOUT": 3}, rpc=rpc)
    yield app.test_client()
    app.extensions["order_batcher"].close()


def walk(client, path):
    """Every page from ``path`` on, following the Link headers: (items, pages)."""
    items, pages = [], 0
    while path:
        response = client.get(path)
        assert response.status_code == 200, response.get_json()
        items += response.get_json()
        pages += 1
        link = response.headers.get("Link")
        path = link and LINK.match(link)["url"]
    return items, pages


@pytest.mark.parametrize("path, method", [
    ("/orders", "list_orders"), ("/processed", "list_processed"),
    ("/notifications", "list_notifications")])
def test_following_the_links_gives_every_row_once(client, rpc, path, method):
    items, pages = walk(client, path + "?limit=300")
    assert items == rpc.rows[method]
    assert pages == 9  # 2,500 rows: 8 full pages and one of 100, with no Link
    assert all(kwargs["limit"] == 300 for _, kwargs in rpc.calls)


def test_the_link_keeps_the_filters_and_the_limit(client, rpc):
    response = client.get("/orders?limit=2&status=REJECTED&item=gadget-X")
    assert [o["order_id"] for o in response.get_json()] == ["o-3", "o-9"]
    url = LINK.match(response.headers["Link"])["url"]
    assert url == "/orders?limit=2&status=REJECTED&item=gadget-X&cursor=2"
    items, _ = walk(client, "/orders?status=REJECTED&item=gadget-X&limit=100")
    assert items == [o for o in rpc.rows["list_orders"]
                     if o["status"] == "REJECTED" and o["item"] == "gadget-X"]


def test_the_last_page_has_no_link(client):
    response = client.get("/processed?limit=1000&cursor=2000")
    assert len(response.get_json()) == 500
    assert "Link" not in response.headers


@pytest.mark.parametrize("path, cursor_parameter", [
    ("/orders", "cursor"), ("/processed", "cursor"), ("/notifications", "after")])
def test_a_reader_at_the_end_resumes_from_the_next_cursor(client, rpc, path, cursor_parameter):
    method = "list_" + path.strip("/")
    last = client.get(f"{path}?limit=1000&{cursor_parameter}=2000")
    assert "Link" not in last.headers
    assert last.headers["X-Next-Cursor"] == "2500"
    assert client.get(f"{path}?limit=10&{cursor_parameter}=2500").headers["X-Next-Cursor"] \
        == "2500"  # nothing new yet: the same cursor again
    rpc.rows[method] += rpc.rows[method][:3]  # three rows added since
    resumed = client.get(f"{path}?limit=10&{cursor_parameter}={last.headers['X-Next-Cursor']}")
    assert resumed.get_json() == rpc.rows[method][2500:]
    assert resumed.headers["X-Next-Cursor"] == "2503"


def test_an_empty_list_gives_a_cursor_that_sees_the_first_rows(client, rpc):
    orders, rpc.rows["list_orders"] = rpc.rows["list_orders"], []
    empty = client.get("/orders?limit=10")
    assert empty.get_json() == []
    rpc.rows["list_orders"] = orders[:2]
    resumed = client.get(f"/orders?limit=10&cursor={empty.headers['X-Next-Cursor']}")
    assert resumed.get_json() == orders[:2]


def test_without_a_limit_the_whole_list_comes_streamed_page_by_page(client, rpc):
    response = client.get("/orders")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.get_json() == rpc.rows["list_orders"]
    assert "Link" not in response.headers
    # no reply over one page: 2,500 orders in three calls of at most 1,000
    assert [kwargs["limit"] for _, kwargs in rpc.calls] == [MAX_PAGE_SIZE] * 3
    assert [kwargs["cursor"] for _, kwargs in rpc.calls] == [None, "1000", "2000"]


def test_a_streamed_list_starts_where_the_cursor_says(client, rpc):
    assert client.get("/notifications?after=2400").get_json() == \
        rpc.rows["list_notifications"][2400:]
    assert client.get("/processed?cursor=2500").get_json() == []


def test_an_empty_list_is_an_empty_array(client, rpc):
    rpc.rows["list_orders"] = []
    response = client.get("/orders")
    assert response.get_data() == b"[]\n"


def test_a_service_down_before_the_first_page_is_a_503(client, rpc):
    rpc.fail_at = 1
    response = client.get("/orders")
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("orders service unavailable")


def test_a_service_lost_after_the_first_page_cuts_the_stream(client, rpc):
    # the status is out; the response must not end as a complete, shorter array (over HTTP
    # the connection drops before the chunked body's end: tests/gateway/test_pages_live.py)
    rpc.fail_at = 2
    response = client.get("/orders", buffered=False)
    with pytest.raises(Exception, match="orders service unavailable"):
        response.get_data()


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=-1", "limit"),
    ("limit=ten", "limit"), ("limit=", "limit"), ("limit=1e3", "limit"),
    ("cursor=", "cursor"), ("cursor=abc", "cursor"), ("cursor=-5", "cursor"),
    ("cursor=1.5", "cursor"), ("cursor=" + "9" * 19, "cursor"), ("cursor=%D9%A3", "cursor"),
    ("status=pending", "status"), ("status=", "status"), ("status=SHIPPED", "status"),
    ("item=", "item"), ("item=" + "x" * 101, "item"), ("item=a%00b", "item"),
])
def test_a_bad_parameter_is_a_400_naming_it(client, rpc, query, field):
    response = client.get("/orders?" + query)
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert rpc.calls == []


@pytest.mark.parametrize("path", ["/processed?limit=5000", "/processed?cursor=x",
                                  "/notifications?limit=1001"])
def test_the_other_lists_refuse_the_same(client, rpc, path):
    response = client.get(path)
    assert response.status_code == 400
    assert response.get_json()["field"] == path.split("?")[1].split("=")[0]
    assert rpc.calls == []
