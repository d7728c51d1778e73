"""`edgegw web`: run the admin web UI over HTTPS; `edgegw web fingerprint`: its certificate's SHA-256 fingerprint.

The UI is its own process: it opens the account and audit stores in `[web] state_dir`, talks to the running
gateway through `[gateway] control_socket`, reads the buffer read-only, and stops cleanly on SIGTERM.
When no admin exists yet it prints (and logs, for the journal) a one-time setup link valid for an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from gateway import logs
from gateway.cancellation import cancel_and_wait, event_set_within
from gateway.cliopts import add_config_option, config_path, print_config_error
from gateway.errors import ConfigError, GatewayError
from gateway.web.security import loggable_path

if TYPE_CHECKING:
    import ssl

    from gateway.config import GatewayConfig
    from gateway.web.config import WebConfig

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
SETUP_TTL_S = 3600.0
RETENTION_CHECK_S = 86400.0
SHUTDOWN_TIMEOUT_S = 5.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds `web [run|fingerprint]` to the `edgegw` parser; returns it (the caller sets `func=run`)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "web", help="run the admin web UI (HTTPS); `web fingerprint` prints its certificate's SHA-256 fingerprint"
    )
    p.add_argument("web_command", nargs="?", choices=("run", "fingerprint"), default="run", help="default: run")
    add_config_option(p)
    return p


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log without what must not reach the journal (setup tokens in paths, query strings),
    and without the flood: pages polled every few seconds by every open browser would write hundreds of
    thousands of lines a day to an SD card. Changes (POST …) and errors at INFO, the rest at DEBUG, and so is a
    refusal an open spell counted: its spell's first and end are told (gateway.web.refusals)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        # here, not at the top: the refusals pull in the UI's pages, which `edgegw` loads only to serve them
        from gateway.web.refusals import COUNTED

        changed = request.method not in ("GET", "HEAD") or response.status >= 400
        level = logging.INFO if changed and not request.get(COUNTED, False) else logging.DEBUG
        if not self.logger.isEnabledFor(level):
            return
        path = loggable_path(request.path)
        self.logger.log(
            level, "%s %s %s %d %.1f ms", request.remote, request.method, path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def urls(listen: tuple[str, ...], port: int, *, hostname: str | None = None) -> list[str]:
    """The addresses to type into a browser: the listen ones, or for a wildcard the box's addresses (of the
    wildcard's family: "0.0.0.0" IPv4, "::" IPv6 alone, as its socket is IPv6-only (gateway.web.listen), "" both),
    then its host name, which the office's name service may not know."""
    from gateway.web.certs import WILDCARDS, local_addresses

    hosts: list[str] = []
    names: list[str] = []
    for address in listen:
        if address in WILDCARDS:
            for found in local_addresses():
                ip = ipaddress.ip_address(found.split("%")[0])
                family = {"0.0.0.0": 4, "::": 6}.get(address, ip.version)
                if not ip.is_loopback and not ip.is_link_local and ip.version == family:
                    hosts.append(str(ip))
            names.append(hostname if hostname is not None else socket.gethostname())
        else:
            hosts.append(address)
    shown = []
    for host in dict.fromkeys(hosts + names):
        try:
            bracket = ipaddress.ip_address(host).version == 6
        except ValueError:
            bracket = False
        host_part = f"[{host}]" if bracket else host
        shown.append(f"https://{host_part}/" if port == 443 else f"https://{host_part}:{port}/")
    return shown


def run(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    path = config_path(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print_config_error(exc, source=str(path))
        return EXIT_CONFIG
    data_dir = Path(cfg.gateway.data_dir)
    state_dir = cfg.web.state_path(data_dir)
    if args.web_command == "fingerprint":
        from gateway.privileges import drop_root, gateway_account
        from gateway.web.certs import material

        try:
            # the files as the server reads them, never as root: the gateway's account owns the state directory
            if (account := gateway_account()) is not None:
                drop_root(account, who="web fingerprint", unit="edgegw-web")
            tls = material(cfg.web, state_dir, create=False)
        except (FileNotFoundError, GatewayError) as exc:
            print(f"edgegw web fingerprint: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except PermissionError as exc:  # read as the gateway's account: a state root left, or a link out of it
            from gateway.privileges import ownership_hint

            print(f"edgegw web fingerprint: {exc}{ownership_hint(exc, data_dir, state_dir)}", file=sys.stderr)
            return EXIT_FAILURE
        kind = "self-signed" if tls.self_signed else "installed"
        print(f"SHA-256 {tls.fingerprint}  ({kind}, {tls.cert})")
        return EXIT_OK
    logs.setup(cfg.gateway.log_level.value, cfg.gateway.log_format.value)
    try:
        asyncio.run(serve(cfg, path, become_owner=True))
    except GatewayError as exc:  # the TLS files, a store that is damaged or from a newer edgegw …
        # one line naming the file and the fix: a technician must act, restarting cannot help
        print(f"edgegw web: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # the port in use, the state directory not writable …
        from gateway.privileges import ownership_hint

        log.critical("web: cannot start, got %s%s", exc, ownership_hint(exc, data_dir, state_dir))
        return EXIT_FAILURE
    return EXIT_OK


async def serve(
    cfg: GatewayConfig, config_path: Path, *, stop: asyncio.Event | None = None, become_owner: bool = False
) -> None:
    """Runs the UI until SIGTERM/SIGINT (or `stop` is set).

    Started by root with `become_owner` (the command's own process, never a test's), it binds its ports, becomes
    the gateway's account and only then reads its TLS material, makes or opens its files and serves
    (gateway.privileges)."""
    from gateway.privileges import PrivilegeError, drop_root, gateway_account, unprivileged_ports_from
    from gateway.web.listen import bind

    data_dir = Path(cfg.gateway.data_dir)
    if become_owner and os.geteuid() == 0 and cfg.web.port < (lowest := unprivileged_ports_from()):
        # the config is the gateway's account's to write: root would hold a port for it that it may not take
        raise PrivilegeError(
            f"[web] port {cfg.web.port} is below {lowest}: started as root it would be bound for whoever may write "
            f"the config, and the unit, which has no capability, could not bind it; choose a port from {lowest} up "
            "(the default is 8443)"
        )
    sockets = await asyncio.to_thread(bind, cfg.web.listen, cfg.web.port)
    try:
        if become_owner:
            # nothing served yet and no thread of this process using a file: the switch is the whole process's
            await asyncio.to_thread(drop_root, gateway_account(), who="web", unit="edgegw-web")
        context = await asyncio.to_thread(tls_context, cfg.web, data_dir, "web")
        await _serve(cfg, config_path, sockets, context, stop or asyncio.Event())
    finally:
        for sock in sockets:  # bound, never served (start-up stopped before)
            sock.close()


def tls_context(web_cfg: WebConfig, data_dir: Path, who: str) -> ssl.SSLContext:
    """The UI's TLS context: the admin's certificate, else the self-signed one in the state directory (made now if
    absent); the kiosk off loopback serves the same (`who` names the server in the log)."""
    from gateway.web.certs import material, server_context

    # a self-signed one made by root that stayed root goes to the gateway's account with the stores (_serve)
    tls = material(web_cfg, web_cfg.state_path(data_dir))
    # Pairs separated by spaces, as Chrome's certificate viewer shows them: the colon spelling has the shape of
    # MAC addresses, which the journal's redactor masks as personal data.
    log.info("%s: TLS certificate SHA-256 fingerprint %s (%s)", who, tls.fingerprint.replace(":", " "), tls.cert)
    return server_context(tls)


async def _serve(
    cfg: GatewayConfig,
    config_path: Path,
    sockets: list[socket.socket],
    context: ssl.SSLContext,
    stop: asyncio.Event,
) -> None:
    """The UI on `sockets` (bound, served from here on: taken from the list) until `stop` is set."""
    from gateway.accounts.cli import hand_over
    from gateway.accounts.store import AccountStore
    from gateway.audit.log import AuditLog
    from gateway.buffer.location import BUFFER_FILE
    from gateway.buffer.reader import BufferReader
    from gateway.systemd import Notifier
    from gateway.web.app import build_app
    from gateway.web.control_pool import ControlPool
    from gateway.web.formkey import form_key
    from gateway.web.services import WebServices

    web_cfg = cfg.web
    data_dir = Path(cfg.gateway.data_dir)
    state_dir = web_cfg.state_path(data_dir)
    try:
        accounts = await asyncio.to_thread(AccountStore, state_dir, web_cfg)
        audit = await asyncio.to_thread(AuditLog, state_dir)
        key = await asyncio.to_thread(form_key, state_dir)
    finally:
        # run by root that stayed root (sudo; no gateway's user to become), what it made goes back to the gateway's
        # user where there is one: its unit could not start otherwise
        await asyncio.to_thread(hand_over, state_dir)
    services = WebServices(
        config=web_cfg,
        gateway_config_path=config_path,
        control=ControlPool(cfg.gateway.control_path()),
        buffer=BufferReader(data_dir / BUFFER_FILE),
        accounts=accounts,
        audit=audit,
        clock=time.time,
        form_key=key,
    )
    app = build_app(services)
    # In-flight requests get a few seconds at stop: within the unit's TimeoutStopSec, not aiohttp's 60 s.
    runner = web.AppRunner(
        app, access_log_class=AccessLogger, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    notifier = Notifier.from_environment()
    retention: asyncio.Task[None] | None = None
    try:
        while sockets:
            await web.SockSite(runner, sockets[0], ssl_context=context).start()
            sockets.pop(0)  # the site's now: closed by runner.cleanup()
        retention = asyncio.create_task(_retention(audit, web_cfg.audit_retention_days, stop))
        addresses = urls(web_cfg.listen, web_cfg.port)
        for url in addresses:
            print(f"edgegw web: listening on {url}", flush=True)
        log.info("web: listening on %s", ", ".join(addresses))
        if not await asyncio.to_thread(accounts.has_admin):
            token = await asyncio.to_thread(accounts.create_setup_token, now=time.time(), ttl_s=SETUP_TTL_S)
            await asyncio.to_thread(audit.append, actor="web", action="user.setup_link", at=time.time())
            link = f"{addresses[0]}setup/{token}"
            print(
                f"edgegw web: no admin yet; create the first one within 1 hour at {link} "
                "(or on the box: edgegw user add NAME --role admin)",
                flush=True,
            )
            log.warning("web: no admin yet; one-time setup link, valid 1 hour: %s", link)
        notifier.ready("serving")
        await stop.wait()
    finally:
        notifier.stopping()
        log.info("web: stopping")
        if retention is not None:
            await cancel_and_wait(retention)
        await runner.cleanup()
        await services.control.close()
        await services.buffer.close()
        await asyncio.to_thread(hand_over, state_dir)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _retention(audit: Any, days: int, stop: asyncio.Event) -> None:
    """Drops audit entries older than the retention period, at start and daily (the chain stays verifiable)."""
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(audit.purge, time.time() - days * 86400.0)
        except Exception:  # a full disk must not stop the UI; said once a day
            log.exception("web: audit retention failed")
        else:
            if removed:
                log.info("web: audit retention removed %d entries older than %d days", removed, days)
        await event_set_within(stop, RETENTION_CHECK_S)
