"""Parsed flow specs, cached: a flow document is parsed once per (flow, version, revision), not once
per run, because parsing compiles every template."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

from noukai_server.flows import FlowSpec, load_flow

FlowKey = tuple[str, int, int]


class FlowCache:
    def __init__(
        self,
        *,
        known_functions: Collection[str] | None = None,
        known_tools: Collection[str] | None = None,
        size: int = 512,
    ) -> None:
        self._known_functions = known_functions
        self._known_tools = known_tools
        self._size = size
        self._entries: OrderedDict[FlowKey, tuple[FlowSpec, Mapping[str, Any]]] = OrderedDict()

    def lookup(self, key: FlowKey) -> tuple[FlowSpec, Mapping[str, Any]] | None:
        """The spec and document cached for `key` (flow id, version, revision), if any: a request
        for a known flow version then reads no document from the store."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def get(self, key: FlowKey, document: Mapping[str, Any]) -> FlowSpec:
        """The spec for this document; raises `FlowValidationError` if the document is invalid."""
        entry = self.lookup(key)
        if entry is not None:
            return entry[0]
        spec = load_flow(document, known_functions=self._known_functions, known_tools=self._known_tools)
        self._entries[key] = (spec, document)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return spec
