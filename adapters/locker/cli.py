"""`edgegw locker probe|status|open|kiosk`: commissioning locker boards, and the pickup kiosk page.

`probe` talks to the port directly (stop the gateway first, it holds the port): it asks every
address of each board model and prints the boards that answer with their lock counts. `status`
and `open` go through the running gateway's control socket, like the staff page; `open` is written
to the audit log with actor `cli:<unix user>` (run by root, it is the gateway's account by then:
gateway.privileges). `kiosk` serves one locker adapter's compartments:
`--adapter NAME`, which may be left out while the configuration has only one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from adapters.locker.bus import Board, BoardTimeout, LinkError, SerialLink, decode_status
from adapters.locker.codec import LockerFrameError
from adapters.locker.config import BoardConfig, BoardModel, BusConfig, LockerConfig
from adapters.locker.grids import LATEST_COMPARTMENTS, grid_targets
from gateway.cliopts import add_config_option, bounded_int, bounded_seconds, print_config_error

__all__ = ["add_parsers", "probe", "run"]

EXIT_OK = 0
EXIT_NOTHING = 1
EXIT_USAGE = 2


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("locker", help="locker boards: find them, show their state, open a compartment")
    sub = p.add_subparsers(dest="locker_command", required=True, metavar="{probe,status,open,kiosk}")
    pr = sub.add_parser("probe", help="find the boards on a port (stop the gateway first) and their lock counts")
    pr.add_argument("--port", required=True, help="/dev/ttyUSB0 or tcp://HOST:PORT (a TCP serial server)")
    pr.add_argument("--baud", type=bounded_int(300, 921_600), default=9600)
    pr.add_argument("--model", choices=[m.value for m in BoardModel], action="append", help="default: every model")
    pr.add_argument(
        "--timeout",
        type=bounded_seconds(0.01, 10.0),
        default=0.1,
        help="seconds to wait for each address (default 0.1)",
    )
    st = sub.add_parser("status", help="every compartment's door, occupancy and pickup state (gateway running)")
    add_config_option(st)
    op = sub.add_parser("open", help="open one compartment's door through the running gateway (audited)")
    op.add_argument("label", help="the compartment label, e.g. A-03")
    add_config_option(op)
    ki = sub.add_parser("kiosk", help="serve the pickup kiosk page for the touchscreen beside the lockers")
    add_config_option(ki)
    ki.add_argument("--listen", default="127.0.0.1", help="address (default 127.0.0.1: a browser on the box itself)")
    ki.add_argument("--port", type=int, default=8444)
    ki.add_argument(
        "--adapter", help="the locker adapter (site) whose compartments it opens; needed when there are several"
    )
    ki.add_argument("--lang", choices=["ja", "en"], default="ja")
    ki.add_argument("--attempts-per-minute", type=int, default=10, help="tries per client address (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.locker_command == "probe":
        models = [BoardModel(m) for m in args.model] if args.model else list(BoardModel)
        return asyncio.run(probe(args.port, args.baud, models, args.timeout, out, err))
    from gateway.cliopts import config_path
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        print_config_error(exc, err, what=f"locker {args.locker_command}")
        return EXIT_USAGE
    sock = config.gateway.control_path()
    if args.locker_command == "kiosk":
        from gateway import logs
        from gateway.errors import GatewayError

        problem = kiosk_adapter(config, args)
        if problem:
            err.write(f"locker kiosk: {config_path(args.config)}: {problem}\n")
            return EXIT_USAGE

        logs.setup(config.gateway.log_level.value, config.gateway.log_format.value)  # the journal, like `edgegw web`
        try:
            return asyncio.run(serve_kiosk(config, args))
        except GatewayError as exc:  # started as root it cannot serve as the gateway's account, a store that is not
            # its own, the TLS files …: one line naming the file and the fix, as `edgegw web` says it
            err.write(f"locker kiosk: {exc}\n")
            return EXIT_NOTHING
        except OSError as exc:  # the port in use, the web state directory not writable …
            from gateway.privileges import ownership_hint

            data_dir = Path(config.gateway.data_dir)
            hint = ownership_hint(exc, data_dir, config.web.state_path(data_dir))
            where = "" if hint else f" on {args.listen}:{args.port}"  # a file, not the address, was refused
            err.write(f"locker kiosk: cannot start{where}, got {exc}{hint}\n")
            return EXIT_NOTHING
    if args.locker_command == "status":
        return asyncio.run(status(sock, out, err))
    from gateway.accounts.cli import cli_actor
    from gateway.privileges import PrivilegeError, become_the_account

    actor = cli_actor()  # before the switch: the audit log names who ran it (cli:root), not the account
    try:
        # the control socket and the audit log are the gateway's account's, and it may put a link at either
        as_account = become_the_account("locker open")
    except PrivilegeError as exc:
        err.write(f"locker open: {exc}\n")
        return EXIT_NOTHING
    code = asyncio.run(open_compartment(sock, args.label, actor, out, err))
    _audit(config, actor, args.label, code == EXIT_OK, err, as_account)
    return code


# --- probe -------------------------------------------------------------------------------------------------


async def probe(port: str, baud: int, models: list[BoardModel], timeout: float, out: TextIO, err: TextIO) -> int:
    found = 0
    for model in models:
        bus = BusConfig(name="probe", port=port, baud=baud, timeout=timeout)
        link = SerialLink(bus, model.dialect)
        try:
            await link.open()
        except LinkError as exc:
            err.write(f"locker probe: {exc}\n")
            return EXIT_USAGE
        try:
            low, high = model.addresses
            for address in range(low, high + 1):
                board = Board(BoardConfig(name="probe", bus="probe", model=model, address=address, compartments={}))
                try:
                    frame = await link.exchange(board.query, timeout)
                    assert frame is not None
                    status = decode_status(board.cfg, frame)
                except (BoardTimeout, LockerFrameError):
                    continue
                found += 1
                closed = sum(s.locked for s in status.locks)
                occupied = "" if status.occupied_mask is None else f", {bin(status.occupied_mask).count('1')} occupied"
                out.write(f"{model.value} address {address}: {status.lock_count} locks, {closed} locked{occupied}\n")
        except LinkError as exc:
            err.write(f"locker probe: {exc}\n")
            return EXIT_USAGE
        finally:
            await link.close()
    if not found:
        err.write(f"locker probe: no board answered on {port} at {baud} baud; check wiring (A/B), baud and power\n")
        return EXIT_NOTHING
    return EXIT_OK


# --- through the gateway -----------------------------------------------------------------------------------


async def _grids(client: Any) -> list[dict[str, Any]]:
    targets = grid_targets(await client.call("latest", **LATEST_COMPARTMENTS))
    cells: list[dict[str, Any]] = []
    for adapter, entity_id in sorted(targets.items()):
        result = await client.call("command", entity_id=entity_id, name="grid", value=None, actor="cli")
        if result.get("ok"):
            cells.extend(dict(c, adapter=adapter) for c in json.loads(result["info"]))
    return cells


async def status(sock: Path, out: TextIO, err: TextIO) -> int:
    from gateway.control.client import ControlClient
    from gateway.control.protocol import ControlError, ControlUnavailable

    client = ControlClient(sock)
    try:
        cells = await _grids(client)
    except (ControlUnavailable, ControlError) as exc:
        err.write(f"locker status: the gateway did not answer on {sock}, got {exc}\n")
        return EXIT_USAGE
    finally:
        await client.close()
    if not cells:
        err.write("locker status: no compartments; is a locker adapter configured and running?\n")
        return EXIT_NOTHING
    out.write(f"{'compartment':<12} {'board':<10} {'door':<8} {'occupied':<9} pickup\n")
    for c in cells:
        occupied = "-" if c["occupied"] is None else ("yes" if c["occupied"] else "no")
        board = c["board"] if c["online"] else f"{c['board']}!"
        out.write(f"{c['label']:<12} {board:<10} {c['door']:<8} {occupied:<9} {c['pickup']}\n")
    return EXIT_OK


async def open_compartment(sock: Path, label: str, actor: str, out: TextIO, err: TextIO) -> int:
    from gateway.control.client import ControlClient
    from gateway.control.protocol import ControlError, ControlUnavailable

    client = ControlClient(sock)
    try:
        cells = [c for c in await _grids(client) if c["label"] == label]
        if not cells:
            err.write(f"locker open: no compartment {label}; `edgegw locker status` lists them\n")
            return EXIT_USAGE
        result = await client.call("command", entity_id=cells[0]["entity_id"], name="unlock", value=None, actor=actor)
    except (ControlUnavailable, ControlError) as exc:
        err.write(f"locker open: the gateway did not answer on {sock}, got {exc}\n")
        return EXIT_USAGE
    finally:
        await client.close()
    if not result.get("ok"):
        err.write(f"locker open: {result.get('info')}\n")
        return EXIT_NOTHING
    out.write(f"{result.get('info')}\n")
    return EXIT_OK


def kiosk_adapter(config: Any, args: argparse.Namespace) -> str:
    """Sets `args.adapter` to the locker adapter the kiosk serves; the problem when there is no telling which."""
    names = [a.name for a in config.adapters if isinstance(a, LockerConfig)]
    if args.adapter is None:
        if len(names) > 1:
            return (
                f"--adapter: {len(names)} locker adapters, got none named; each site's kiosk opens its own "
                f"compartments: --adapter {' or --adapter '.join(names)}"
            )
        args.adapter = names[0] if names else None  # none: the page, with every compartment unknown
    elif args.adapter not in names:
        return f'--adapter: no locker adapter of that name, got "{args.adapter}"; locker adapters: {", ".join(names) or "none"}'
    return ""


async def serve_kiosk(config: Any, args: argparse.Namespace) -> int:
    """The kiosk app until SIGTERM/SIGINT: plain HTTP on loopback, HTTPS with the web UI's certificate elsewhere.

    READY goes to systemd (systemd/edgegw-kiosk.service is `Type=notify`) once the port is bound, so a
    unit ordered after it finds the page there.
    """
    import ipaddress

    from gateway.privileges import drop_root, gateway_account
    from gateway.web.cli import tls_context
    from gateway.web.listen import bind

    data_dir = Path(config.gateway.data_dir)
    try:
        loopback = ipaddress.ip_address(args.listen).is_loopback
    except ValueError:
        loopback = args.listen == "localhost"
    sockets = await asyncio.to_thread(bind, [args.listen], args.port)
    try:
        # nothing served yet and no thread of this process using a file: the switch is the whole process's
        await asyncio.to_thread(drop_root, gateway_account(), who="locker kiosk", unit="edgegw-kiosk")
        context = None if loopback else await asyncio.to_thread(tls_context, config.web, data_dir, "locker kiosk")
        await _kiosk(config, args, sockets, context)
    finally:
        for sock in sockets:  # bound, never served (start-up stopped before)
            sock.close()
    return EXIT_OK


async def _kiosk(config: Any, args: argparse.Namespace, sockets: list[Any], context: Any) -> None:
    """The kiosk app on `sockets` (bound, served from here on: taken from the list) until SIGTERM/SIGINT."""
    import signal

    from aiohttp import web

    from gateway.accounts.cli import hand_over
    from gateway.audit.log import AuditLog
    from gateway.control.client import ControlClient
    from gateway.systemd import Notifier
    from gateway.web.cli import AccessLogger
    from gateway.web.kiosk import build_kiosk_app

    state_dir = config.web.state_path(Path(config.gateway.data_dir))
    try:
        audit = await asyncio.to_thread(AuditLog, state_dir)
    finally:
        # run by root that stayed root (sudo; no gateway's user to become), what it made goes back to the gateway's
        # user where there is one, who runs the web UI and the kiosk's unit
        await asyncio.to_thread(hand_over, state_dir)
    control = ControlClient(config.gateway.control_path())
    app = build_kiosk_app(
        control,
        audit=audit,
        attempts_per_minute=args.attempts_per_minute,
        lang=args.lang,
        secure_cookie=context is not None,
        adapter=args.adapter,
    )
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier.from_environment()
    try:
        while sockets:
            await web.SockSite(runner, sockets[0], ssl_context=context).start()
            sockets.pop(0)  # the site's now: closed by runner.cleanup()
        scheme = "http" if context is None else "https"
        host = f"[{args.listen}]" if ":" in args.listen else args.listen  # an IPv6 address, as a browser takes it
        print(f"edgegw locker kiosk: listening on {scheme}://{host}:{args.port}/", flush=True)
        notifier.ready("serving")
        await stop.wait()
    finally:
        notifier.stopping()
        await runner.cleanup()
        await control.close()


def _audit(config: Any, actor: str, label: str, ok: bool, err: TextIO, as_account: str | None = None) -> None:
    from gateway.accounts.cli import hand_over
    from gateway.audit.log import AuditError, AuditLog
    from gateway.privileges import ownership_hint

    data_dir = Path(config.gateway.data_dir)
    state_dir = config.web.state_path(data_dir)
    try:
        log = AuditLog(state_dir)
        log.append(actor=actor, action="locker.unlock", target=label, detail={"ok": ok}, at=time.time())
    except (AuditError, OSError) as exc:
        # as the gateway's account (root switched): whose the files must be, as the web server says it
        hint = ownership_hint(exc, data_dir, state_dir) if as_account and isinstance(exc, OSError) else ""
        err.write(f"locker open: not written to the audit log, got {exc}{hint}\n")
    finally:
        hand_over(state_dir)  # `sudo edgegw locker open`: the log, its head and key stay the gateway's user's
