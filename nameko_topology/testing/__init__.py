"""Test helpers for services built on nameko-topology.

The pytest plugin (:mod:`nameko_topology.testing.plugin`, enabled by installing the package)
gives the fixtures: ``rabbit_vhost``, ``topology``, ``publish``, ``publish_raw``,
``queue_depth``, ``take_messages``, ``dead_letters``, ``wait_for``, ``run_services``,
``sqlite_database`` and ``fake_outbox``. The helpers behind them can be imported from here too.
"""
from nameko_topology.testing.broker import TestVhost, create_vhost, delete_vhost, wait_for
from nameko_topology.testing.fakes import FakeOutbox

__all__ = ["FakeOutbox", "TestVhost", "create_vhost", "delete_vhost", "wait_for"]
