"""Polls one URL on a fixed cadence with conditional GET and emits the new observations it maps."""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import aiohttp

from adapters.http_poll.config import HttpPollConfig
from adapters.http_poll.mapping import LastSeen, Mapper, MappingError, MapResult, Selection
from adapters.jsonmap.ahead import AheadKeeper
from adapters.jsonmap.errors import excerpt
from adapters.jsonmap.timestamps import MAX_AHEAD
from gateway import redact
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.device_clock import ClockWords, SyncSource
from gateway.errors import ReadingError
from gateway.host import clock_synced as kernel_clock_synced
from gateway.logs import StateLog, component_logger
from gateway.records import Emit, Reading, utc_now
from gateway.secrets import is_ref, resolve
from gateway.tls import TlsVerify, client_context
from gateway.uplinks.http.oauth2 import say_cleartext

EXCERPT_CHARS = 200
_DOCUMENT_READ = 16 * 1024  # bytes masked for a document's excerpt: a marker stands for many characters
_CLOCK_WORDS = ClockWords(
    where="http poll",
    sender="entity ",
    dated="observed at",
    kept="the source's time",
    otherwise=f"observation times more than {MAX_AHEAD.seconds // 60} min ahead of it are refused",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Response:
    status: int
    body: bytes
    charset: str | None
    etag: str | None
    last_modified: str | None


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


class _Failure(Exception):
    """A poll that got no usable document; `reason` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class HttpPollAdapter:
    """Polls a JSON document; see README.md for configuration and troubleshooting."""

    config_model: ClassVar[type[AdapterConfig]] = HttpPollConfig

    def __init__(
        self,
        config: AdapterConfig,
        context: AdapterContext,
        *,
        clock: Callable[[], datetime] = utc_now,
        clock_synced: SyncSource = kernel_clock_synced,
        not_before: datetime | None = None,
    ) -> None:
        if not isinstance(config, HttpPollConfig):
            raise TypeError(f"HttpPollAdapter needs an HttpPollConfig, got {type(config).__name__}")
        self.config = config
        self.context = context
        self._clock = clock
        self._log = component_logger(__name__, config.name)
        # whether an observation time ahead of the gateway's clock may be kept (gateway.device_clock, shared with
        # the Wi-Fi receivers and the MQTT adapter): while the kernel says that clock is not synchronised, it may be
        # the wrong one
        self._ahead = AheadKeeper(self._log, clock_synced, words=_CLOCK_WORDS, not_before=not_before)
        self._mapper = Mapper(
            config.mappings,
            adapter=config.name,
            device=config.display_url,
            keeps_ahead=self._ahead,
            max_items=config.max_items,
        )
        self._seen = LastSeen()
        # counters (README "State and counters")
        self.polls = 0
        self.emitted = 0
        self.not_modified = 0  # 304 answers
        self.duplicates = 0  # observations already sent
        self.stale = 0  # observations older than the last one sent for their entity
        self.rewound = 0  # ... sent, as that one is still more than MAX_AHEAD ahead of the gateway's clock (wrong)
        self.skipped_ticks = 0  # polls not started because the previous one ran past their time
        self.over_max_items = 0  # items past max_items in their list, not read
        self.failed: Counter[str] = Counter()  # http_5xx, http_status, timeout, connection, tls, too_large
        self.malformed: Counter[str] = Counter()  # MalformedReason values, and `rejected` by the buffer
        # conditional GET validators from the last 200
        self.etag: str | None = None
        self.last_modified: str | None = None
        self._failing = StateLog(self._log)  # transport episode: its state is the reason last logged
        self.last_error = ""  # the latest failure or malformed input, worded as logged
        self._bad: set[str] = set()  # document/item reasons logged at WARNING in the current episode
        self._older_spells: set[str] = set()  # "stale", "rewound": logged at WARNING in the current spell
        self._secrets: list[str] = []

    @property
    def gateway_clock_unsynced(self) -> int:
        """Observation times ahead kept as the gateway's clock is not synchronised (a counter)."""
        return self._ahead.kept

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        cfg = self.config
        headers = self._resolve(cfg.headers)
        params = self._resolve(cfg.params)
        say_cleartext(self._log, cfg.cleartext_hosts(), cfg.allow_insecure_http)
        connector = aiohttp.TCPConnector(ssl=self._ssl_context(), limit=1)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers, raise_for_status=False
        ) as session:
            self._log.info("polling %s every %ss", cfg.display_url, cfg.interval_s)
            loop = asyncio.get_running_loop()
            start = loop.time()
            tick = 0
            while True:
                await self.poll(session, emit, params)
                # fixed cadence from the start time, so polls do not drift by their own duration;
                # a poll that ran past later ticks skips them instead of firing them back to back
                due = math.floor((loop.time() - start) / cfg.interval_s) + 1
                self.skipped_ticks += max(0, due - tick - 1)
                tick = max(tick + 1, due)
                await asyncio.sleep(max(0.0, start + tick * cfg.interval_s - loop.time()))

    async def poll(self, session: aiohttp.ClientSession, emit: Emit, params: dict[str, str]) -> None:
        """One conditional GET and whatever it yields; every failure is counted, none escapes but emit's."""
        self.polls += 1
        try:
            response = await self._fetch(session, params)
        except _Failure as exc:
            self._transport_failed(exc)
            return
        self._transport_ok()
        if response.status == 304:
            self.not_modified += 1
            return
        now = self._clock()
        # a worker thread: a document of many items is seconds of mapping on a small box, which would stall every
        # other adapter and the watchdog; a cancelled poll (SIGTERM, a reload) sets `stop` and the worker ends soon
        stop = threading.Event()
        try:
            result, selection = await asyncio.to_thread(self._digest, response, now, stop)
        except MappingError as exc:
            self._malformed(exc, response)
            self._keep_validators(response)
            return
        finally:
            stop.set()
        self._dropped(result, response)
        self.duplicates += selection.duplicates
        self.stale += selection.stale
        self.rewound += selection.rewound
        self._older(selection, now)
        await self._emit_all(emit, selection.fresh)
        self._keep_validators(response)
        if not result.dropped and not result.over_max_items and self._bad:
            self._log.info("documents map cleanly again")
            self._bad.clear()

    def _digest(self, response: _Response, now: datetime, stop: threading.Event) -> tuple[MapResult, Selection]:
        """In the worker thread: the document's readings, and those of them that are new. Nothing else touches
        the mapper, the clock keeper or the memory of what was sent while a poll runs."""
        result = self._mapper.map(response.body, now, response.charset, stopped=stop.is_set)
        self._ahead.check()
        return result, self._seen.select(result.readings, now, judges=self._ahead.judges())

    # --- HTTP -------------------------------------------------------------------------------------

    async def _fetch(self, session: aiohttp.ClientSession, params: dict[str, str]) -> _Response:
        cfg = self.config
        conditional: dict[str, str] = {}
        if self.etag is not None:
            conditional["If-None-Match"] = self.etag
        if self.last_modified is not None:
            conditional["If-Modified-Since"] = self.last_modified
        try:
            # not followed: another address would get our credential headers and parameters (aiohttp keeps
            # all but Authorization, even https -> http), and its document would pass for the configured URL's
            async with session.get(cfg.url, headers=conditional, params=params or None, allow_redirects=False) as resp:
                if resp.status == 304:
                    return _Response(status=304, body=b"", charset=None, etag=None, last_modified=None)
                if 300 <= resp.status < 400:
                    raise _Failure("http_status", self._redirected(resp))
                if resp.status != 200:
                    # read past what is shown: masking must see a MAC or an address whole before it is cut
                    head = await resp.content.read(EXCERPT_CHARS * 6)
                    kind = "http_5xx" if resp.status >= 500 else "http_status"
                    raise _Failure(
                        kind, f"HTTP {resp.status} {resp.reason or ''}".rstrip() + f", body {self._error_body(head)}"
                    )
                body = await self._read_limited(resp)
                return _Response(
                    status=200,
                    body=body,
                    charset=cfg.encoding or resp.charset,
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                )
        except _Failure:
            raise
        except TimeoutError:
            raise _Failure("timeout", f"no complete answer within timeout_s = {cfg.timeout_s}") from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise _Failure("tls", f"TLS failed: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failure("connection", f"{exc.__class__.__name__}: {exc}") from None

    def _redirected(self, resp: aiohttp.ClientResponse) -> str:
        target = redact.redirect_target(resp.headers.get("Location", ""), self.config.url, EXCERPT_CHARS)
        return (
            f"answered with a redirect, got HTTP {resp.status} {resp.reason or ''}".rstrip() + f" to {target}; "
            "redirects are not followed (the headers and parameters, credentials among them, would go to another "
            "address): set url to the final address"
        )

    async def _read_limited(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.config.max_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise _Failure("too_large", f"document of {resp.content_length} bytes exceeds max_bytes = {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise _Failure("too_large", f"document exceeds max_bytes = {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _keep_validators(self, response: _Response) -> None:
        # a malformed 200 keeps its validators too: the same document would be malformed again
        self.etag = response.etag
        self.last_modified = response.last_modified

    # --- emitting ---------------------------------------------------------------------------------

    async def _emit_all(self, emit: Emit, readings: list[Reading]) -> None:
        # hand every reading over before awaiting, so the buffer can commit them as one group
        pending: list[tuple[Reading, Awaitable[None]]] = []
        for reading in readings:
            try:
                pending.append((reading, emit(reading)))
            except ReadingError as exc:
                self._rejected(reading, exc)
        results = await asyncio.gather(*(aw for _, aw in pending), return_exceptions=True)
        failure: BaseException | None = None
        for (reading, _), outcome in zip(pending, results, strict=True):
            if outcome is None:
                self.emitted += 1
                self._seen.remember(reading)
            elif isinstance(outcome, ReadingError):
                self._rejected(reading, outcome)
            elif failure is None:
                failure = outcome
        if failure is not None:
            # the buffer cannot store (full disk, caps): stop; the supervisor restarts us with backoff
            self._log.error("stopping: emit failed (%s)", failure)
            raise failure

    def _rejected(self, reading: Reading, exc: ReadingError) -> None:
        # not remembered: the next document brings it again, and it is counted again
        self.malformed["rejected"] += 1
        self._log.debug("the buffer refused %s: %s", reading.entity_id, exc)
        if "rejected" not in self._bad:
            self._bad.add("rejected")
            self._log.warning("the buffer refuses readings as invalid, e.g. %s; counted as rejected", exc)

    # --- logging state changes ----------------------------------------------------------------------

    def _older(self, selection: Selection, now: datetime) -> None:
        """One WARNING per spell of stale observations, and per spell of ones sent over a last time ahead."""
        spells = self._older_spells
        if (o := selection.first_rewound) is None:
            spells.discard("rewound")
        elif "rewound" not in spells:
            spells.add("rewound")
            self._log.warning(
                "%s: observed at %s, older than the last observation sent (%s), which is still more than %d min ahead "
                "of the gateway clock (%s) so was wrong: sent, not dropped as stale; counted in rewound; check the "
                "source's clock, the timestamp zone and the box's clock",
                o.entity_id,
                o.observed_at.isoformat(),
                o.last.isoformat(),
                MAX_AHEAD.seconds // 60,
                now.isoformat(),
            )
        if (o := selection.first_stale) is not None:
            self._log.debug(
                "%s: dropped observation at %s, older than the last sent (%s)",
                o.entity_id,
                o.observed_at.isoformat(),
                o.last.isoformat(),
            )
            if "stale" not in spells:
                spells.add("stale")
                self._log.warning(
                    "%s: dropping the observation at %s, older than the last one sent (%s): the source serves an older "
                    "copy (a cache), or its clock went back; further ones counted in stale",
                    o.entity_id,
                    o.observed_at.isoformat(),
                    o.last.isoformat(),
                )
        elif selection.fresh and "stale" in spells:
            spells.discard("stale")
            self._log.info("observations newer than the last ones sent arrive again")

    def _transport_failed(self, exc: _Failure) -> None:
        self.failed[exc.reason] += 1
        self._log.debug("poll of %s failed (%s): %s", self.config.display_url, exc.reason, exc.detail)
        self.last_error = f"{exc.reason}: {exc.detail}"
        self._failing.fail(
            exc.reason,
            logging.WARNING,
            "polling %s fails (%s): %s; retrying every %ss",
            self.config.display_url,
            exc.reason,
            exc.detail,
            self.config.interval_s,
        )

    def _transport_ok(self) -> None:
        self._failing.ok("polling %s works again", self.config.display_url)

    def _malformed(self, exc: MappingError, response: _Response) -> None:
        """A document dropped whole."""
        reason = exc.reason.value
        self.malformed[reason] += 1
        self.last_error = f"{reason}: {exc}"
        new = reason not in self._bad
        if not new and not self._log.isEnabledFor(logging.DEBUG):
            return
        start = self._document_start(response.body, response.charset)
        self._log.debug("dropped (%s): %s; document starts %s", reason, exc, start)
        if new:
            self._bad.add(reason)
            self._log.warning("dropping malformed input (%s): %s; document starts %s", reason, exc, start)

    def _dropped(self, result: MapResult, response: _Response) -> None:
        """The items of one document dropped, and those past max_items: counted, said in a few lines per poll.

        WARNING for a reason new in the episode (its first item, and how many of the document's items it
        dropped), at most one a reason, and once an episode for items past max_items; the rest at DEBUG: a
        summary per poll and the examples the mapper kept. The document's start is built once, if logged.
        """
        self.over_max_items += result.over_max_items
        if not result.dropped and not result.over_max_items:
            return
        for why, n in result.dropped.items():
            self.malformed[why.value] += n
        firsts: dict[str, MappingError] = {}
        for err in result.errors:
            firsts.setdefault(err.reason.value, err)
        cap = self.config.max_items
        over = (
            f"a list of items is longer than max_items = {cap}: its first {cap} items read, "
            f"{result.over_max_items} not read (counted in over_max_items); raise max_items, or have the source "
            "send a smaller document"
        )
        if result.errors:
            first = result.errors[0]
            self.last_error = f"{first.reason.value}: {first}"
        else:
            self.last_error = f"over_max_items: {over}"
        news = [reason for reason in firsts if reason not in self._bad]
        cap_news = bool(result.over_max_items) and "over_max_items" not in self._bad
        debug = self._log.isEnabledFor(logging.DEBUG)
        if not news and not cap_news and not debug:
            return
        start = self._document_start(response.body, response.charset)
        if debug:
            counts = ", ".join(f"{why.value} {n}" for why, n in result.dropped.most_common())
            self._log.debug(
                "dropped %d item(s) (%s), %d past max_items; document starts %s",
                result.dropped.total(),
                counts or "none",
                result.over_max_items,
                start,
            )
            for err in result.errors:
                self._log.debug("dropped (%s): %s", err.reason.value, err)
        for reason in news:
            self._bad.add(reason)
            n = result.dropped[firsts[reason].reason]
            # the count, when more than the one shown: the first of 100 000 bad items is not the whole story
            count = f"; {n} items of this document dropped for {reason}" if n > 1 else ""
            self._log.warning(
                "dropping malformed input (%s): %s%s; document starts %s", reason, firsts[reason], count, start
            )
        if cap_news:
            self._bad.add("over_max_items")
            self._log.warning("%s; document starts %s", over, start)

    def _document_start(self, body: bytes, charset: str | None) -> str:
        """The document's start with its structure and every value masked (it may hold personal data)."""
        text = _decode(body[:_DOCUMENT_READ], charset)
        return excerpt(self._mask(text), limit=EXCERPT_CHARS, more=len(body) > _DOCUMENT_READ)

    def _error_body(self, head: bytes) -> str:
        """An error page's start, readable (server prose, not device data), secrets and personal data masked first."""
        clean = redact.text(self._mask(_decode(head, None)))
        return repr(clean if len(clean) <= EXCERPT_CHARS else clean[:EXCERPT_CHARS] + "...")

    def _mask(self, text: str) -> str:
        # some APIs echo the request (and its key) in their error bodies
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # --- setup ------------------------------------------------------------------------------------

    def _resolve(self, table: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in table.items():
            if is_ref(value):
                value = resolve(value, self.context.data_dir)
                if len(value) >= 4:  # masking shorter strings would mangle unrelated text
                    self._secrets.append(value)
            out[name] = value
        return out

    def _ssl_context(self) -> ssl.SSLContext | bool:
        tls = self.config.tls
        if tls is None:
            return True
        if tls.verify is TlsVerify.OFF:
            self._log.warning("TLS certificate checks are off for %s; use ca_file instead", self.config.display_url)
        return client_context(tls, f"adapters.{self.config.name}")

    def diagnostics(self) -> dict[str, Any]:
        """The counters (README "State and counters") and the last error, for status.json and `edgegw status`.

        `malformed` is by reason; `failing` is the transport failure of the current spell (None while polls
        work); `last_error` has the configured secrets masked, like the log lines.
        """
        failing = self._failing.state
        summary = f"polls {self.polls}" + (f", failing: {failing}" if isinstance(failing, str) else "")
        return {
            "summary": summary,
            "url": self.config.display_url,
            "failing": failing if isinstance(failing, str) else None,
            "last_error": self._mask(self.last_error),
            "polls": self.polls,
            "emitted": self.emitted,
            "not_modified": self.not_modified,
            "duplicates": self.duplicates,
            "stale": self.stale,
            "rewound": self.rewound,
            "gateway_clock_unsynced": self.gateway_clock_unsynced,
            "skipped_ticks": self.skipped_ticks,
            "over_max_items": self.over_max_items,
            "failed": dict(self.failed),
            "malformed": dict(self.malformed),
        }
