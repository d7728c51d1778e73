"""Modbus adapter figures: poll jitter and CPU for 50 TCP devices × 20 points, and a 9600-baud RS-485 cycle vs wire time.

    .venv/bin/python bench/modbus_bench.py [--seconds 20]

1. One simulated Modbus TCP bus (a pymodbus server in a child process, so its CPU is not ours)
   with 50 units of 20 holding registers each, every point polled every second. Prints the poll
   jitter (start − due) p50/p99/max and the adapter process's CPU as % of one core.
2. One RS-485 bus at 9600 baud 8N1 with 10 units behind a socat pty pair. Ptys ignore baud, so a
   line emulator in the child process holds every byte for the 11 bit times it needs at 9600
   baud, per direction. The bus is saturated (poll interval shorter than a cycle); the achieved
   cycle is compared with the wire time: request + answer bytes at 9600 baud plus t3.5 per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from adapters.modbus.bus import PollResult
    from gateway.records import Reading

POINTS = 20
TCP_UNITS = 50
RTU_UNITS = 10
RTU_REGISTERS = 10
BAUD = 9600

PROFILE = """vendor = "Bench"
model = "{model}"
source = "synthetic bench device"
entity_type = "DeviceMeasurement"
poll_interval = 1
[interface]
timeout = 0.5
{points}
"""


def _profile(directory: Path, model: str, n: int) -> None:
    points = "\n".join(
        f'[[points]]\nname = "p{i}"\nfunction_code = 3\naddress = {i}\ndata_type = "uint16"\n'
        f'scale = 0.1\nunit = "CEL"\nattribute = "p{i}"\n'
        for i in range(n)
    )
    (directory / "bench").mkdir(parents=True, exist_ok=True)
    (directory / "bench" / f"{model}.toml").write_text(PROFILE.format(model=model, points=points))


# --- the child process: peers ------------------------------------------------------------------------------------


async def _child_tcp() -> None:
    from tests.adapters.modbus.peers import UnitImage, start_tcp_peer

    units = [UnitImage(unit_id=u, holding={a: 200 + a for a in range(POINTS)}) for u in range(1, TCP_UNITS + 1)]
    peer, port = await start_tcp_peer(units)
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await peer.stop()


async def _line(src_fd: int, dst_fd: int, char_time: float) -> None:
    """Forward bytes as a 9600-baud wire would: each byte arrives 11 bit times after the previous one."""
    loop = asyncio.get_running_loop()
    free_at = 0.0
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError):
            queue.put_nowait(os.read(src_fd, 4096))

    loop.add_reader(src_fd, readable)
    while True:
        data = await queue.get()
        start = max(time.monotonic(), free_at)
        free_at = start + len(data) * char_time
        await asyncio.sleep(free_at - time.monotonic())
        os.write(dst_fd, data)


async def _child_rtu(directory: str) -> None:
    import termios
    import tty

    from tests.adapters.modbus.peers import PtyPair, UnitImage, start_serial_peer

    master_side = PtyPair(Path(directory) / "m")
    device_side = PtyPair(Path(directory) / "d")
    fds = []
    for path in (master_side.b, device_side.a):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIOFLUSH)
        fds.append(fd)
    units = [UnitImage(unit_id=u, holding={a: a for a in range(RTU_REGISTERS)}) for u in range(1, RTU_UNITS + 1)]
    peer = await start_serial_peer(device_side.b, units, baud=BAUD)
    char_time = 11 / BAUD
    tasks = [
        asyncio.create_task(_line(fds[0], fds[1], char_time)),
        asyncio.create_task(_line(fds[1], fds[0], char_time)),
    ]
    print(master_side.a, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for t in tasks:
        t.cancel()
    await peer.stop()
    master_side.close()
    device_side.close()


# --- the measuring side ------------------------------------------------------------------------------------------


def _start_child(*args: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def _stop_child(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def _run_adapter(
    config_doc: dict[str, Any], seconds: float, warmup: float
) -> tuple[list[PollResult], list[Reading], float, float]:
    from adapters.modbus.adapter import ModbusAdapter
    from adapters.modbus.config import ModbusConfig
    from gateway.adapter_api import AdapterContext

    adapter = ModbusAdapter(
        ModbusConfig.model_validate(config_doc), AdapterContext(gateway_id="bench", data_dir="/tmp")
    )
    polls: list[PollResult] = []
    measuring = False
    for bus in adapter.buses.values():
        inner = bus.on_poll

        def on_poll(result: PollResult, inner=inner) -> None:  # type: ignore[no-untyped-def]
            if measuring:
                polls.append(result)
            inner(result)

        bus.on_poll = on_poll
    readings: list[Reading] = []

    async def emit(reading) -> None:  # type: ignore[no-untyped-def]
        readings.append(reading)

    task = asyncio.create_task(adapter.run(emit))
    await asyncio.sleep(warmup)
    measuring = True
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    measuring = False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return polls, readings, cpu, wall


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_tcp(seconds: float, profiles: Path) -> None:
    child, port = _start_child("--child", "tcp")
    try:
        doc = {
            "name": "bench",
            "type": "modbus",
            "profiles_dir": [str(profiles)],
            "buses": [{"name": "tcp", "port": f"tcp://127.0.0.1:{port}"}],
            "devices": [
                {"name": f"d{u}", "bus": "tcp", "profile": "bench/twenty", "unit_id": u, "poll_interval": 1.0}
                for u in range(1, TCP_UNITS + 1)
            ],
        }
        polls, readings, cpu, wall = await _run_adapter(doc, seconds, warmup=2.0)
    finally:
        _stop_child(child)
    jitter_ms = [(p.started - p.due) * 1000 for p in polls]
    expected = TCP_UNITS * wall
    print(f"1. Modbus TCP: {TCP_UNITS} devices x {POINTS} points, every 1 s, {wall:.1f} s measured")
    print(
        f"   polls {len(polls)} (expected {expected:.0f}), readings {len(readings)}, "
        f"points {sum(len(p.values) for p in polls)}"
    )
    print(
        f"   poll jitter (start - due): p50 {_pct(jitter_ms, 0.5):.2f} ms, p99 {_pct(jitter_ms, 0.99):.2f} ms, "
        f"max {max(jitter_ms):.2f} ms   (target p99 < 50 ms)"
    )
    print(
        f"   CPU of the adapter process: {100 * cpu / wall:.1f} % of one core   (target < 10 %; "
        "the simulated devices run in a child process)"
    )


async def bench_rtu(seconds: float, profiles: Path) -> None:
    from adapters.modbus import rtu

    with tempfile.TemporaryDirectory() as directory:
        os.makedirs(Path(directory) / "m")
        os.makedirs(Path(directory) / "d")
        child, path = _start_child("--child", "rtu", directory)
        try:
            doc = {
                "name": "bench",
                "type": "modbus",
                "profiles_dir": [str(profiles)],
                "buses": [{"name": "rs485", "port": f"rtu://{path}", "baud": BAUD}],
                "devices": [
                    {
                        "name": f"d{u}",
                        "bus": "rs485",
                        "profile": "bench/ten",
                        "unit_id": u,
                        "poll_interval": 0.05,
                        "timeout": 0.1,
                    }
                    for u in range(1, RTU_UNITS + 1)
                ],
            }
            polls, _, _, wall = await _run_adapter(doc, seconds, warmup=2.0)
        finally:
            _stop_child(child)
    per_device: dict[str, list[float]] = {}
    for p in polls:
        per_device.setdefault(p.device.name, []).append(p.started)
    cycles = [b - a for starts in per_device.values() for a, b in itertools.pairwise(starts)]
    achieved = statistics.median(cycles)
    request = rtu.Request(unit_id=1, function_code=3, address=0, count=RTU_REGISTERS)
    frame_bytes = len(rtu.encode_request(request)) + rtu.expected_response_length(request)
    wire_one = frame_bytes * rtu.char_time(BAUD) + rtu.silent_interval(BAUD)
    wire = RTU_UNITS * wire_one
    print(
        f"2. RS-485 RTU at {BAUD} baud 8N1 over a socat pty pair with a {BAUD}-baud line emulator, "
        f"{RTU_UNITS} devices x {RTU_REGISTERS} registers (one coalesced FC03 read each), bus saturated"
    )
    print(
        f"   wire time per cycle: {RTU_UNITS} x ({frame_bytes} bytes x 11 bits / {BAUD} + t3.5 "
        f"{rtu.silent_interval(BAUD) * 1000:.2f} ms) = {wire * 1000:.1f} ms"
    )
    print(
        f"   achieved cycle (median time between polls of one device): {achieved * 1000:.1f} ms "
        f"= {100 * (achieved / wire - 1):+.1f} % vs wire time   (target within 20 %), {len(polls)} polls "
        f"in {wall:.1f} s"
    )
    print("   the rest is the pty hops, the emulator's scheduling and the simulated device's answer time")


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        profiles = Path(directory)
        _profile(profiles, "twenty", POINTS)
        _profile(profiles, "ten", RTU_REGISTERS)
        await bench_tcp(seconds, profiles)
        await bench_rtu(seconds, profiles)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        import logging

        logging.disable(logging.CRITICAL)
        asyncio.run(_child_tcp() if sys.argv[2] == "tcp" else _child_rtu(sys.argv[3]))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time of each part (default 20)")
    asyncio.run(main(parser.parse_args().seconds))
