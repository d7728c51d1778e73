"""The MQTT uplink's link state while the broker's ACL refuses its messages and closes the connection each time.

The finding: mosquitto refuses a denied publish with PUBACK 0x87 and (with `max_queued_messages 0`) closes the
connection. The first close was said at WARNING and set the link failing; the retry's reconnect then set it
back to connected (an INFO `connected to …` line that read like a recovery), and every later close was
only a DEBUG line, without touching the link state: the uplink read "connected" while each retry was
refused and closed again, and when the ACL was fixed nothing said the readings flowed again. Now the link
stays failing, with the ACL reason, for as long as the refusals last (one WARNING, no line per retry), and
is connected again, said once, after a delivery goes through.

Real mosquitto with an ACL file (tests/uplinks_mqtt has the broker settings), no delivery loop: each
`deliver` is one retry.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.uplinks.api import DELIVERED, Status
from tests.uplinks_mqtt.conftest import reading
from tests.uplinks_mqtt.test_acl_refusals import DENIED, FIX, acl_broker
from tests.uplinks_mqtt.test_delivery import uplink

pytestmark = pytest.mark.both_loops  # the refusal is noted in PUBACK callbacks: both loops' callback order

REASON = f"closed the connection after refusing a message on {DENIED} as not authorized (0x87); {FIX}"


@pytest.fixture
def context(tmp_path: Path) -> AdapterContext:
    return AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path))


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name == "gateway.uplinks.mqtt"]


async def closed(caplog: pytest.LogCaptureFixture, count: int) -> None:
    """Until the uplink has seen the broker close the connection `count` times after a refusal: mosquitto closes
    it after its PUBACK, which may come in after `deliver` returned."""
    async with asyncio.timeout(5):
        while sum("closed the connection after refusing" in r.getMessage() for r in caplog.records) < count:
            await asyncio.sleep(0.01)


async def test_the_link_stays_failing_with_the_acl_reason_while_every_retry_is_refused_and_closed(
    tmp_path: Path, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.uplinks.mqtt")
    broker, acl = acl_broker(tmp_path, "topic write edgegw/#\n")  # every measure denied, the connection closed
    up = uplink(broker, context)
    try:
        await up.start()
        links = [up.diagnostics().get("link")]  # what status.json shows of the link, before and after each retry
        port = broker.port
        for attempt in range(4):
            [outcome] = await up.deliver([reading("gauge1", seq=1)])
            assert outcome.status is Status.RETRY, attempt
            await closed(caplog, attempt + 1)
            links.append(up.diagnostics().get("link"))
        assert (up.counters.not_authorized, up.counters.reconnects) == (4, 3)  # each retry reconnected
        # one line for the spell: no `connected to …` after a reconnect that is refused again, none per retry
        assert said(caplog) == [
            f"connected to 127.0.0.1:{port} as edgegw-gw-kumamoto-01-pref-mqtt",
            f"broker 127.0.0.1:{port} {REASON.replace('; ', ', readings stay buffered; ', 1)}",
        ]
        assert links == ["connected"] + [f"broker 127.0.0.1:{port} {REASON}"] * 4
        caplog.clear()
        acl.write_text("topic write edgegw/#\ntopic write /K3Y/#\n")
        await asyncio.to_thread(broker.restart)  # between two retries: no connection is open to notice it
        assert await up.deliver([reading("gauge1", seq=1)]) == [DELIVERED]
        assert up.diagnostics()["link"] == "connected"
        assert said(caplog) == [f"connected to 127.0.0.1:{port} as edgegw-gw-kumamoto-01-pref-mqtt"]  # said once
        caplog.clear()
        assert await up.deliver([reading("gauge1", seq=2)]) == [DELIVERED]
        assert said(caplog) == []
    finally:
        await up.close()
        broker.stop()


async def test_an_outage_during_the_refusals_is_said_and_its_end_does_not_read_as_the_acl_fixed(
    tmp_path: Path, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.uplinks.mqtt")
    broker, _ = acl_broker(tmp_path, "topic write edgegw/#\n")
    up = uplink(broker, context, connect_timeout_s=1)
    port = broker.port
    try:
        await up.start()
        await up.deliver([reading("gauge1", seq=1)])
        await closed(caplog, 1)
        await asyncio.to_thread(broker.stop)
        [outcome] = await up.deliver([reading("gauge1", seq=1)])
        assert outcome.status is Status.RETRY
        assert up.diagnostics()["link"].startswith(f"broker 127.0.0.1:{port} unreachable: ")
        await asyncio.to_thread(broker.start)
        [outcome] = await up.deliver([reading("gauge1", seq=1)])
        assert outcome.status is Status.RETRY
        await closed(caplog, 2)
        assert up.diagnostics()["link"] == f"broker 127.0.0.1:{port} {REASON}"
        # the outage was news and so was its end; the refusals after it are a spell again, said once more
        assert [line.split(" readings stay")[0] for line in said(caplog)[1:]] == [
            f"broker 127.0.0.1:{port} closed the connection after refusing a message on {DENIED} as not authorized"
            " (0x87),",
            f"broker 127.0.0.1:{port} unreachable,",
            f"connected to 127.0.0.1:{port} as edgegw-gw-kumamoto-01-pref-mqtt",
            f"broker 127.0.0.1:{port} closed the connection after refusing a message on {DENIED} as not authorized"
            " (0x87),",
        ]
    finally:
        await up.close()
        broker.stop()
