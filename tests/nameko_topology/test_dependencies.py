"""Dependencies that name another by attribute, and the outbox's settings from the config."""
import pytest
from nameko.containers import ServiceContainer
from sqlalchemy import MetaData

from nameko_topology import Database, Outbox


class Shop:
    name = "shop"
    db = Database(MetaData())
    outbox = Outbox("db")


class Misnamed:
    name = "misnamed"
    db = Database(MetaData())
    outbox = Outbox("database")


class NotADatabase:
    name = "not_a_database"
    db = Outbox("db")
    outbox = Outbox("db")


@pytest.fixture
def outbox_of(tmp_path):
    """``outbox_of(service_class, **config)``: the outbox dependency of a new container."""
    containers = []  # extensions hold their container by a weak reference: keep each alive

    def outbox_of(service_class, **config):
        container = ServiceContainer(service_class, {
            "AMQP_URI": "amqp://guest:guest@localhost:5672/", "DATA_DIR": str(tmp_path),
            **config})
        containers.append(container)
        return next(ext for ext in container.dependencies if ext.attr_name == "outbox")
    return outbox_of


def test_the_outbox_takes_its_lease_poll_and_batch_from_the_config(outbox_of):
    outbox = outbox_of(Shop, OUTBOX_CLAIM_LEASE_SECONDS=3, OUTBOX_POLL_SECONDS=0.5,
                       OUTBOX_BATCH_SIZE=7)
    outbox.setup()
    assert (outbox.lease, outbox.poll, outbox.batch_size) == (3, 0.5, 7)


def test_the_outbox_defaults_without_config(outbox_of):
    outbox = outbox_of(Shop)
    outbox.setup()
    assert (outbox.lease, outbox.poll, outbox.batch_size) == (10, 1.0, 100)


def test_a_database_attribute_the_service_lacks_is_named(outbox_of):
    with pytest.raises(AttributeError, match=r"Outbox of service 'misnamed' needs a Database "
                                             r"dependency named 'database'"):
        outbox_of(Misnamed).setup()


def test_a_database_attribute_that_is_something_else_is_named(outbox_of):
    with pytest.raises(TypeError, match=r"needs 'db' to be a Database dependency, but it is "
                                        r"a Outbox"):
        outbox_of(NotADatabase).setup()
