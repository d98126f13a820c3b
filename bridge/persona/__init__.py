"""Who answers the phone: personas, the files they live in, and the session each call asks for.

A persona is everything the person who runs the line configures without touching code: what
the agent says and how, which tools it may use, where it may transfer, the keypad menu, the
opening hours, the limits of a call and what happens when the model cannot be reached.

Persona files are YAML, read within bounds (`yaml_reader`: size, nesting, alias expansion)
and validated once at the edge (`load_personas`) into frozen pydantic models; every mistake is
reported as `file:line: field.path: reason`, because the operator fixing it has the file open,
not the code. A `PersonaBook` holds the loaded personas and picks one by the called number
(`To`); the webhook sends the chosen persona's name to the stream in a `<Parameter>`, and the
stream looks it up again with `PersonaBook.get`.

All spoken texts and the instructions are templates (`templates`): `{caller_number}`,
`{business_name}`, `{today}`, `{now}` (in the persona's time zone) and `{persona_name}`;
`{{` and `}}` are literal braces. An unknown placeholder is a load-time error, never a
surprise on a call.

The modules, each importing only those before it: `errors`, `base` (the models' base),
`templates`, `integrations` (HTTP tools and MCP servers), `sections` (the parts of a
persona), `schema` (`Persona`, `DEFAULT_PERSONA`), `yaml_reader`, `source` (files and line
numbers), `book` (`PersonaBook`, `load_personas`), `check` (the command).
"""

from bridge.persona.book import PersonaBook, load_personas
from bridge.persona.check import check_command, describe
from bridge.persona.errors import PersonaError
from bridge.persona.integrations import HttpTool, McpServer
from bridge.persona.schema import DEFAULT_PERSONA, FallbackPlan, Identity, Persona
from bridge.persona.sections import (
    TOOL_NAMES,
    DtmfAction,
    DtmfConfig,
    EndCallTool,
    Fallback,
    Hours,
    Limits,
    OpeningInterval,
    Tools,
    TransferCallTool,
    TransferTarget,
    TurnDetectionConfig,
    WebSearchTool,
    Weekly,
    normalize_number,
)
from bridge.persona.templates import PLACEHOLDERS, Template
from bridge.persona.yaml_reader import MAX_PERSONA_FILE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

__all__ = [
    "DEFAULT_PERSONA",
    "MAX_PERSONA_FILE_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "PLACEHOLDERS",
    "TOOL_NAMES",
    "DtmfAction",
    "DtmfConfig",
    "EndCallTool",
    "Fallback",
    "FallbackPlan",
    "Hours",
    "HttpTool",
    "Identity",
    "Limits",
    "McpServer",
    "OpeningInterval",
    "Persona",
    "PersonaBook",
    "PersonaError",
    "Template",
    "Tools",
    "TransferCallTool",
    "TransferTarget",
    "TurnDetectionConfig",
    "WebSearchTool",
    "Weekly",
    "check_command",
    "describe",
    "load_personas",
    "normalize_number",
]
