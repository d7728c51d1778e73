"""RFC 6587 syslog-over-TCP framing: a byte stream in, whole messages out (octet counting or LF)."""

from __future__ import annotations

from enum import Enum

from adapters.wifi_syslog.errors import SyslogFramingError, quote

__all__ = ["FrameSplitter", "Framing", "encode_non_transparent", "encode_octet_counted"]

DEFAULT_MAX_FRAME = 8192


class Framing(Enum):
    AUTO = "auto"  # per frame: a digit starts octet counting, anything else is LF-terminated (RFC 6587 3.4)
    OCTET_COUNTING = "octet-counting"
    NON_TRANSPARENT = "non-transparent"


def encode_octet_counted(message: bytes) -> bytes:
    """RFC 6587 3.4.1: `MSG-LEN SP SYSLOG-MSG`."""
    return b"%d %s" % (len(message), message)


def encode_non_transparent(message: bytes) -> bytes:
    """RFC 6587 3.4.2: the message followed by LF (the message must not contain LF)."""
    return message + b"\n"


class FrameSplitter:
    """Feed it stream bytes, take complete frames out one at a time; an error means the stream lost sync: close it.

    `feed()` only stores; `next()` gives the next whole frame, None until one is complete, or raises
    SyslogFramingError for what cannot be a frame. Every frame before the bad bytes comes out first,
    whatever the reads' split: an error found in a read never takes the good frames before it along
    (Wi-Fi session events have no acknowledgement to bring them back).
    """

    def __init__(self, framing: Framing = Framing.AUTO, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError(f"FrameSplitter: max_frame must be at least 1, got {max_frame}")
        self._framing = framing
        self._max = max_frame
        self._max_digits = len(str(max_frame))
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Octets held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> bytes | None:
        """The next whole, non-empty frame; None until there is one."""
        buf = self._buf
        while buf:
            frame = self._take_counted(buf) if self._octet_counted(buf[0]) else self._take_line(buf)
            if frame is None:
                return None
            if frame:
                return frame
        return None

    def close(self) -> list[bytes]:
        """End of stream: a trailing unterminated LF frame is returned; a cut counted frame is an error."""
        buf = self._buf
        if not buf:
            return []
        if self._octet_counted(buf[0]):
            held = len(buf)
            buf.clear()
            raise SyslogFramingError(
                where="syslog tcp stream",
                what="connection closed inside an octet-counted frame",
                got=f"{held} octets pending",
                fix="the sender was cut off; the partial message is dropped",
            )
        frame = bytes(buf).rstrip(b"\r")
        buf.clear()
        return [frame] if frame else []

    def _octet_counted(self, first: int) -> bool:
        if self._framing is Framing.AUTO:
            return 0x30 <= first <= 0x39
        return self._framing is Framing.OCTET_COUNTING

    def _take_counted(self, buf: bytearray) -> bytes | None:
        space = buf.find(b" ", 0, self._max_digits + 1)
        if space < 0:
            if len(buf) <= self._max_digits and buf.isdigit():
                return None
            raise SyslogFramingError(
                where="syslog tcp stream",
                what=f"octet count must be 1-{self._max_digits} digits followed by a space",
                got=quote(bytes(buf[: self._max_digits + 1]).decode("ascii", "backslashreplace")),
                fix="check the sender's framing setting (octet-counting vs newline)",
            )
        digits = bytes(buf[:space])
        if not digits.isdigit() or digits[:1] == b"0":
            raise SyslogFramingError(
                where="syslog tcp stream",
                what="octet count must be a decimal number without leading zeros",
                got=quote(digits.decode("ascii", "backslashreplace")),
                fix="check the sender's framing setting (octet-counting vs newline)",
            )
        size = int(digits)
        if size > self._max:
            raise SyslogFramingError(
                where="syslog tcp stream",
                what=f"frame larger than the {self._max}-octet limit",
                got=f"{size} octets",
                fix="raise max_frame or shorten the sender's messages",
            )
        end = space + 1 + size
        if len(buf) < end:
            return None
        frame = bytes(buf[space + 1 : end])
        del buf[:end]
        return frame

    def _take_line(self, buf: bytearray) -> bytes | None:
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > self._max:
                held = len(buf)
                buf.clear()
                raise SyslogFramingError(
                    where="syslog tcp stream",
                    what=f"no LF within the {self._max}-octet limit",
                    got=f"{held} octets",
                    fix="check the sender's framing setting (octet-counting vs newline)",
                )
            return None
        frame = bytes(buf[:nl])
        del buf[: nl + 1]
        # CRLF senders and NUL-terminated senders (RFC 6587 3.4.2 notes both) lose their trailer
        return frame.rstrip(b"\r\x00")
