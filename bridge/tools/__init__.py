"""Tools the agent calls while talking, and call control (transfer, hang-up, DTMF).

- `build_tools(persona, settings)`: a call's tools, built once (`catalogue.py`); its
  `function_tools` are the session's `tools`, and it maps names to what runs.
- `unavailable_tools(personas, settings)`: why listed tools are not offered (start-up log).
- `ToolRunner`: runs one function call with its tool, bounded by its timeout (`runner.py`).
- `ToolCatalogue`: the server's tools object (`Services.tools`): each call's tools, the HTTP
  tools' shared client and the MCP servers' listings, started and closed with the app.

`base` holds the types every tool shares; one tool per module (`web_search`, `transfer`,
`end_call`, `http_tool`: the persona's own HTTP tools) imports only `base`; `mcp_client` is one
MCP server; `dtmf` decides what a key does, `call_control` speaks Twilio REST, and `catalogue`
imports the tool modules to list and build them.
"""

from bridge.tools.base import Handoff, Tool, ToolEnv, ToolResult, speak_exactly
from bridge.tools.catalogue import (
    CallTools,
    ToolCatalogue,
    UnavailableTool,
    build_tools,
    unavailable_tools,
)
from bridge.tools.runner import ToolRunner

__all__ = [
    "CallTools",
    "Handoff",
    "Tool",
    "ToolCatalogue",
    "ToolEnv",
    "ToolResult",
    "ToolRunner",
    "UnavailableTool",
    "build_tools",
    "speak_exactly",
    "unavailable_tools",
]
