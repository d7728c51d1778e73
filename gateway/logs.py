"""Structured logging: one JSON object per line off a terminal, with the component on every line.

Modules log with `component_logger(__name__, name)`, so every line says which adapter or uplink
it is about; a line without one (a library's, or the runtime's own) gets a short name derived from
its logger (`mqtt-client`, `http-client`, `gateway`). Personal data is redacted by the caller
before it reaches a log call; secrets are redacted here, on the one handler every logger's records
reach (`gateway.redact`): the message, the exception text and every extra field. A text line (a terminal, or
`log_format = "text"`) shows its message's control characters escaped (`one_line`), as the JSON lines do: what a
device or a stranger sent cannot begin a line of its own there.

`setup` also installs `RING`, the last 5,000 records formatted and redacted the same way, for the
control socket's `logs` (the web UI's log page): it keeps its lines across reloads.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import redact

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

# C0 and C1 controls but the tab, and DEL, each as its escape: in a text log or on a terminal a line break in a
# stranger's URL or a device's topic would begin a line of its own (a forged entry), and an ESC would drive the
# technician's terminal
_CONTROLS = str.maketrans(
    {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09} | {0x0A: "\\n", 0x0D: "\\r"}
)


def one_line(text: str) -> str:
    """`text` with its control characters escaped: it stays one line and moves no cursor where it is shown."""
    return text.translate(_CONTROLS)


# Loggers of the libraries under the gateway, by name prefix → the component their lines carry.
_LIBRARY_COMPONENTS = {
    "paho": "mqtt-client",  # paho.mqtt.client
    "mqtt": "mqtt-client",  # aiomqtt's logger
    "aiomqtt": "mqtt-client",
    "pymodbus": "modbus-client",
    "pymodbus_internal": "modbus-client",
    "aiohttp": "http-client",
    "serial": "serial",
    "asyncio": "asyncio",
    "gateway.buffer": "buffer",
}


@functools.lru_cache(maxsize=256)
def component_of(logger_name: str) -> str:
    """The component of a line that does not name one: a library's short name, else the top package."""
    parts = logger_name.split(".")
    for n in range(len(parts), 0, -1):
        found = _LIBRARY_COMPONENTS.get(".".join(parts[:n]))
        if found is not None:
            return found
    return parts[0] or "root"


def _component(record: logging.LogRecord) -> str:
    component = getattr(record, "component", None)
    return str(component) if component else component_of(record.name)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "component": redact.text(_component(record)),
            "msg": redact.text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STD and key != "component" and not key.startswith("_"):
                doc[key] = redact.scrub(value)
        if record.exc_info:
            doc["exc"] = redact.text(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = redact.text(self.formatStack(record.stack_info))
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} {record.levelname:<7}"
        # the message's own text on one line; a traceback below it is the gateway's, and spans lines
        text = f"{head} [{one_line(_component(record))}] {one_line(record.getMessage())}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return redact.text(text)


RING_SIZE = 5_000


class RingHandler(logging.Handler):
    """The last `capacity` records as `{"time", "level", "component", "message"}`, redacted as the journal's.

    Formatting happens once per record here (the lines must not change when a caller's argument
    does later); reading takes a copy under the handler's lock, so a page never sees a half-appended line.
    """

    def __init__(self, capacity: int = RING_SIZE) -> None:
        super().__init__()
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._copy_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            line = {
                "time": record.created,
                "level": record.levelname.lower(),
                "component": redact.text(_component(record)),
                "message": redact.text(message),
            }
        except Exception:  # a broken log call must not break the caller; the journal's handler says so
            return
        with self._copy_lock:
            self.records.append(line)

    def lines(self, *, level: str = "debug", component: str = "", limit: int = 500) -> list[dict[str, Any]]:
        """The newest `limit` lines at `level` or above (and of `component` if given), oldest first."""
        least = logging.getLevelName(level.upper())
        if not isinstance(least, int):
            raise ValueError(f"logs.level: must be debug, info, warning or error, got {level!r}")
        with self._copy_lock:
            records = list(self.records)
        out: list[dict[str, Any]] = []
        for line in reversed(records):
            if len(out) >= limit:
                break
            if logging.getLevelName(line["level"].upper()) < least:
                continue
            if component and line["component"] != component:
                continue
            out.append(line)
        out.reverse()
        return out


RING = RingHandler()


def setup(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.addHandler(RING)
    root.setLevel(level.upper())


class ComponentLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds `component=<adapter or uplink name>` to every record."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def component_logger(module: str, component: str) -> ComponentLogger:
    return ComponentLogger(logging.getLogger(module), {"component": component})


_OK = object()  # StateLog's state while nothing fails


class StateLog:
    """Logs a state change once, not each repetition: the first failure of a spell, and the return.

    `fail(state, …)` logs only when `state` differs from the current one (a new kind of failure is
    news; the same one again is a repetition, for DEBUG and the counters); `ok(…)` logs only when
    something was failing. The house rule (STYLE.md "Logging") in one place instead of a hand-rolled
    flag per component.
    """

    __slots__ = ("_log", "_state")

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[Any], *, failing: object = None) -> None:
        """`failing`: start in that failure state (a connection not made yet), so the first success is news."""
        self._log = log
        self._state: object = _OK if failing is None else failing

    @property
    def failing(self) -> bool:
        return self._state is not _OK

    @property
    def state(self) -> object:
        """The failure last logged, or None while nothing fails."""
        return None if self._state is _OK else self._state

    def fail(self, state: object, level: int, msg: str, *args: object, **kwargs: Any) -> bool:
        """Enter failure `state`; log `msg` at `level` only if that is a change. True if it logged."""
        if self._state == state:
            return False
        self._state = state
        self._log.log(level, msg, *args, **kwargs)
        return True

    def ok(self, msg: str | None = None, *args: object, level: int = logging.INFO) -> bool:
        """Back to normal; log `msg` only if something was failing. True if it was."""
        if self._state is _OK:
            return False
        self._state = _OK
        if msg is not None:
            self._log.log(level, msg, *args)
        return True


# Any host may send to a listening port: the senders whose spell of trouble is remembered are bounded
SENDERS_KEPT = 256
# A spell ends at a right input only this long after its last trouble: a sender alternating good and bad input
# (one broken AP among the lines of a relay) would otherwise end and reopen its spell, two lines each time
SPELL_QUIET_S = 300.0
# The first line of a spell is a WARNING at most this many times a window, per component: many senders in trouble
# at once (a scan, a flood from many addresses, more of them than are kept) would otherwise log one each
SPELL_WARNINGS = 20
SPELL_WINDOW_S = 60.0
_LEFT_OUT_KEPT = 4096  # the senders a window's summary counts one by one; past that it says "at least"
_LEFT_OUT_NAMED = 5  # the senders a window's summary names: a technician looks for a real one among a flood


class SpellBudget:
    """The first-of-a-spell WARNINGs a component may log: `warnings` a `window_s`, shared by its SenderSpells."""

    __slots__ = ("ends", "left", "left_out", "warnings", "window_s")

    def __init__(self, *, warnings: int = SPELL_WARNINGS, window_s: float = SPELL_WINDOW_S) -> None:
        self.warnings = warnings
        self.window_s = window_s
        self.ends = float("-inf")  # of the current window
        self.left = 0  # WARNINGs left in it
        # senders whose spell had no WARNING in it, in the order they came (a dict as an ordered set)
        self.left_out: dict[str, None] = {}


class _Spell:
    __slots__ = ("kind", "last_at", "warned")

    def __init__(self) -> None:
        self.kind: str | None = None
        self.last_at = 0.0
        self.warned = False


class SenderSpells:
    """Trouble from one sender logged as a state, not each time (STYLE.md "Logging"), for senders at once.

    Per sender, a spell whose state is the kind of trouble: the first of a kind is a WARNING, the same again from
    that sender DEBUG; it ends (`ok`, an INFO) at the first right input `quiet_s` or more after its last trouble,
    so input alternating right and wrong stays one spell. Spells begin with a WARNING as `budget` allows (one for
    the component's SenderSpells; by default their own); the others begin at DEBUG, and the first trouble (or end
    of a spell) after the budget's window ends says at WARNING how many senders were so left out, naming a few. A
    spell left out has its WARNING at its next trouble the budget has room for: a real sender's trouble that began
    amid a flood is named within a window or so, not hidden for the whole spell. A `listed` sender (one the
    configuration names: there are only so many) has its WARNING whatever the budget. At most `kept` senders are
    remembered, the longest untroubled forgotten first (any host may send): a forgotten one's next trouble is news
    again, within the budget.
    """

    __slots__ = ("_budget", "_clock", "_kept", "_log", "_quiet_s", "_spells", "_what")

    def __init__(
        self,
        log: logging.LoggerAdapter[Any],
        *,
        what: str,
        kept: int = SENDERS_KEPT,
        clock: Callable[[], float] = time.monotonic,
        quiet_s: float = SPELL_QUIET_S,
        budget: SpellBudget | None = None,
    ) -> None:
        """`what` begins the summary line (`wifi syslog`)."""
        self._log = log
        self._what = what
        self._kept = kept
        self._clock = clock
        self._quiet_s = quiet_s
        self._budget = budget if budget is not None else SpellBudget()
        self._spells: collections.OrderedDict[str, _Spell] = collections.OrderedDict()

    @property
    def quiet_s(self) -> float:
        return self._quiet_s

    def fail(self, sender: str, kind: str, text: str, until: str, *, listed: bool = False) -> None:
        """`text` (personal data already redacted) from `sender`: WARNING once a spell of `kind`, else DEBUG;
        `until` says in the WARNING what ends the spell; `listed`: the configuration names `sender`."""
        now = self._clock()
        if self._budget.left_out and now >= self._budget.ends:  # the summary of a window, whatever comes next
            self._may_warn(None, now)
        spell = self._spells.get(sender)
        if spell is None:
            spell = self._spells[sender] = _Spell()
            if len(self._spells) > self._kept:
                self._spells.popitem(last=False)
        else:
            self._spells.move_to_end(sender)
        spell.last_at = now
        if spell.kind == kind and spell.warned:
            self._log.debug("%s", text)
            return
        spell.kind = kind
        spell.warned = listed or self._may_warn(sender, now)
        if not spell.warned:
            self._log.debug("%s", text)
            return
        self._log.warning(
            "%s; counted in %s, further ones from %s at DEBUG until %s",
            text,
            kind,
            sender,
            until,
        )

    def ok(self, sender: str, msg: str, *args: object) -> None:
        """`sender`'s input is right: its spell, if any and quiet for `quiet_s`, ends with `msg` (INFO, or DEBUG for
        a spell that began at DEBUG)."""
        if not self._spells:  # the hot path: nobody in trouble
            return
        spell = self._spells.get(sender)
        if spell is None:
            return
        now = self._clock()
        if now - spell.last_at < self._quiet_s:
            return
        del self._spells[sender]
        self._log.log(logging.INFO if spell.warned else logging.DEBUG, msg, *args)
        if self._budget.left_out:
            self._may_warn(None, now)

    def _may_warn(self, sender: str | None, now: float) -> bool:
        """Whether a spell of `sender` beginning `now` may have its WARNING (None: only end a window that ended)."""
        budget = self._budget
        if now >= budget.ends:
            if budget.left_out:
                left_out = len(budget.left_out)
                named = list(itertools.islice(budget.left_out, _LEFT_OUT_NAMED))
                self._log.warning(
                    "%s: %s%d more senders in a spell of trouble within %g s were logged at DEBUG only (%s%s): at most "
                    "%d WARNINGs of a first one every %g s, the others at their next trouble there is room for "
                    "(their trouble is counted, the latest in last_error)",
                    self._what,
                    "at least " if left_out >= _LEFT_OUT_KEPT else "",
                    left_out,
                    budget.window_s,
                    ", ".join(named),
                    f" and {left_out - len(named)} more" if left_out > len(named) else "",
                    budget.warnings,
                    budget.window_s,
                )
                budget.left_out.clear()
            budget.ends = now + budget.window_s
            budget.left = budget.warnings
        if sender is None:
            return False
        if budget.left > 0:
            budget.left -= 1
            return True
        if len(budget.left_out) < _LEFT_OUT_KEPT:
            budget.left_out[sender] = None
        return False
