"""Broker URIs are shown without any password, in a failover list too."""
import pytest

from nameko_topology.uris import nodes, redact, redact_text


@pytest.mark.parametrize("uri, shown", [
    ("amqp://pipeline:s3cret@rabbitmq:5672/prod", "amqp://pipeline:**@rabbitmq:5672/prod"),
    ("amqp://localhost:5672/", "amqp://localhost:5672/"),
    ("amqp://u:p1@h1:5672/v;amqp://u:p%40ss@h2:5673/v;amqp://h3:5674/v",
     "amqp://u:**@h1:5672/v;amqp://u:**@h2:5673/v;amqp://h3:5674/v"),
])
def test_every_password_is_masked(uri, shown):
    assert redact(uri) == shown


def test_passwords_in_free_text_are_masked():
    text = ("Error connecting to broker at amqp://guest:**@h1//;amqp://guest:guest@h2// "
            "(refused by amqp://svc:p%40ss@h3:5672/v)")
    assert redact_text(text) == ("Error connecting to broker at amqp://guest:**@h1//;"
                                 "amqp://guest:**@h2// (refused by amqp://svc:**@h3:5672/v)")


def test_text_without_a_password_is_unchanged():
    text = "amqp://h1:5672/v and user@example.com, ratio 2:1@noon"
    assert redact_text(text) == text


def test_nodes_of_a_failover_list():
    assert nodes("amqp://a/v;amqp://b/v;") == ["amqp://a/v", "amqp://b/v"]
    assert nodes("amqp://a/v") == ["amqp://a/v"]
