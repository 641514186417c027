"""MCP end to end: the Python ``mcp`` client over streamable HTTP against ``python app.py`` (the module's app),
running examples/mcp_flow.py: list the tools, send selfies as data URLs, read the report, create an
identity, generate headshots from the returned link, and delete what the calls stored."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("mcp")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _flow():
    spec = importlib.util.spec_from_file_location("mcp_flow", ROOT / "examples" / "mcp_flow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_schemas_are_valid_json_schemas(app):
    import httpx
    import jsonschema

    tools = httpx.get(app[0] + "gradio_api/mcp/schema", timeout=30).json()
    for tool in tools:
        jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
        assert "$ref" not in json.dumps(tool["inputSchema"]), tool["name"]


def test_agent_flow_validate_identity_generate_delete(app):
    import httpx

    flow = _flow()
    photos = [str(ROOT / "examples" / "astronaut.jpg"), str(ROOT / "examples" / "astronaut-mirrored.jpg")]
    out = asyncio.run(flow.run(app[0], photos, steps=1))
    assert {"validate_selfies", "create_identity", "generate", "delete_my_data"} <= set(out["tools"])
    assert "'ready': True" in out["report"] and "'accepted': 2" in out["report"]
    assert out["identity_link"].endswith(".safetensors")
    assert len(out["headshot_links"]) == 2 and out["served"] == [200, 200]
    assert "Deleted your data" in out["deleted"]
    for link in [out["identity_link"], *out["headshot_links"]]:
        assert httpx.get(link, timeout=30).status_code == 404, link


def test_a_list_of_files_in_gradios_own_parameter_takes_data_urls_and_urls(app):
    """Gradio's MCP layer marks a list of files by its schema path but looks items up by index, so it
    never turned their strings into files ("The 'meta' field must be explicitly provided"): each item is
    a file now, as a data URL or as a link to a file of the session's."""
    flow = _flow()

    async def call():
        import httpx
        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(app[0] + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                photo = str(ROOT / "examples" / "astronaut.jpg")
                by_data = await session.call_tool("validate_selfies", {"selfies": [flow.data_url(photo)]})
                files = [("files", (p.name, p.read_bytes())) for p in sorted((ROOT / "examples").glob("*.jpg"))]
                first, second = httpx.post(app[0] + "gradio_api/upload", files=files, timeout=30).json()
                by_link = await session.call_tool(
                    "validate_selfies", {"selfies": [first, app[0] + "gradio_api/file=" + second]}
                )
                return flow.text_of(by_data), flow.text_of(by_link)

    by_data, by_link = asyncio.run(call())
    assert "'accepted': 1" in by_data and "'accepted': 2" in by_link
