"""The HTTP batch engine the `orion` and `ngsi-ld` uplinks share: batches in, per-record outcomes out.

The engine turns one buffer batch into as few requests as the size limits allow and sorts the far
side's answers into per-record outcomes:

- 2xx: delivered (NGSI-LD 207: per entity, see ngsi_ld.py).
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
  Records delivered by an earlier request of the same batch stay delivered.

A configuration mistake must never dead-letter data, and a 400 cannot say whether it is about a
record or about the request (an API gateway, a proxy, a path the broker does not serve). So one
rule decides: **a refusal of a record is trusted only once another request of the same delivery was
accepted.** Until then records refused alone are held; if the delivery ends with nothing accepted,
or `SUSPECT_AFTER` records in a row were refused alone, the refusals are taken to be about the
request: nothing is rejected, everything is retried, with an ERROR in the log and the uplink's status.
A genuinely bad record among good ones is still dead-lettered, in the same delivery; a batch of
nothing but refused records waits until newer readings arrive to vouch for the request.
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
from gateway.configbase import Field, HttpUrl
from gateway.errors import UplinkTransient
from gateway.logs import component_logger
from gateway.ngsi import batching, identifiers
from gateway.ngsi.config import ValueEncoding
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
    resolve_headers,
)
from gateway.uplinks.http.oauth2 import OAuth2Config, TokenHeader, TokenSource
from gateway.uplinks.seqs import seq_ranges

Service = Annotated[str, AfterValidator(identifiers.check_service)]

# Orion's answers about headers rather than entities: bisecting would only dead-letter good data.
_REQUEST_LEVEL = re.compile(r"tenant|service ?path|content[- ]?(type|length)|link header", re.IGNORECASE)
# Orion's answer to a path it does not serve (src/lib/common/errorMessages.h), whatever the method
_SERVICE_NOT_FOUND = "Service not found"
_HTML_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)

# Records refused one by one, with nothing accepted in between, before the refusals are taken to be
# about the request: enough for a burst of bad records at the head of a lane, few enough that a
# request every receiver refuses costs about log2(batch) + 2 * SUSPECT_AFTER requests per attempt.
SUSPECT_AFTER = 8

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
    # Only the newest reading of each entity in a batch is sent; the older ones are acknowledged as
    # delivered without being sent. For platforms that keep only current state and would otherwise
    # replay hours of backlog through their subscriptions after an outage.
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
    # The gateway-wide [ngsi] value_encoding is not passed to uplinks, so each HTTP uplink has its own.
    value_encoding: ValueEncoding = ValueEncoding.PERCENT

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

    def __init__(self, reason: str, fault: Fault) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fault = fault


@dataclass(slots=True)
class Run:
    """One deliver() call: the outcomes so far, and whether its refusals can be trusted (module docstring)."""

    batch: Sequence[Reading]
    outcomes: list[Outcome | None]
    correlator: str
    accepted: bool = False  # a request of this delivery was taken (2xx, or a 207 with a success)
    held: list[tuple[int, str]] = field(default_factory=list)  # (position, reason) refused before any acceptance
    first_refusal: str = ""  # the far side's words for the first record held
    too_large: int = 0  # the smallest request body refused for its size in this delivery

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


class HttpBatchUplink(Lifecycle):
    """The HTTP delivery engine; subclasses say how to convert, frame and address a batch."""

    config_model: ClassVar[type[UplinkConfig]]
    path: ClassVar[str]
    api_root: ClassVar[str]  # the path the uplink adds to `url` before `path`'s operation
    broker: ClassVar[str]  # how messages name the far side

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
        self._url = config.url + self.path
        # requests are planned below the smallest body the far side refused as too large
        self._max_bytes = config.max_batch_bytes

    # ---- what subclasses provide ----------------------------------------------------------------

    def _entity(self, reading: Reading) -> dict[str, Any]:
        raise NotImplementedError

    def _body(self, entities: Sequence[bytes]) -> bytes:
        raise NotImplementedError

    def _fixed_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _segments(self, items: list[BatchItem]) -> list[list[BatchItem]]:
        """Runs of items that may share a request (NGSI-LD forbids an entity twice in one)."""
        return [items]

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
        outcomes = run.outcomes
        chosen, followers = self._choose(batch)
        items: list[BatchItem] = []
        for i in chosen:
            reading = batch[i]
            try:
                entity = self._entity(reading)
                data = orjson.dumps(entity)
            except (ValueError, TypeError) as exc:  # ReadingError and friends: this record can never be sent
                outcomes[i] = Outcome(Status.REJECTED, f"{self.name}: cannot convert {reading.entity_id}, got {exc}")
                continue
            # the far side's id (NGSI-LD turns plain ids into URNs): 207 answers name entities by it
            items.append(BatchItem(i, str(entity["id"]), data))
        retry = Outcome(Status.RETRY, "")
        try:
            overhead = len(self._body([]))
            for segment in self._segments(items):
                sizes = [len(item.data) for item in segment]
                plan = batching.plan_batches(
                    sizes, max_bytes=self._max_bytes, max_entities=self.config.max_batch_entities, overhead=overhead
                )
                for part in plan:
                    await self._send([segment[k] for k in part], run)
            if run.held:
                self._suspect(run)
        except _Stop as stop:
            retry = Outcome(Status.RETRY, stop.reason, stop.fault)
        finally:
            if run.too_large:
                self._lower_limit(run.too_large)
        final = [o if o is not None else retry for o in outcomes]
        for leader, older in followers.items():
            # latest-state: older readings share the newest one's fate, except that a dead-lettered
            # newest reading still settles them (sending them alone would roll the entity back)
            fate = DELIVERED if final[leader].status is not Status.RETRY else final[leader]
            for i in older:
                final[i] = fate
                self.counters.superseded += fate is DELIVERED
        self._count(final)
        return final

    def _choose(self, batch: Sequence[Reading]) -> tuple[list[int], dict[int, list[int]]]:
        """Indexes to send, and (latest-state) the older readings each sent one stands for."""
        if self.config.catch_up is CatchUp.FULL_HISTORY:
            return list(range(len(batch))), {}
        newest: dict[tuple[str, str], int] = {}
        for i, r in enumerate(batch):
            key = (r.entity_id, r.entity_type)
            j = newest.get(key)
            if j is None or r.observed_at >= batch[j].observed_at:
                newest[key] = i
        followers: dict[int, list[int]] = {i: [] for i in newest.values()}
        for i, r in enumerate(batch):
            leader = newest[(r.entity_id, r.entity_type)]
            if leader != i:
                followers[leader].append(i)
        return sorted(followers), {k: v for k, v in followers.items() if v}

    def _count(self, final: list[Outcome]) -> None:
        for o in final:
            if o.status is Status.DELIVERED:
                self.counters.delivered += 1
            elif o.status is Status.REJECTED:
                self.counters.rejected += 1
            else:
                self.counters.retries += 1

    async def _send(self, items: list[BatchItem], run: Run) -> None:
        """One request for `items`; splits and bisects on 413/400/422; raises _Stop to retry the rest."""
        resp, size = await self._post(items, run)
        status = resp.status
        if 200 <= status < 300:
            self._set_state(_State.UP, "")
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
                self._suspect(run)
            return
        else:
            self.log.debug("%s for %d entities; bisecting (correlator %s)", refusal, len(items), run.correlator)
        half = len(items) // 2
        await self._send(items[:half], run)
        await self._send(items[half:], run)

    def _failed(self, resp: HttpResponse) -> NoReturn:
        """Anything but 2xx, 400, 413 and 422: credentials, url, or the far side failing."""
        refusal = self._refusal(resp)
        status = resp.status
        if status in (401, 403):
            self._refused(
                f"{self.broker} refused our credentials, got {refusal}; check x_auth_token / oauth2 "
                "(readings stay buffered)"
            )
        if status < 500 and status not in (408, 429):
            self._refused(f"{self.broker} refused the request at {self._url}, got {refusal}; check url")
        self._down(f"{self.broker} at {self._url} failed, got {refusal}")

    def _suspect(self, run: Run) -> NoReturn:
        """Records refused one by one and nothing accepted: the refusals are about the request."""
        self._refused(
            f"{self.broker} at {self._url} refused {len(run.held)} records one by one and accepted none, "
            f"got {run.first_refusal}; nothing is dead-lettered until a request goes through: if this lasts, it is "
            "about the request, not the data (url, headers, a proxy or API gateway in front)"
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
            try:
                if self._tokens is not None:
                    token = await self._tokens.token()
                    name, value = self._tokens.header(token)
                    headers[name] = value
                self.counters.requests += 1
                self.counters.bytes += len(body)
                resp = await post(self._session, self._url, body=body, headers=headers, where=self.name)
            except UplinkTransient as exc:
                if exc.params.get("status") in (400, 401):
                    self._refused(exc.message)  # the token endpoint refused our client credentials
                # no status: no answer at all (post() found no connection), probed at a short interval
                self._down(exc.message, unreachable="status" not in exc.params)
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

    def _down(self, reason: str, *, unreachable: bool = False) -> NoReturn:
        self.counters.last_error = reason
        self._set_state(_State.DOWN, reason)
        self.log.debug("transient failure: %s", reason)
        raise _Stop(reason, Fault.UNREACHABLE if unreachable else Fault.TRANSIENT)

    def _refused(self, reason: str) -> NoReturn:
        self.counters.last_error = reason
        self._set_state(_State.REFUSED, reason)
        raise _Stop(reason, Fault.CONFIGURATION)

    def _retry_later(self, reason: str) -> NoReturn:
        """The far side answered but could not take a record now (NGSI-LD 207): no change of state."""
        self.counters.last_error = reason
        self.log.debug("retry later: %s", reason)
        raise _Stop(reason, Fault.TRANSIENT)
