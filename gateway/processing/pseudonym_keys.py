"""The gateway's pseudonymization keys: a ring of generations in the secret store, rotated by date, erased on schedule.

Theory of operation. The ring is one entry of the encrypted secret store (`secret:pseudonym.keys`,
see gateway.secrets): a list of generations, each a 256-bit random key with the moment it comes
into force (`valid_from`, UTC). Generation n is in force from its `valid_from` until generation n+1's;
it is then *retired* and kept `keep_old_days` more days, so that a backlog of readings observed
before the rotation (a device that was offline, a buffer being drained) still gets the tokens of
its own period. After that it is erased from the store, and with it any way to link that period's
tokens to a value: erasing a key is how a period is forgotten.

Which key a reading gets is a pure function of its observation time and `now` (`KeyRing.select`):
the newest kept generation in force at `min(observed_at, now)` (a device clock running ahead must
not pull in a key before its date), or the oldest kept generation for a reading older than every
kept key. A key past its erasure time is never selected, even while a long-running gateway still
holds it in memory. Erasure from the store happens when the gateway loads the ring
(`PseudonymKeyStore.load`), which also creates the first generation on first use.

Keys are registered with `gateway.redact` as soon as they are read or made, never logged, and
never part of a repr; only key ids (`k1`, `k2` …) appear in logs and on the command line.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets as _random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from gateway import redact
from gateway.cliopts import add_config_option, config_path, print_config_error
from gateway.errors import ConfigError, GatewayError
from gateway.logs import component_logger
from gateway.records import utc_now
from gateway.secrets import SecretStore

__all__ = [
    "DEFAULT_KEEP_OLD_DAYS",
    "KEY_BYTES",
    "SECRET_NAME",
    "KeyRing",
    "PseudonymKey",
    "PseudonymKeyError",
    "PseudonymKeyStore",
    "add_parser",
    "run",
]

log = component_logger(__name__, "pseudonymize")

SECRET_NAME = "pseudonym.keys"
KEY_BYTES = 32  # HMAC-SHA-256's block-size-friendly key length: the full 256 bits of the hash
DEFAULT_KEEP_OLD_DAYS = 30
_FORMAT_VERSION = 1
# A date without a time on the command line is midnight where the boxes are (Japan, no DST):
# an administrator who types 2027-04-01 means the start of that day, not 09:00.
LOCAL_TZ = timezone(timedelta(hours=9), "JST")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


class PseudonymKeyError(GatewayError, ValueError):
    """A rotation that cannot be done, or a key ring entry that cannot be read."""

    code = "pseudonym_key_invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class PseudonymKey:
    """One generation: its random key (never shown), and when it comes into force."""

    generation: int
    valid_from: datetime
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """The id that goes into every token made with this key (`k<generation>`)."""
        return f"k{self.generation}"


@dataclass(frozen=True, kw_only=True)  # no slots: `_erase_times` is cached on the instance
class KeyRing:
    """Every kept generation, oldest first, and how long a retired one is kept."""

    keys: tuple[PseudonymKey, ...]
    keep_old: timedelta = timedelta(days=DEFAULT_KEEP_OLD_DAYS)

    def retired_at(self, key: PseudonymKey) -> datetime | None:
        """When `key` stops being in force (its successor's `valid_from`); None for the newest."""
        later = [k.valid_from for k in self.keys if k.generation > key.generation]
        return min(later) if later else None

    def erase_at(self, key: PseudonymKey) -> datetime | None:
        retired = self.retired_at(key)
        return None if retired is None else retired + self.keep_old

    @cached_property
    def _erase_times(self) -> tuple[datetime | None, ...]:
        # computed once: `select` runs for every reading with a personal attribute
        return tuple(self.erase_at(k) for k in self.keys)

    def kept(self, now: datetime) -> KeyRing:
        """The ring without the generations whose erasure time has come."""
        keys = tuple(k for k, t in zip(self.keys, self._erase_times, strict=True) if t is None or now < t)
        return self if len(keys) == len(self.keys) else KeyRing(keys=keys, keep_old=self.keep_old)

    def select(self, observed_at: datetime, now: datetime) -> PseudonymKey:
        """The key for a reading observed at `observed_at`, as of `now`; see the module's docstring."""
        if not self.keys:
            raise PseudonymKeyError("pseudonym keys: the ring is empty, got no key; restart the gateway to create one")
        t = min(observed_at, now)
        chosen: PseudonymKey | None = None
        for key, erase_at in zip(self.keys, self._erase_times, strict=True):  # oldest first
            if erase_at is not None and now >= erase_at:
                continue
            if chosen is None or key.valid_from <= t:
                chosen = key
            else:
                break
        # the newest generation has no successor, so it never expires and `chosen` is always set
        return chosen if chosen is not None else self.keys[-1]

    def rotate(self, secret: bytes, valid_from: datetime, now: datetime) -> KeyRing:
        """A ring with one more generation, in force from `valid_from` (not in the past, after the newest)."""
        if valid_from.tzinfo is None:
            raise PseudonymKeyError(
                f"pseudonym rotate: --from must carry a time zone, got {valid_from.isoformat()}",
                valid_from=str(valid_from),
            )
        if valid_from < now:
            raise PseudonymKeyError(
                f"pseudonym rotate: --from must not be in the past, got {_show(valid_from)}; "
                "readings since then already carry the old key's tokens (omit --from to rotate now)",
                valid_from=_show(valid_from),
            )
        newest = self.keys[-1] if self.keys else None
        if newest is not None and valid_from <= newest.valid_from:
            raise PseudonymKeyError(
                f"pseudonym rotate: --from must be after {newest.key_id}'s start {_show(newest.valid_from)}, "
                f"got {_show(valid_from)}",
                valid_from=_show(valid_from),
            )
        if len(secret) != KEY_BYTES:
            raise PseudonymKeyError(f"pseudonym rotate: a key must be {KEY_BYTES} bytes, got {len(secret)}")
        generation = newest.generation + 1 if newest is not None else 1
        key = PseudonymKey(generation=generation, valid_from=valid_from.astimezone(UTC), secret=secret)
        return KeyRing(keys=(*self.keys, key), keep_old=self.keep_old)


def new_secret() -> bytes:
    return _random.token_bytes(KEY_BYTES)


def _show(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _key_text(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode("ascii")


def _register(key: PseudonymKey) -> None:
    # the spellings a key could travel in if a bug ever put it in a line: as stored, and as hex
    redact.register(_key_text(key.secret))
    redact.register(key.secret.hex())


def encode_ring(ring: KeyRing) -> str:
    """The secret store entry's value (JSON); the keep time is config, not stored."""
    return json.dumps(
        {
            "version": _FORMAT_VERSION,
            "keys": [
                {"generation": k.generation, "valid_from": _show(k.valid_from), "key": _key_text(k.secret)}
                for k in ring.keys
            ],
        }
    )


def decode_ring(text: str, keep_old: timedelta) -> KeyRing:
    """The ring an entry holds; PseudonymKeyError naming the problem, never quoting a key."""
    where = f"secret:{SECRET_NAME}"
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != _FORMAT_VERSION:
            raise ValueError(f"version {_FORMAT_VERSION} expected")
        keys = []
        for item in doc["keys"]:
            valid_from = datetime.fromisoformat(item["valid_from"])
            if valid_from.tzinfo is None:
                raise ValueError("valid_from without a time zone")
            secret = base64.urlsafe_b64decode(item["key"])
            if len(secret) != KEY_BYTES:
                raise ValueError(f"a key of {len(secret)} bytes")
            keys.append(PseudonymKey(generation=int(item["generation"]), valid_from=valid_from, secret=secret))
    except (ValueError, KeyError, TypeError) as exc:
        # the message of a failed decode may quote the text, which holds the keys: say only what broke
        what = (
            str(exc)
            if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError)
            else type(exc).__name__
        )
        raise PseudonymKeyError(
            f"{where}: not a pseudonym key ring, got {redact.text(what)}; restore the secret store from a backup "
            "(a new ring gives every value a new token)",
        ) from None
    keys.sort(key=lambda k: k.generation)
    return KeyRing(keys=tuple(keys), keep_old=keep_old)


class PseudonymKeyStore:
    """The ring in the gateway's secret store (`<data_dir>/secrets.enc`): load, create, erase, rotate."""

    def __init__(self, data_dir: Path) -> None:
        self.secrets = SecretStore(Path(data_dir))

    def read(self, keep_old_days: int = DEFAULT_KEEP_OLD_DAYS) -> KeyRing:
        """The stored ring as it is (empty if none), keys registered with the redactor."""
        keep_old = timedelta(days=keep_old_days)
        if SECRET_NAME not in self.secrets.names():
            return KeyRing(keys=(), keep_old=keep_old)
        text = self.secrets.get(SECRET_NAME)
        redact.register(text)
        ring = decode_ring(text, keep_old)
        for key in ring.keys:
            _register(key)
        return ring

    def _change(self, keep_old: timedelta, change: Callable[[KeyRing], KeyRing]) -> tuple[KeyRing, KeyRing]:
        """(the ring as stored, the ring `change` made of it), written atomically: the gateway erasing keys at
        start and `edgegw pseudonym rotate` adding one at that moment must not drop each other's change."""
        seen: list[KeyRing] = []

        def apply(current: str | None) -> str | None:
            ring = KeyRing(keys=(), keep_old=keep_old) if current is None else decode_ring(current, keep_old)
            changed = change(ring)
            seen[:] = [ring, changed]
            return current if changed is ring else encode_ring(changed)

        text = self.secrets.update(SECRET_NAME, apply)
        if text is not None:
            redact.register(text)
        ring, changed = seen
        for key in changed.keys:
            _register(key)
        return ring, changed

    def load(self, now: datetime, keep_old_days: int = DEFAULT_KEEP_OLD_DAYS) -> KeyRing:
        """The ring the gateway runs with: the first key made if there is none, expired ones erased."""

        def kept_or_first(ring: KeyRing) -> KeyRing:
            kept = ring.kept(now)
            return kept if kept.keys else kept.rotate(new_secret(), now, now)

        ring, kept = self._change(timedelta(days=keep_old_days), kept_or_first)
        if not ring.kept(now).keys:
            log.info(
                "pseudonymize: created the first pseudonym key %s (in force from %s)", kept.keys[-1].key_id, _show(now)
            )
            return kept
        if kept is not ring:
            for key in ring.keys:
                if key not in kept.keys:
                    log.info(
                        "pseudonymize: erased pseudonym key %s (retired %s, kept %d days); its tokens can no "
                        "longer be linked to any value",
                        key.key_id,
                        _show(ring.retired_at(key) or now),
                        keep_old_days,
                    )
        return kept

    def rotate(self, valid_from: datetime, now: datetime) -> PseudonymKey:
        """Add a generation in force from `valid_from`; returns it. Keeps every existing one (erasure is `load`'s)."""
        _, rotated = self._change(
            timedelta(days=DEFAULT_KEEP_OLD_DAYS), lambda ring: ring.rotate(new_secret(), valid_from, now)
        )
        key = rotated.keys[-1]
        log.info("pseudonymize: added pseudonym key %s, in force from %s", key.key_id, _show(valid_from))
        return key


# --- `edgegw pseudonym rotate | list` ----------------------------------------------------------


def parse_from(text: str) -> datetime:
    """`--from`: an ISO date (midnight in Japan) or an ISO date-time with an offset (or Z)."""
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d")
            return day.replace(tzinfo=LOCAL_TZ)
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a date (2027-04-01, midnight in Japan) or a date-time with an offset "
            f"(2027-04-01T00:00:00+09:00), got {json.dumps(text, ensure_ascii=False)}"
        ) from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"a date-time must carry an offset (+09:00 or Z), got {json.dumps(text, ensure_ascii=False)}"
        )
    return t


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `pseudonym rotate|list` to the `edgegw` argument parser; returns the `pseudonym` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "pseudonym", help="rotate and list the keys that pseudonymize personal data"
    )
    sub = p.add_subparsers(dest="pseudonym_command", required=True, metavar="{rotate,list}")
    r = sub.add_parser(
        "rotate", help="add a new key, in force from now or from --from; the old one is kept keep_old_days, then erased"
    )
    r.add_argument(
        "--from",
        dest="valid_from",
        type=parse_from,
        default=None,
        metavar="DATE",
        help="2027-04-01 (midnight in Japan) or 2027-04-01T00:00:00+09:00; default: now",
    )
    sub.add_parser("list", help="key ids and when each is in force (never the keys)")
    for s in (r, sub.choices["list"]):
        add_config_option(s)
    return p


def _data_dir(args: argparse.Namespace) -> Path:
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        return Path(data_dir)
    from gateway.config import load_config

    return Path(load_config(config_path(args.config)).gateway.data_dir)


def run(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None, now: datetime | None = None
) -> int:
    """Run a `pseudonym` subcommand; returns the exit code (2 for a refused rotation or a bad config)."""
    out = out or sys.stdout
    err = err or sys.stderr
    now = now or utc_now()
    what = f"pseudonym {args.pseudonym_command}"
    try:
        store = PseudonymKeyStore(_data_dir(args))
        if args.pseudonym_command == "rotate":
            key = store.rotate(args.valid_from or now, now)
            out.write(
                f"pseudonym key {key.key_id} added, in force from {_show(key.valid_from)}; "
                "reload or restart the gateway for it to take effect\n"
            )
            return EXIT_OK
        _write_list(store.read(), now, out)
        return EXIT_OK
    except ConfigError as exc:  # the config, or a secret store whose key file does not belong to it
        print_config_error(exc, err, what=what)
        return EXIT_INVALID
    except PseudonymKeyError as exc:
        err.write(f"{exc}\n")
        return EXIT_INVALID
    except BrokenPipeError:  # the reader quit (`| head`): main() ends quietly, no store advice
        raise
    except OSError as exc:
        err.write(
            f"{what}: cannot use the secret store, got {exc.strerror or exc}; run it as the gateway's user (or root)\n"
        )
        return EXIT_FAILURE


def _write_list(ring: KeyRing, now: datetime, out: TextIO) -> None:
    if not ring.keys:
        out.write("no pseudonym key yet; the gateway creates the first one when a pseudonymize processor starts\n")
        return
    for key in ring.keys:
        retired = ring.retired_at(key)
        if key.valid_from > now:
            state = "scheduled"
        elif retired is None or retired > now:
            state = "in force"
        else:
            state = "retired"
        until = f" until {_show(retired)}" if retired is not None else ""
        out.write(f"{key.key_id:<6} {state:<10} from {_show(key.valid_from)}{until}\n")
