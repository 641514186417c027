"""Memory under many short sessions: does the server give back what each session used?

    python benchmarks/session_memory.py [--sessions 40] [--requests 8] [--workers 4] [--mcp-every 4]
                                        [--max-age 10] [--sweep-every 2] [--no-tracemalloc]

Starts ``python app.py`` (tiny profile, offline, ``../shared`` test data) with a short sweep (files and
sessions older than ``--max-age`` s are removed every ``--sweep-every`` s) and, unless
``--no-tracemalloc``, Python's ``tracemalloc`` running in the server (from the moment it serves). Then:

1. warm-up: two whole sessions (one ``gradio_client``, one MCP) so that every code path has run once,
   then a wait past the sweep: the **warm baseline** (RSS, and a tracemalloc snapshot in the server);
2. load: ``--sessions`` sessions, ``--workers`` at a time, ``--requests`` requests each (validate 2
   selfies, create an identity, generate twice, favourite, list styles and options, and either
   delete-my-data or a last validate); every ``--mcp-every``-th session is an MCP session (data URLs),
   of which half close their session and half just leave; the other sessions are ``gradio_client``
   clients, half of which never delete;
3. after: a wait past the sweep, RSS again; then in the server ``gc.collect()`` and ``malloc_trim(0)``
   (memory the allocator kept for reuse, handed back to the OS) and RSS once more, with what
   tracemalloc sees still allocated compared with the baseline (the top lines by growth), and the
   server's per-session records (kept sessions, upload claims, held objects, Gradio session states).

One JSON line per figure on stdout (``{"name", "value", "unit", "machine", "notes"}``); the top
tracemalloc lines go to stderr and into the ``tracemalloc_top`` figure's notes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# --------------------------------------------------------------------------------------
# In the server: tracemalloc and a report on SIGUSR1 (``--serve`` runs app.py under these hooks)
# --------------------------------------------------------------------------------------


def serve(report_path: str) -> None:
    """Run app.py in this process; each SIGUSR1 writes a report (the first one is the baseline)."""
    import gc
    import runpy
    import tracemalloc

    tracing = os.environ.get("BENCH_TRACEMALLOC") == "1"
    baseline: list = []
    # Tracing starts on SIGUSR2, once the app serves (tracing the imports of torch and gradio takes minutes).
    signal.signal(signal.SIGUSR2, lambda *_: tracemalloc.start(1) if tracing else None)

    def report(*_args) -> None:
        import ctypes

        from headshot import sessions

        gc.collect()
        rss_before_trim = _rss_mib(os.getpid())
        trimmed = 0
        with contextlib.suppress(OSError, AttributeError):
            trimmed = ctypes.CDLL("libc.so.6").malloc_trim(0)
        out: dict = {"rss_before_trim_mib": rss_before_trim, "rss_after_trim_mib": _rss_mib(os.getpid()),
                     "malloc_trim": trimmed, "kept_sessions": sessions.lasting_count(),
                     "upload_claims": len(sessions._CLAIMS), "held": len(sessions._HELD),
               "claimed_uploads_on_disk": sum((sessions.uploads_root() / t).exists() for t in list(sessions._CLAIMS))}
        holders = [o for o in gc.get_objects() if type(o).__name__ == "StateHolder"]
        out["gradio_session_states"] = sum(len(h.session_data) for h in holders)
        out["session_objects"] = sum(1 for o in gc.get_objects() if isinstance(o, sessions.Session))
        if tracing:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            out["traced_mib"] = round(sum(s.size for s in snapshot.statistics("filename")) / 2**20, 2)
            if not baseline:
                baseline.append(snapshot)
            else:
                diff = snapshot.compare_to(baseline[0], "lineno")
                out["traced_growth_mib"] = round(sum(d.size_diff for d in diff) / 2**20, 2)
                out["top"] = [
                    {"kib": round(d.size_diff / 1024, 1), "count": d.count_diff,
                     "where": " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in d.traceback[:4])}
                    for d in sorted(diff, key=lambda d: -d.size_diff)[:12]
                ]  # fmt: skip
        Path(report_path).write_text(json.dumps(out))

    signal.signal(signal.SIGUSR1, report)
    sys.argv = ["app.py"]
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def _photos() -> list[str]:
    shared = Path(os.environ.get("HEADSHOT_TEST_DATA") or ROOT.parent / "shared")
    found = sorted(str(p) for p in (shared / "testdata" / "faces" / "same_person" / "obama").glob("*.jpg"))
    return found[:2] if len(found) >= 2 else [str(ROOT / "examples" / "astronaut.jpg"),
                                              str(ROOT / "examples" / "astronaut-mirrored.jpg")]  # fmt: skip


def client_session(url: str, photos: list[str], requests: int, index: int) -> int:
    """One gradio_client session: ``requests`` requests; returns how many succeeded."""
    import gradio_client
    from gradio_client import handle_file

    client = gradio_client.Client(url, verbose=False, download_files=False)
    done = 0

    def step(api_name: str, **kwargs):
        nonlocal done
        result = client.predict(api_name=api_name, **kwargs)
        done += 1
        return result

    selfies = [handle_file(p) for p in photos]
    steps = [
        lambda: step("/validate_selfies", selfies=selfies),
        lambda: state.update(identity=step("/create_identity", selfies=selfies)[0]),
        lambda: state.update(info=step("/generate", identity=state["identity"], num_images=1, steps=1,
                                       seed=index)[1]),
        lambda: step("/generate", identity=state["identity"], num_images=1, steps=1, seed=index + 1000),
        lambda: step("/favourite", image=state["info"]["images"][0]["file"]),
        lambda: step("/list_styles"),
        lambda: step("/list_options"),
        lambda: step("/delete_my_data") if index % 2 else step("/validate_selfies", selfies=selfies[:1]),
    ]
    state: dict = {}
    for run in (steps * (requests // len(steps) + 1))[:requests]:
        run()
    client.close()
    return done


async def _mcp_session(url: str, photos: list[str], requests: int, index: int) -> int:
    import re

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    links = " ".join("data:image/jpeg;base64," + base64.b64encode(Path(p).read_bytes()).decode() for p in photos)
    link = re.compile(r"'url': '([^']+/gradio_api/file=[^']+)'")
    done = 0
    close = index % 2 == 0  # half close their MCP session, half just leave (the sweep ends those)
    async with streamablehttp_client(url + "gradio_api/mcp/", terminate_on_close=close) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            state: dict = {}

            async def step(tool: str, **arguments) -> str:
                nonlocal done
                result = await session.call_tool(tool, arguments)
                text = "\n".join(c.text for c in result.content if c.type == "text")
                if result.isError:
                    raise RuntimeError(f"{tool}: {text}")
                done += 1
                return text

            async def identity():
                state["identity"] = link.findall(await step("create_identity", selfie_links=links))[0]

            async def generate():
                state["headshot"] = link.findall(await step("generate", identity_link=state["identity"],
                                                            num_images=1, steps=1, seed=index))[0]  # fmt: skip

            plan = [
                lambda: step("validate_selfies", selfie_links=links),
                identity,
                generate,
                lambda: step("generate", identity_link=state["identity"], num_images=1, steps=1, seed=index + 1),
                lambda: step("favourite", image=state["headshot"]),
                lambda: step("list_styles"),
                lambda: step("list_options"),
                lambda: step("delete_my_data") if close else step("list_styles"),
            ]
            for run in (plan * (requests // len(plan) + 1))[:requests]:
                await run()
    return done


def mcp_session(url: str, photos: list[str], requests: int, index: int) -> int:
    return asyncio.run(_mcp_session(url, photos, requests, index))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--requests", type=int, default=8, help="requests per session")
    parser.add_argument("--workers", type=int, default=4, help="sessions at a time")
    parser.add_argument("--mcp-every", type=int, default=4, help="every n-th session is an MCP session (0: none)")
    parser.add_argument("--max-age", type=int, default=10, help="file and session age the sweep removes, s")
    parser.add_argument("--sweep-every", type=int, default=2, help="s between sweeps")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run the server, report to this file
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return {}

    import subprocess

    from benchmarks.run import Emitter, say
    from tests.e2e import _wait_until_serving, free_port

    emit = Emitter()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    report = Path(tempfile.mkdtemp(prefix="session-memory-")) / "report.json"
    shared = Path(os.environ.get("HEADSHOT_TEST_DATA") or ROOT.parent / "shared")
    env = {**os.environ, "HEADSHOT_PROFILE": "tiny", "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
           "HEADSHOT_SWEEP_EVERY_S": str(args.sweep_every), "HEADSHOT_MAX_FILE_AGE_S": str(args.max_age),
           "BENCH_TRACEMALLOC": "0" if args.no_tracemalloc else "1", "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.setdefault("HEADSHOT_FACE_MODELS", str(shared / "models" / "faces-small"))
    env.setdefault("HEADSHOT_CACHE_DIR", str(ROOT / ".cache" / "bench"))
    photos = _photos()
    log = open(ROOT / ".cache" / f"session-memory-{port}.log", "w")  # noqa: SIM115 - kept open for the server
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(report)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    settle = args.max_age + 3 * args.sweep_every + 2  # past the file age, and a sweep or two after it

    def snapshot() -> dict:
        report.unlink(missing_ok=True)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 900  # gc and a tracemalloc snapshot of a big heap take minutes
        while not report.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the server wrote no report")
            time.sleep(0.2)
        time.sleep(0.2)
        return json.loads(report.read_text())

    try:
        _wait_until_serving(proc, url, 300)
        proc.send_signal(signal.SIGUSR2)  # start tracemalloc (when on) before the warm-up
        say("warm-up: one gradio_client session and one MCP session")
        client_session(url, photos, 8, 0)
        mcp_session(url, photos, 8, 0)
        time.sleep(settle)
        warm_rss = _rss_mib(proc.pid)
        warm = snapshot()
        say(f"warm: {warm}")

        peak = [warm_rss]
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.5):
                peak.append(_rss_mib(proc.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()

        def one(index: int) -> int:
            is_mcp = args.mcp_every and index % args.mcp_every == 0
            return (mcp_session if is_mcp else client_session)(url, photos, args.requests, index + 1)

        with ThreadPoolExecutor(args.workers) as pool:
            answered = sum(pool.map(one, range(args.sessions)))
        load_s = time.monotonic() - started
        stop.set()
        watcher.join()
        load_rss = _rss_mib(proc.pid)
        say(f"load: {answered} requests answered in {load_s:.0f} s; RSS {load_rss} MiB; waiting {settle} s")
        time.sleep(settle)
        after_rss = _rss_mib(proc.pid)
        after = snapshot()
        say(f"after: {json.dumps({k: v for k, v in after.items() if k != 'top'})}")
        for line in after.get("top", []):
            say(f"  {line['kib']:>9} KiB  {line['count']:>+7}  {line['where']}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    notes = (f"{args.sessions} sessions ({args.sessions // args.mcp_every if args.mcp_every else 0} MCP), "
             f"{args.workers} at a time, {answered} requests; sweep every {args.sweep_every} s, "
             f"file age {args.max_age} s; tracemalloc {'off' if args.no_tracemalloc else 'on'}")  # fmt: skip
    emit("session_memory_requests", answered, "requests", notes)
    emit("session_memory_load_s", load_s, "s", notes)
    emit("rss_warm_mib", warm_rss, "MiB", "after the warm-up and a sweep")
    emit("rss_peak_mib", max(peak), "MiB", "during the load")
    emit("rss_after_sweep_mib", after_rss, "MiB", "after the load and a sweep")
    emit("rss_growth_pct", 100 * (after_rss - warm_rss) / warm_rss, "%", "after the sweep vs the warm baseline")
    emit("rss_after_trim_mib", after["rss_after_trim_mib"], "MiB",
         f"after gc and malloc_trim; warm baseline trimmed: {warm['rss_after_trim_mib']} MiB")  # fmt: skip
    for key in ("kept_sessions", "upload_claims", "held", "gradio_session_states", "session_objects"):
        emit(f"after_{key}", after[key], "count", f"warm: {warm[key]}")
    if "traced_growth_mib" in after:
        emit("traced_growth_mib", after["traced_growth_mib"], "MiB",
             f"Python allocations still live vs the warm baseline (warm {warm['traced_mib']} MiB traced)")
        top = "; ".join(f"{t['kib']} KiB {t['where']}" for t in after["top"][:5])
        emit("tracemalloc_top_kib", after["top"][0]["kib"] if after["top"] else 0, "KiB", top)
    return {"warm": warm, "after": after, "warm_rss": warm_rss, "after_rss": after_rss}


if __name__ == "__main__":
    main()
