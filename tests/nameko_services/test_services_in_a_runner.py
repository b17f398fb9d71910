"""The three services in one nameko runner against the real broker, with nameko's helpers."""
from pathlib import Path

import pytest
from nameko.testing.services import entrypoint_hook, entrypoint_waiter
from nameko.testing.utils import get_container

from nameko_services.inventory import InventoryService
from nameko_services.notifications import NotificationsService
from nameko_services.orders import OrdersService

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"


@pytest.fixture
def runner(vhost, tmp_path, runner_factory, monkeypatch):
    monkeypatch.setenv("INITIAL_STOCK", '{"widget-A": 5}')
    config = {"AMQP_URI": vhost.amqp_uri, "TOPOLOGY_FILE": str(REPO_TOPOLOGY),
              "DATA_DIR": str(tmp_path), "max_workers": 4}
    runner = runner_factory(config, OrdersService, InventoryService, NotificationsService)
    runner.start()
    return runner


def containers(runner):
    return (get_container(runner, cls)
            for cls in (OrdersService, InventoryService, NotificationsService))


def place_and_wait(orders, notifications, outcome_handler, **order):
    """Place ``order`` over RPC; return it once orders and notifications have both run
    ``outcome_handler`` (on_inventory_reserved or on_inventory_failed)."""
    with entrypoint_waiter(notifications, outcome_handler, timeout=15), \
            entrypoint_waiter(orders, outcome_handler, timeout=15), \
            entrypoint_hook(orders, "place_order") as place_order:
        return place_order(**order)


def test_an_order_flows_through_all_three_services(runner):
    orders, inventory, notifications = containers(runner)

    order = place_and_wait(orders, notifications, "on_inventory_reserved",
                           item="widget-A", quantity=2)

    with entrypoint_hook(orders, "get_order") as get_order:
        assert get_order(order["order_id"])["status"] == "CONFIRMED"
    with entrypoint_hook(inventory, "get_inventory") as get_inventory:
        assert get_inventory() == {"widget-A": 3}
    with entrypoint_hook(notifications, "list_notifications") as list_notifications:
        [notice] = list_notifications()["items"]
    assert (notice["order_id"], notice["kind"]) == (order["order_id"], "confirmation")


def test_an_order_beyond_stock_is_rejected_with_the_reason(runner):
    orders, inventory, notifications = containers(runner)

    order = place_and_wait(orders, notifications, "on_inventory_failed",
                           item="widget-A", quantity=6)

    with entrypoint_hook(orders, "get_order") as get_order:
        stored = get_order(order["order_id"])
    assert stored["status"] == "REJECTED"
    assert stored["reason"] == "insufficient stock for 'widget-A': 5 left, 6 requested"
    with entrypoint_hook(inventory, "get_inventory") as get_inventory:
        assert get_inventory() == {"widget-A": 5}
