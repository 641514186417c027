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


def test_a_list_of_files_in_gradios_own_parameter_is_refused_clearly(app):
    """Gradio's MCP layer cannot turn strings in a list-of-files parameter into files: the call fails
    with a message, not a schema crash (PointerToNowhere), and the server keeps serving."""
    flow = _flow()

    async def call():
        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(app[0] + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                photo = flow.data_url(str(ROOT / "examples" / "astronaut.jpg"))
                bad = await session.call_tool("validate_selfies", {"selfies": [photo]})
                good = await session.call_tool("list_styles", {})
                return bad, good

    bad, good = asyncio.run(call())
    assert bad.isError and "PointerToNowhere" not in bad.content[0].text
    assert not good.isError
