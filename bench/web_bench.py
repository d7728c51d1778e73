"""Figures of the admin web UI: page server time with 5,000 entities, and what polling browsers cost the gateway.

Prints one line per measurement; run from the repository root:
    .venv/bin/python bench/web_bench.py [--mode pages|throughput|both] [--requests 200] [--seconds 5]

Modes (the issue's targets in brackets):
  pages        a real gateway (simulated source → buffer → MQTT uplink on a loopback mosquitto) holding
               5,000 entities in its latest values, its control socket, and the web app logged in as a
               viewer: server time of `/`, `/live` (first page of 500 by id: the gateway sends 500) and
               `/live?sort=newest` (the gateway sends all 5,000, the page sorts them), p50/p95 over
               --requests each, measured by a middleware around the handlers, the control call
               included [p95 < 100 ms]
  throughput   the e2e bench's throughput-mqtt scenario (durability full, 5,000 entities), run without
               and with the web UI in its own process polled by 5 clients, each fetching /api/status
               and /api/latest every second; prints both and the difference [< 5 %]
The gateway runs in this process as in bench/e2e_bench.py; the UI of the throughput mode in a child
process, as `edgegw web` runs beside the gateway. Keep --seconds short on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, CookieJar, web  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from bench.e2e_bench import gateway_doc, machine, mqtt_uplink, sim  # noqa: E402
from gateway.accounts.store import AccountStore, Role  # noqa: E402
from gateway.app import Runtime, tune_runtime  # noqa: E402
from gateway.audit.log import AuditLog  # noqa: E402
from gateway.buffer.reader import BufferReader  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.control.client import ControlClient  # noqa: E402
from gateway.control.server import ControlServer  # noqa: E402
from gateway.web.app import build_app  # noqa: E402
from gateway.web.auth import Handler  # noqa: E402
from gateway.web.config import WebConfig  # noqa: E402
from gateway.web.services import WebServices  # noqa: E402
from tests.support.mosquitto import MosquittoBroker  # noqa: E402

ENTITIES = 5_000
USER, PASSWORD = "viewer1", "correct horse battery staple 42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- a gateway with its control socket ---------------------------------------------------------------


@asynccontextmanager
async def gateway(doc: dict[str, Any], work: Path) -> AsyncIterator[tuple[Runtime, Path]]:
    sockets = Path(tempfile.mkdtemp(dir="/tmp", prefix="egwb"))  # a socket path must stay short
    sock = sockets / "control.sock"
    runtime = Runtime(work / "gateway.toml", parse_config(doc))  # the file is read only by reload/config ops
    server = ControlServer(sock, runtime, tools=[])
    await server.start()
    await runtime.start()
    try:
        yield runtime, sock
    finally:
        await server.stop()
        await runtime.stop()
        shutil.rmtree(sockets, ignore_errors=True)


# --- the web UI ----------------------------------------------------------------------------------------


def services(sock: Path, data_dir: Path, state: Path) -> WebServices:
    config = WebConfig()
    return WebServices(
        config=config,
        gateway_config_path=data_dir.parent / "gateway.toml",
        control=ControlClient(sock, timeout_s=30.0),
        buffer=BufferReader(data_dir / "buffer.db"),
        # a cheap Argon2id: logging in is not what is measured
        accounts=AccountStore(state, config, hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)),
        audit=AuditLog(state),
        clock=time.time,
    )


@asynccontextmanager
async def web_ui(svc: WebServices, timings: dict[str, list[float]] | None = None) -> AsyncIterator[str]:
    """The app on a loopback port (plain HTTP: TLS is not the web app's cost); yields its base URL."""
    app = build_app(svc)
    if timings is not None:

        @web.middleware
        async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
            t0 = time.perf_counter()
            try:
                return await handler(request)
            finally:
                if request.path in timings:
                    timings[request.path].append((time.perf_counter() - t0) * 1000)

        app.middlewares.insert(0, timed)
    if svc.accounts.get_user(USER) is None:
        svc.accounts.add_user(USER, Role.VIEWER, PASSWORD, now=time.time())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await svc.control.close()
        await svc.buffer.close()


async def browser(base: str) -> ClientSession:
    """A client logged in as the bench's viewer (the session cookie is Secure: loopback counts as secure here)."""
    session = ClientSession(cookie_jar=CookieJar(unsafe=True, treat_as_secure_origin=[base]))
    async with session.get(f"{base}/login") as r:
        token = CSRF_RE.search(await r.text())
    assert token, "no CSRF token on /login"
    form = {"csrf_token": token.group(1), "name": USER, "password": PASSWORD}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as r:
        assert r.status in (302, 303), f"login: HTTP {r.status}"
    return session


# --- mode pages ------------------------------------------------------------------------------------------


async def run_pages(work: Path, broker_port: int, requests: int) -> None:
    data_dir = work / "pages" / "data"
    adapter = sim(100_000, entities=ENTITIES) | {"limit": ENTITIES}  # every entity once, then quiet
    doc = gateway_doc(data_dir, mqtt_uplink(broker_port), durability="full", adapters=[adapter])
    async with gateway(doc, work / "pages") as (runtime, sock):
        deadline = time.monotonic() + 60
        while len(runtime.gateway.latest) < ENTITIES and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        print(f"latest values: {len(runtime.gateway.latest):,} entities")
        timings: dict[str, list[float]] = {"/": [], "/live": []}
        # /live sorted by id asks the gateway for one page; any other order needs all 5,000 entities
        urls = {"/": "/", "/live": "/live", "/live?sort=newest": "/live?sort=newest"}
        async with web_ui(services(sock, data_dir, work / "pages" / "web"), timings) as base:
            client = await browser(base)
            try:
                for label, url in urls.items():
                    path = url.split("?")[0]
                    timings[path].clear()
                    rows = 0
                    for _ in range(requests):
                        async with client.get(base + url) as r:
                            body = await r.text()
                            assert r.status == 200, f"{url}: HTTP {r.status}"
                        rows = body.count('<tr class="entity"')
                    t = timings[path]
                    print(
                        f"page {label:<18} server time p50 {statistics.median(t):6.1f} ms, "
                        f"p95 {percentile(t, 0.95):6.1f} ms, max {max(t):6.1f} ms over {len(t)} requests"
                        + (f" ({rows:,} rows shown, {len(body) / 1e6:.2f} MB)" if path == "/live" else "")
                    )
            finally:
                await client.close()


# --- mode throughput -------------------------------------------------------------------------------------


async def measure(runtime: Runtime, seconds: float, warmup: float) -> float:
    await asyncio.sleep(warmup)
    loop = runtime.gateway.loops[0]
    d0, t0 = loop.delivered, time.perf_counter()
    await asyncio.sleep(seconds)
    return (loop.delivered - d0) / (time.perf_counter() - t0)


async def run_throughput(
    work: Path, broker_port: int, seconds: float, pollers: int, tag: str, entities: int = ENTITIES
) -> float:
    data_dir = work / tag / "data"
    doc = gateway_doc(
        data_dir, mqtt_uplink(broker_port), durability="full", adapters=[sim(1_000_000, entities=entities)]
    )
    async with gateway(doc, work / tag) as (runtime, sock):
        child: asyncio.subprocess.Process | None = None
        if pollers:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--ui-child",
                str(sock),
                str(data_dir),
                str(work / tag / "web"),
                str(pollers),
                stdout=asyncio.subprocess.PIPE,
            )
            assert child.stdout is not None
            # measured from the moment every poller is logged in and polling
            ready = await asyncio.wait_for(child.stdout.readline(), timeout=60)
            assert ready.strip() == b"ready", f"UI child: {ready!r}"
        try:
            rate = await measure(runtime, seconds, warmup=3.0)
        finally:
            if child is not None:
                child.terminate()
                out, _ = await asyncio.wait_for(child.communicate(), timeout=30)
                print(f"  UI child: {out.decode().strip()}")
    return rate


async def ui_child(sock: Path, data_dir: Path, state: Path, pollers: int) -> None:
    """The UI process of the throughput mode: the web app and `pollers` browsers, until terminated."""
    done = 0
    failed = 0
    latencies: list[float] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def poll(client: ClientSession, base: str) -> None:
        nonlocal done, failed
        while not stop.is_set():
            t0 = time.perf_counter()
            for path in ("/api/status", "/api/latest"):
                try:
                    async with client.get(base + path) as r:
                        await r.read()
                        ok = r.status == 200
                except OSError:
                    ok = False
                done += ok
                failed += not ok
            latencies.append((time.perf_counter() - t0) * 1000)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, 1.0 - (time.perf_counter() - t0)))

    async with web_ui(services(sock, data_dir, state)) as base:
        clients = [await browser(base) for _ in range(pollers)]
        print("ready", flush=True)
        try:
            await asyncio.gather(*(poll(c, base) for c in clients))
        finally:
            for c in clients:
                await c.close()
    p95 = percentile(latencies, 0.95) if latencies else 0.0
    print(
        f"{pollers} pollers made {done:,} requests ({failed} failed), status+latest round p95 {p95:.0f} ms", flush=True
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("pages", "throughput", "both"), default="pages")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=1, help="throughput: alternate without/with this many times")
    ap.add_argument("--entities", type=int, default=ENTITIES, help="throughput: entities of the simulated source")
    ap.add_argument(
        "--ui-child", nargs=4, metavar=("SOCKET", "DATA_DIR", "STATE_DIR", "POLLERS"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.ui_child:
        sock, data_dir, state, pollers = args.ui_child
        await ui_child(Path(sock), Path(data_dir), Path(state), int(pollers))
        return
    tune_runtime()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work / "mosquitto")
        broker.start()
        try:
            if args.mode in ("pages", "both"):
                await run_pages(work, broker.port, args.requests)
            if args.mode in ("throughput", "both"):
                without: list[float] = []
                with_ui: list[float] = []
                for n in range(args.rounds):
                    without.append(
                        await run_throughput(work, broker.port, args.seconds, 0, f"t{n}-bare", args.entities)
                    )
                    print(f"throughput-mqtt without UI   {without[-1]:>9,.0f} readings/s")
                    with_ui.append(await run_throughput(work, broker.port, args.seconds, 5, f"t{n}-ui", args.entities))
                    print(f"throughput-mqtt with 5 pollers {with_ui[-1]:>9,.0f} readings/s")
                a, b = statistics.median(without), statistics.median(with_ui)
                print(f"throughput-mqtt difference {100 * (b - a) / a:+.1f} % (median of {args.rounds} round(s) each)")
        finally:
            broker.stop()


if __name__ == "__main__":
    if os.environ.get("PYTHONASYNCIODEBUG"):
        print("note: asyncio debug mode is on; figures are slower", file=sys.stderr)
    asyncio.run(main())
