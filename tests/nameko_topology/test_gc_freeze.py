"""gc.freeze() at start-up: the services' ``GcFreeze`` extension and the gateway's server app."""
import gc
from types import SimpleNamespace

import pytest

from gateway.__main__ import server_app
from gateway.server import RequestBuffer
from nameko_topology import Handle, Rpc
from nameko_topology.gcfreeze import GC_FREEZE_CONFIG_KEY, GcFreeze


@pytest.fixture
def unfrozen():
    """No frozen objects before the test, and none left by it for the rest of the run."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("config, frozen", [
    ({GC_FREEZE_CONFIG_KEY: True}, True),
    ({GC_FREEZE_CONFIG_KEY: False}, False),
    ({}, False),
])
def test_the_extension_freezes_the_heap_only_when_the_config_says_so(unfrozen, config, frozen):
    extension = GcFreeze()
    extension.container = SimpleNamespace(config=config)

    extension.start()

    assert (gc.get_freeze_count() > 0) is frozen


def test_every_framework_entrypoint_carries_the_extension():
    assert isinstance(Rpc.gc_freeze, GcFreeze)
    assert isinstance(Handle.gc_freeze, GcFreeze)


@pytest.mark.parametrize("setting, frozen", [
    (None, True), ("true", True), ("false", False), ("0", False), ("no", False),
])
def test_the_gateway_server_app_freezes_the_heap_unless_told_not_to(unfrozen, monkeypatch,
                                                                     setting, frozen):
    if setting is None:
        monkeypatch.delenv("GC_FREEZE_AT_START", raising=False)
    else:
        monkeypatch.setenv("GC_FREEZE_AT_START", setting)

    app = server_app()

    assert isinstance(app, RequestBuffer)
    assert app.wsgi_app.url_map.bind("localhost").match("/order", method="POST")[0] == \
        "api.place_order"
    assert (gc.get_freeze_count() > 0) is frozen
