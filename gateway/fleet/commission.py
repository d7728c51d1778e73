"""`edgegw commission`: the on-site check a technician runs on a box, as a pass/fail report (text or --json).

Each check is a small function returning `Check`s; none stops the others, so one report says
everything that is wrong. What needs the running gateway (devices answering, a test reading
delivered) asks it over the control socket; without it those checks fail and say so.
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config import GatewayConfig
from gateway.host import clock_synced

__all__ = ["Check", "Result", "report_text", "run_checks"]


class Result(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # not applicable to this box's configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    result: Result
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"result": self.result.value}


def check_clock() -> list[Check]:
    synced = clock_synced()
    if synced is None:
        return [Check(name="clock", result=Result.FAIL, detail="clock: cannot ask the kernel; check `timedatectl`")]
    return [
        Check(
            name="clock",
            result=Result.PASS if synced else Result.FAIL,
            detail="clock synchronised"
            if synced
            else "clock: not synchronised, got no NTP sync; readings would carry a wrong time (check `timedatectl`, "
            "the NTP server and UDP 123 in the firewall)",
        )
    ]


def _device_paths(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _device_paths(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _device_paths(v, f"{where}[{i}]")
    elif isinstance(value, str) and value.startswith("/dev/"):
        yield where, value


def check_serial_ports(config: GatewayConfig) -> list[Check]:
    out = []
    for i, adapter in enumerate(config.adapters):
        for where, path in _device_paths(adapter.model_dump(mode="json"), f"adapters[{i}]"):
            name = f"serial {path}"
            if not os.path.exists(path):
                out.append(
                    Check(
                        name=name,
                        result=Result.FAIL,
                        detail=f"{where}: not present, got no {path}; check the USB cable and `ls /dev/serial/by-id`",
                    )
                )
            elif not os.access(path, os.R_OK | os.W_OK):
                out.append(
                    Check(
                        name=name,
                        result=Result.FAIL,
                        detail=f"{where}: {path} not readable and writable by this user; add it to the dialout group",
                    )
                )
            else:
                out.append(Check(name=name, result=Result.PASS, detail=f"{where}: {path} present and permitted"))
    return out or [Check(name="serial ports", result=Result.SKIP, detail="no serial port configured")]


def check_devices(status: dict[str, Any] | None) -> list[Check]:
    if status is None:
        return [
            Check(
                name="devices",
                result=Result.FAIL,
                detail="devices: the gateway is not running; start it (systemctl start edgegw)",
            )
        ]
    out = []
    for adapter in status.get("adapters", ()):
        offline = (adapter.get("diagnostics") or {}).get("offline")
        if adapter.get("state") != "running":
            out.append(
                Check(
                    name=f"adapter {adapter['name']}",
                    result=Result.FAIL,
                    detail=f"adapter {adapter['name']}: {adapter.get('state')}, last error: {adapter.get('last_error') or 'none'}",
                )
            )
        elif isinstance(offline, list) and offline:
            out.append(
                Check(
                    name=f"adapter {adapter['name']}",
                    result=Result.FAIL,
                    detail=f"adapter {adapter['name']}: devices not answering: {', '.join(map(str, offline))}",
                )
            )
        else:
            summary = (adapter.get("diagnostics") or {}).get("summary") or f"emitted {adapter.get('emitted', 0)}"
            out.append(
                Check(
                    name=f"adapter {adapter['name']}",
                    result=Result.PASS,
                    detail=f"adapter {adapter['name']}: running, {summary}",
                )
            )
    return out or [Check(name="devices", result=Result.SKIP, detail="no adapter configured")]


async def _reach(host: str, port: int, *, tls: bool, ca_file: str | None, timeout_s: float) -> Check:
    """DNS, TCP and (with `tls`) a verified TLS handshake to host:port."""
    name = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        return Check(
            name=name, result=Result.FAIL, detail=f"{name}: DNS lookup failed, got {exc}; check /etc/resolv.conf"
        )
    context = ssl.create_default_context(cafile=ca_file) if tls else None
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            )
    except ssl.SSLError as exc:
        return Check(
            name=name,
            result=Result.FAIL,
            detail=f"{name}: TLS handshake failed, got {exc.reason}; check the CA file and the clock",
        )
    except (OSError, TimeoutError) as exc:
        return Check(
            name=name,
            result=Result.FAIL,
            detail=f"{name}: cannot connect ({infos[0][4][0]}), got {exc or 'timeout'}; check the firewall and proxy",
        )
    writer.close()
    return Check(name=name, result=Result.PASS, detail=f"{name}: DNS, TCP{' and TLS' if tls else ''} ok")


async def check_uplinks(config: GatewayConfig, timeout_s: float) -> list[Check]:
    out = []
    for u in config.uplinks:
        doc = u.model_dump(mode="json")
        url = doc.get("url") or doc.get("broker_url") or doc.get("host")
        if not isinstance(url, str):
            out.append(Check(name=f"uplink {u.name}", result=Result.SKIP, detail=f"uplink {u.name}: no URL to check"))
            continue
        if "://" not in url:
            url = f"mqtt://{url}:{doc.get('port', 1883)}"
        parts = urlsplit(url)
        tls = parts.scheme in ("https", "mqtts")
        port = parts.port or (
            443 if parts.scheme == "https" else 80 if parts.scheme == "http" else 8883 if tls else 1883
        )
        ca = (doc.get("tls") or {}).get("ca_file")
        check = await _reach(
            parts.hostname or "", port, tls=tls, ca_file=ca if isinstance(ca, str) else None, timeout_s=timeout_s
        )
        out.append(Check(name=f"uplink {u.name}", result=check.result, detail=f"uplink {u.name}: {check.detail}"))
    return out


def check_probe(probe: dict[str, Any] | None) -> list[Check]:
    """The test reading (the Device entity sent now): delivered and acknowledged by each uplink's far side —
    which proves authentication too (a refused token never gets a 2xx)."""
    if probe is None:
        return [
            Check(
                name="test reading",
                result=Result.FAIL,
                detail="test reading: the gateway is not running, or has no [fleet] section",
            )
        ]
    out = []
    for u in probe["uplinks"]:
        if u["delivered"]:
            out.append(
                Check(
                    name=f"test reading {u['name']}",
                    result=Result.PASS,
                    detail=f"uplink {u['name']}: test reading acknowledged in {u['seconds']} s",
                )
            )
        else:
            out.append(
                Check(
                    name=f"test reading {u['name']}",
                    result=Result.FAIL,
                    detail=f"uplink {u['name']}: test reading not acknowledged ({u['state']}), last error: {u['last_error'] or 'none'}",
                )
            )
    return out


async def check_mail(config: GatewayConfig, timeout_s: float) -> list[Check]:
    fleet = config.fleet
    recipients = fleet.alarms.recipients if fleet is not None else {}
    if config.mail is None:
        if recipients:
            return [
                Check(
                    name="alarm e-mail",
                    result=Result.FAIL,
                    detail="alarm e-mail: recipients configured but no [mail] section",
                )
            ]
        return [Check(name="alarm e-mail", result=Result.SKIP, detail="no [mail] section")]
    mail = config.mail
    check = await _reach(
        mail.host,
        mail.effective_port,
        tls=mail.security.value == "smtps",  # STARTTLS and the login are the mail component's (`--test-mail-to`)
        ca_file=str(mail.tls.ca_file) if mail.tls.ca_file is not None else None,
        timeout_s=timeout_s,
    )
    return [Check(name="alarm e-mail", result=check.result, detail=f"mail server {check.detail}")]


async def run_checks(
    config: GatewayConfig,
    *,
    status: dict[str, Any] | None,
    probe: dict[str, Any] | None,
    timeout_s: float = 10.0,
) -> list[Check]:
    checks = check_clock()
    checks += check_serial_ports(config)
    checks += check_devices(status)
    checks += await check_uplinks(config, timeout_s)
    checks += check_probe(probe)
    checks += await check_mail(config, timeout_s)
    return checks


def report_text(config: GatewayConfig, checks: list[Check], now: float | None = None) -> str:
    failed = [c for c in checks if c.result is Result.FAIL]
    lines = [
        f"edgegw commissioning report for {config.gateway.id}, {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}",
        *(f"  [{c.result.value.upper():<4}] {c.detail}" for c in checks),
        f"result: {'PASS' if not failed else f'FAIL ({len(failed)} of {len(checks)} checks failed)'}",
    ]
    return "\n".join(lines)


def data_dir_of(config: GatewayConfig) -> Path:
    return Path(config.gateway.data_dir)
