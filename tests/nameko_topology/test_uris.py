"""Broker URIs are shown without any password, in a failover list too."""
import pytest

from nameko_topology.uris import redact


@pytest.mark.parametrize("uri, shown", [
    ("amqp://pipeline:s3cret@rabbitmq:5672/prod", "amqp://pipeline:**@rabbitmq:5672/prod"),
    ("amqp://localhost:5672/", "amqp://localhost:5672/"),
    ("amqp://u:p1@h1:5672/v;amqp://u:p%40ss@h2:5673/v;amqp://h3:5674/v",
     "amqp://u:**@h1:5672/v;amqp://u:**@h2:5673/v;amqp://h3:5674/v"),
])
def test_every_password_is_masked(uri, shown):
    assert redact(uri) == shown
