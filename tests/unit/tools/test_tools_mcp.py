"""tools.mcp without a server: configuration parsing, result rendering, the lazy import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.mcp import MCPConfigError, MCPServer
from tools.mcp.content import error_text, render_result


def test_spec_parses_stdio_and_http_forms() -> None:
    """`NAME=COMMAND ARG ...` is a stdio server, `NAME=http://...` an HTTP one."""
    stdio = MCPServer.from_spec("files=python -m files_server --root '/srv/my data'")
    assert (stdio.transport, stdio.command) == ("stdio", "python")
    assert stdio.args == ("-m", "files_server", "--root", "/srv/my data")
    assert stdio.tool_prefix == "files__"
    web = MCPServer.from_spec("web=http://127.0.0.1:8000/mcp")
    assert (web.transport, web.url) == ("http", "http://127.0.0.1:8000/mcp")


@pytest.mark.parametrize(
    "spec", ["no-equals", "name=", "bad name=python", "x=python 'unclosed", "x y=cmd"]
)
def test_malformed_specs_raise_config_errors(spec: str) -> None:
    """Each malformed --mcp value is an MCPConfigError, not a crash later."""
    with pytest.raises(MCPConfigError):
        MCPServer.from_spec(spec)


def test_mapping_validates_keys_transport_and_timeouts() -> None:
    """Unknown keys, a stdio server without command, bad timeouts and prefixes are refused."""
    with pytest.raises(MCPConfigError, match="unknown"):
        MCPServer.from_mapping({"name": "a", "command": "x", "comand": "typo"})
    with pytest.raises(MCPConfigError, match="command"):
        MCPServer.from_mapping({"name": "a"})
    with pytest.raises(MCPConfigError, match="url"):
        MCPServer.from_mapping({"name": "a", "transport": "http", "url": "ftp://x"})
    with pytest.raises(MCPConfigError, match="timeouts"):
        MCPServer.from_mapping({"name": "a", "command": "x", "tool_timeouts": {"t": 0}})
    with pytest.raises(MCPConfigError, match="prefix"):
        MCPServer.from_mapping({"name": "a", "command": "x", "prefix": "a.b"})
    with pytest.raises(MCPConfigError, match="list of strings"):
        MCPServer.from_mapping({"name": "a", "command": "x", "deny": "admin"})


def test_allow_deny_and_timeouts_by_tool() -> None:
    """allow keeps only its names, deny removes after it; per-tool timeouts override."""
    server = MCPServer.from_mapping(
        {
            "name": "a",
            "command": "x",
            "allow": ["read", "write"],
            "deny": ["write"],
            "timeout_s": 5.0,
            "tool_timeouts": {"read": 1.5},
        }
    )
    assert [t for t in ("read", "write", "other") if server.exposes(t)] == ["read"]
    assert (server.timeout_for("read"), server.timeout_for("other")) == (1.5, 5.0)


def test_repr_and_description_hide_secrets() -> None:
    """env values, headers, args and URL credentials stay out of repr() and describe()."""
    server = MCPServer(
        name="s",
        transport="http",
        url="https://user:pw-secret@example.test/mcp?token=tok-secret",
        headers={"Authorization": "Bearer hdr-secret"},
    )
    text = repr(server) + server.describe()
    for secret in ("pw-secret", "tok-secret", "hdr-secret"):
        assert secret not in text
    assert server.describe() == "https://example.test/mcp"
    stdio = MCPServer(name="p", command="srv", args=("--token", "arg-secret"), env={"K": "env-s"})
    assert "arg-secret" not in repr(stdio) and "env-s" not in repr(stdio)


def test_results_render_text_and_describe_binary_content() -> None:
    """Text stays text; image, audio, resources and links become JSON descriptions."""
    mcp_types = pytest.importorskip("mcp_types")
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(type="text", text="hello"),
            mcp_types.ImageContent(type="image", data="AAECAw==", mime_type="image/png"),
            mcp_types.AudioContent(type="audio", data="AAA=", mime_type="audio/wav"),
            mcp_types.EmbeddedResource(
                type="resource",
                resource=mcp_types.TextResourceContents(
                    uri="file:///a.txt", text="body", mime_type="text/plain"
                ),
            ),
            mcp_types.EmbeddedResource(
                type="resource",
                resource=mcp_types.BlobResourceContents(uri="file:///b.bin", blob="AAAA"),
            ),
            mcp_types.ResourceLink(type="resource_link", uri="file:///c", name="c"),
        ]
    )
    lines = render_result(result).split("\n")
    assert lines[0] == "hello"
    assert [json.loads(line) for line in lines[1:]] == [
        {"type": "image", "mime_type": "image/png", "bytes": 4},
        {"type": "audio", "mime_type": "audio/wav", "bytes": 2},
        {"type": "resource", "uri": "file:///a.txt", "mime_type": "text/plain", "text": "body"},
        {"type": "resource", "uri": "file:///b.bin", "bytes": 3},
        {"type": "resource_link", "uri": "file:///c", "name": "c"},
    ]


def test_structured_only_results_and_error_texts() -> None:
    """No content: the structured content as JSON; an error without text: a generic message."""
    mcp_types = pytest.importorskip("mcp_types")
    structured = mcp_types.CallToolResult(content=[], structured_content={"n": 1})
    assert json.loads(render_result(structured)) == {"n": 1}
    silent_error = mcp_types.CallToolResult(content=[], is_error=True)
    assert "without a message" in error_text(silent_error)


def test_importing_tools_and_tools_mcp_does_not_import_the_sdk() -> None:
    """The SDK is imported only when a server is started."""
    code = "import sys, tools, tools.mcp; print(any(m.split('.')[0] == 'mcp' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
