"""``tilepilot mcp``: tilepilot's operations as Model Context Protocol tools (the official ``mcp`` SDK).

:mod:`.server` builds the server (tools, run-folder resources, progress, elicitation for the
desktop guard); :mod:`.transport` serves it over stdio or streamable HTTP and holds the CLI command.
"""
