"""The OTLP/HTTP span exporter, with a lean encoder for the spans the server makes.

The SDK's exporter builds a protobuf message object per span, attribute and value before it
serialises the request; for the server's spans (a dozen attributes, no events, no links) that was
about 150 µs of CPU per span, more than making the span, and half the cost of tracing a run. This
writes the same `ExportTraceServiceRequest` bytes directly (protobuf wire format: tags, varints,
length-delimited fields; `opentelemetry/proto/trace/v1/trace.proto`), several times faster. A batch
that holds anything this does not write (span events or links: the server records none, but a
library could) goes through the SDK's own encoder. A test decodes both and compares.

Sending (endpoint, headers, timeout, compression, retries: the `OTEL_EXPORTER_OTLP_*` variables)
stays the SDK exporter's: `export` hands the bytes to its HTTP client.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, StatusCode

logger = logging.getLogger("noukai.tracing")

_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
_STATUS_CODES: Final = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
_DOUBLE: Final = struct.Struct("<d")
_FIXED64: Final = struct.Struct("<Q")
_FIXED32: Final = struct.Struct("<I")


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """`OTLPSpanExporter` (configured the same way) that serialises with `encode_request`."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            data = encode_request(spans)
        except Exception:  # a value this cannot write: never lose the batch for it
            logger.exception("could not encode %d span(s) for OTLP", len(spans))
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised `ExportTraceServiceRequest` of `spans`."""
    if any(span.events or span.links for span in spans):
        sdk_encoded: bytes = encode_spans(spans).SerializePartialToString()
        return sdk_encoded
    groups: dict[int, tuple[Any, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope
        _, scopes = groups.setdefault(id(resource), (resource, {}))
        scopes.setdefault(id(scope), (scope, []))[1].append(_span(span))
    out = bytearray()
    for resource, scopes in groups.values():
        body = bytearray(_message(1, _attributes(1, resource.attributes)))
        for scope, encoded in scopes.values():
            scope_spans = bytearray(_message(1, _scope(scope)))
            for span_bytes in encoded:
                scope_spans += _message(2, span_bytes)
            if scope is not None and scope.schema_url:
                scope_spans += _string(3, scope.schema_url)
            body += _message(2, bytes(scope_spans))
        if resource.schema_url:
            body += _string(3, resource.schema_url)
        out += _message(1, bytes(body))
    return bytes(out)


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    out = bytearray(b"\x0a\x10" + context.trace_id.to_bytes(16, "big"))
    out += b"\x12\x08" + context.span_id.to_bytes(8, "big")
    if context.trace_state:
        out += _string(3, context.trace_state.to_header())
    parent = span.parent
    if parent is not None and parent.span_id:
        out += b"\x22\x08" + parent.span_id.to_bytes(8, "big")
    out += _string(5, span.name)
    out += b"\x30" + _varint(span.kind.value + 1)  # the SDK's kinds start at INTERNAL = 0
    out += b"\x39" + _FIXED64.pack(span.start_time or 0)
    out += b"\x41" + _FIXED64.pack(span.end_time or 0)
    out += _attributes(9, span.attributes)
    if span.dropped_attributes:
        out += b"\x50" + _varint(span.dropped_attributes)
    status = span.status  # always written, empty when unset (as the SDK's encoder does)
    code = _STATUS_CODES[status.status_code]
    encoded = _string(2, status.description) if status.description else b""
    if code:
        encoded += b"\x18" + _varint(code)
    out += _message(15, encoded)
    out += b"\x85\x01" + _FIXED32.pack(_flags(parent))  # field 16, fixed32
    return bytes(out)


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    out = _string(1, scope.name)
    if scope.version:
        out += _string(2, scope.version)
    if scope.attributes:
        out += _attributes(3, scope.attributes)
    return out


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    tag = _SMALL[field << 3 | 2]
    parts = []
    for key, value in attributes.items():
        name = _KEYS.get(key)
        if name is None:
            name = _string(1, key)
            if len(_KEYS) < _MAX_KEYS:  # attribute names are few: each is encoded once
                _KEYS[key] = name
        encoded = _value(value)
        pair = name + b"\x12" + _varint(len(encoded)) + encoded
        parts.append(tag + _varint(len(pair)) + pair)
    return b"".join(parts)


def _value(value: Any) -> bytes:
    if type(value) is str:
        data = value.encode("utf-8")
        return b"\x0a" + _varint(len(data)) + data
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value if value >= 0 else value + (1 << 64))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, str):
        return _string(1, value)
    if isinstance(value, bytes):
        return _message(7, value)
    if isinstance(value, Sequence):
        return _message(5, b"".join(_message(1, _value(item)) for item in value))
    if isinstance(value, Mapping):
        return _message(6, _attributes(1, value))
    return b""  # None: an empty AnyValue


def _string(field: int, text: str) -> bytes:
    return _message(field, text.encode("utf-8"))


def _message(field: int, body: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def _varint(number: int) -> bytes:
    if number < 0x80:
        return _SMALL[number]
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


_SMALL: Final = tuple(bytes((n,)) for n in range(0x80))
_KEYS: dict[str, bytes] = {}
_MAX_KEYS: Final = 1024
