"""The locker adapter against board stand-ins on a socat pty pair and over TCP: states, alerts, unlocks, pickup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.locker.adapter import LockerAdapter
from adapters.locker.config import LockerConfig
from gateway.adapter_api import AdapterContext
from gateway.mail.queue import MailQueue
from gateway.processing.api import ProcessorContext
from gateway.processing.pseudonymize import TOKEN_RE, PseudonymizeConfig, Pseudonymizer
from gateway.records import Attribute, Command, CommandResult, Lane, Reading
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty, serve_tcp


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds


class Collector:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)

    def of(self, entity_type: str) -> list[Reading]:
        return [r for r in self.readings if r.entity_type == entity_type]

    def last(self, label: str) -> dict[str, Any]:
        for r in reversed(self.readings):
            if r.entity_type == "LockerCompartment" and r.attributes["compartmentLabel"].value == label:
                return {k: a.value for k, a in r.attributes.items()}
        raise AssertionError(f"no reading of {label}")


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


PICKUP: dict[str, Any] = {"site": "駅前受取ロッカー", "code_length": 6, "max_wrong": 3, "door_open_alert_s": 60}


def config(port: str, *, model: str = "cu16", boards: int = 1, **extra: Any) -> LockerConfig:
    base = 0 if model.startswith("cu") else 1
    letters = "ABCD"
    data: dict[str, Any] = {
        "name": "lockers",
        "type": "locker",
        "poll_interval": 0.02,
        "offline_after": 2,
        "buses": [{"name": "rs485", "port": port, "timeout": 0.1, "gap": 0, "unlock_settle": 0}],
        "boards": [
            {
                "name": f"b{i}",
                "bus": "rs485",
                "model": model,
                "address": base + i,
                "compartments": {f"{letters[i]}-{k:02d}": k for k in range(1, 5)},
            }
            for i in range(boards)
        ],
        "pickup": PICKUP,
    }
    data.update(extra)
    return LockerConfig.model_validate(data)


class Rig:
    def __init__(self, adapter: LockerAdapter, sim: BoardSim, out: Collector, clock: Clock, mail: MailQueue) -> None:
        self.adapter, self.sim, self.out, self.clock, self.mail = adapter, sim, out, clock, mail
        self.ids = iter(range(1, 1_000_000))

    def entity(self, label: str) -> str:
        return self.adapter.compartments[label].entity_id

    async def command(self, label: str, name: str, value: Any = None, uplink: str = "control") -> CommandResult:
        return await self.adapter.handle(
            Command(command_id=str(next(self.ids)), entity_id=self.entity(label), name=name, value=value, uplink=uplink)
        )

    async def settle(self) -> None:
        """Two whole status cycles after now, so what the boards show has been seen."""
        bus = next(iter(self.adapter.buses.values()))
        start = bus.cycles
        await until(lambda: bus.cycles >= start + 2)


@contextlib.asynccontextmanager
async def adapter_on(
    port: str, sim: BoardSim, data_dir: Path, *, mail_dir: Path | None = None, **extra: Any
) -> AsyncIterator[Rig]:
    """The adapter on `port` (a pty or tcp://), its boards seen; the mail queue in `mail_dir` (default
    `data_dir`: a disk of its own, to fill); `extra` goes to `config` (pickup, offline_after, …)."""
    clock = Clock()
    mail = await MailQueue.open(mail_dir or data_dir, clock=lambda: clock.now().timestamp())
    adapter = LockerAdapter(
        config(port, **{"pickup": PICKUP, **extra}),
        AdapterContext(gateway_id="gw1", data_dir=str(data_dir), mail=mail),
        clock=clock.now,
        monotonic=clock.monotonic,
    )
    out = Collector()
    task = asyncio.create_task(adapter.run(out))
    try:
        r = Rig(adapter, sim, out, clock, mail)
        await until(lambda: adapter.boards["b0"].state.value == "online")
        await r.settle()
        yield r
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await mail.close()


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, data_dir: Path | None = None, *, mail_dir: Path | None = None, **pickup: Any
) -> AsyncIterator[Rig]:
    """The adapter on a CU16 stand-in over a pty; `data_dir` (default tmp_path/data) outlives a run."""
    data_dir = data_dir or tmp_path / "data"
    await asyncio.to_thread(tmp_path.mkdir, parents=True, exist_ok=True)  # a second run's own ptys
    sim = BoardSim([SimBoard("cu16", 0)])
    with pty_pair(tmp_path) as (gw, boards):
        async with (
            serve_pty(sim, boards),
            adapter_on(gw, sim, data_dir, mail_dir=mail_dir, pickup={**PICKUP, **pickup}) as r,
        ):
            yield r


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path) as r:
        yield r


async def test_compartments_published_with_door_and_occupancy(rig: Rig) -> None:
    assert rig.out.last("A-01") == {
        "compartmentLabel": "A-01",
        "doorState": "locked",
        "occupied": False,
        "pickupState": "free",
        "lastChange": "2026-12-04T01:00:00.000Z",
    }
    assert rig.out.readings[0].entity_id == "urn:ngsi-ld:LockerCompartment:gw1-lockers-A-01"
    rig.sim.boards[0].occupied[1] = True
    await rig.settle()
    assert rig.out.last("A-02")["occupied"] is True


async def test_unlock_opens_the_door_and_refuses_an_open_one(rig: Rig) -> None:
    result = await rig.command("A-03", "unlock")
    assert (result.ok, result.info) == (True, "opened: compartment A-03")
    assert rig.sim.boards[0].unlocks == [3]
    assert rig.out.last("A-03")["doorState"] == "open"
    again = await rig.command("A-03", "unlock")
    assert (again.ok, again.info) == (False, "open: the door of compartment A-03 is open already")
    assert not rig.out.of("Alert")  # opened by us: no forced-open alert


async def test_unknown_compartment_and_stuck_door(rig: Rig) -> None:
    result = await rig.adapter.handle(
        Command(command_id="x", entity_id="urn:ngsi-ld:LockerCompartment:nope", name="unlock")
    )
    assert (result.ok, result.info) == (
        False,
        "unknown: no compartment has entity id urn:ngsi-ld:LockerCompartment:nope",
    )
    rig.sim.boards[0].open_on_unlock = False
    stuck = await rig.command("A-01", "unlock")
    assert (stuck.ok, stuck.info) == (False, "stuck: the door of compartment A-01 did not open")


async def test_forced_open_and_open_too_long_are_alerts(rig: Rig) -> None:
    rig.sim.boards[0].locked[0] = False
    await rig.settle()
    alerts = rig.out.of("Alert")
    assert [a.attributes["subCategory"].value for a in alerts] == ["forcedOpen"]
    assert alerts[0].lane is Lane.ALERT
    assert alerts[0].attributes["alertSource"].value == rig.entity("A-01")
    rig.clock.advance(61)
    await rig.adapter.housekeeping()
    await rig.adapter.housekeeping()  # once per opening
    assert [a.attributes["subCategory"].value for a in rig.out.of("Alert")] == ["forcedOpen", "doorOpenTooLong"]


async def test_silent_board_goes_offline_and_comes_back(rig: Rig) -> None:
    rig.sim.boards[0].silent = True
    await until(lambda: rig.adapter.boards["b0"].state.value == "offline")
    await until(lambda: rig.out.last("A-04")["doorState"] == "unknown")
    devices = rig.out.of("Device")
    assert devices[-1].attributes["deviceState"].value == "offline"
    assert "no valid reply" in devices[-1].attributes["deviceState"].metadata["reason"]
    refused = await rig.command("A-01", "unlock")
    assert refused.info == "offline: board b0 of compartment A-01 does not answer"
    rig.sim.boards[0].silent = False
    rig.clock.advance(10)  # past the probe delay
    await until(lambda: rig.adapter.boards["b0"].state.value == "online")
    await rig.settle()
    assert rig.out.last("A-01")["doorState"] == "locked"


async def test_corrupt_frames_are_counted_not_applied(rig: Rig) -> None:
    rig.sim.boards[0].corrupt_next = 1
    rig.sim.boards[0].locked[0] = False  # the corrupt reply would say "open"
    before = rig.adapter.boards["b0"].counters.timeouts
    await rig.settle()
    assert rig.adapter.boards["b0"].counters.timeouts == before + 1  # the corrupt frame never completes
    assert rig.adapter.boards["b0"].state.value == "online"


ADDRESS = "Hanako.Yamada@example.jp"


async def _assign(rig: Rig, label: str = "A-02", email: str = ADDRESS) -> tuple[dict[str, Any], str]:
    rig.sim.boards[0].occupied[int(label[-2:]) - 1] = True  # staff put the book in
    await rig.settle()
    result = await rig.command(label, "assign", {"email": email, "reference": "R-2026-0042"})
    assert result.ok, result.info
    info = json.loads(result.info)
    (pending,) = [p for p in await rig.mail.due(now=1e12) if p.id == info["mail_id"]]
    assert pending.mail.to == (email,)
    assert pending.mail.subject == f"【駅前受取ロッカー】予約資料の受取のご案内（ロッカー {label}）"
    assert "受取期限　：2026年12月11日（金）10:00まで" in pending.mail.text  # JST
    return info, pending.mail.text.split("暗証番号　：")[1].split("\n")[0]


async def test_pickup_flow_end_to_end(rig: Rig) -> None:
    info, code = await _assign(rig)
    assert info["expires_at"] == "2026-12-11T01:00:00.000Z"
    assert len(code) == 6 and code.isdigit()
    assert rig.out.last("A-02")["pickupState"] == "reserved"
    busy = await rig.command("A-02", "assign", {"email": "x@example.jp", "reference": "R-1"})
    assert busy.info.startswith("refused: compartment A-02: is not free, got state reserved")
    wrong = await rig.command("A-02", "pickup", {"code": "000000" if code != "000000" else "111111"})
    assert (wrong.ok, wrong.info) == (False, "wrong_code: wrong code")
    ok = await rig.command("A-02", "pickup", {"code": code})
    assert (ok.ok, ok.info) == (True, "opened: compartment A-02")
    spent = await rig.command("A-02", "pickup", {"code": code})
    assert spent.info == "no_code: no valid code for this compartment"
    assert rig.out.last("A-02")["pickupState"] == "opened"
    board = rig.sim.boards[0]
    board.occupied[1] = False
    board.locked[1] = True
    await rig.settle()
    events = rig.out.of("LockerPickup")
    assert len(events) == 1
    assert TOKEN_RE.fullmatch(events[0].attributes["patron"].value)  # patron = "token", the default
    assert rig.out.last("A-02")["pickupState"] == "free"
    assert rig.adapter.store is not None
    assert rig.adapter.store.email_of(1) is None  # erased once the event is on the buffer


async def _picked_up(rig: Rig, label: str = "A-02", email: str = ADDRESS) -> Reading:
    """Assign `label` to `email`, open it with its code, take the book out and close the door: the pickup event."""
    _, code = await _assign(rig, label, email)
    assert (await rig.command(label, "pickup", {"code": code})).ok
    board, lock = rig.sim.boards[0], int(label[-2:]) - 1
    board.occupied[lock] = False
    board.locked[lock] = True
    before = len(rig.out.of("LockerPickup"))
    await until(lambda: len(rig.out.of("LockerPickup")) > before and rig.out.last(label)["pickupState"] == "free")
    return rig.out.of("LockerPickup")[-1]


def _stage_entry(data_dir: Path, kind: str) -> Pseudonymizer:
    """A `[[processing]] type = "pseudonymize"` entry for `patron` as an operator would write it, built on `data_dir`."""
    cfg = PseudonymizeConfig.model_validate(
        {"type": "pseudonymize", "attributes": ["patron"], "kinds": {"patron": kind}}
    )
    return cfg.build(ProcessorContext(gateway_id="gw1", data_dir=str(data_dir)))


async def test_the_patron_leaves_as_a_token_by_default(
    rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    event = await _picked_up(rig)
    token = event.attributes["patron"].value
    assert TOKEN_RE.fullmatch(token), token
    assert event.attributes["patron"].type == "Text"
    for text in (ADDRESS, ADDRESS.lower(), "Hanako", "example.jp"):
        assert text not in repr(rig.out.readings)  # nowhere in any reading: attributes, metadata, ids
        assert text not in caplog.text  # nor in any log line
    assert rig.adapter.diagnostics()["patron"] == "token"
    # the very token a [[processing]] entry (kind email) makes with the gateway's key ring: one scheme,
    # and a box that had the old example's entry keeps its patrons' tokens
    clear = replace(event, attributes={**event.attributes, "patron": Attribute(value=ADDRESS, type="Text")})
    (hashed,) = _stage_entry(tmp_path / "data", "email").process(clear, rig.clock.now())
    assert hashed.attributes["patron"].value == token


async def test_one_address_one_token_also_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running(tmp_path / "run1", data_dir) as rig:
        first = (await _picked_up(rig, "A-02")).attributes["patron"].value
        again = (await _picked_up(rig, "A-03", "Hanako.Yamada@EXAMPLE.jp")).attributes["patron"].value
        other = (await _picked_up(rig, "A-04", "taro@example.jp")).attributes["patron"].value
    async with running(tmp_path / "run2", data_dir) as rig:  # the same box restarted: the same key ring
        after = (await _picked_up(rig, "A-02")).attributes["patron"].value
    assert first == again == after  # the domain's case is not part of the address (RFC 5321)
    assert other != first
    async with running(tmp_path / "run3", tmp_path / "another-box") as rig:
        assert (await _picked_up(rig, "A-02")).attributes["patron"].value != first  # another box, another key


async def test_patron_clear_sends_the_address_as_configured(tmp_path: Path) -> None:
    async with running(tmp_path, patron="clear") as rig:
        event = await _picked_up(rig)
        assert event.attributes["patron"].value == ADDRESS
        assert rig.adapter.diagnostics()["patron"] == "clear"
        assert rig.adapter.store is not None and rig.adapter.store.email_of(1) is None  # erased all the same


@pytest.mark.parametrize("kind", ["text", "email"])
async def test_a_pseudonymize_entry_for_patron_as_well(rig: Rig, tmp_path: Path, kind: str) -> None:
    """The old example config's entry (kind email), or one of kind text, behind the adapter's own token:
    the token passes it as it is, neither tokenised again nor dropped as an invalid address."""
    event = await _picked_up(rig)
    entry = _stage_entry(tmp_path / "data", kind)
    (once,) = entry.process(event, rig.clock.now())
    assert once.attributes["patron"] == event.attributes["patron"] and TOKEN_RE.fullmatch(
        once.attributes["patron"].value
    )
    assert entry.diagnostics()["tokens_kept"] == 1 and entry.diagnostics()["invalid"] == 0
    assert ADDRESS not in repr(once)


async def test_code_entry_locks_after_max_wrong(rig: Rig) -> None:
    _, code = await _assign(rig)
    bad = "x"
    infos = [(await rig.command("A-02", "pickup", {"code": bad})).info for _ in range(3)]
    assert infos == [
        "wrong_code: wrong code",
        "wrong_code: wrong code",
        "locked: too many wrong codes; ask the library",
    ]
    right = await rig.command("A-02", "pickup", {"code": code})
    assert right.info == "locked: too many wrong codes; ask the library"
    assert rig.out.last("A-02")["pickupState"] == "codeLocked"
    assert (await rig.command("A-02", "reset")).ok
    assert (await rig.command("A-02", "pickup", {"code": code})).ok


async def test_codes_expire_and_the_compartment_is_flagged(rig: Rig) -> None:
    _, code = await _assign(rig)
    rig.clock.advance(7 * 86400)
    await rig.adapter.housekeeping()
    assert rig.out.last("A-02")["pickupState"] == "overdue"
    assert rig.out.of("Alert")[-1].attributes["subCategory"].value == "pickupOverdue"
    assert (await rig.command("A-02", "pickup", {"code": code})).info.startswith("expired_code:")
    assert (await rig.command("A-02", "cancel")).ok
    assert rig.out.last("A-02")["pickupState"] == "free"


async def test_grid_for_the_staff_page(rig: Rig) -> None:
    await _assign(rig)
    grid = json.loads((await rig.command("A-01", "grid")).info)
    assert [g["label"] for g in grid] == ["A-01", "A-02", "A-03", "A-04"]
    assert grid[1]["pickup"] == "reserved" and grid[1]["assignment"]["reference"] == "R-2026-0042"
    assert "email" not in json.dumps(grid)


@pytest.mark.parametrize("model", ["cu48", "xor12", "xor24"])
async def test_other_boards_over_tcp(tmp_path: Path, model: str) -> None:
    sim = BoardSim([SimBoard(model, 0 if model == "cu48" else 1), SimBoard(model, 1 if model == "cu48" else 2)])
    clock = Clock()
    async with serve_tcp(sim) as port:
        adapter = LockerAdapter(
            config(f"tcp://127.0.0.1:{port}", model=model, boards=2),
            AdapterContext(gateway_id="gw1", data_dir=str(tmp_path)),
            clock=clock.now,
            monotonic=clock.monotonic,
        )
        out = Collector()
        task = asyncio.create_task(adapter.run(out))
        try:
            await until(lambda: all(b.state.value == "online" for b in adapter.boards.values()))
            result = await adapter.handle(
                Command(command_id="1", entity_id=adapter.compartments["B-04"].entity_id, name="unlock")
            )
            assert (result.ok, result.info) == (True, "opened: compartment B-04")
            assert sim.boards[1].unlocks == [4]
            assert "occupied" not in out.last("B-04")  # no infrared sensors on these boards
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_cli_probe_finds_the_boards_and_their_lock_counts(tmp_path: Path) -> None:
    import io

    from adapters.locker import cli
    from adapters.locker.config import BoardModel

    sim = BoardSim([SimBoard("cu16", 0), SimBoard("cu16", 3)])
    sim.boards[1].occupied[0] = True
    sim.boards[1].locked[5] = False
    out, err = io.StringIO(), io.StringIO()
    with pty_pair(tmp_path) as (gw, boards):
        async with serve_pty(sim, boards):
            code = await cli.probe(gw, 19200, [BoardModel.CU16], 0.05, out, err)
    assert code == cli.EXIT_OK, err.getvalue()
    assert out.getvalue().splitlines() == [
        "cu16 address 0: 16 locks, 16 locked, 0 occupied",
        "cu16 address 3: 16 locks, 15 locked, 1 occupied",
    ]


async def test_cli_probe_says_when_nothing_answers(tmp_path: Path) -> None:
    import io

    from adapters.locker import cli
    from adapters.locker.config import BoardModel

    out, err = io.StringIO(), io.StringIO()
    async with serve_tcp(BoardSim([SimBoard("xor24", 7)])) as port:
        code = await cli.probe(f"tcp://127.0.0.1:{port}", 9600, [BoardModel.XOR12], 0.02, out, err)
    assert code == cli.EXIT_NOTHING
    assert err.getvalue() == (
        f"locker probe: no board answered on tcp://127.0.0.1:{port} at 9600 baud; check wiring (A/B), baud and power\n"
    )


async def test_a_right_code_on_a_stuck_door_is_given_back(rig: Rig) -> None:
    _, code = await _assign(rig)
    rig.sim.boards[0].open_on_unlock = False
    stuck = await rig.command("A-02", "pickup", {"code": code})
    assert stuck.info == "stuck: the door of compartment A-02 did not open"
    rig.sim.boards[0].open_on_unlock = True
    assert (await rig.command("A-02", "pickup", {"code": code})).info == "opened: compartment A-02"


async def test_diagnostics_per_board(rig: Rig) -> None:
    d = rig.adapter.diagnostics()
    assert d["summary"] == "boards online 1/1"
    assert d["boards"]["b0"]["state"] == "online" and d["boards"]["b0"]["answers"] >= 2
    assert d["buses"]["rs485"]["open"] is True


async def test_the_platform_may_open_doors_but_not_run_the_pickup_flow(rig: Rig) -> None:
    refused = await rig.command("A-01", "grid", uplink="orion-iota")
    assert (refused.ok, refused.info) == (False, "unknown: grid is taken from the box's own pages only")
    refused = await rig.command("A-01", "assign", {"email": "p@example.jp", "reference": "R"}, uplink="mqtt")
    assert not refused.ok
    assert (await rig.command("A-01", "unlock", uplink="mqtt")).ok


class BurstCollector(Collector):
    """The gateway's emit as the supervisor hands it over: `emit.many(readings)` takes a burst in one commit group."""

    def __init__(self) -> None:
        super().__init__()
        self.bursts: list[list[str]] = []

    async def many(self, readings: list[Reading]) -> None:
        self.bursts.append([r.entity_type for r in readings])
        self.readings.extend(readings)


async def test_a_boards_changes_go_to_the_buffer_as_one_burst(tmp_path: Path) -> None:
    """Each emit waits for a durable commit and the bus waits for the emits: one per compartment held the
    line for a commit per compartment (48 on a CU48) before the next board was polled."""
    sim = BoardSim([SimBoard("cu16", 0)])
    with pty_pair(tmp_path) as (gw, boards):
        async with serve_pty(sim, boards):
            adapter = LockerAdapter(config(gw), AdapterContext(gateway_id="gw1", data_dir=str(tmp_path / "data")))
            out = BurstCollector()
            task = asyncio.create_task(adapter.run(out))
            await until(lambda: adapter.boards["b0"].state.value == "online" and len(out.bursts) >= 2)
            compartments = ["LockerCompartment"] * 4
            # at start every compartment (door unknown), then the first status: all four in one burst each
            assert out.bursts[0] == compartments and out.bursts[1] == compartments
            before = len(out.bursts)
            sim.boards[0].locked[0] = sim.boards[0].locked[2] = False  # two doors forced open at once
            await until(lambda: len(out.bursts) > before)
            assert out.bursts[before] == ["Alert", "Alert", "LockerCompartment", "LockerCompartment"]
            assert [out.last(label)["doorState"] for label in ("A-01", "A-02", "A-03")] == ["open", "locked", "open"]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
