"""The whole stack under the browser: a real gateway subprocess and the web UI on the harness's loop.

The gateway runs `python -m gateway run` (tests/e2e/harness.py) with a simulated river adapter, an
http_poll adapter reading a station list from a loopback server of this module (its station name is
the untrusted text the pages must show inert) and an MQTT uplink to a real mosquitto. One dead
letter is put in its buffer through the Outbox API before it starts. The UI is `build_app` with real
stores in a tmp directory, served over TLS with the certificate of gateway/web/certs.py, its clock a
`MovableClock`.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher

from gateway.accounts.store import AccountStore, Role
from gateway.audit.log import AuditLog
from gateway.buffer.config import BufferConfig
from gateway.buffer.outbox import Outbox
from gateway.buffer.reader import BufferReader
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.api import Outcome, Status
from gateway.web import certs
from gateway.web.app import build_app
from gateway.web.config import WebConfig
from gateway.web.control_pool import ControlPool
from gateway.web.services import WebServices
from tests.e2e.harness import GatewayProcess
from tests.web_browser.harness import LoopSite, MovableClock, UiLoop

GATEWAY_ID = "web-gw"
# what the station server says the station is called: a device's text, to be shown as text
STATION_NAME = '<script>alert("xss")</script>人吉'
STATION_ID = "urn:ngsi-ld:WaterObserved:station-0431"
SEEDED_ID = "urn:ngsi-ld:WaterObserved:seeded-1"
SEEDED_REASON = "400 BadRequest: Invalid characters in attribute value"
LOCKOUT_FAILURES = 3
LOCKOUT_MINUTES = 15.0
IDLE_MINUTES = 15.0
PASSWORD = "Kawa-no-suii-2026"  # passes the policy: long, not common, not the user's name
NEW_PASSWORD = "Hitoyoshi-kansoku-77"
# Argon2id at its cheapest: the tests log in dozens of times; the parameters are not under test here
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def gateway_config(*, mqtt_port: int, station_url: str, socket_path: Path, river: str = "river") -> str:
    return f"""[gateway]
id = "{GATEWAY_ID}"
data_dir = "@DATA_DIR@"
control_socket = "{socket_path}"

[[adapters]]
name = "{river}"
type = "simulated"
kind = "river-level"
entities = 2
rate = 4
seed = 11

[[adapters]]
name = "stations"
type = "http_poll"
url = "{station_url}"
interval_s = 0.5
timeout_s = 0.5

[[adapters.mappings]]
items = "$"
entity_id = "urn:ngsi-ld:WaterObserved:station-{{id}}"
entity_type = "WaterObserved"

[[adapters.mappings.attributes]]
path = "level"
name = "waterLevel"
unit = "MTR"

[[adapters.mappings.attributes]]
path = "name"
name = "name"
type = "Text"

[[uplinks]]
name = "platform"
type = "mqtt"
host = "127.0.0.1"
port = {mqtt_port}
format = "ngsi-v2"
retry_initial_s = 0.2
retry_max_s = 1.0
"""


async def seed_dead_letter(buffer_db: Path) -> None:
    """One reading the uplink `platform` rejected, in the buffer before the gateway first opens it."""
    buffer_db.parent.mkdir(parents=True, exist_ok=True)
    box = await Outbox.open(buffer_db, BufferConfig(), ["platform"])
    try:
        reading = Reading(
            entity_id=SEEDED_ID,
            entity_type="WaterObserved",
            attributes={"waterLevel": Attribute(value=1.25, type="Number", unit="MTR")},
            observed_at=datetime.now(UTC),
            source=Source(adapter="river"),
            lane=Lane.NORMAL,
        )
        await box.append(reading)
        batch = await box.read("platform", 10)
        await box.ack("platform", batch, [Outcome(Status.REJECTED, SEEDED_REASON)])
    finally:
        await box.close()


class StationServer:
    """A municipal portal's station list on loopback (plain HTTP), the http_poll adapter's far side."""

    def __init__(self, ui: UiLoop) -> None:
        self.level = 2.35
        self.site = LoopSite(ui, None)

    def start(self) -> str:
        async def make_app() -> web.Application:
            async def stations(request: web.Request) -> web.Response:
                doc = [{"id": "0431", "name": STATION_NAME, "level": self.level}]
                return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type="application/json")

            app = web.Application()
            app.router.add_get("/stations.json", stations)
            return app

        self.site.start(make_app)
        return self.site.url("/stations.json")

    def stop(self) -> None:
        self.site.stop()


class Gateway:
    """The gateway subprocess with its control socket in a short /tmp directory."""

    def __init__(self, workdir: Path, ui: UiLoop, mqtt_port: int) -> None:
        self.ui = ui
        self.socket_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="egw"))
        self.socket_path = self.socket_dir / "control.sock"
        self.stations = StationServer(ui)
        self.mqtt_port = mqtt_port
        self.workdir = workdir
        self.process: GatewayProcess | None = None

    def config_text(self, river: str = "river") -> str:
        assert self.process is not None
        return gateway_config(
            mqtt_port=self.mqtt_port,
            station_url=self.stations.site.url("/stations.json"),
            socket_path=self.socket_path,
            river=river,
        ).replace("@DATA_DIR@", str(self.process.data_dir))

    def start(self) -> None:
        url = self.stations.start()
        self.process = GatewayProcess(
            self.workdir, gateway_config(mqtt_port=self.mqtt_port, station_url=url, socket_path=self.socket_path)
        )
        self.ui.call(seed_dead_letter(self.process.data_dir / "buffer.db"))
        self.process.start()
        deadline = time.monotonic() + 20
        while not self._answers():
            if time.monotonic() > deadline or not self.process.alive():
                raise AssertionError(f"gateway control socket never answered; log: {self.process.log_tail()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    @property
    def data_dir(self) -> Path:
        assert self.process is not None
        return self.process.data_dir

    @property
    def config_path(self) -> Path:
        assert self.process is not None
        return self.process.config_path

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop_now()
        self.stations.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@dataclass
class Ui:
    """One web UI instance: its own stores and clock, talking to the module's gateway."""

    site: LoopSite
    clock: MovableClock
    accounts: AccountStore
    audit: AuditLog
    config: WebConfig
    loop: UiLoop
    control: ControlPool
    buffer: BufferReader

    def url(self, path: str) -> str:
        return self.site.url(path)

    def add_user(self, name: str, role: Role, *, must_change: bool = False, password: str = PASSWORD) -> None:
        self.accounts.add_user(name, role, password, now=self.clock(), must_change=must_change)

    def actions(self) -> list[tuple[str, str]]:
        """(actor, action) of the audit log, oldest first."""
        return [(e.actor, e.action) for e in reversed(self.audit.entries(limit=1000))]

    def stop(self) -> None:
        self.site.stop()

        async def close() -> None:
            await self.control.close()
            await self.buffer.close()

        self.loop.call(close())


def start_ui(ui_loop: UiLoop, gateway: Gateway, state_dir: Path, **settings: Any) -> Ui:
    config = WebConfig(
        listen=("127.0.0.1",),
        port=8443,
        state_dir=state_dir,
        lockout_failures=LOCKOUT_FAILURES,
        lockout_minutes=LOCKOUT_MINUTES,
        idle_timeout_minutes=IDLE_MINUTES,
        **settings,
    )
    clock = MovableClock()
    state_dir.mkdir(parents=True, exist_ok=True)
    accounts = AccountStore(state_dir, config, hasher=FAST_HASHER)
    audit = AuditLog(state_dir)
    # the self-signed certificate `edgegw web` makes at first start, with the box's names and addresses
    ssl_context = certs.server_context(certs.material(config, state_dir))
    made: dict[str, Any] = {}

    async def make_app() -> web.Application:
        control = ControlPool(gateway.socket_path)
        buffer = BufferReader(gateway.data_dir / "buffer.db")
        made.update(control=control, buffer=buffer)
        services = WebServices(
            config=config,
            gateway_config_path=gateway.config_path,
            control=control,
            buffer=buffer,
            accounts=accounts,
            audit=audit,
            clock=clock,
        )
        return build_app(services, strict_i18n=True)

    site = LoopSite(ui_loop, ssl_context)
    site.start(make_app)
    return Ui(
        site=site,
        clock=clock,
        accounts=accounts,
        audit=audit,
        config=config,
        loop=ui_loop,
        control=made["control"],
        buffer=made["buffer"],
    )
