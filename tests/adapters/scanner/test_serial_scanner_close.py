"""A serial scanner's close waits for the read a cancelled scan loop left in a worker thread; a read or a
send after close gets a clear error and leaves the port alone. The scanner is on a real pty."""

from __future__ import annotations

import asyncio

import pytest

from adapters.scanner.aim import FramingConfig, Suffix
from adapters.scanner.serial_scanner import SerialScanner
from gateway.errors import AdapterError
from tests.adapters.rfid.port_threads import cancelled_in_read, inside_pyserial, pending, until_inside, watched_executor
from tests.adapters.rfid.port_threads import line as line


async def test_close_returns_only_after_the_cancelled_reads_worker_left_the_port(line: tuple[str, int]) -> None:
    """Regression: the adapter's device task was cancelled and closed the scanner while the read's thread was
    still in the port; the close freed the fd under it (a number the next `open()` is given) and the
    thread went on with a port that had none (TypeError)."""
    path, _ = line
    with watched_executor() as executor:
        scanner = SerialScanner(path, FramingConfig(suffix=Suffix.CR))
        waiting = asyncio.create_task(anext(scanner.scans()))
        await cancelled_in_read(waiting)
        scanner.close()  # directly, to see when it returns (the adapter calls it in a thread)
        assert inside_pyserial() == {}
        (read,) = executor.work
        assert read.exception(timeout=2) is None  # its own end: 50 ms of nothing
    assert read.result()[0] == b""


async def test_a_close_during_a_read_lets_it_end_and_the_scan_loop_ends_with_a_clear_error(
    line: tuple[str, int],
) -> None:
    path, _ = line
    scanner = SerialScanner(path, FramingConfig(suffix=Suffix.CR))
    waiting = asyncio.create_task(anext(scanner.scans()))
    await until_inside("read")
    scanner.close()
    assert inside_pyserial() == {}
    with pytest.raises(ConnectionError) as caught:
        await waiting
    assert str(caught.value) == f"serial scanner {path}: the port is closed, got a read"


async def test_a_read_or_a_send_after_close_is_a_clear_error_and_leaves_the_port_alone(
    line: tuple[str, int],
) -> None:
    path, other = line
    scanner = SerialScanner(path, FramingConfig(suffix=Suffix.CR))
    scanner.close()
    with pytest.raises(ConnectionError) as read:
        await anext(scanner.scans())
    with pytest.raises(ConnectionError) as send:
        await scanner.send(b"\x07")
    assert isinstance(read.value, AdapterError) and read.value.code == "scanner_port_closed"
    assert str(read.value) == f"serial scanner {path}: the port is closed, got a read"
    assert str(send.value) == f"serial scanner {path}: the port is closed, got a send"
    assert pending(other) == b""
    scanner.close()  # a second close is harmless
