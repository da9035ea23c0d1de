"""An MCP tool result as the text a model reads.

Text parts are joined; when a result has no text but structured content, that is sent as JSON
(servers are asked to mirror structured content as text, so it would usually be said twice).
Other parts (images, audio, resource links) cannot go into a chat tool message, so the model is
told what was left out rather than left guessing.
"""

from __future__ import annotations

import orjson
from mcp.types import (
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)


def result_text(result: CallToolResult) -> str:
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, TextContent):
            parts.append(item.text)
        elif isinstance(item, EmbeddedResource) and isinstance(item.resource, TextResourceContents):
            parts.append(item.resource.text)
        elif isinstance(item, ResourceLink):
            parts.append(f"[resource {item.uri}]")
        elif isinstance(item, ImageContent):
            parts.append(f"[{item.mime_type} image omitted]")
        else:
            parts.append(f"[{item.type} content omitted]")
    if parts and any(isinstance(item, TextContent) for item in result.content):
        return "\n".join(parts)
    if result.structured_content is not None:
        structured = orjson.dumps(result.structured_content, default=str).decode()
        return "\n".join([structured, *parts])
    return "\n".join(parts)
