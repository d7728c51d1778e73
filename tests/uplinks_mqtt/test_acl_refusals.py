"""A message the broker's ACL refuses (MQTT 5 PUBACK 0x87) is named as such, never as an unreachable broker.

The finding: mosquitto answers a publish its ACL denies with PUBACK 0x87 and, with `max_queued_messages 0`
(the test broker's setting), closes the connection at once; the uplink then warned `broker … unreachable,
readings stay buffered: [Errno 104] Connection reset by peer`, and the delivery loop's ERROR quoted the
connection loss of the batch's next message, so a technician checked the network while the ACL was wrong.
Now every line names the topic, `not authorized (0x87)` and the broker's ACL, and the readings stay in the
buffer (RETRY, a configuration fault: nothing is dead-lettered) until the ACL lets them through.

Real mosquitto with an ACL file; the delivery loop on a real SQLite outbox.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.uplinks.api import DELIVERED, Fault, Outcome, Status
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.conftest import reading
from tests.uplinks_mqtt.test_delivery import KEEP_USER, uplink

pytestmark = pytest.mark.both_loops  # the refusal is noted in PUBACK callbacks: both loops' callback order

# mosquitto closes the connection after refusing a publish with `max_queued_messages 0` (the test broker's
# setting); with its stock 1000 it keeps it
CLOSES = ""
KEEPS = "max_queued_messages 1000\n"
FIX = "check the broker's ACL for this uplink's username: it must allow publishing on that topic"
DENIED = "/K3Y/gauge1/attrs"
STATUS = "edgegw/gw-kumamoto-01/pref-mqtt/status"


def acl_broker(tmp_path: Path, acl: str, conf: str = CLOSES) -> tuple[MosquittoBroker, Path]:
    path = tmp_path / "acl"
    path.write_text(acl)
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"acl_file {path}\n{conf}{KEEP_USER}")
    broker.start()
    return broker, path


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.mark.parametrize("conf", [KEEPS, CLOSES], ids=["keeps-connection", "closes-connection"])
async def test_a_message_the_acl_refuses_is_named_with_its_topic_and_what_to_check(
    tmp_path: Path, context: AdapterContext, caplog: pytest.LogCaptureFixture, conf: str
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    # the status topic and gauge2's measures are allowed, gauge1's are not
    broker, _ = acl_broker(tmp_path, "topic write edgegw/#\ntopic write /K3Y/gauge2/attrs\n", conf)
    try:
        up = uplink(broker, context)
        await up.start()
        outcomes = await up.deliver([reading("gauge1", seq=1), reading("gauge2", seq=2)])
        await up.close()
    finally:
        broker.stop()
    refused = Outcome(
        Status.RETRY,
        f"{DENIED}: broker refused the message, got PUBACK not authorized (0x87); {FIX}",
        Fault.CONFIGURATION,
    )
    if conf is KEEPS:
        assert outcomes == [refused, DELIVERED]
        assert lines(caplog) == []  # the delivery loop says it, at ERROR, with the outcome's reason
    else:
        # gauge2's message went in the same write and was never read: lost with the connection the refusal closed
        assert outcomes == [
            refused,
            Outcome(
                Status.RETRY,
                f"connection lost before PUBACK: the broker closed it after refusing a message on {DENIED} as not "
                f"authorized (0x87); {FIX}",
                Fault.CONFIGURATION,
            ),
        ]
        assert lines(caplog) == [
            f"broker 127.0.0.1:{broker.port} closed the connection after refusing a message on {DENIED} as not "
            f"authorized (0x87), readings stay buffered; {FIX}"
        ]
    assert not [line for line in lines(caplog, logging.DEBUG) if "unreachable" in line]
    assert (up.counters.not_authorized, up.counters.rejected, up.counters.retried) == (1, 0, 2 if conf is CLOSES else 1)
    assert up.diagnostics()["not_authorized"] == 1  # what status.json shows


async def test_readings_the_acl_refuses_stay_buffered_until_it_lets_them_through(
    tmp_path: Path, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    broker, acl = acl_broker(tmp_path, "topic write edgegw/#\n")  # every measure denied, the connection closed
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["m"])
    up = uplink(broker, context, name="m", retry_initial_s=0.05, retry_max_s=0.2)
    await box.append_many([reading("gauge1", seq=None), reading("gauge2", seq=None, at=1.0)])  # one batch
    loop = DeliveryLoop(up, up.config, box)
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(10):
            while up.counters.not_authorized < 3:  # refused again after a reconnect, and again
                await asyncio.sleep(0.01)
        stats = await box.stats()
        assert (sum(stats.uplinks["m"].pending.values()), stats.uplinks["m"].dead_letters) == (2, 0)
        assert (loop.delivered, loop.rejected, loop.state) == (0, 0, UplinkState.REFUSED)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors == [
            "delivery refused (2 of 2 records to retry): connection lost before PUBACK: the broker closed it after "
            f"refusing a message on {DENIED} as not authorized (0x87); {FIX}; nothing is dead-lettered until the "
            "configuration is fixed"
        ]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"broker 127.0.0.1:{broker.port} closed the connection after refusing a message on {DENIED} as not "
            f"authorized (0x87), readings stay buffered; {FIX}"
        ]  # once: the reconnects after it are no news
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
        acl.write_text("topic write edgegw/#\ntopic write /K3Y/#\n")
        await asyncio.to_thread(broker.restart)
        async with asyncio.timeout(10):
            while loop.delivered < 2:
                await asyncio.sleep(0.01)
        stats = await box.stats()
        assert (sum(stats.uplinks["m"].pending.values()), stats.uplinks["m"].dead_letters) == (0, 0)
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 10)
        await up.close()
        await box.close()
        broker.stop()


async def test_a_status_message_the_acl_refuses_is_named_when_the_broker_then_closes_the_connection(
    tmp_path: Path, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    broker, _ = acl_broker(tmp_path, "topic write /K3Y/#\n")  # measures allowed, the status topic not
    try:
        up = uplink(broker, context)
        outcomes = await up.deliver([reading("gauge1", seq=1)])
        await up.close()
    finally:
        broker.stop()
    assert outcomes == [
        Outcome(
            Status.RETRY,
            f"connection lost before PUBACK: the broker closed it after refusing a message on {STATUS} as not "
            f"authorized (0x87); {FIX}",
            Fault.CONFIGURATION,
        )
    ]
    said = lines(caplog)
    assert said[0] == f"broker refused the status message on {STATUS}, got PUBACK not authorized (0x87); {FIX}"
    assert not [line for line in said if "unreachable" in line]
