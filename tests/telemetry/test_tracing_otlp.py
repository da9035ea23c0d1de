"""The lean OTLP encoder writes exactly the request the SDK's encoder writes."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from noukai_server.telemetry.tracing_otlp import encode_request


def spans() -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "noukai", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("noukai_server", "1.2", schema_url="https://opentelemetry.io/schemas/1.41.0")
    other = provider.get_tracer("other")
    remote = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x")]),
    )
    attributes: dict[str, AttributeValue] = {
        "text": "héllo \u2603",
        "empty": "",
        "count": 7,
        "big": 2**62,
        "negative": -5,
        "ratio": 0.25,
        "flag": True,
        "off": False,
        "reasons": ("stop", "length"),
        "numbers": (1, 2),
        "long": "x" * 300,
    }
    with tracer.start_as_current_span("root", context=set_span_in_context(NonRecordingSpan(remote))) as root:
        root.set_attributes(attributes)
        child = tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes={"gen_ai.usage.input_tokens": 3})
        child.set_status(Status(StatusCode.ERROR, "the provider failed"))
        child.end()
        plain = other.start_span("bare", kind=SpanKind.SERVER)
        plain.set_status(Status(StatusCode.OK))
        plain.end()
    return exporter.get_finished_spans()


def test_the_lean_encoder_writes_what_the_sdk_writes() -> None:
    finished = spans()
    ours = ExportTraceServiceRequest.FromString(encode_request(finished))
    theirs = ExportTraceServiceRequest.FromString(encode_spans(finished).SerializePartialToString())
    assert ours == theirs
    assert sum(len(s.spans) for r in ours.resource_spans for s in r.scope_spans) == 3


def test_spans_with_events_go_through_the_sdks_encoder() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("with an event")
    span.add_event("something", {"k": 1})
    span.end()
    finished = exporter.get_finished_spans()
    assert encode_request(finished) == encode_spans(finished).SerializePartialToString()
