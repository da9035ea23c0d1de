"""MCP servers as tool sources for agent steps: configuration, sessions, tool naming."""
