"""Tools the agent calls while talking, and call control (transfer, hang-up, DTMF).

- `function_tools(persona, settings)`: the tools a call's session offers the model.
- `unavailable_tools(personas, settings)`: why listed tools are not offered (start-up log).
- `ToolRunner`: one call's tool tasks, keypad menu and call control (`runner.py`).

One tool per module: `web_search`, `transfer`, `end_call`; `dtmf` decides what a key does,
`call_control` speaks Twilio REST, `registry` holds the shared types and the catalogue.
"""

from bridge.tools.registry import (
    Handoff,
    Tool,
    ToolEnv,
    ToolResult,
    UnavailableTool,
    build_tools,
    function_tools,
    unavailable_tools,
)
from bridge.tools.runner import ToolRunner

__all__ = [
    "Handoff",
    "Tool",
    "ToolEnv",
    "ToolResult",
    "ToolRunner",
    "UnavailableTool",
    "build_tools",
    "function_tools",
    "unavailable_tools",
]
