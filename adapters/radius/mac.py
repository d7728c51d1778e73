"""MAC addresses: every vendor spelling in, lowercase colon form out; masking for logs and errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapters.radius.errors import MacAddressError
from gateway import redact

__all__ = [
    "MacAddress",
    "mask_mac",
    "mask_text",
    "normalize_mac",
    "redact_macs",
    "split_called_station_id",
]

# Spellings seen from NASes and APs: AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF (RFC 3580 style),
# aabb.ccdd.eeff (Cisco), aabbcc-ddeeff (HPE/Aruba), aabbccddeeff, and colon groups without
# leading zeros (a:b:c:d:e:f, as BSD and macOS print them).
_GROUPED = re.compile(
    r"([0-9a-f]{1,2})([:-])([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})"
)
_DOTTED = re.compile(r"([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})")
_HALVES = re.compile(r"([0-9a-f]{6})[-:]([0-9a-f]{6})")
_HEX = frozenset("0123456789abcdef")

# A MAC standing alone in free text, in a spelling `normalize_mac` reads: not inside a word, and not glued
# by a separator to more hex groups (`cafe-aabb-ccdd-eeff`, an EUI-64, an IPv6 address), where which six
# octets are the MAC cannot be told. Only these are shown as `MacAddress` shows them; everything else is
# left to the central redactor. The hex run after the MAC is taken whole (possessive), so that
# `…:ff:FreeWiFi` (an SSID) still ends a MAC and `…:ff:00:11` does not.
_H = "[0-9A-Fa-f]"
_ALONE = re.compile(
    rf"(?<![0-9A-Za-z])(?<!{_H}[:.-])"
    rf"(?:{_H}{{1,2}}([:-]){_H}{{1,2}}(?:\1{_H}{{1,2}}){{4}}|{_H}{{4}}\.{_H}{{4}}\.{_H}{{4}}|{_H}{{6}}[-:]{_H}{{6}}|{_H}{{12}})"
    rf"(?![0-9A-Za-z])(?![:.-]{_H}++(?![0-9A-Za-z]))"
)


def normalize_mac(text: str, *, where: str = "mac address") -> str:
    """The lowercase colon form `aa:bb:cc:dd:ee:ff` of any known spelling; raises MacAddressError."""
    s = text.strip().lower()
    if len(s) == 17 and s[2] == ":" and s[5] == ":" and s[8] == ":" and s[11] == ":" and s[14] == ":":
        if _HEX.issuperset(s.replace(":", "")):
            return s
    elif len(s) == 12 and _HEX.issuperset(s):
        # bare hex (UniFi tags, many NASes' Calling-Station-Id) without trying the three other regexes
        return f"{s[0:2]}:{s[2:4]}:{s[4:6]}:{s[6:8]}:{s[8:10]}:{s[10:12]}"
    m = _GROUPED.fullmatch(s)
    if m:
        return ":".join(g.zfill(2) for g in m.group(1, 3, 4, 5, 6, 7))
    m = _DOTTED.fullmatch(s) or _HALVES.fullmatch(s)
    hexes = "".join(m.groups()) if m else ""
    if not hexes:
        raise MacAddressError(
            where=where,
            what="not a MAC address",
            got=mask_text(text),
            fix="expected AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff",
        )
    return ":".join(hexes[i : i + 2] for i in range(0, 12, 2))


def mask_mac(mac: str) -> str:
    """Keep the vendor prefix (OUI) only: `aa:bb:cc:**:**:**`."""
    return mac[:8] + ":**:**:**"


def mask_text(text: str) -> str:
    """A quotable, personal-data-free stand-in for an unparsed value: a short prefix and its length."""
    keep = min(4, len(text) // 3)
    return f'"{text[:keep]}***" ({len(text)} chars)'


def redact_macs(text: str) -> str:
    """`text` with every MAC-like run masked to its vendor prefix, as the log redactor masks it.

    A MAC alone reads `aa:bb:cc:**:**:**`, as `MacAddress` shows it; the rest is `gateway.redact.text`,
    the one redaction point of every log line: glued and EUI-64 spellings (`cafe-***`,
    `fe80::3e22:fbff:fe***`), e-mail addresses and registered secrets, so that a repr or an error
    quoting device text hides what the log line quoting it will.
    """
    return redact.text(_ALONE.sub(_mask_alone, text))


def _mask_alone(m: re.Match[str]) -> str:
    return mask_mac(normalize_mac(m.group(0)))


@dataclass(frozen=True, slots=True)
class MacAddress:
    """A normalised MAC address; `value` holds it in clear, repr and str show it masked."""

    value: str

    @classmethod
    def parse(cls, text: str, *, where: str = "mac address") -> MacAddress:
        return cls(normalize_mac(text, where=where))

    @property
    def oui(self) -> str:
        return self.value[:8]

    def __repr__(self) -> str:
        return f"MacAddress({mask_mac(self.value)!r})"

    def __str__(self) -> str:
        return mask_mac(self.value)


def split_called_station_id(text: str) -> tuple[MacAddress | None, str | None]:
    """`AP-MAC:SSID` (RFC 3580 3.20) into the AP's MAC and the SSID; (None, None) if no MAC leads.

    The MAC itself may contain colons, so each known MAC width is tried as the prefix.
    """
    s = text.strip()
    for width in (17, 14, 13, 12):
        if len(s) >= width and (len(s) == width or s[width] == ":"):
            try:
                mac = normalize_mac(s[:width])
            except MacAddressError:
                continue
            return MacAddress(mac), (s[width + 1 :] or None)
    return None, None
