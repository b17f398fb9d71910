"""Which acks CoalescedAcks sends for a channel's deliveries (a recording fake channel)."""
import pytest

from nameko_topology.acks import CoalescedAcks


class RecordingChannel:
    def __init__(self, fail=None):
        self.connection = object()  # open
        self.sent = []
        self.fail = fail

    def basic_ack(self, tag, multiple=False):
        if self.fail:
            raise self.fail
        self.sent.append((tag, multiple))


@pytest.fixture
def channel():
    return RecordingChannel()


def acks_with(channel, delivered, finished=(), settled_alone=()):
    acks = CoalescedAcks(channel)
    for tag in delivered:
        acks.delivered(tag)
    for tag in settled_alone:
        acks.settled_alone(tag)
    for tag in finished:
        acks.finished(tag)
    return acks


def test_finished_deliveries_below_every_unfinished_one_are_acked_together(channel):
    acks_with(channel, delivered=[1, 2, 3, 4], finished=[2, 1]).flush()
    assert channel.sent == [(2, True)]


def test_a_multiple_ack_never_reaches_a_delivery_still_being_worked_on(channel):
    acks_with(channel, delivered=[1, 2, 3, 4, 5], finished=[1, 3, 5]).flush()
    assert channel.sent == [(1, True), (3, False), (5, False)]


def test_rejected_or_requeued_deliveries_do_not_hold_the_others_back(channel):
    acks_with(channel, delivered=[1, 2, 3], settled_alone=[1], finished=[3, 2]).flush()
    assert channel.sent == [(3, True)]


def test_each_ack_is_sent_once(channel):
    acks = acks_with(channel, delivered=[1, 2], finished=[1])
    acks.flush()
    acks.finished(2)
    acks.flush()
    acks.flush()
    assert channel.sent == [(1, True), (2, True)]


def test_nothing_is_sent_on_a_closed_channel(channel):
    channel.connection = None  # the broker requeued its deliveries
    acks_with(channel, delivered=[1], finished=[1]).flush()
    assert channel.sent == []


def test_a_failed_ack_is_logged_not_raised(caplog):
    channel = RecordingChannel(fail=ConnectionResetError("reset by peer"))
    acks_with(channel, delivered=[1, 2], finished=[1, 2]).flush()
    assert "acks of 2 message(s) not sent (ConnectionResetError: reset by peer)" in caplog.text
