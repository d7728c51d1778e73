"""Alarms end to end: an uplink stops delivering → one e-mail after N minutes, repeats, one clear; SMTP down → sent later once.

The SMTP server is the strict loopback server of tests/mail (STARTTLS required, AUTH PLAIN); mails go
through the one outgoing-mail component (gateway/mail) the gateway runs. The fleet service's time is
injected (it starts at the real time, since the uplink's last delivery is real); SMTP and HTTP are real.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.fleet.alarms import conditions
from gateway.fleet.config import AlarmRule
from tests.fleet.conftest import Clock, gateway_config, until
from tests.mail.conftest import PASSWORD
from tests.mail.smtp_server import SmtpServer
from tests.smart_models.test_schemas import load_schemas
from tests.support.entity_state import key_values
from tests.support.orion_double import OrionDouble, TlsMaterial
from tests.support.ports import free_port

OPS = "river-ops@city.example.jp"


def config(tmp_path: Path, orion: OrionDouble, smtp_port: int, material: TlsMaterial) -> Any:
    return gateway_config(
        tmp_path,
        orion.url,
        {
            "alarms": {
                "rules": [{"kind": "uplink_not_delivering", "severity": "critical", "for_s": 300}],
                "repeat_s": 3600,
                "recipients": {"critical": [OPS]},
                "language": "ja",
            }
        },
        mail={
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "starttls",
            "username": "gateway",
            "password": "secret:smtp_password",
            "from_address": "gateway@city.example.jp",
            "timeout_s": 5,
            "retry_initial_s": 0.05,
            "retry_cap_s": 0.2,
            "tls": {"ca_file": str(material.ca_file)},
        },
    )


def subjects(server: SmtpServer) -> list[str]:
    return [str(message_from_bytes(r.data, policy=default)["Subject"]) for r in server.received]


async def test_uplink_down_one_mail_after_n_minutes_repeats_and_one_clear(
    orion_double: OrionDouble,
    tmp_path: Path,
    clock: Clock,
    smtp: SmtpServer,
    tls_material: TlsMaterial,
    data_dir: Path,
) -> None:
    orion_double.fail(503, until=time.monotonic() + 4.0)  # the platform answers 503 for 4 s (real time)
    cfg = config(tmp_path, orion_double, smtp.port, tls_material)
    gw = Gateway(cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})}))
    await gw.start()
    clock.now = gw.started_at
    try:
        fleet = gw.fleet
        assert fleet is not None
        t0 = clock.now
        await fleet.tick(t0)  # the Device entity waits in the buffer from now on
        await fleet.tick(t0 + 299)
        assert fleet.engine.summary() == []
        await fleet.tick(clock.advance(300))
        assert [a["kind"] for a in (await fleet.status())["fleet"]["alarms"]] == ["uplink_not_delivering"]
        await until(lambda: len(smtp.received) == 1)
        await fleet.tick(clock.advance(1800))
        await fleet.tick(clock.advance(1799))
        assert len(smtp.received) == 1
        await fleet.tick(clock.advance(1))  # 3600 s after the first mail
        await until(lambda: len(smtp.received) == 2)
        await until(lambda: gw.loops[0].delivered > 0 and gw.loops[0].state.value == "idle", timeout_s=15)
        await fleet.tick(clock.advance(10))
        await until(lambda: len(smtp.received) == 3)
        await drained(gw)
        await fleet.tick(clock.advance(3600))  # delivering again: nothing more to say
    finally:
        await gw.stop()
    assert len(smtp.received) == 3  # raised, repeated, cleared: nothing else
    assert all(r.rcpt_to == [OPS] and r.tls and r.user == "gateway" for r in smtp.received)
    assert subjects(smtp) == [
        "[重大] gw-fleet: 上位連携 orion が配信していません",
        "[重大] gw-fleet: 上位連携 orion が配信していません（継続中）",
        "[復旧] gw-fleet: 上位連携 orion が配信していません",
    ]
    body = message_from_bytes(smtp.received[0].data, policy=default).get_body(("plain",))
    assert body is not None and "警報ID: gw-fleet-uplink_not_delivering-orion" in body.get_content()
    # the platform holds the alarm as an Alert entity, cleared, valid against the vendored schema
    alerts = [key_values(e) for e in orion_double.entities.values() if e["type"] == "Alert"]
    assert [(a["alarmKind"], a["alarmState"], a["severity"]) for a in alerts] == [
        ("uplink_not_delivering", "cleared", "critical")
    ]
    assert load_schemas().problems(alerts[0]) == []


async def test_smtp_down_the_alarm_mail_is_queued_and_sent_later_once(
    orion_double: OrionDouble,
    tmp_path: Path,
    clock: Clock,
    tls_material: TlsMaterial,
    server_context: ssl.SSLContext,
    data_dir: Path,
) -> None:
    orion_double.fail(503, until=time.monotonic() + 60)
    port = free_port()  # nothing listens: the mail server is down
    cfg = config(tmp_path, orion_double, port, tls_material)
    gw = Gateway(cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})}))
    await gw.start()
    clock.now = gw.started_at
    server: SmtpServer | None = None
    try:
        fleet = gw.fleet
        assert fleet is not None and gw.mail_sender is not None and gw.mail_queue is not None
        await fleet.tick(clock.now)
        await fleet.tick(clock.advance(300))
        assert fleet.mails_enqueued == 1
        await until(lambda: gw.mail_sender is not None and gw.mail_sender.session_failures >= 2)
        assert (await gw.mail_queue.counts())["pending"] == 1
        server = await SmtpServer(port=port, tls_context=server_context, credentials={"gateway": PASSWORD}).start()
        await until(lambda: server is not None and len(server.received) == 1, timeout_s=15)
        await fleet.tick(clock.advance(60))  # still raised, not yet due for a repeat: nothing more
        sessions = server.sessions
        await until(lambda: gw.mail_sender is not None and gw.mail_sender.sent == 1)
    finally:
        await gw.stop()
        if server is not None:
            await server.stop()
    assert len(server.received) == 1 and server.sessions == sessions
    assert (await _counts(data_dir))["sent"] == 1


async def drained(gw: Gateway) -> None:
    """Until the uplink has delivered every row (real I/O)."""
    assert gw.outbox is not None
    for _ in range(500):
        stats = await gw.outbox.stats()
        if not any(sum(c.pending.values()) for c in stats.uplinks.values()) and gw.loops[0].state.value == "idle":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the uplink did not drain the buffer")


async def _counts(data_dir: Path) -> dict[str, Any]:
    from gateway.mail import MailQueue

    queue = await MailQueue.open(data_dir)
    try:
        return await queue.counts()
    finally:
        await queue.close()


def test_conditions_hold_only_with_rows_waiting() -> None:
    rule = AlarmRule.model_validate({"kind": "uplink_not_delivering", "for_s": 300})
    doc: dict[str, Any] = {
        "started_at": 1000.0,
        "uplinks": [{"name": "orion", "state": "idle", "last_delivery": 0}],
        "buffer": {"uplinks": {"orion": {"pending": {"normal": 0}}}},
    }
    assert conditions(doc, [rule], 5000.0) == []
    doc["buffer"]["uplinks"]["orion"]["pending"]["normal"] = 3
    assert [c.key for c in conditions(doc, [rule], 5000.0)] == ["uplink_not_delivering:orion"]
