"""A strict stand-in for a FEIG ID ISC HF reader on one end of a pty, written from the manual, not from the adapter.

Speaks the standard protocol of "OBID i-scan System-Manual ID ISC.MR/PR/PRH101" (H60301-3e-ID-B):
frames are checked byte for byte (length, COM-ADR, CRC-16 with a table of its own); a frame with a
bad CRC gets no answer (the reader drops it), an unknown control byte or ISO command gets STATUS
0x80 (unknown command), an addressed command for a UID not on the pad gets 0x01 (no transponder), and
so does an NXP custom command (EAS) to a tag of another maker, which ignores it as ISO 15693 says.
Inventory replies carry at most `max_sets` tags per frame and STATUS 0x94 while more remain.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass, field


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        out.append(c)
    return out


_T = _table()


def crc(data: bytes) -> int:
    c = 0xFFFF
    for b in data:
        c = (c >> 8) ^ _T[(c ^ b) & 0xFF]
    return c


@dataclass
class SimTag:
    uid: bytes
    memory: bytearray
    afi: int = 0x07
    eas: bool = True
    block_size: int = 4
    dsfid: int = 0x00


@dataclass
class FeigSim:
    tags: list[SimTag] = field(default_factory=list)
    com_adr: int = 0
    max_sets: int = 8
    requests: list[bytes] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)
    dropped: int = 0

    def answer(self, frame: bytes) -> bytes | None:
        self.requests.append(frame)
        if len(frame) != frame[0] or crc(frame[:-2]) != frame[-2] | frame[-1] << 8:
            self.dropped += 1
            return None
        adr, control, data = frame[1], frame[2], frame[3:-2]
        if adr not in (255, self.com_adr):
            return None
        status, payload = self._dispatch(control, data)
        body = bytes((len(payload) + 6, self.com_adr, control, status)) + payload
        c = crc(body)
        return body + bytes((c & 0xFF, c >> 8))

    def _tag(self, mode: int, uid: bytes) -> SimTag | None:
        if mode & 0x07 != 0x01:
            return None
        return next((t for t in self.tags if t.uid == uid), None)

    def _dispatch(self, control: int, data: bytes) -> tuple[int, bytes]:
        if control == 0x72:
            if len(data) < 2 or data[0] != 0x01 or len(data) != 2 + 4 * data[1]:
                return 0x81, b""  # length error
            self.outputs.append(bytes(data))
            return 0x00, b""
        if control == 0xB0 and data[:1] == b"\x01" and len(data) == 2:
            return self._inventory(more=bool(data[1] & 0x80))
        if control == 0xB0 and data[:1] in (b"\x23", b"\x2b", b"\x27"):
            cmd, mode, uid = data[0], data[1], bytes(data[2:10])
            tag = self._tag(mode, uid)
            if tag is None:
                return 0x01, b""
            if cmd == 0x23:
                if len(data) != 12:
                    return 0x81, b""
                first, count = data[10], data[11]
                nblocks = len(tag.memory) // tag.block_size
                if first + count > nblocks:
                    return 0x95, b"\x10"  # ISO error: block not available
                out = bytearray((count, tag.block_size))
                for b in range(first, first + count):
                    out.append(0x00)
                    out += tag.memory[b * tag.block_size : (b + 1) * tag.block_size]
                return 0x00, bytes(out)
            if cmd == 0x2B:
                if len(data) != 10:
                    return 0x81, b""
                nblocks = len(tag.memory) // tag.block_size
                # MEM-SIZE MSB first, as FEIG's SDK reads it: block size − 1, then number of blocks − 1
                return 0x00, bytes((tag.dsfid,)) + tag.uid + bytes((tag.afi, tag.block_size - 1, nblocks - 1, 0x01))
            if len(data) != 11:
                return 0x81, b""
            tag.afi = data[10]
            return 0x00, b""
        if control == 0xB1 and len(data) == 11 and data[0] in (0xA2, 0xA3, 0xA5) and data[1] == 0x04:
            tag = self._tag(data[2], bytes(data[3:11]))
            # ISO 15693: a custom command carries an IC manufacturer code, and a tag of another maker
            # (UID byte 6, the second sent MSB first) stays silent, which the reader reports as no transponder
            if tag is None or tag.uid[1] != data[1]:
                return 0x01, b""
            if data[0] == 0xA5:
                return (0x00, b"") if tag.eas else (0x01, b"")
            tag.eas = data[0] == 0xA2
            return 0x00, b""
        return 0x80, b""

    def _inventory(self, *, more: bool) -> tuple[int, bytes]:
        if not more:
            self._pending = list(self.tags)
        pending = getattr(self, "_pending", [])
        if not pending:
            return 0x01, b""
        now, self._pending = pending[: self.max_sets], pending[self.max_sets :]
        out = bytearray((len(now),))
        for t in now:
            out += bytes((0x03, t.dsfid)) + t.uid
        return (0x94 if self._pending else 0x00), bytes(out)


class SimThread:
    """Runs `sim` on the pty `path` until `stop()`."""

    def __init__(self, sim: FeigSim, path: str) -> None:
        self.sim = sim
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            buf += os.read(self.fd, 4096)
            while buf and len(buf) >= buf[0] >= 1:
                n = buf[0]
                frame, buf = buf[:n], buf[n:]
                reply = self.sim.answer(frame)
                if reply is not None:
                    os.write(self.fd, reply)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(2)
        os.close(self.fd)
