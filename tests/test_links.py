"""Links as read capabilities, tried as an attacker would, and one MCP session as one app session.

Slow tier: ``python app.py`` (tiny profile) for the module. Session A (a browser-like session over Gradio's
queue, and an MCP session) makes files; session B is handed every link A was given (a leaked screenshot,
a forwarded message, an agent's log) and tries each one through every endpoint and every file or link
parameter: every try is refused with the file-parameter message, nothing of A's changes or goes, and A's
links all still answer afterwards. Then one MCP session does the whole flow over several calls (upload
once, validate, create an identity from the same links, generate, favourite, delete) and every URL it
was given answers 404; a session closed by its client is gone too. Last, a LoRA training paused by a
tight emulated ZeroGPU quota is continued over MCP to the weights of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("mcp")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NOT_YOURS = "not a file of this session"
# A refusal: ours, or Gradio's own type check of a file parameter (a photo given as an identity file),
# which comes first.
REFUSED = (NOT_YOURS, "not one of the headshots made in this session", "Invalid file type")
LINK = re.compile(r"'url': '([^']+/gradio_api/file=[^']+)'")


@pytest.fixture(scope="module")
def obama(faces_dir) -> list[str]:
    return sorted(str(p) for p in (faces_dir / "same_person" / "obama").glob("*.jpg"))


# --------------------------------------------------------------------------------------
# Raw Gradio calls: a browser's queue protocol, so that file parameters carry the server paths given
# (gradio_client would upload a local file it can read, making it the caller's own upload)
# --------------------------------------------------------------------------------------


def upload(url: str, paths: list[str], headers: dict | None = None) -> list[str]:
    files = [("files", (Path(p).name, Path(p).read_bytes())) for p in paths]
    response = httpx.post(url + "gradio_api/upload", files=files, headers=headers or {}, timeout=60)
    response.raise_for_status()
    return response.json()


def fd(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


_INFO: dict = {}


def call(url: str, session_hash: str, api_name: str, **values) -> dict:
    """One endpoint call in the session ``session_hash`` (its gr.State lasts across calls): the
    parameters by name, the rest at their API defaults. Returns Gradio's process_completed message."""
    if not _INFO:
        _INFO.update(httpx.get(url + "gradio_api/info", timeout=30).json()["named_endpoints"])
        _INFO["config"] = httpx.get(url + "config", timeout=30).json()
    params = _INFO[f"/{api_name}"]["parameters"]
    unknown = set(values) - {p["parameter_name"] for p in params}
    assert not unknown, unknown
    data = [values.get(p["parameter_name"], p.get("parameter_default")) for p in params] + [None]  # + State
    fn_index = next(d["id"] for d in _INFO["config"]["dependencies"] if d.get("api_name") == api_name)
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None}
    httpx.post(url + "gradio_api/queue/join", json=body, timeout=30).raise_for_status()
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session_hash},
                      timeout=180) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event did not complete")


def ok(message: dict) -> list:
    assert message["success"], message
    return message["output"]["data"]


def urls(value) -> list[str]:
    if isinstance(value, dict):
        return [value["url"]] if value.get("url") else [u for v in value.values() for u in urls(v)]
    if isinstance(value, (list, tuple)):
        return [u for v in value for u in urls(v)]
    return []


def path_of(link: str) -> str:
    return link.split("/gradio_api/file=", 1)[1]


def status(link: str) -> int:
    return httpx.get(link, timeout=30).status_code


def files_under(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def session_folder(link: str) -> Path:
    parts = Path(path_of(link)).parts
    return Path(*parts[: parts.index("sessions") + 2])


# --------------------------------------------------------------------------------------
# Two queue sessions: B holds all of A's links
# --------------------------------------------------------------------------------------


def test_a_leaked_link_is_refused_by_every_parameter_of_another_session(app):
    url = app[0]
    photos = [str(EXAMPLES / "astronaut.jpg"), str(EXAMPLES / "astronaut-mirrored.jpg")]
    a, b = f"A{time.time_ns()}", f"B{time.time_ns()}"

    # A: upload, check, identity, a headshot, a pack, a favourite
    a_uploads = upload(url, photos)
    ok(call(url, a, "validate_selfies", selfies=[fd(p) for p in a_uploads]))
    a_identity = ok(call(url, a, "create_identity", selfies=[fd(p) for p in a_uploads]))[0]
    gallery = ok(call(url, a, "generate", identity=fd(a_identity["path"]), num_images=1, steps=1, seed=1))[0]
    a_headshot = urls(gallery)[0]
    a_zip = urls(ok(call(url, a, "generate_pack", identity_link=a_identity["url"], styles=["corporate-grey"],
                         images_per_style=1, seed=2))[0])  # fmt: skip
    favourites = ok(call(url, a, "favourite", image=a_headshot))
    leaked = [f"{url}gradio_api/file={p}" for p in a_uploads] + [a_identity["url"], a_headshot, *a_zip]
    leaked += urls(favourites)
    assert all(status(u) == 200 for u in leaked)
    a_folder = session_folder(a_identity["url"])
    before = files_under(a_folder)

    # B: its own identity and headshot, then every link of A's through every parameter
    b_uploads = upload(url, photos)
    b_identity = ok(call(url, b, "create_identity", selfie_links=" ".join(b_uploads)))[0]
    b_headshot = urls(ok(call(url, b, "generate", identity_link=b_identity["url"], num_images=1, steps=1))[0])[0]
    refusals = []
    for link in leaked:
        path = path_of(link)
        refusals += [  # file parameters: the server path, as a browser sends it
            call(url, b, "validate_selfies", selfies=[fd(path)]),
            call(url, b, "create_identity", selfies=[fd(path)]),
            call(url, b, "generate", identity=fd(path), steps=1),
            call(url, b, "generate_pack", identity=fd(path), styles=["corporate-grey"]),
        ]
        refusals += [call(url, b, name, identity_link=b_identity["url"], image=fd(path))
                     for name in ("refine", "more_like_this", "regenerate")]  # fmt: skip
        refusals.append(call(url, b, "verify", image=fd(path)))  # its credentials are A's to read
        # the link as a URL file (as gradio_client sends handle_file(url)): Gradio would fetch it anew
        as_url = {"path": link, "url": link, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}
        refusals += [call(url, b, "generate", identity=as_url, steps=1),
                     call(url, b, "validate_selfies", selfies=[as_url])]  # fmt: skip
        for value in (link, path):  # link parameters: the URL and the bare server path
            refusals += [
                call(url, b, "validate_selfies", selfie_links=value),
                call(url, b, "create_identity", selfie_links=f"{b_uploads[0]} {value}"),
                call(url, b, "generate", identity_link=value, steps=1),
                call(url, b, "generate_pack", identity_link=value, styles=["corporate-grey"], images_per_style=1),
                call(url, b, "favourite", image=value),
                call(url, b, "verify", image_link=value),
            ]
            for api_name in ("refine", "more_like_this", "regenerate"):
                refusals += [
                    call(url, b, api_name, identity_link=b_identity["url"], image_link=value),
                    call(url, b, api_name, identity_link=value, image_link=b_headshot),
                ]
    for message in refusals:
        assert not message["success"], message
        text = json.dumps(message["output"])
        assert any(r in text for r in REFUSED), text
    # the same through gradio_client, as a script holding the links would: URLs as files and as links
    thief = gradio_client.Client(url, verbose=False, download_files=False)
    for link in leaked:
        for kwargs in ({"identity": gradio_client.handle_file(link)}, {"identity_link": link}):
            with pytest.raises(gradio_client.exceptions.AppError, match=r"not a file of this session|Invalid file"):
                thief.predict(steps=1, api_name="/generate", **kwargs)
        with pytest.raises(gradio_client.exceptions.AppError, match=r"not a file of this session|Invalid file"):
            thief.predict(selfies=[gradio_client.handle_file(link)], api_name="/validate_selfies")
    assert thief.predict(files=" ".join(leaked), api_name="/delete_my_data")["deleted_files"] == 0
    deleted = ok(call(url, b, "delete_my_data", files=" ".join(leaked + [path_of(u) for u in leaked])))[0]
    assert deleted["deleted_files"] == 0 and "not files of this session" in deleted["message"], deleted

    # A is untouched: every link answers, nothing in its folder changed, and it goes on working
    assert {u: status(u) for u in leaked} == dict.fromkeys(leaked, 200)
    assert files_under(a_folder) == before
    more = urls(ok(call(url, a, "regenerate", identity_link=a_identity["url"], image_link=a_headshot))[0])
    assert len(more) == 1 and status(more[0]) == 200
    # A's delete with files= removes only the named file; without, everything of A's
    one = ok(call(url, a, "delete_my_data", files=more[0]))[0]
    assert one["deleted_files"] == 1 and status(more[0]) == 404 and status(a_headshot) == 200
    assert ok(call(url, a, "delete_my_data"))[0]["deleted_files"] >= len(leaked)
    assert {u: status(u) for u in leaked} == dict.fromkeys(leaked, 404)
    assert status(b_identity["url"]) == 200 and status(b_headshot) == 200  # B's own files are B's to delete


def test_session_files_are_not_kept_by_caches(app):
    url = app[0]
    (uploaded,) = upload(url, [str(EXAMPLES / "astronaut.jpg")])
    response = httpx.get(f"{url}gradio_api/file={uploaded}", timeout=30)
    assert response.status_code == 200 and response.headers["cache-control"] == "private, no-store"
    assert re.search(r"/uploads/[0-9a-f]{32}/", uploaded)


# --------------------------------------------------------------------------------------
# MCP: the streamable-HTTP session is the app session
# --------------------------------------------------------------------------------------


def data_url(path: str) -> str:
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode()


class Agent:
    """One MCP session (the Python ``mcp`` client over streamable HTTP) and what it was given."""

    def __init__(self, session, sid: str, url: str):
        self.session, self.sid, self.url = session, sid, url
        self.given: list[str] = []

    async def __call__(self, tool: str, **arguments) -> str:
        """The tool's text answer; raises AssertionError with the message when the call failed."""
        result = await self.session.call_tool(tool, arguments)
        text = "\n".join(c.text for c in result.content if c.type == "text")
        if result.isError:
            raise AssertionError(text)
        self.given += LINK.findall(text)
        return text

    async def refused(self, tool: str, **arguments) -> str:
        result = await self.session.call_tool(tool, arguments)
        text = "\n".join(c.text for c in result.content if c.type == "text")
        assert result.isError, (tool, arguments, text)
        return text


async def _with_agents(url: str, count: int, body):
    """Run ``body(*agents)`` with ``count`` MCP sessions open; each is closed (DELETE) afterwards."""
    from contextlib import AsyncExitStack

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with AsyncExitStack() as stack:
        agents = []
        for _ in range(count):
            read, write, sid = await stack.enter_async_context(streamablehttp_client(url + "gradio_api/mcp/"))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            agents.append(Agent(session, sid(), url))
        return await body(*agents)


def test_one_mcp_session_spans_its_calls_and_delete_removes_everything(app, obama):
    url = app[0]

    async def flow(agent: Agent):
        assert re.fullmatch(r"[0-9a-f]{32}", agent.sid)
        # upload 4 photos once (two with the session's header, two without), then use the links
        uploaded = upload(url, obama[:2], {"mcp-session-id": agent.sid}) + upload(url, obama[2:4])
        links = " ".join(uploaded)
        report = await agent("validate_selfies", selfie_links=links)
        assert "'accepted': 4" in report, report
        as_files = await agent("validate_selfies", selfies=[f"{url}gradio_api/file={p}" for p in uploaded])
        assert "'accepted': 4" in as_files
        identity = LINK.findall(await agent("create_identity", selfie_links=links))[0]
        headshots = LINK.findall(await agent("generate", identity=identity, num_images=2, steps=1, seed=4))
        assert len(headshots) == 2
        await agent("favourite", image=headshots[0])
        given = [f"{url}gradio_api/file={p}" for p in uploaded] + agent.given
        assert all(status(u) == 200 for u in given)
        deleted = await agent("delete_my_data")
        assert "Deleted your data" in deleted
        return given

    given = asyncio.run(_with_agents(url, 1, flow))
    assert {u: status(u) for u in given} == dict.fromkeys(given, 404)


def test_a_link_from_one_mcp_session_is_refused_in_another(app, obama):
    url = app[0]

    async def attack(owner: Agent, thief: Agent):
        uploaded = upload(url, obama[:2])
        identity = LINK.findall(await owner("create_identity", selfie_links=" ".join(uploaded)))[0]
        headshot = LINK.findall(await owner("generate", identity_link=identity, num_images=1, steps=1))[0]
        mine = LINK.findall(await thief("create_identity", selfie_links=data_url(obama[0])))[0]
        leaked = [f"{url}gradio_api/file={p}" for p in uploaded] + [identity, headshot]
        for link in leaked:
            for value in (link, path_of(link)):
                for tool, arguments in (
                    ("validate_selfies", {"selfie_links": value}),
                    ("validate_selfies", {"selfies": [link]}),
                    ("create_identity", {"selfie_links": value}),
                    ("create_identity", {"selfies": [value]}),
                    ("generate", {"identity_link": value, "steps": 1}),
                    ("generate", {"identity": value, "steps": 1}),
                    ("generate_pack", {"identity_link": value, "styles": ["corporate-grey"]}),
                    ("refine", {"identity_link": mine, "image_link": value}),
                    ("refine", {"identity_link": mine, "image": value}),
                    ("more_like_this", {"identity_link": value, "image_link": headshot}),
                    ("regenerate", {"identity": value, "image": headshot}),
                    ("favourite", {"image": value}),
                ):
                    text = await thief.refused(tool, **arguments)
                    assert any(r in text for r in REFUSED), (tool, arguments, text)
        answer = await thief("delete_my_data", files=" ".join(leaked))
        assert "'deleted_files': 0" in answer, answer
        assert {u: status(u) for u in leaked} == dict.fromkeys(leaked, 200)
        again = LINK.findall(await owner("regenerate", identity_link=identity, image_link=headshot))
        assert again and status(again[0]) == 200
        return leaked + again, mine

    owners, thiefs = asyncio.run(_with_agents(url, 2, attack))
    # both sessions were closed by their clients: everything each made is gone
    assert {u: status(u) for u in [*owners, thiefs]} == dict.fromkeys([*owners, thiefs], 404)


def test_every_tool_parameter_is_described_and_a_request_over_the_limit_says_what_to_do(app):
    tools = httpx.get(app[0] + "gradio_api/mcp/schema", timeout=30).json()
    for tool in tools:
        for name, schema in tool["inputSchema"].get("properties", {}).items():
            assert schema.get("description"), (tool["name"], name)
        assert "upload_file_to_gradio" not in tool["description"], tool["name"]

    async def too_big(agent: Agent):
        from mcp.shared.exceptions import McpError

        with pytest.raises(McpError) as caught:
            too_much = "data:image/jpeg;base64," + "A" * (5 << 20)
            await agent.session.call_tool("validate_selfies", {"selfie_links": too_much})
        assert await agent("list_styles")  # the session lives on
        return str(caught.value)

    message = asyncio.run(_with_agents(app[0], 1, too_big))
    assert "4 MiB" in message and "/gradio_api/upload" in message and "selfie_links" in message


# --------------------------------------------------------------------------------------
# A paused LoRA training, continued over MCP
# --------------------------------------------------------------------------------------


def _lora_weights(data: bytes) -> dict:
    from safetensors.torch import load

    return {k: v for k, v in load(data).items() if k.startswith("lora.") or ".lora_" in k}


def test_a_paused_lora_training_is_continued_over_mcp(app, obama):
    """The quota is exactly what one training call asks at admission, so the second call is refused (the first
    is charged the seconds it ran, which leaves less than a whole request); it comes back after the window."""
    import torch

    from headshot.gpu import sizing, zerogpu
    from tests.e2e import running_app

    per_call, window = 3, 25
    duration = sizing.train_duration(None, None, type("S", (), {"steps": per_call})(), None, 2 * per_call)
    seconds = zerogpu.requested_quota(duration)  # what one call asks of the quota at admission
    env = {
        "HEADSHOT_ZEROGPU_EMULATE": "1",
        "HEADSHOT_LORA_STEPS_PER_CALL": str(per_call),
        "HEADSHOT_ZEROGPU_QUOTA": str(seconds),
        "HEADSHOT_ZEROGPU_QUOTA_WINDOW": str(window),
    }

    async def pause_and_continue(agent: Agent, other: Agent):
        links = " ".join(upload(tight, obama[:3]))
        text = await agent.refused("create_identity", selfie_links=links, method="lora", lora_steps=2 * per_call)
        assert f"saved at step {per_call} of {2 * per_call}" in text, text
        assert re.search(rf"this step needs {seconds} s of GPU time and \d+ s are left\. More GPU time is yours "
                         r"again in \d+ s", text), text  # fmt: skip
        assert "no paused LoRA training" in await other.refused("continue_identity")
        await asyncio.sleep(window + 1)
        identity = LINK.findall(await agent("continue_identity"))[0]
        return httpx.get(identity, timeout=30).content

    with running_app(extra_env=env) as (tight, _):
        continued = asyncio.run(_with_agents(tight, 2, pause_and_continue))
    whole, summary = gradio_client.Client(app[0], verbose=False).predict(
        selfies=[gradio_client.handle_file(p) for p in obama[:3]], method="lora", lora_steps=2 * per_call,
        api_name="/create_identity",
    )
    assert summary["steps_run"] == 2 * per_call
    a, b = _lora_weights(continued), _lora_weights(Path(whole).read_bytes())
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
