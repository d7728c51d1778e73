"""The child of test_kill9_before_unlock.py: the locker adapter on `port`, its store in `data_dir`, `model`'s board.

It assigns A-02, prints `CODE <code>`, waits for a line on stdin, then enters the code as the kiosk does
and waits to be killed. Bus timeout 5 s: a status query left unanswered holds the line that long.
"""

from __future__ import annotations

import asyncio
import sys

from adapters.locker.adapter import LockerAdapter
from gateway.adapter_api import AdapterContext
from gateway.mail.queue import MailQueue
from gateway.records import Command, Reading
from tests.adapters.locker.test_adapter import PICKUP, config

TIMEOUT_S = 5.0


async def main(port: str, data_dir: str, model: str) -> None:
    mail = await MailQueue.open(data_dir)
    bus = {"name": "rs485", "port": port, "timeout": TIMEOUT_S, "gap": 0, "unlock_settle": 0}
    adapter = LockerAdapter(
        config(port, model=model, pickup=PICKUP, buses=[bus]),
        AdapterContext(gateway_id="gw1", data_dir=data_dir, mail=mail),
    )

    async def emit(_: Reading) -> None:
        pass

    task = asyncio.create_task(adapter.run(emit))
    while adapter.boards["b0"].state.value != "online":
        await asyncio.sleep(0.01)
    entity = adapter.compartments["A-02"].entity_id
    value = {"email": "hanako@example.jp", "reference": "R-1"}
    assigned = await adapter.handle(
        Command(command_id="1", entity_id=entity, name="assign", value=value, uplink="control")
    )
    assert assigned.ok, assigned.info
    (pending,) = await mail.due(now=1e12)
    print("CODE", pending.mail.text.split("暗証番号　：")[1].split("\n")[0], flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    code = {"code": pending.mail.text.split("暗証番号　：")[1].split("\n")[0]}
    await adapter.handle(Command(command_id="2", entity_id=entity, name="pickup", value=code, uplink="control"))
    await task


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
