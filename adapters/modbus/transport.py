"""Modbus links (TCP, RTU on a serial port, RTU over TCP): open, one request/answer with a timeout, typed errors.

This is the only module that imports pymodbus or pyserial. Modbus TCP goes through pymodbus's client
(MBAP framing, transaction ids that drop a late answer); RTU frames are built and checked by our
sans-I/O `adapters.modbus.rtu`, because the bus scheduler needs what pymodbus's RTU client hides:
a CRC error counted as such instead of a silent timeout, and its own inter-frame gap. Serial ports
open through pyserial's `serial_for_url`, so `/dev/ttyUSB0`, ptys and `socket://host:port` all work.

Every foreign exception leaves this module as one of ours:
    LinkError (AdapterError, ConnectionError)   the port or connection cannot be opened or was lost
    ├── PortMissing                             no such serial device
    └── PortPermission                          the user may not open it (dialout group)
    ModbusTimeout (DeviceTimeout)               no (complete) answer in time
    rtu.CrcError / rtu.FrameError               an answer that is not a valid frame for the request
    rtu.ExceptionResponse                       the device refused (exception code, name and hint)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import pymodbus
import serial  # type: ignore[import-untyped]
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from adapters.modbus import rtu
from adapters.modbus.config import PortAddress, SerialSettings
from gateway.errors import AdapterError, DeviceTimeout
from gateway.profiles.schema import Transport

__all__ = [
    "PYMODBUS_VERSION",
    "Link",
    "LinkError",
    "ModbusTimeout",
    "PortMissing",
    "PortPermission",
    "RtuSerialLink",
    "RtuTcpLink",
    "TcpLink",
    "open_link",
]

PYMODBUS_VERSION = pymodbus.__version__

# pymodbus logs every timeout at ERROR and every skipped late answer; we translate and count them
# ourselves (state changes logged once), so its own lines would only repeat ours on every poll.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# `slave=` became `device_id=` in pymodbus 3.10; pick whichever the installed version takes.
_UNIT_KW = "device_id" if "device_id" in inspect.signature(AsyncModbusTcpClient.read_coils).parameters else "slave"


class LinkError(AdapterError, ConnectionError):
    code = "modbus_link"


class PortMissing(LinkError):
    code = "modbus_port_missing"


class PortPermission(LinkError):
    code = "modbus_port_permission"


class ModbusTimeout(DeviceTimeout):
    code = "modbus_timeout"


class Link(Protocol):
    """One physical or logical line; requests on it must be serialized by the caller (the bus)."""

    description: str

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def transact(self, request: rtu.Request, timeout: float) -> rtu.Response:
        """Send one request and return its answer; raises ModbusTimeout, ModbusError or LinkError."""
        ...


def open_link(address: PortAddress, settings: SerialSettings, *, connect_timeout: float = 3.0) -> Link:
    """The link for a port address (not yet opened)."""
    if address.transport is Transport.TCP:
        return TcpLink(address, connect_timeout=connect_timeout)
    if address.transport is Transport.RTU_OVER_TCP:
        return RtuTcpLink(address, settings, connect_timeout=connect_timeout)
    return RtuSerialLink(address, settings)


# --- Modbus TCP through pymodbus --------------------------------------------------------------------------


class TcpLink:
    """Modbus TCP (MBAP) to one host: a device or a TCP-to-RS-485 gateway with several unit ids."""

    def __init__(self, address: PortAddress, *, connect_timeout: float = 3.0) -> None:
        self.address = address
        self.description = address.text
        self._connect_timeout = connect_timeout
        self._client: AsyncModbusTcpClient | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.connected

    async def open(self) -> None:
        await self.close()
        # retries=0 and no reconnect: the bus counts retries and reopens with its own backoff
        client = AsyncModbusTcpClient(
            self.address.host,
            port=self.address.port,
            timeout=self._connect_timeout,
            retries=0,
            reconnect_delay=0,
            reconnect_delay_max=0,
        )
        client.set_max_no_responses(2**31)  # one silent unit must not close the link its neighbours use
        if not await client.connect():
            client.close()
            raise LinkError(
                f"modbus {self.description}: cannot connect, got no connection within {self._connect_timeout:g} s; "
                "check the address and port (502 by default), that the device is powered and on this network",
                port=self.description,
            )
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def transact(self, request: rtu.Request, timeout: float) -> rtu.Response:
        client = self._client
        where = f"{request.describe()} on {self.description}"
        if client is None or not client.connected:
            raise LinkError(
                f"modbus {self.description}: connection lost, got a closed link; it will be reopened",
                port=self.description,
            )
        try:
            pdu = await asyncio.wait_for(self._call(client, request), timeout)
        except TimeoutError:
            raise ModbusTimeout(
                f"{where}: no answer, got nothing within {timeout:g} s; check the unit id, "
                "and that the device behind a gateway is powered and wired",
                unit_id=request.unit_id,
                timeout=timeout,
            ) from None
        except ConnectionException as exc:
            await self.close()
            raise LinkError(f"modbus {self.description}: connection lost, got {exc}", port=self.description) from None
        except ModbusIOException:
            raise ModbusTimeout(
                f"{where}: no answer, got nothing within {timeout:g} s", unit_id=request.unit_id, timeout=timeout
            ) from None
        except ModbusException as exc:
            raise rtu.FrameError(f"{where}: unusable answer, got {exc}") from None
        except OSError as exc:
            await self.close()
            raise LinkError(f"modbus {self.description}: connection lost, got {exc}", port=self.description) from None
        return _from_pdu(request, pdu, where)

    @staticmethod
    async def _call(client: AsyncModbusTcpClient, r: rtu.Request) -> Any:
        unit: dict[str, Any] = {_UNIT_KW: r.unit_id}
        fc = r.function_code
        if fc == 1:
            return await client.read_coils(r.address, count=r.count, **unit)
        if fc == 2:
            return await client.read_discrete_inputs(r.address, count=r.count, **unit)
        if fc == 3:
            return await client.read_holding_registers(r.address, count=r.count, **unit)
        if fc == 4:
            return await client.read_input_registers(r.address, count=r.count, **unit)
        if fc == 5:
            return await client.write_coil(r.address, bool(r.value), **unit)
        if fc == 6:
            return await client.write_register(r.address, r.value, **unit)
        if fc == 15:
            return await client.write_coils(r.address, list(r.bits), **unit)
        if fc == 16:
            return await client.write_registers(r.address, list(r.registers), **unit)
        raise ValueError(f"{r.describe()}: function code must be one of 1-6, 15, 16, got {fc}")


def _from_pdu(request: rtu.Request, pdu: Any, where: str) -> rtu.Response:
    fc = request.function_code
    if pdu.isError():
        code = int(getattr(pdu, "exception_code", 0))
        # the shared decoder words the exception (name and technician hint) exactly as for RTU
        rtu.decode_response_pdu(request, request.unit_id, bytes([fc | 0x80, code]), where)
    if fc in (1, 2):
        bits = tuple(bool(b) for b in pdu.bits[: request.count])
        if len(bits) != request.count:
            raise rtu.FrameError(f"{where}: expected {request.count} bits, got {len(bits)}")
        return rtu.Response(unit_id=request.unit_id, function_code=fc, bits=bits)
    if fc in (3, 4):
        regs = tuple(int(r) for r in pdu.registers)
        if len(regs) != request.count:
            raise rtu.FrameError(f"{where}: expected {request.count} registers, got {len(regs)}")
        return rtu.Response(unit_id=request.unit_id, function_code=fc, registers=regs)
    if fc in (5, 6):
        return rtu.Response(unit_id=request.unit_id, function_code=fc, address=request.address, value=request.value)
    n = len(request.bits) or len(request.registers)
    return rtu.Response(unit_id=request.unit_id, function_code=fc, address=request.address, count=n)


# --- RTU framing over a byte stream -----------------------------------------------------------------------


class _Inbox:
    """Bytes from the line, and an event that wakes the request waiting for them."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.event = asyncio.Event()
        self.error: Exception | None = None

    def feed(self, data: bytes) -> None:
        self.data += data
        self.event.set()

    def fail(self, exc: Exception) -> None:
        self.error = exc
        self.event.set()


class _RtuLink:
    """RTU request/answer over any byte stream; subclasses open the stream and write bytes."""

    description: str
    baud: int | None  # None when the line's speed is not ours to know (a TCP serial server)

    def __init__(self) -> None:
        self._inbox = _Inbox()

    def _write(self, frame: bytes) -> None:
        raise NotImplementedError

    async def transact(self, request: rtu.Request, timeout: float) -> rtu.Response:
        if not self.is_open:  # type: ignore[attr-defined]
            raise LinkError(
                f"modbus {self.description}: port closed, got a closed link; it will be reopened", port=self.description
            )
        inbox = self._inbox
        inbox.data.clear()  # a late answer to an earlier request must not pass for this one's
        inbox.event.clear()
        frame = rtu.encode_request(request)
        self._write(frame)
        want = rtu.expected_response_length(request)
        # the timeout counts from the end of our request to the end of the answer's first bytes:
        # at 9600 baud a 125-register answer alone is on the wire for 0.29 s
        wire = 0.0 if self.baud is None else rtu.char_time(self.baud) * (len(frame) + want)
        deadline = time.monotonic() + timeout + wire
        while True:
            data = inbox.data
            if inbox.error is not None:
                error, inbox.error = inbox.error, None
                await self.close()  # type: ignore[attr-defined]
                raise LinkError(f"modbus {self.description}: port lost, got {error}", port=self.description)
            if len(data) >= 5 and data[1] == request.function_code | 0x80:
                return rtu.decode_response(request, bytes(data[:5]))
            if len(data) >= want:
                return rtu.decode_response(request, bytes(data[:want]))
            left = deadline - time.monotonic()
            if left <= 0:
                break
            inbox.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inbox.event.wait(), left)
        where = f"{request.describe()} on {self.description}"
        if inbox.data:
            raise rtu.FrameError(
                f"{where}: incomplete answer, got {len(inbox.data)} of {want} bytes "
                f"({bytes(inbox.data[:16]).hex(' ')}); check baud rate, parity and termination",
                length=len(inbox.data),
            )
        raise ModbusTimeout(
            f"{where}: no answer, got nothing within {timeout:g} s; check wiring (A/B), baud rate, "
            "parity and the unit id",
            unit_id=request.unit_id,
            timeout=timeout,
        )


_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class RtuSerialLink(_RtuLink):
    """RTU on a local serial port (RS-485 dongle, pty) or any pyserial URL (`socket://host:port`)."""

    def __init__(self, address: PortAddress, settings: SerialSettings) -> None:
        super().__init__()
        self.address = address
        self.settings = settings
        self.baud = settings.baud
        self.description = address.text
        self._serial: Any = None
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        await self.close()
        s = self.settings
        url = self.address.path
        try:
            # socket:// URLs connect here, so keep the loop free
            ser = await asyncio.to_thread(
                serial.serial_for_url,
                url,
                baudrate=s.baud,
                bytesize=s.data_bits,
                parity=_PARITY[s.parity.value],
                stopbits=s.stop_bits,
                timeout=0,
                write_timeout=2.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise port_error(self.description, exc) from None
        self._serial = ser
        self._inbox = _Inbox()
        loop = asyncio.get_running_loop()
        self._fd = ser.fileno()
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        ser = self._serial
        if ser is None:
            return
        try:
            data = ser.read(max(1, ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            self._stop_reading()
            self._inbox.fail(exc)
            return
        if data:
            self._inbox.feed(data)

    def _stop_reading(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None

    def _write(self, frame: bytes) -> None:
        try:
            self._serial.write(frame)
        except (serial.SerialException, OSError) as exc:
            self._inbox.fail(exc)

    async def close(self) -> None:
        self._stop_reading()
        ser, self._serial = self._serial, None
        if ser is not None:
            # the device may be gone already (USB dongle unplugged)
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, inbox_of: Callable[[], _Inbox]) -> None:
        self._inbox_of = inbox_of
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._inbox_of().feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inbox_of().fail(exc or ConnectionResetError("closed by the serial server"))
        self.transport = None


class RtuTcpLink(_RtuLink):
    """RTU frames through a TCP serial server (transparent RS-485 to Ethernet converter)."""

    def __init__(self, address: PortAddress, settings: SerialSettings, *, connect_timeout: float = 3.0) -> None:
        super().__init__()
        self.address = address
        self.description = address.text
        self.baud = None  # the converter's serial side is configured on the converter
        self._connect_timeout = connect_timeout
        self._protocol: _StreamProtocol | None = None

    @property
    def is_open(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def open(self) -> None:
        await self.close()
        self._inbox = _Inbox()
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamProtocol(lambda: self._inbox), self.address.host, self.address.port
                ),
                self._connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            got = (
                f"no connection within {self._connect_timeout:g} s"
                if isinstance(exc, asyncio.TimeoutError)
                else str(exc)
            )
            raise LinkError(
                f"modbus {self.description}: cannot connect, got {got}; check the serial server's "
                "address and port and that it is in TCP server (raw) mode",
                port=self.description,
            ) from None
        self._protocol = protocol

    def _write(self, frame: bytes) -> None:
        assert self._protocol is not None and self._protocol.transport is not None
        self._protocol.transport.write(frame)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


def port_error(port: str, exc: BaseException) -> LinkError:
    """Our error for a serial port that cannot be opened, worded for the technician."""
    number = getattr(exc, "errno", None)
    text = str(exc)
    if number == errno.ENOENT or "No such file" in text or ("could not open port" in text and "[Errno 2]" in text):
        return PortMissing(
            f'modbus {port}: no such serial port, got "{port}"; check the cable and '
            "`ls /dev/ttyUSB* /dev/ttyACM* /dev/serial/by-id/`",
            port=port,
        )
    if number in (errno.EACCES, errno.EPERM) or "[Errno 13]" in text or "Permission denied" in text:
        return PortPermission(
            f'modbus {port}: permission denied, got no access to "{port}"; add the user to the '
            "dialout group: sudo usermod -aG dialout $USER (then log in again)",
            port=port,
        )
    if "[Errno 11]" in text or "exclusively lock" in text or "Resource temporarily unavailable" in text:
        return LinkError(
            f'modbus {port}: port in use, got "{port}" locked by another program; stop it '
            "(another edgegw, a terminal program, ModemManager)",
            port=port,
        )
    return LinkError(f"modbus {port}: cannot open the port, got {text}", port=port)
