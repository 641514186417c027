"""An agent's flow through the app's MCP server (streamable HTTP), with the Python ``mcp`` client:
list the tools, send selfies, read the report, create an identity, generate headshots, delete the data.

    python app.py &
    python examples/mcp_flow.py http://127.0.0.1:7860 examples/astronaut.jpg examples/astronaut-mirrored.jpg

How files travel (Gradio's MCP server takes no file paths):

* selfies go in ``selfie_links`` as ``data:`` URLs (base64), separated by spaces. Links to files uploaded
  to this app (the paths that ``POST /gradio_api/upload`` returns, or their ``/gradio_api/file=`` URLs)
  work too. Gradio's own file parameters (``selfies``, ``identity``) accept https URLs only where the app
  can fetch them from a public address: on a local app they fail ("Hostname 127.0.0.1 failed
  validation"), so use the ``*_links`` parameters there.
* the identity file comes back as a link (its ``url``); pass that link as ``identity_link`` to
  ``generate`` (or a ``data:`` URL of the file).
* headshots come back as links to PNGs (with their likeness and seed in the info); ``delete_my_data`` with those links (``files``) deletes
  everything each call stored. MCP calls have no lasting session: every call keeps its files in a
  folder of its own, and without Delete the server removes them after 30 minutes.

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

            links = " ".join([out["identity_link"], *out["headshot_links"]])
            out["deleted"] = text_of(await session.call_tool("delete_my_data", {"files": links}))
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
