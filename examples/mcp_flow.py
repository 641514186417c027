"""An agent's flow through the app's MCP server (streamable HTTP), with the Python ``mcp`` client:
list the tools, send selfies, read the report, create an identity, generate headshots, delete the data.

    python app.py &
    python examples/mcp_flow.py http://127.0.0.1:7860 examples/astronaut.jpg examples/astronaut-mirrored.jpg

How files travel. One MCP session (the ``Mcp-Session-Id`` the server issues at ``initialize``) is one app
session: everything its calls upload or make is its own, usable in all its later calls and refused in
any other session, and it all goes with ``delete_my_data`` or when the client closes the session (the
server also ends sessions idle for 30 minutes).

* small photos: ``data:`` URLs, in ``selfie_links`` (separated by spaces) or one per item of ``selfies``.
  A request holds at most 4 MiB, so four phone photos do not fit in one call:
* larger photos: upload them once, ``POST /gradio_api/upload`` (multipart, field ``files``; send the MCP
  session's ``Mcp-Session-Id`` header with it), which answers with their server paths; pass those paths
  (or their ``/gradio_api/file=`` URLs) in ``selfie_links`` or ``selfies`` in every later call.
* the identity file comes back as a link (its ``url``); pass it as ``identity_link`` (or ``identity``).
* headshots come back as links to PNGs (with their likeness and seed in the info). ``delete_my_data``
  deletes everything of the session (``files=`` some of its links: only those files).

Calling the tools asserts that the photos are of you, or that the person agreed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import re
import sys
from pathlib import Path

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

LINK = re.compile(r"'url': '([^']+/gradio_api/file=[^']+)'")


def data_url(path: str) -> str:
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def text_of(result) -> str:
    """The text parts of a tool result; raises with the server's message when the call failed."""
    text = "\n".join(c.text for c in result.content if c.type == "text")
    if result.isError:
        raise RuntimeError(text)
    return text


async def run(url: str, photos: list[str], *, style: str = "corporate-grey", steps: int = 0) -> dict:
    """The whole flow; returns what each step gave (tool names, report, links, result of the delete)."""
    out: dict = {}
    async with streamablehttp_client(url.rstrip("/") + "/gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)

            selfies = " ".join(data_url(p) for p in photos)
            report = text_of(await session.call_tool("validate_selfies", {"selfie_links": selfies}))
            out["report"] = report

            identity = text_of(
                await session.call_tool("create_identity", {"selfie_links": selfies, "method": "instantid"})
            )
            out["identity_link"] = LINK.findall(identity)[0]

            options = {"identity_link": out["identity_link"], "style": style, "num_images": 2, "seed": 42}
            if steps:
                options["steps"] = steps
            out["headshot_links"] = LINK.findall(text_of(await session.call_tool("generate", options)))
            async with httpx.AsyncClient() as http:  # the links serve the PNGs (until Delete)
                out["served"] = [(await http.get(link)).status_code for link in out["headshot_links"]]

            out["deleted"] = text_of(await session.call_tool("delete_my_data", {}))
    return out


def main(url: str, photos: list[str]) -> None:
    out = asyncio.run(run(url, photos))
    print("tools:", ", ".join(out["tools"]))
    print("report:", out["report"][:300], "...")
    print("identity:", out["identity_link"])
    print("headshots:", json.dumps(out["headshot_links"], indent=1), "HTTP", out["served"])
    print("delete:", out["deleted"])


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
