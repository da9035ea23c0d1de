"""The HTTP API: routers, auth, error handling and SSE responses over the runtime's run service."""
