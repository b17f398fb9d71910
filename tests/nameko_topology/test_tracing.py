"""nameko_topology.tracing: off by default at no cost, the settings, and hostile trace
contexts."""
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nameko_topology import tracing


@pytest.fixture
def exported(monkeypatch):
    """Tracing on for the test, into memory; off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    return exporter


def test_off_by_default_and_nothing_is_made():
    assert not tracing.enabled()
    assert tracing.start_span("x", tracing.SpanKind.INTERNAL, "00-" + "1" * 32 + "-" + "2" * 16
                              + "-01") is None
    assert tracing.traceparent_of(None) is None
    tracing.end_span(None)  # nothing to end, nothing raised


@pytest.mark.parametrize("setting", ["", None])
def test_without_a_setting_nothing_is_configured(setting):
    assert tracing._processor("svc", {"TRACING": setting}) is None


def test_an_unknown_setting_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="TRACING must be console or file:PATH, got 'xml'"):
        tracing._processor("svc", {"TRACING": "xml"})
    with pytest.raises(ValueError, match="TRACING must be"):
        tracing._processor("svc", {"TRACING": "file:"})


def test_the_file_exporter_writes_one_json_span_per_line_to_the_services_file(tmp_path):
    processor = tracing._processor("inventory", {"TRACING": f"file:{tmp_path}/{{service}}.jsonl"})
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.get_tracer("test").start_span("one").end()
    provider.get_tracer("test").start_span("two").end()
    lines = (tmp_path / "inventory.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["one", "two"]


def test_a_child_continues_its_parents_trace(exported):
    parent = tracing.start_span("parent", tracing.SpanKind.SERVER)
    traceparent = tracing.traceparent_of(parent)
    child = tracing.start_span("child", tracing.SpanKind.CONSUMER, traceparent)
    tracing.end_span(child, RuntimeError("boom"))
    tracing.end_span(parent)
    child_span, parent_span = exported.get_finished_spans()
    assert child_span.context.trace_id == parent_span.context.trace_id
    assert child_span.parent.span_id == parent_span.context.span_id
    assert child_span.status.status_code.name == "ERROR"


@pytest.mark.parametrize("hostile", [
    "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 300, 12, b"bytes", ["a"], {}])
def test_a_trace_context_that_does_not_parse_starts_a_new_trace(exported, hostile):
    span = tracing.start_span("consume", tracing.SpanKind.CONSUMER, hostile)
    tracing.end_span(span)
    finished, = exported.get_finished_spans()
    assert finished.parent is None


def test_messaging_attributes_follow_the_conventions():
    assert tracing.messaging_attributes("publish", "orders", "order.placed", "m-1", "c-1") == {
        "messaging.system": "rabbitmq", "messaging.operation.type": "publish",
        "messaging.destination.name": "orders",
        "messaging.rabbitmq.destination.routing_key": "order.placed",
        "messaging.message.id": "m-1", "messaging.message.conversation_id": "c-1"}
