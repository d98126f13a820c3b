"""The persona's own tools and MCP servers in `persona check`: each mistake named with file,
line, field and reason, like the rest of a persona."""

from __future__ import annotations

import textwrap

import pytest

from bridge.persona import check_command, load_personas
from tests.persona._support import WriteYaml, load_errors

DESK = "name: desk\ninstructions: Be brief.\ngreeting: Hello.\n"
"""The three required fields (lines 1-3); a case's YAML starts at line 4."""
TOOL = """\
tools:
  take_message:
    type: http
    description: Record a message.
    url: https://crm.example.com/hooks/message
"""
"""An HTTP tool, lines 4-8: `take_message` on line 5, its `url` on line 8."""


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        pytest.param(
            TOOL.replace("type: http", "type: grpc"),
            6,
            "tools.take_message.type: input should be 'http' (got 'grpc')",
            id="unknown-type",
        ),
        pytest.param(
            TOOL.replace("https://crm", "ftp://crm"),
            8,
            "tools.take_message.url: 'ftp://crm.example.com/hooks/message' is not an https URL",
            id="bad-url-scheme",
        ),
        pytest.param(
            TOOL.replace("https://crm", "http://crm"),
            8,
            "tools.take_message.url: plain http only to a loopback host (127.0.0.1, ::1, "
            "localhost), not 'crm.example.com'; use https",
            id="plain-http-to-a-host-that-is-not-loopback",
        ),
        pytest.param(
            TOOL + "    parameters:\n      type: string\n",
            10,
            "tools.take_message.parameters.type: the arguments' schema must be an object "
            "schema (`type: object`)",
            id="a-schema-that-is-not-an-object-schema",
        ),
        pytest.param(
            TOOL + "    parameters:\n      type: object\n      required: name\n",
            11,
            "tools.take_message.parameters.required: not a valid JSON Schema: 'name' is not of "
            "type 'array'",
            id="a-schema-that-is-not-valid-json-schema",
        ),
        pytest.param(
            TOOL + '    headers:\n      Authorization: "Bearer ${VB_TEST_UNSET_TOKEN}"\n',
            10,
            "tools.take_message.headers.Authorization: ${VB_TEST_UNSET_TOKEN} is not set in "
            "the environment",
            id="an-unset-variable",
        ),
        pytest.param(
            TOOL.replace("take_message", "web_search"),
            5,
            "tools.web_search: 'web_search' is a built-in tool; give your own tool another name",
            id="a-name-clash-with-a-built-in-tool",
        ),
        pytest.param(
            TOOL.replace("  take_message:", '  "take message":'),
            5,
            "tools[\"take message\"]: 'take message' is not a tool name: letters, digits, '_', "
            "'-' (max 64)",
            id="a-name-the-model-cannot-call",
        ),
        pytest.param(
            "tools:\n  take_message:\n    url: https://crm.example.com/\n",
            5,
            "tools.take_message: unknown tool 'take_message'; built in: web_search, "
            "transfer_call, end_call; a tool of your own needs `type: http`",
            id="a-tool-of-ones-own-without-a-type",
        ),
        pytest.param(
            "mcp_servers:\n  calendar:\n    url: http://mcp.example.com/mcp\n",
            6,
            "mcp_servers.calendar.url: plain http only to a loopback host (127.0.0.1, ::1, "
            "localhost), not 'mcp.example.com'; use https",
            id="mcp-server-plain-http",
        ),
        pytest.param(
            "mcp_servers:\n  calendar:\n    url: https://mcp.example.com/mcp\n"
            "    headers: {Authorization: 'Bearer ${VB_TEST_UNSET_TOKEN}'}\n",
            7,
            "mcp_servers.calendar.headers.Authorization: ${VB_TEST_UNSET_TOKEN} is not set in "
            "the environment",
            id="mcp-server-unset-variable",
        ),
        pytest.param(
            TOOL + "mcp_servers:\n  calendar:\n    url: https://mcp.example.com/mcp\n"
            "    tools: [find_slot, take_message]\n",
            12,
            "mcp_servers.calendar.tools[1]: 'take_message' is already tools.take_message; an "
            "MCP tool cannot have its name",
            id="an-allow-listed-mcp-tool-with-the-name-of-an-http-tool",
        ),
        pytest.param(
            "mcp_servers:\n  calendar:\n    url: https://mcp.example.com/mcp\n"
            "    tools:\n      - end_call\n",
            8,
            "mcp_servers.calendar.tools[0]: 'end_call' is already a built-in tool; an MCP tool "
            "cannot have its name",
            id="an-allow-listed-mcp-tool-with-a-built-in-name",
        ),
    ],
)
def test_an_error_names_file_line_field_and_reason(
    write_yaml: WriteYaml, tail: str, line: int, message: str
) -> None:
    path = write_yaml(DESK + textwrap.dedent(tail))
    assert load_errors(path) == [f"{path}:{line}: {message}"]


def test_a_valid_http_tool_and_mcp_server_load_with_their_settings(
    write_yaml: WriteYaml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VB_TEST_CAL_TOKEN", "cal-0123456789")
    path = write_yaml(
        DESK
        + TOOL
        + "    method: get\n    timeout_seconds: 2.5\n    filler: One moment.\n"
        + "mcp_servers:\n  calendar:\n    url: http://127.0.0.1:8091/mcp\n"
        + "    headers: {Authorization: 'Bearer ${VB_TEST_CAL_TOKEN}'}\n"
        + "    tools: [find_slot]\n"
    )
    persona = load_personas(path).default
    tool = persona.tools.http["take_message"]
    assert (tool.method, tool.timeout_seconds, tool.filler) == ("GET", 2.5, "One moment.")
    assert tool.parameters == {"type": "object", "properties": {}}
    server = persona.mcp_servers["calendar"]
    assert server.tools == ("find_slot",) and server.timeout_seconds == 8.0
    assert server.resolved_headers == {"Authorization": "Bearer cal-0123456789"}
    assert persona.secrets == ("cal-0123456789",)
    assert check_command(str(path)) == 0
