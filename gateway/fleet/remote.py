"""Signed remote configuration: an Ed25519-signed bundle, verified, applied, health-checked, rolled back.

Theory of operation. A bundle is JSON `{"format", "payload", "signature"}`: `payload` is base64 of
the JSON `{"gateway", "serial", "issued_at", "config"}` and `signature` base64 of its Ed25519
signature by the platform's key (`edgegw config sign`). `verify_bundle` (pure) checks, in this
order, the format, the key pinned in `[fleet.remote_config].public_key` (a weak one refuses every
bundle: see gateway/fleet/config.py), the signature against it, the signed fields' types (the
serial an integer, the rest strings: nothing is read leniently), the gateway id (a bundle for
another box is refused) and the serial (it must be above the last one accepted: an old bundle
replayed is refused). Only then is the config text validated, checked by
`unwatched` (a config the next generation could not watch: one moving `gateway.data_dir`, where
this file and the serials are, or one without `[fleet.remote_config]`, whose generation runs no
tick; both refused, their serial not used up) and applied through the control socket's
`ConfigOps.apply`, which records a config version and reloads. A bundle may pin a new public key:
its window is watched as any other's, and a rollback brings back the key from before it.

One bundle at a time. From its offer until its outcome a bundle is `pending` in
`<data_dir>/remote_config.json`; another bundle offered meanwhile is refused (`busy`, naming the
pending one and its window's end) and its serial is not used up, so the platform offers it again
later. The rollback target is thus always the config from before the one bundle in flight. The
state file is changed only through `update` (one lock: the apply's guard writes it from a worker
thread, the fleet tick and the offers from the loop), so no writer loses another's change.

A reload stops the generation that applied it, so the next generation's fleet service finishes
the job on its ticks. The pending bundle's steps:

  offered  -> written       the apply's guard, under the config lock: the text on disk noted as
                            `previous` (its sha256 alone when validation refuses it: `noted_previous`),
                            and the health window starts now (`applied_at`, `deadline`)
  offered  -> failed        the window ended while the apply still waited for the config lock:
                            the guard then refuses to write, so the bundle is never live unwatched;
                            or a start finds it with no `written_at` and no apply under way (the
                            gateway stopped before the write): closed at once, not at its
                            deadline; or its apply failed before the guard ran (the config lock's
                            file, say): nothing written
  written  -> failed        no apply under way, no reload noted and the file not the bundle's: the
                            gateway stopped between the guard and the write (during validation or
                            the versions store's first record). Closed at once: the text from before
                            (never written) or another config (kept) is what runs
  written  -> applied       reloaded, the version noted; or no apply under way, no reload noted, and
                            the file is the bundle's and what this process runs (a stop between the
                            write and the reload's record, then a start from that file): its window
                            starts again then (`applied_at`, `deadline`), as it judges what runs
  written  -> rolling_back  at once when the apply fails any other way than by the config being
                            refused: the reload ("version N written but not running"), the config
                            versions store, the disk. Left on disk, the next start would run it
                            unwatched (then as below); and when the rollback's guard finds the
                            file still the text from before the bundle, the apply failed before
                            its write: `failed` ("not applied"), not rollback_skipped
  applied  -> confirmed     every uplink delivered after the write and the config file is still
                            the bundle's
  applied  -> superseded    healthy, but the file is another config (applied after the bundle, or
                            a rollback by hand): that is not confirmed as the bundle, and is kept
  written  -> rolling_back  at the deadline, marked before anything is written (a kill then is
                            finished by the next start) -> rolled_back, or rollback_skipped when
                            the file is no longer the bundle's (checked under the config lock),
                            or rollback_failed (also, writing nothing, when the text from before
                            was noted by its sha256 alone: no valid config to put back)

Every step is an audit entry and an `event` in the status document, which the Device entity
carries to the platform.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.control.config_versions import sha256_text
from gateway.errors import ConfigError, GatewayError
from gateway.fleet.config import PASTE_KEY, public_key_problem

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "BundleRefused",
    "Fetched",
    "RemoteState",
    "fetch_bundle",
    "healthy_since",
    "is_previous",
    "noted_previous",
    "payload_digest",
    "previous_not_kept",
    "public_key_b64",
    "scrub_previous",
    "sign_bundle",
    "start_delay_held",
    "unwatched",
    "update",
    "verify_bundle",
]

log = logging.getLogger(__name__)
BUNDLE_FORMAT = "edgegw-config-bundle/1"
STATE_FILE = "remote_config.json"
MAX_BUNDLE_BYTES = 1 << 20
SHOWN_CHARS = 60  # of a wrong value in a refusal: enough to recognise it, not a whole config
T = TypeVar("T")


class BundleRefused(GatewayError, ValueError):
    """A bundle that is not applied; `code` is stable (bad_format, bad_key, bad_signature, wrong_gateway, replayed,
    busy, data_dir_moved, no_remote_config)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    gateway: str
    serial: int
    issued_at: str
    config: str


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def sign_bundle(key: Ed25519PrivateKey, *, gateway: str, serial: int, config: str, issued_at: datetime) -> bytes:
    payload = json.dumps(
        {"gateway": gateway, "serial": serial, "issued_at": issued_at.astimezone(UTC).isoformat(), "config": config},
        ensure_ascii=False,
        sort_keys=True,
    ).encode()
    doc = {
        "format": BUNDLE_FORMAT,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signature": base64.b64encode(key.sign(payload)).decode("ascii"),
    }
    return json.dumps(doc, indent=1).encode()


def verify_bundle(data: bytes, *, public_key: str, gateway: str, last_serial: int) -> Bundle:
    """The bundle's content once every check passed; BundleRefused with the first that failed."""
    where = "remote config"
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefused(
            "bad_format", f"{where}: bundle too large, got {len(data)} bytes; at most {MAX_BUNDLE_BYTES}"
        )
    payload, signature = _envelope(data, where)
    key = _pinned(public_key, where)
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise BundleRefused(
            "bad_signature",
            f"{where}: signature does not verify with the pinned key, got a bundle signed by another key or altered; "
            "nothing applied",
        ) from None
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise BundleRefused(
            "bad_format", f"{where}: signed payload unreadable, got {type(exc).__name__}: {exc}"
        ) from None
    bundle = _signed_fields(body, where)
    if bundle.gateway != gateway:
        raise BundleRefused(
            "wrong_gateway", f"{where}: bundle is for gateway {bundle.gateway!r}, got it on {gateway!r}"
        )
    if bundle.serial <= last_serial:
        raise _replayed(last_serial, bundle.serial)
    return bundle


def _envelope(data: bytes, where: str) -> tuple[bytes, bytes]:
    """The bundle's (payload, signature), both still to be checked."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format is not {BUNDLE_FORMAT}")
        return base64.b64decode(doc["payload"], validate=True), base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:  # RecursionError: [[[[…
        raise BundleRefused("bad_format", f"{where}: not a config bundle, got {type(exc).__name__}: {exc}") from None


def payload_digest(data: bytes) -> str | None:
    """sha256 of a bundle's signed payload (what it says, however its JSON is laid out); None if it has none."""
    if len(data) > MAX_BUNDLE_BYTES:
        return None
    try:
        payload, _ = _envelope(data, "remote config")
    except BundleRefused:
        return None
    return hashlib.sha256(payload).hexdigest()


def _pinned(public_key: str, where: str) -> Ed25519PublicKey:
    """The pinned key, refused when weak: config validation refuses it too, this guards any other way in."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    problem = public_key_problem(raw) if len(raw) == 32 else "not base64 of 32 bytes"
    if problem is not None:
        raise BundleRefused(
            "bad_key",
            f"{where}: [fleet.remote_config] public_key must be a sound Ed25519 key, got {problem}; nothing "
            f"applied; {PASTE_KEY}",
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def unwatched(config: GatewayConfig, *, data_dir: Path, serial: int) -> BundleRefused | None:
    """Why bundle `serial`'s valid `config` must still not be applied: the next generation could not watch it.

    `data_dir` is the running one, which holds this state file: a generation on another would find no
    pending bundle (no window, no rollback) and serial 0 (old bundles replayable).
    """
    from gateway.app import same_data_dir  # the reload's own comparison; app is loaded whenever a bundle comes

    moved = Path(config.gateway.data_dir)
    if not same_data_dir(data_dir, moved):
        return BundleRefused(
            "data_dir_moved",
            f"remote config: gateway.data_dir must stay {data_dir}, got {moved} in bundle {serial}; the bundle's "
            "state, health window and serials are kept in the data directory, so it is moved on the box (stop the "
            "gateway, move the directory, set gateway.data_dir, start it), never remotely; nothing applied",
        )
    if config.fleet is None or config.fleet.remote_config is None:
        missing = "[fleet]" if config.fleet is None else "[fleet.remote_config]"
        return BundleRefused(
            "no_remote_config",
            f"remote config: the bundle's config must keep [fleet.remote_config], got bundle {serial} without "
            f"{missing}; the gateway would then watch no health window, roll nothing back and take no further "
            "bundle; nothing applied",
        )
    return None


def _signed_fields(body: Any, where: str) -> Bundle:
    """The payload's fields as signed, each of its own type: a serial "5", 5.9 or true is not read as 5."""
    if not isinstance(body, dict):
        raise BundleRefused("bad_format", f"{where}: signed payload: must be a JSON object, got {_shown(body)}")
    problems = []
    for name, kind in (("gateway", str), ("serial", int), ("issued_at", str), ("config", str)):
        if name not in body:
            problems.append(f"{name} missing")
        elif not isinstance(body[name], kind) or isinstance(body[name], bool):  # bool: True is an int to Python
            # a config sent as another type (a table, say) may hold passwords: its type only
            got = _json_type(body[name]) if name == "config" else _shown(body[name])
            problems.append(f"{name} must be {'an integer' if kind is int else 'a string'}, got {got}")
    if problems:
        raise BundleRefused("bad_format", f"{where}: signed payload: {'; '.join(problems)}")
    return Bundle(gateway=body["gateway"], serial=body["serial"], issued_at=body["issued_at"], config=body["config"])


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type: what the platform's developers see in their payload."""
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A decoded value as the JSON it came as (cut short) with its type: `"5" (string)`, `5.9 (number)`."""
    if value is None:
        return "null"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        return _json_type(value)
    if len(text) > SHOWN_CHARS:
        text = text[: SHOWN_CHARS - 2] + "…"
    return f"{text} ({_json_type(value)})"


def _replayed(last_serial: int, serial: int) -> BundleRefused:
    return BundleRefused(
        "replayed",
        f"remote config: serial must be above {last_serial}, got {serial}; an old bundle is never applied",
    )


def utc_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def healthy_since(doc: Mapping[str, Any], applied_at: float) -> bool:
    """Every uplink delivered after `applied_at` and none is failing: positive evidence, not the absence of
    errors (a new generation sends its Device entity at once, so every uplink has something to deliver,
    though one with a backlog may first wait its random start delay: `start_delay_held`)."""
    for u in doc.get("uplinks", ()):
        if u.get("state") in ("backing-off", "refused", "starting"):
            return False
        if (u.get("last_delivery") or 0) < applied_at:
            return False
    return True


def start_delay_held(doc: Mapping[str, Any], applied_at: float, start_delays: Mapping[str, float]) -> float:
    """The longest `start_delay_max_s` (`start_delays`, by uplink name) of an uplink `waiting` with nothing
    delivered since `applied_at`; 0 when there is none.

    Such an uplink has a backlog and waits its random start delay before the first batch (a fleet given
    the same bundle must not drain into the platform at once): it has not had its chance to deliver, so it
    is not judged yet. One that delivered since is `waiting` only on the drain rate's pace.
    """
    held = [
        start_delays.get(str(u.get("name")), 0.0)
        for u in doc.get("uplinks", ())
        if u.get("state") == "waiting" and (u.get("last_delivery") or 0) < applied_at
    ]
    return max(held, default=0.0)


def noted_previous(on_disk: str | None) -> dict[str, Any]:
    """A pending bundle's `previous` and `previous_sha256` for the config text on disk before it (None: no file).

    The text is kept only if it validates, as in the config versions store (gateway/control/ops_config.py):
    one validation refuses never ran, no rollback can write it back (ConfigOps refuses it too), and it may
    hold a secret in clear (a hand edit's token) that this file, and every backup of the data directory,
    would keep until the bundle ends. Its sha256 still tells the file again. Blocking: validates.
    """
    from gateway.control.ops_config import parse_text  # loaded whenever a bundle comes, as in `unwatched`

    if on_disk is None:
        return {"previous": None, "previous_sha256": None}
    try:
        parse_text(on_disk)
    except ConfigError:
        return {"previous": None, "previous_sha256": sha256_text(on_disk)}
    return {"previous": on_disk, "previous_sha256": sha256_text(on_disk)}


def is_previous(pending: Mapping[str, Any], text: str | None) -> bool:
    """Whether `text` (a config file's; None: no file) is the one from before the pending bundle: by its text,
    or by its sha256 when only that was kept."""
    previous = pending.get("previous")
    if previous is not None:
        return bool(text == previous)
    digest = pending.get("previous_sha256")
    if digest is None:  # no file before the bundle (or the guard has not run)
        return text is None
    return text is not None and sha256_text(text) == digest


def previous_not_kept(pending: Mapping[str, Any]) -> bool:
    """Whether the config from before the pending bundle was a file known by its sha256 alone (not valid)."""
    return pending.get("previous") is None and pending.get("previous_sha256") is not None


def scrub_previous(data_dir: Path, pending: Mapping[str, Any]) -> bool:
    """A `previous` an older release noted in clear (no `previous_sha256`) kept only if valid, as
    `noted_previous` does; False when there is nothing to scrub. Blocking: validates, then `update`s."""
    text = pending.get("previous")
    if "previous_sha256" in pending or not isinstance(text, str):
        return False
    fields = noted_previous(text)  # outside the state lock: up to a second for a large config

    def scrub(state: RemoteState) -> bool:
        p = state.pending
        if p is None or p.get("serial") != pending.get("serial") or "previous_sha256" in p or p.get("previous") != text:
            return False  # taken on since it was read
        p.update(fields)
        return True

    return update(data_dir, scrub)


class RemoteState:
    """`<data_dir>/remote_config.json` (0600: it holds the previous config text while a bundle is pending, if that
    text validates; else only its sha256)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / STATE_FILE
        self.doc: dict[str, Any] = {"last_serial": 0, "pending": None, "events": []}
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.doc.update(loaded)
        except (OSError, ValueError):
            pass

    @property
    def last_serial(self) -> int:
        return int(self.doc.get("last_serial", 0))

    @property
    def pending(self) -> dict[str, Any] | None:
        pending: dict[str, Any] | None = self.doc.get("pending")
        return pending

    def accept(self, serial: int, digest: str) -> None:
        """Bundle `serial` (its payload's `digest`) verified and taken: its serial used up."""
        self.doc["last_serial"] = serial
        self.doc["accepted"] = {"serial": serial, "payload_sha256": digest}

    def unchanged(self, data: bytes) -> bool:
        """Whether `data` is the last bundle accepted, as signed (however it turned out): nothing to do with it.

        The same serial with another payload is not: that is a replay or a tampered copy, refused as such.
        """
        accepted = self.doc.get("accepted")
        if not isinstance(accepted, dict) or accepted.get("serial") != self.last_serial:
            return False
        return accepted.get("payload_sha256") == payload_digest(data)

    def refusal(self, serial: int) -> BundleRefused | None:
        """Why a verified bundle cannot become the pending one now: its serial used meanwhile, or another pending."""
        if serial <= self.last_serial:
            return _replayed(self.last_serial, serial)
        pending = self.pending
        if pending is None:
            return None
        other = pending.get("serial")
        if pending.get("rolling_back") is not None:
            what = "being rolled back"
        elif not pending.get("reloaded") and pending.get("written_at") is None:
            what = f"waiting to be applied (at most until {utc_text(pending['deadline'])})"
        else:
            what = f"in its health window until {utc_text(pending['deadline'])}"
        return BundleRefused(
            "busy",
            f"remote config: bundle {other} is {what}, got bundle {serial}; nothing applied, offer it again once "
            f"bundle {other} is confirmed or rolled back",
        )

    def event(self, at: float, step: str, detail: str, serial: int | None = None) -> None:
        self.doc["events"] = [
            *self.doc.get("events", [])[-19:],
            {"at": at, "step": step, "serial": serial, "detail": detail},
        ]

    def save(self) -> None:
        """Tests and `update` only: a writer that read the file earlier would undo what others wrote since."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def summary(self) -> dict[str, Any]:
        pending = self.pending
        return {
            "last_serial": self.last_serial,
            "pending": None
            if pending is None
            else {k: pending[k] for k in ("serial", "version", "applied_at", "deadline") if k in pending},
            "events": self.doc.get("events", [])[-5:],
        }


# The file has writers on the loop (offers, the tick, the detached apply and rollback) and in a
# worker thread (the apply's guard, under the config lock); the gateway is its one process.
_STATE_LOCK = threading.Lock()


def update(data_dir: Path, change: Callable[[RemoteState], T]) -> T:
    """Read the state file, `change` it and save it (if changed) as one step; blocking: call it in a thread."""
    with _STATE_LOCK:
        state = RemoteState(data_dir)
        before = json.dumps(state.doc, sort_keys=True)
        result = change(state)
        if json.dumps(state.doc, sort_keys=True) != before:
            state.save()
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """One answer at `url`: the bundle, or None for 304 (the one answered before), with its validators."""

    data: bytes | None
    etag: str | None = None
    last_modified: str | None = None


async def fetch(url: str, *, context: ssl.SSLContext | None = None, timeout_s: float = 30.0) -> bytes:
    """GET the bundle (TLS verified with `context`, default the system's CAs); at most MAX_BUNDLE_BYTES."""
    return (await fetch_bundle(url, context=context, timeout_s=timeout_s)).data or b""


async def fetch_bundle(
    url: str, *, context: ssl.SSLContext | None = None, timeout_s: float = 30.0, previous: Fetched | None = None
) -> Fetched:
    """`fetch`, conditional on `previous`'s ETag and Last-Modified: a platform serving a file answers 304 to
    a bundle it served before, and no body crosses the link (metered, on most boxes)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {}
    if previous is not None and previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous is not None and previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, ssl=context or True, headers=headers) as resp,
    ):
        etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        if resp.status == 304:
            if previous is not None:
                etag, modified = etag or previous.etag, modified or previous.last_modified
            return Fetched(data=None, etag=etag, last_modified=modified)
        if resp.status != 200:
            raise BundleRefused("fetch_failed", f"remote config: GET {url} answered {resp.status}")
        # the whole body, however many pieces it comes in (content.read(n) returns what is buffered now)
        data = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > MAX_BUNDLE_BYTES:
                raise BundleRefused(
                    "bad_format", f"remote config: GET {url}: bundle too large, got more than {MAX_BUNDLE_BYTES} bytes"
                )
        return Fetched(data=bytes(data), etag=etag, last_modified=modified)


# Tasks that outlive the generation that started them: applying a config reloads, which stops that
# generation; the apply must not be cancelled by its own reload.
_DETACHED: set[asyncio.Task[Any]] = set()


def detach(make: Callable[[], Any], name: str) -> asyncio.Task[Any]:
    task = asyncio.create_task(make(), name=name)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)
    return task


def running(name: str) -> bool:
    """Whether a task detached under `name` is still under way in this process (any generation's)."""
    return any(task.get_name() == name for task in _DETACHED)
