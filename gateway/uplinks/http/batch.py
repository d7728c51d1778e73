"""The HTTP batch engine the `orion` and `ngsi-ld` uplinks share: batches in, per-record outcomes out.

The engine turns one buffer batch into as few requests as the size limits allow and sorts the far
side's answers into per-record outcomes:

- the statuses the broker answers a success with (`success`: Orion 204; NGSI-LD 201, 204, and 207
  per entity, see ngsi_ld.py): delivered. Any other 2xx, and any 3xx (redirects are never
  followed), is not the broker: retry with an ERROR, nothing taken as delivered.
- 400/422: Orion validates the whole request before writing anything, so one bad entity refuses all
  of it. Bisect until the bad record is alone; it is rejected with Orion's error, the rest delivered
  in their original order.
- 413: Orion's own `NoResourcesAvailable` is about a record (bisected like a 400), and so is a 413
  for one entity larger than `max_batch_bytes`. Any other 413 is about size: the far side (often a
  proxy in front of Orion, answering with an HTML page) takes less than we sent. The request is split
  in halves, and the smallest refused size is remembered: later requests stay below it (WARNING once,
  naming `max_batch_bytes`). One entity within `max_batch_bytes` refused that way is never rejected:
  retry with an ERROR, until the proxy's limit is raised.
- A 400 naming a header (tenant, service path, content type) or Orion's "Service not found" (a
  wrong `url`: Orion answers an unknown path with 400, not 404), 401/403 (after one token refresh)
  and other 4xx: retry with an ERROR, without bisecting.
- 5xx, 408, 429, timeouts, refused connections, TLS failures: retry this and every later record.
  Records delivered by an earlier request of the same batch stay delivered. Only a failure before the
  request went out (no connection) is "unreachable", probed every `probe_s`; a request unanswered
  within `timeout_s` may have been applied by a loaded broker: backed off as usual, and later requests
  are planned at half its size, under the limit a 413 lowers, growing back as they are answered in time.

A configuration mistake must never dead-letter data, and a 400 cannot say whether it is about a
record or about the request (an API gateway, a proxy, a path the broker does not serve). So one
rule decides: **a refusal of a record is trusted only once another request of the same delivery was
accepted.** Until then records refused alone are held. Once `SUSPECT_AFTER` records in a row were
refused alone (bisection is depth-first: a burst of bad records at the head of a lane is refused
before any good record is tried), one record from further on in the batch is sent alone as a probe;
accepted, it vouches for the request and the held refusals are dead-lettered. If the probe is
refused too, or the delivery ends with nothing accepted, the refusals are taken to be about the
request: nothing is rejected, everything is retried, with an ERROR in the log and the uplink's status.
A genuinely bad record among good ones is still dead-lettered, in the same delivery; a batch of
nothing but refused records waits until newer readings arrive to vouch for the request.

`latest-state` sends one reading per entity, its newest; when the broker (or the converter) refuses
it, the next newest is sent in its place, up to `PROMOTIONS` times per delivery, so the broker ends
at the newest value it takes. The older readings follow the one that was delivered (superseded).
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, NamedTuple, NoReturn, cast

import aiohttp
import orjson
from pydantic import AfterValidator, field_validator, model_validator

from gateway import __version__, redact, secrets
from gateway.adapter_api import AdapterContext
from gateway.buffer.store import settled
from gateway.configbase import Field, HttpUrl
from gateway.errors import UplinkTransient
from gateway.logs import component_logger
from gateway.ngsi import batching, identifiers
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import DropKey, MetadataDrops
from gateway.records import Reading
from gateway.secrets import SecretRef
from gateway.tls import TlsSection
from gateway.uplinks.api import (
    DELIVERED,
    Fault,
    Lifecycle,
    Outcome,
    Status,
    UplinkConfig,
)
from gateway.uplinks.http.client import (
    Headers,
    HttpResponse,
    make_session,
    post,
    redirect_target,
    resolve_headers,
    waits_for,
)
from gateway.uplinks.http.oauth2 import (
    OAuth2Config,
    TokenHeader,
    TokenSource,
    cleartext_hosts,
    cleartext_warnings,
    credentials_sent,
    say_cleartext,
)
from gateway.uplinks.seqs import seq_ranges

Service = Annotated[str, AfterValidator(identifiers.check_service)]

# Orion's answers about headers rather than entities: bisecting would only dead-letter good data.
_REQUEST_LEVEL = re.compile(r"tenant|service ?path|content[- ]?(type|length)|link header", re.IGNORECASE)
# Orion's answer to a path it does not serve (src/lib/common/errorMessages.h), whatever the method
_SERVICE_NOT_FOUND = "Service not found"
_HTML_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)

# Records refused one by one, with nothing accepted in between, before a probe from further on in the
# batch decides whether the refusals are about the request: few enough that a request every
# receiver refuses costs about log2(batch) + 2 * SUSPECT_AFTER + 1 requests per attempt.
SUSPECT_AFTER = 8

# latest-state: how many times per delivery an entity's next newest reading is sent when the newer
# one was refused. A device stuck on a value the broker refuses has its readings dead-lettered this
# many at a time rather than one request each for a whole backlog; the rest wait for the next delivery.
PROMOTIONS = 10

# Requests answered in time, in a row, before the size limit a timeout lowered doubles again: a broker slow for
# a minute (Orion on a busy MongoDB) costs a few rounds of smaller requests, not a slower uplink until restart.
SLOW_RECOVERY_AFTER = 8

# Headers that let a receiver tell gateways and replays apart (documented in README.md).
GATEWAY_HEADER = "Edgegw-Gateway"
SEQ_HEADER = "Edgegw-Seq"
SEQ_SPAN_HEADER = "Edgegw-Seq-Span"
# Proxies limit header lines to 4-8 KiB; a request of scattered records says only its span.
SEQ_HEADER_MAX = 1000
_OWN_HEADERS = frozenset(h.lower() for h in (GATEWAY_HEADER, SEQ_HEADER, SEQ_SPAN_HEADER))


class CatchUp(enum.Enum):
    # Every reading is sent, oldest first, so subscribers (QuantumLeap, Cygnus) get the whole history.
    FULL_HISTORY = "full-history"
    # Only the newest reading of each entity in a batch is sent (the next newest if the broker refuses
    # it); the older ones are acknowledged as delivered without being sent. For platforms that keep
    # only current state and would otherwise replay hours of backlog through their subscriptions.
    LATEST_STATE = "latest-state"


class HttpUplinkConfig(UplinkConfig):
    """Keys shared by the `orion` and `ngsi-ld` uplinks."""

    url: HttpUrl
    x_auth_token: SecretRef | None = None
    headers: Headers = Field(default_factory=dict)
    oauth2: OAuth2Config | None = None
    tls: TlsSection = TlsSection()
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_batch_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1024 * 1024)
    max_batch_entities: int = Field(default=1000, ge=1, le=100_000)
    catch_up: CatchUp = CatchUp.FULL_HISTORY
    # Unset, it is `[ngsi] value_encoding` (gateway.config); "reject" under another one is warned of.
    value_encoding: ValueEncoding = ValueEncoding.PERCENT
    # Credentials over plain http to another host than this box: for a lab or a closed network, at the admin's risk;
    # true silences the warning (config_warnings).
    allow_insecure_http: bool = False

    @field_validator("headers")
    @classmethod
    def _not_ours(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in _OWN_HEADERS:
                raise ValueError(f"must not set a header the uplink sets itself, got {name!r}")
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> HttpUplinkConfig:
        names = {k.lower() for k in self.headers}
        token_header = None
        if self.oauth2 is not None:
            token_header = "x-auth-token" if self.oauth2.header is TokenHeader.X_AUTH_TOKEN else "authorization"
        if self.x_auth_token is not None and token_header == "x-auth-token":
            raise ValueError(
                'must set X-Auth-Token from one place, got both x_auth_token and oauth2.header = "x-auth-token"; '
                "keep one of them"
            )
        for name in ("authorization", "x-auth-token"):
            if name in names and (token_header == name or (name == "x-auth-token" and self.x_auth_token)):
                raise ValueError(
                    f"must set {name!r} from one place, got it in headers and in the token settings; remove it from headers"
                )
        if self.url.startswith("http://") and self.tls != TlsSection():
            raise ValueError("tls settings need an https:// url, got an http:// url; change url or drop [tls]")
        return self

    def _credentials(self) -> list[str]:
        """The keys whose credentials go with every request to `url` (never their values)."""
        return credentials_sent(self.oauth2, self.x_auth_token, self.headers)

    def cleartext_hosts(self) -> list[str]:
        """The hosts off this box that credentials go to over plain http."""
        return cleartext_hosts(self.url, self._credentials(), self.oauth2)

    def config_warnings(self) -> list[tuple[str, str]]:
        """(key, advice) for credentials that go over plain http off this box, unless allow_insecure_http = true.
        Warnings, not errors: a closed-network Orion over http:// with a token was a valid config, and a box
        upgraded with one must keep reading and buffering (gateway.config.config_warnings)."""
        return [] if self.allow_insecure_http else cleartext_warnings(self.url, self._credentials(), self.oauth2)


@dataclass(slots=True)
class UplinkCounters:
    """Running totals for the status page; `delivered` includes superseded readings."""

    delivered: int = 0
    rejected: int = 0
    retries: int = 0  # records answered RETRY
    superseded: int = 0  # latest-state: older readings acknowledged without being sent
    requests: int = 0
    bytes: int = 0  # request body bytes sent
    last_error: str = ""


class _State(enum.Enum):
    UP = "up"
    DOWN = "down"  # unreachable, 5xx, timeouts
    REFUSED = "refused"  # credentials or request refused: a configuration problem


class BatchItem(NamedTuple):
    """One entity to send. A NamedTuple rather than a frozen dataclass: one is built per record, and
    the dataclass's __init__ was ~3 % of the gateway's time at 50,000 readings/s (py-spy)."""

    position: int  # in the batch (`index` would hide tuple.index)
    entity_id: str
    data: bytes  # the serialized entity


class _Stop(Exception):
    """Stop sending this batch; every record without an outcome is to be retried."""

    def __init__(self, reason: str, fault: Fault, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fault = fault
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Run:
    """One deliver() call: the outcomes so far, and whether its refusals can be trusted (module docstring)."""

    batch: Sequence[Reading]
    outcomes: list[Outcome | None]
    correlator: str
    accepted: bool = False  # a request of this delivery was taken (a success, or a 207 with one)
    held: list[tuple[int, str]] = field(default_factory=list)  # (position, reason) refused before any acceptance
    first_refusal: str = ""  # the far side's words for the first record held
    last_refusal: str = ""  # ... and for the latest
    too_large: int = 0  # the smallest request body refused for its size in this delivery
    items: list[BatchItem] = field(default_factory=list)  # what is being sent (latest-state: this round)
    probe: BatchItem | None = None  # the record sent ahead to vouch for the request (module docstring)
    overtook: bool = False  # ... ahead of older unsent readings of its own entity
    # metadata its entity left out, per batch position: counted only for a reading delivered (it is converted
    # again at every try, and a dead letter keeps the reading whole)
    dropped: dict[int, tuple[DropKey, ...]] = field(default_factory=dict)

    def accept(self) -> None:
        """The far side takes our requests: what it refused so far was about the records."""
        if not self.accepted:
            self.accepted = True
            for position, reason in self.held:
                self.outcomes[position] = Outcome(Status.REJECTED, reason)
            self.held.clear()

    def refuse(self, position: int, reason: str, refusal: str) -> None:
        """Reject a record (`reason` for its dead letter), or hold it until an acceptance vouches for the request."""
        if self.accepted:
            self.outcomes[position] = Outcome(Status.REJECTED, reason)
            return
        if not self.held:
            self.first_refusal = refusal
        self.last_refusal = refusal
        self.held.append((position, reason))


def _seq_header(batch: Sequence[Reading], items: list[BatchItem]) -> tuple[str, str] | None:
    """The header naming the buffer seqs of a request's readings: exact ranges, or their span if long."""
    found = [batch[position].seq for position, _, _ in items]
    # filtered only if needed (readings that never were in the buffer: tests, tools): this runs per request
    seqs = [s for s in found if s is not None] if None in found else cast("list[int]", found)
    if not seqs:
        return None
    ranges = seq_ranges(seqs)
    if len(ranges) <= SEQ_HEADER_MAX:
        return SEQ_HEADER, ranges
    return SEQ_SPAN_HEADER, f"{min(seqs)}-{max(seqs)}"


def _either(statuses: Sequence[int]) -> str:
    """`204`, `201 or 204`, `201, 204 or 207`."""
    words = [str(s) for s in statuses]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _probe_item(run: Run) -> tuple[BatchItem, bool] | None:
    """The record to probe with, and whether it overtakes older unsent readings of its entity.

    The furthest entity with nothing refused, by its oldest unsent reading (per-entity order holds);
    if every unsent record is of an entity refused already (one gauge that sent bad values for a
    while), the furthest record: the one most likely past the bad stretch."""
    held = {position for position, _ in run.held}
    refused = {item.entity_id for item in run.items if item.position in held}
    pending = [item for item in run.items if run.outcomes[item.position] is None and item.position not in held]
    first: dict[str, BatchItem] = {}
    for item in pending:
        first.setdefault(item.entity_id, item)
    untouched = [item for item in first.values() if item.entity_id not in refused]
    if untouched:
        return max(untouched, key=lambda item: item.position), False
    if not pending:
        return None
    probe = max(pending, key=lambda item: item.position)
    return probe, first[probe.entity_id] is not probe


class HttpBatchUplink(Lifecycle):
    """The HTTP delivery engine; subclasses say how to convert, frame and address a batch."""

    config_model: ClassVar[type[UplinkConfig]]
    path: ClassVar[str]
    api_root: ClassVar[str]  # the path the uplink adds to `url` before `path`'s operation
    broker: ClassVar[str]  # how messages name the far side
    # The statuses the broker answers a successful request with (its manual); any other 2xx is not
    # the broker (a login page, a captive portal) and must not mark readings delivered.
    success: ClassVar[tuple[int, ...]]

    def __init__(
        self, config: UplinkConfig, context: AdapterContext, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        assert isinstance(config, HttpUplinkConfig)
        self.config: HttpUplinkConfig = config
        self.name = config.name
        self.context = context
        self.counters = UplinkCounters()
        self.log = component_logger(__name__, config.name)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenSource | None = None
        self._headers: dict[str, str] = {}
        self._state: _State | None = None
        # metadata the entities cannot carry (`_entity` passes it as `drops=`), shown in diagnostics()
        self._drops = self._metadata_drops()
        self._url = config.url + self.path
        # requests are planned below the smallest body the far side refused as too large
        self._max_bytes = config.max_batch_bytes
        # and, after a request left unanswered within timeout_s, at half its size, grown back by doubling after
        # every SLOW_RECOVERY_AFTER requests answered in time: an Orion slow for a minute must not leave the
        # uplink at one entity a request until restart
        self._slow_bytes: int | None = None
        self._in_time = 0

    # ---- what subclasses provide ----------------------------------------------------------------

    def _entity(self, reading: Reading) -> dict[str, Any]:
        raise NotImplementedError

    def _metadata_drops(self) -> MetadataDrops:
        """This uplink's own counter of metadata its entities leave out, logged under its name."""
        raise NotImplementedError

    def _body(self, entities: Sequence[bytes]) -> bytes:
        raise NotImplementedError

    def _fixed_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _segments(self, items: list[BatchItem]) -> list[list[BatchItem]]:
        """Runs of items that may share a request (NGSI-LD forbids an entity twice in one)."""
        return [items]

    def diagnostics(self) -> dict[str, Any]:
        """For status.json: the metadata left out of delivered entities (readings stored before check_reading
        refused it)."""
        return self._drops.diagnostics()

    def _on_success(self, items: list[BatchItem], resp: HttpResponse, run: Run) -> None:
        run.accept()
        for item in items:
            run.outcomes[item.position] = DELIVERED

    def _error_doc(self, resp: HttpResponse) -> dict[str, Any] | None:
        try:
            doc = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None

    def _refusal(self, resp: HttpResponse) -> str:
        """`HTTP <status> <error>: <description>` from the far side's error body, secrets masked.

        The text goes into logs, the status file and the dead letters; a far side that echoes the
        request (its token among it) must leave no secret there, so it is redacted before it is cut
        (a token cut in half would no longer be recognised)."""
        doc = self._error_doc(resp)
        if doc is not None and "error" in doc:
            return redact.text(f"HTTP {resp.status} {doc['error']}: {doc.get('description', '')}".rstrip(": "))
        title = _HTML_TITLE.search(resp.body[:4096])
        if title is not None:
            text = " ".join(redact.text(title.group(1).decode("utf-8", "replace")).split())
            return f"HTTP {resp.status}: {text} (an HTML page: a proxy or web server answered, not {self.broker}'s API)"
        text = " ".join(redact.text(resp.body[:4096].decode("utf-8", "replace")).split())[:300]
        return f"HTTP {resp.status}" + (f": {text}" if text else "")

    def _record_too_large(self, resp: HttpResponse) -> bool:
        """A 413 about what a record holds, not about the request's size (Orion: too many geo locations)."""
        doc = self._error_doc(resp)
        return doc is not None and doc.get("error") == "NoResourcesAvailable"

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve secrets and open the session; a missing secret or unreadable TLS file raises ConfigError."""
        cfg = self.config
        data_dir = self.context.data_dir
        gateway = self.context.gateway_id
        headers = {"User-Agent": f"edgegw/{__version__} ({gateway})", GATEWAY_HEADER: gateway}
        headers.update(self._fixed_headers())
        headers.update(resolve_headers(cfg.headers, data_dir))
        if cfg.x_auth_token is not None:
            headers["X-Auth-Token"] = secrets.resolve(cfg.x_auth_token, data_dir)
        client_secret = secrets.resolve(cfg.oauth2.client_secret, data_dir) if cfg.oauth2 else ""
        if not cfg.tls.checks_peer:
            self.log.warning("TLS certificate verification is off (tls.verify = false); use only on a lab network")
        say_cleartext(self.log, cfg.cleartext_hosts(), cfg.allow_insecure_http)
        self._headers = headers
        self._session = make_session(tls=cfg.tls, timeout_s=cfg.timeout_s, where=f"uplinks.{self.name}")
        if cfg.oauth2 is not None:
            self._tokens = TokenSource(cfg.oauth2, client_secret, self._session, where=self.name, clock=self._clock)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- delivery ----------------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        if self._session is None:
            raise RuntimeError(f"{self.name}: deliver() called before start()")
        run = Run(batch=batch, outcomes=[None] * len(batch), correlator=str(uuid.uuid4()))
        chosen, chains = self._choose(batch)
        retry = Outcome(Status.RETRY, "")
        stopped = False
        try:
            await self._send_readings(chosen, run)
            for _ in range(PROMOTIONS if chains else 0):
                promoted = self._promote(chains, run)
                if not promoted:
                    break
                await self._send_readings(promoted, run)
            if run.held:
                self._suspect(run)
        except _Stop as stop:
            retry, stopped = Outcome(Status.RETRY, stop.reason, stop.fault, stop.retry_after_s), True
        finally:
            if run.too_large:
                self._lower_limit(run.too_large)
        final = [o if o is not None else retry for o in run.outcomes]
        if chains:
            self._settle(batch, chains, final, retry if stopped else None)
        done = self._count(batch, final)
        if run.dropped:
            for i, keys in run.dropped.items():
                if i in done and final[i].status is Status.DELIVERED:
                    self._drops.count(keys)
        return final

    def _items(self, indexes: Sequence[int], run: Run) -> list[BatchItem]:
        """The readings at `indexes` as entities; one the converter refuses is rejected here, never sent."""
        items: list[BatchItem] = []
        with self._drops.held() as noted:
            for i in indexes:
                reading = run.batch[i]
                try:
                    entity = self._entity(reading)
                    data = orjson.dumps(entity)
                except (ValueError, TypeError) as exc:  # ReadingError and friends: this record can never be sent
                    run.outcomes[i] = Outcome(
                        Status.REJECTED, f"{self.name}: cannot convert {reading.entity_id}, got {exc}"
                    )
                    noted.clear()
                    continue
                if noted:
                    run.dropped[i] = tuple(noted)
                    noted.clear()
                # the far side's id (NGSI-LD turns plain ids into URNs): 207 answers name entities by it
                items.append(BatchItem(i, str(entity["id"]), data))
        return items

    async def _send_readings(self, indexes: Sequence[int], run: Run) -> None:
        """Convert, plan within the size limits and send; raises _Stop to retry what has no outcome."""
        items = self._items(indexes, run)
        run.items = items
        overhead = len(self._body([]))
        for segment in self._segments(items):
            sizes = [len(item.data) for item in segment]
            plan = batching.plan_batches(
                sizes, max_bytes=self._plan_bytes(), max_entities=self.config.max_batch_entities, overhead=overhead
            )
            for part in plan:
                await self._send([segment[k] for k in part], run)
        if run.overtook:
            run.overtook = False  # once
            await self._restore(run)

    def _choose(self, batch: Sequence[Reading]) -> tuple[list[int], dict[int, list[int]]]:
        """Indexes to send, and (latest-state) the older readings each sent one stands for, newest first."""
        if self.config.catch_up is CatchUp.FULL_HISTORY:
            return list(range(len(batch))), {}
        groups: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(batch):
            groups.setdefault((r.entity_id, r.entity_type), []).append(i)
        chains: dict[int, list[int]] = {}
        for indexes in groups.values():
            # newest by observation, the later one of equal times (it came from the device later)
            leader, *older = sorted(indexes, key=lambda i: (batch[i].observed_at, i), reverse=True)
            chains[leader] = older
        return sorted(chains), {k: v for k, v in chains.items() if v}

    def _promote(self, chains: dict[int, list[int]], run: Run) -> list[int]:
        """latest-state: in place of each refused newest reading, its next newest (in `chains` from now on)."""
        held = {position for position, _ in run.held}
        promoted: list[int] = []
        for leader, older in list(chains.items()):
            outcome = run.outcomes[leader]
            refused = leader in held or (outcome is not None and outcome.status is Status.REJECTED)
            if refused and older:
                del chains[leader]
                chains[older[0]] = older[1:]
                promoted.append(older[0])
        return sorted(promoted)

    def _settle(
        self, batch: Sequence[Reading], chains: dict[int, list[int]], final: list[Outcome], stop: Outcome | None
    ) -> None:
        """latest-state: the older readings of each entity follow the newest one sent."""
        for leader, older in chains.items():
            outcome = final[leader]
            if outcome.status is Status.DELIVERED:
                fate = DELIVERED  # superseded: the broker holds a newer value
                self.counters.superseded += len(older)
            elif outcome.status is Status.RETRY:
                fate = outcome
            elif stop is not None:
                fate = stop  # refused, and the delivery stopped before the next newest was sent
            else:
                fate = Outcome(
                    Status.RETRY,
                    f"{self.name}: {self.broker} refused the {PROMOTIONS + 1} newest readings of "
                    f"{batch[leader].entity_id} in this delivery; the {len(older)} older ones wait for the next "
                    "delivery (catch_up = latest-state)",
                    Fault.TRANSIENT,
                )
            for i in older:
                final[i] = fate

    def _count(self, batch: Sequence[Reading], final: list[Outcome]) -> range | set[int]:
        """Count the outcomes; delivered and rejected only where the buffer's acknowledgement settles them
        (a lane's records after its first RETRY are sent again, and counted then). Returns those positions."""
        counters = self.counters
        if final.count(DELIVERED) == len(final):
            counters.delivered += len(final)  # the usual batch: no test per record
            return range(len(final))
        done = settled(batch, final)
        rejected = sum(1 for i in done if final[i].status is Status.REJECTED)
        counters.delivered += len(done) - rejected
        counters.rejected += rejected
        counters.retries += sum(1 for o in final if o.status is Status.RETRY)
        return set(done)

    async def _send(self, items: list[BatchItem], run: Run) -> None:
        """One request for `items`; splits and bisects on 413/400/422; raises _Stop to retry the rest."""
        if run.probe is not None:
            items = [item for item in items if run.outcomes[item.position] is None]  # the probe went ahead
            if not items:
                return
        resp, size = await self._post(items, run)
        status = resp.status
        if status in self.success:
            self._set_state(_State.UP, "")
            self._answered_in_time()
            self._on_success(items, resp, run)
            return
        if status not in (400, 413, 422):
            self._failed(resp)
        refusal = self._refusal(resp)
        if status == 413 and not self._record_too_large(resp) and size <= self.config.max_batch_bytes:
            # too large for whatever is in front: not about any record
            run.too_large = min(run.too_large or size, size)
            if len(items) == 1:
                self._refused(
                    f"{self.broker} or a proxy in front of it refused one entity ({items[0].entity_id}) in a request "
                    f"of {size} bytes, got {refusal}; its body limit is below max_batch_bytes = "
                    f"{self.config.max_batch_bytes}: raise it (nginx: client_max_body_size), readings stay buffered"
                )
            self.log.debug(
                "%s for %d entities, %d bytes; splitting (correlator %s)", refusal, len(items), size, run.correlator
            )
        elif status != 413 and _SERVICE_NOT_FOUND.lower() in refusal.lower():
            self._refused(f"{self.broker} does not serve {self._url}, got {refusal}; {self._url_fix()}")
        elif status != 413 and _REQUEST_LEVEL.search(refusal):
            self._refused(f"{self.broker} refused the request itself, got {refusal}; check service/tenant settings")
        elif len(items) == 1:
            item = items[0]
            run.refuse(
                item.position, f"{self.name}: {self.broker} refused entity {item.entity_id}, got {refusal}", refusal
            )
            self.log.debug("%s refused %s: %s", self.broker, item.entity_id, refusal)
            if len(run.held) >= SUSPECT_AFTER:
                await self._probe(run)
            return
        else:
            self.log.debug("%s for %d entities; bisecting (correlator %s)", refusal, len(items), run.correlator)
        half = len(items) // 2
        await self._send(items[:half], run)
        await self._send(items[half:], run)

    def _failed(self, resp: HttpResponse) -> NoReturn:
        """Anything but a success, 400, 413 and 422: not the broker, credentials, url, or the far side failing."""
        refusal = self._refusal(resp)
        status = resp.status
        if 300 <= status < 400:
            self._refused(self._redirected(resp))
        if status < 300:
            self._refused(
                f"{self.broker} at {self._url} answered with a success {self.broker} never sends for this request, "
                f"got {refusal}; {self.broker} answers {_either(self.success)}: something else answered (a login "
                "page, a captive portal, a proxy), readings stay buffered: check url"
            )
        if status in (401, 403):
            self._refused(
                f"{self.broker} refused our credentials, got {refusal}; check x_auth_token / oauth2 "
                "(readings stay buffered)"
            )
        if status < 500 and status not in (408, 429):
            self._refused(f"{self.broker} refused the request at {self._url}, got {refusal}; check url")
        self._down(f"{self.broker} at {self._url} failed, got {refusal}{waits_for(resp)}", wait_s=resp.retry_after_s)

    def _redirected(self, resp: HttpResponse) -> str:
        target = redirect_target(resp, self._url)
        fix = "set url to the broker's own address"
        path = self.path.partition("?")[0]
        base = target.partition("?")[0]
        if base.endswith(path) and len(base) > len(path):
            fix += f' (this redirect says url = "{base[: -len(path)]}")'
        return (
            f"{self.broker} at {self._url} answered with a redirect, got HTTP {resp.status} to {target}; redirects are "
            f"not followed (readings and credentials would go to another address), readings stay buffered: {fix}"
        )

    async def _probe(self, run: Run) -> None:
        """`SUSPECT_AFTER` records refused alone, none accepted: send one record from further on in the batch.

        Accepted, it vouches for the request (the held refusals are dead-lettered, bisection goes on);
        refused too, the refusals are about the request. One probe per delivery."""
        if run.probe is not None:
            self._suspect(run)  # the probe itself was refused alone
        chosen = _probe_item(run)
        if chosen is None:
            self._suspect(run)  # nothing left to try
        run.probe, run.overtook = chosen
        self.log.debug(
            "%d records refused alone; probing with %s (correlator %s)",
            len(run.held),
            run.probe.entity_id,
            run.correlator,
        )
        await self._send([run.probe], run)
        if not run.accepted:
            self._suspect(run)  # an NGSI-LD 207 refusing it

    async def _restore(self, run: Run) -> None:
        """A probe that overtook older readings of its entity, delivered after it, is sent again: the
        broker keeps only the latest state, and must end at the newest reading, not roll back.
        Subscribers see that reading twice (at-least-once allows it) and the older ones after it."""
        probe = run.probe
        assert probe is not None
        if run.outcomes[probe.position] is not DELIVERED:
            return
        if not any(
            item.entity_id == probe.entity_id
            and item.position < probe.position
            and run.outcomes[item.position] is DELIVERED
            for item in run.items
        ):
            return
        resp, _ = await self._post([probe], run)
        if resp.status not in self.success:
            self.log.warning(
                "%s took %s ahead of older readings of it, but not again after them, got %s; it shows an older "
                "reading of %s until the next one arrives",
                self.broker,
                probe.entity_id,
                self._refusal(resp),
                probe.entity_id,
            )

    def _suspect(self, run: Run) -> NoReturn:
        """Records refused one by one and nothing accepted: the refusals are about the request."""
        held = len(run.held)
        probe = ""
        if run.probe is not None:
            held -= 1
            probe = f"; a probe with a record from further on in the batch ({run.probe.entity_id}) was refused too"
            if run.last_refusal != run.first_refusal:
                probe += f", got {run.last_refusal}"
        self._refused(
            f"{self.broker} at {self._url} refused {held} records one by one and accepted none, "
            f"got {run.first_refusal}{probe}; nothing is dead-lettered until a request goes through: if this lasts, "
            "it is about the request, not the data (url, headers, a proxy or API gateway in front)"
        )

    def _url_fix(self) -> str:
        url = self.config.url
        if url.endswith(self.api_root):
            base = url[: -len(self.api_root)]
            return f'url must not end in {self.api_root} (the uplink adds {self.api_root}): set url = "{base}"'
        return "check url: the broker's address, with an API gateway's path prefix if there is one"

    def _lower_limit(self, refused: int) -> None:
        """Keep later requests below a body size the far side refused; say so once per new figure."""
        if refused > self._max_bytes:
            return
        self._max_bytes = refused - 1
        self.log.warning(
            "%s (or a proxy in front of it) refused a request of %d bytes as too large, below max_batch_bytes = %d; "
            "requests stay below %d bytes until restart: set max_batch_bytes = %d, or raise the proxy's limit",
            self.broker,
            refused,
            self.config.max_batch_bytes,
            refused,
            refused - 1,
        )

    def _plan_bytes(self) -> int:
        return self._max_bytes if self._slow_bytes is None else min(self._max_bytes, self._slow_bytes)

    def _too_slow(self, entities: int, size: int) -> str:
        """A request unanswered within timeout_s: later ones are planned at half its size, under the limit a 413
        lowers, until requests are answered in time again; returns the words the failure's reason ends with."""
        applied = f"{self.broker} may have applied it"
        if entities < 2:
            return f" (one entity, {size} bytes); {applied}: if this keeps happening, raise timeout_s"
        self._slow_bytes = min(self._plan_bytes(), size // 2)
        self._in_time = 0
        return (
            f" ({entities} entities, {size} bytes); {applied}: requests are at most {self._slow_bytes} bytes "
            f"until {SLOW_RECOVERY_AFTER} in a row are answered in time, then twice that, up to max_batch_bytes; if "
            "this keeps happening, raise timeout_s or lower max_batch_entities"
        )

    def _answered_in_time(self) -> None:
        """A request answered: after SLOW_RECOVERY_AFTER in a row, the limit a timeout lowered doubles (gone once
        it reaches the other limits), so a passing slowness of the broker costs a few smaller requests only."""
        if self._slow_bytes is None:
            return
        self._in_time += 1
        if self._in_time < SLOW_RECOVERY_AFTER:
            return
        self._in_time = 0
        self._slow_bytes *= 2
        if self._slow_bytes >= self._max_bytes:
            self._slow_bytes = None
            self.log.info("%s answers in time again: requests are planned up to %d bytes", self.broker, self._max_bytes)

    async def _post(self, items: list[BatchItem], run: Run) -> tuple[HttpResponse, int]:
        assert self._session is not None
        body = self._body([item.data for item in items])
        headers = dict(self._headers)
        headers["Fiware-Correlator"] = run.correlator
        seq_header = _seq_header(run.batch, items)
        if seq_header is not None:
            headers[seq_header[0]] = seq_header[1]
        for attempt in (1, 2):
            token = ""
            posting = False  # past the token: a failure is about our request, not the token endpoint
            try:
                if self._tokens is not None:
                    token = await self._tokens.token()
                    name, value = self._tokens.header(token)
                    headers[name] = value
                self.counters.requests += 1
                self.counters.bytes += len(body)
                posting = True
                resp = await post(self._session, self._url, body=body, headers=headers, where=self.name)
            except UplinkTransient as exc:
                if exc.params.get("configuration"):
                    self._refused(exc.message)  # the token endpoint refused our client, or token_url is wrong
                reason = exc.message
                if posting and exc.params.get("timed_out"):
                    reason += self._too_slow(len(items), len(body))
                # no status and nothing sent: no connection at all, probed at a short interval; a request that
                # went out reached the far side (which may have applied it): backed off as usual
                self._down(reason, unreachable="status" not in exc.params and not exc.params.get("sent"))
            self.log.debug(
                "POST %s correlator=%s entities=%d bytes=%d -> %d",
                self._url,
                run.correlator,
                len(items),
                len(body),
                resp.status,
            )
            if resp.status in (401, 403) and self._tokens is not None and attempt == 1:
                self._tokens.invalidate(token)  # a revoked or rotated token: fetch a new one once
                continue
            return resp, len(body)
        raise AssertionError("unreachable")

    # ---- state changes, logged once ----------------------------------------------------------------

    def _set_state(self, state: _State, reason: str) -> None:
        previous, self._state = self._state, state
        if state is previous:
            return
        if state is _State.UP:
            if previous is None:
                self.log.info("delivering to %s", self._url)
            else:
                self.log.info("delivering to %s again", self._url)
        elif state is _State.DOWN:
            self.log.warning("%s; readings stay buffered and are retried", reason)
        else:
            self.log.error("%s", reason)

    def _down(self, reason: str, *, unreachable: bool = False, wait_s: float = 0.0) -> NoReturn:
        self.counters.last_error = reason
        self._set_state(_State.DOWN, reason)
        self.log.debug("transient failure: %s", reason)
        raise _Stop(reason, Fault.UNREACHABLE if unreachable else Fault.TRANSIENT, wait_s)

    def _refused(self, reason: str) -> NoReturn:
        self.counters.last_error = reason
        self._set_state(_State.REFUSED, reason)
        raise _Stop(reason, Fault.CONFIGURATION)

    def _retry_later(self, reason: str) -> NoReturn:
        """The far side answered but could not take a record now (NGSI-LD 207): no change of state."""
        self.counters.last_error = reason
        self.log.debug("retry later: %s", reason)
        raise _Stop(reason, Fault.TRANSIENT)
