"""End-to-end confirmation behind an IoT Agent: ask the Orion the agent writes to whether each entity arrived.

Theory of operation. A broker's PUBACK says the broker has the message, not that an IoT Agent took
it: the agents subscribe with a clean session and a new client id at every start, so a message
published while an agent restarts is gone, and a message whose Orion request failed is dropped. With
an `[uplinks.confirm]` table every measure carries its reading's buffer seq as an extra measure (the
uplink's `sequence_attribute`), which the agent writes into the entity like any other attribute.
After the PUBACKs the uplink asks Orion (`POST /v2/op/query?options=keyValues`, `attrs` = that
attribute) until each entity shows the seq of the measure the agent applies last, and only then
reports its records delivered; an entity that does not get there within `timeout_s`, or an Orion
that cannot be asked, leaves its records to be retried from the buffer. The uplink never publishes
a newer message of an entity before the older one is confirmed, so a newer message can never
confirm a lost older one.

The remaining gap, stated plainly: if a message is republished after a timeout and the *first*
attempt arrives late, the entity shows the marker of the first attempt; when the readings added in
between are all older (by observation time) than the last one of that attempt, the check passes
although those older readings may be missing. It needs a late arrival after `timeout_s` and
readings out of time order, and it concerns only readings that are no longer the entity's latest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import AfterValidator, field_validator, model_validator

from gateway import secrets
from gateway.configbase import Field, HttpUrl, Section
from gateway.errors import UplinkTransient
from gateway.logs import ComponentLogger, StateLog
from gateway.ngsi import identifiers, iota
from gateway.tls import TlsSection
from gateway.uplinks.http.client import (
    Headers,
    HttpResponse,
    make_session,
    post,
    resolve_headers,
)
from gateway.uplinks.http.oauth2 import (
    CLEARTEXT_ADVICE,
    OAuth2Config,
    TokenHeader,
    TokenSource,
    cleartext_hosts,
    cleartext_warnings,
    credentials_sent,
    say_cleartext,
)

if TYPE_CHECKING:
    import aiohttp  # make_session imports it: an mqtt uplink without confirm never loads it

__all__ = ["ENTITY_ID_FIELDS", "QUERY_PAGE", "ConfirmConfig", "Confirmation", "OrionConfirmer"]

# The placeholders of `entity_id`: the reading's, and the IoT Agent device id the uplink renders.
ENTITY_ID_FIELDS = ("entity_id", "entity_type", "device", "adapter", "device_id")
QUERY_PAGE = 1000  # Orion's largest `limit` ("Bad pagination limit: /1001/ [max: 1000]"); its default is 20
FIRST_POLL_S = 0.02  # the agents write a measure to Orion within milliseconds of taking it
MAX_POLL_S = 0.5

# The opt-in is a key of this table, not of the uplink (whose own password goes to the broker): set there, it
# would be an unknown key, and a box whose config does not load stops.
CONFIRM_CLEARTEXT_ADVICE = CLEARTEXT_ADVICE.replace(
    "set allow_insecure_http = true", "set allow_insecure_http = true in [uplinks.confirm]"
)

Service = Annotated[str, AfterValidator(identifiers.check_service)]
ServicePath = Annotated[str, AfterValidator(identifiers.check_service_path)]


class ConfirmConfig(Section):
    """`[uplinks.confirm]`: read access to the Orion behind the IoT Agent, to check what arrived there."""

    url: HttpUrl = Field(description="Orion's base URL, without /v2")
    service: Service | None = None  # Fiware-Service of the agent's config group; omitted: Orion's default tenant
    service_path: ServicePath = "/"  # Fiware-ServicePath of the agent's config group
    entity_id: str = Field(default="{entity_id}", description="the Orion entity id the agent writes a reading to")
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="how long to wait for the agent to write")
    x_auth_token: secrets.SecretRef | None = None
    headers: Headers = Field(default_factory=dict)
    oauth2: OAuth2Config | None = None
    tls: TlsSection = TlsSection()
    # Credentials over plain http to another host than this box: for a closed network, at the admin's risk; true
    # silences the warning (config_warnings).
    allow_insecure_http: bool = False

    @field_validator("entity_id")
    @classmethod
    def _entity_id(cls, v: str) -> str:
        identifiers.check_id_template(v)
        unknown = iota.template_fields(v) - set(ENTITY_ID_FIELDS)
        if unknown:
            valid = ", ".join("{" + f + "}" for f in ENTITY_ID_FIELDS)
            raise ValueError(f"unknown placeholder {{{min(unknown)}}}; valid: {valid}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ConfirmConfig:
        token_header = None
        if self.oauth2 is not None:
            token_header = "x-auth-token" if self.oauth2.header is TokenHeader.X_AUTH_TOKEN else "authorization"
        if self.x_auth_token is not None and token_header == "x-auth-token":
            raise ValueError(
                "must set X-Auth-Token from one place, got both x_auth_token and oauth2.header = "
                '"x-auth-token"; keep one of them'
            )
        if self.url.startswith("http://") and self.tls != TlsSection():
            raise ValueError("tls settings need an https:// url, got an http:// url; change url or drop [tls]")
        return self

    def _credentials(self) -> list[str]:
        """The keys whose credentials go with every query to `url` (never their values)."""
        return credentials_sent(self.oauth2, self.x_auth_token, self.headers)

    def cleartext_hosts(self) -> list[str]:
        """The hosts off this box that credentials go to over plain http."""
        return cleartext_hosts(self.url, self._credentials(), self.oauth2)

    def config_warnings(self) -> list[tuple[str, str]]:
        """(key, advice) for credentials that go over plain http off this box, unless allow_insecure_http = true;
        the MQTT uplink passes them on under `confirm.`. Warnings, not errors: such a config was valid before, and
        a box upgraded with one must keep reading and buffering (gateway.config.config_warnings)."""
        if self.allow_insecure_http:
            return []
        return cleartext_warnings(self.url, self._credentials(), self.oauth2, advice=CONFIRM_CLEARTEXT_ADVICE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmation:
    """What one wait found: the entities that reached their seq, and why the others did not."""

    confirmed: frozenset[str]
    reason: str  # empty when every entity was confirmed


class OrionConfirmer:
    """Asks Orion for the sequence attribute of entities until they reach their targets; see the module docstring."""

    def __init__(
        self,
        config: ConfirmConfig,
        *,
        attribute: str,
        uplink: str,
        data_dir: str,
        log: ComponentLogger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.attribute = attribute
        self.errors = 0  # queries that failed (Orion unreachable, refused, answered nonsense)
        self._where = f"uplinks.{uplink}.confirm"
        self._data_dir = data_dir
        self._log = log
        self._clock = clock
        self._url = config.url + "/v2/op/query"
        self._session: aiohttp.ClientSession | None = None
        self._tokens: TokenSource | None = None
        self._headers: dict[str, str] = {}
        self._failing = StateLog(log)  # Orion could not be asked: logged once per spell, and its end
        self._lagging = StateLog(log)  # entities did not arrive in time: the same

    async def start(self) -> None:
        """Resolve secrets and open the session: a missing secret or unreadable TLS file raises ConfigError."""
        if self._session is not None:
            return
        cfg = self.config
        headers = {"Content-Type": "application/json", "Fiware-ServicePath": cfg.service_path}
        if cfg.service is not None:
            headers["Fiware-Service"] = cfg.service
        headers.update(resolve_headers(cfg.headers, self._data_dir))
        if cfg.x_auth_token is not None:
            headers["X-Auth-Token"] = secrets.resolve(cfg.x_auth_token, self._data_dir)
        client_secret = secrets.resolve(cfg.oauth2.client_secret, self._data_dir) if cfg.oauth2 else ""
        if not cfg.tls.checks_peer:
            self._log.warning("confirmation: TLS certificate verification is off (confirm.tls.verify = false)")
        say_cleartext(
            self._log,
            cfg.cleartext_hosts(),
            cfg.allow_insecure_http,
            what="confirmation: ",
            key="confirm.allow_insecure_http",
            advice=CONFIRM_CLEARTEXT_ADVICE,
        )
        self._headers = headers
        self._session = make_session(tls=cfg.tls, timeout_s=min(cfg.timeout_s, 10.0), where=self._where)
        if cfg.oauth2 is not None:
            self._tokens = TokenSource(cfg.oauth2, client_secret, self._session, where=self._where, clock=self._clock)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- waiting ----------------------------------------------------------------------------------

    async def wait(self, targets: Mapping[str, int]) -> Confirmation:
        """Poll Orion until every entity id shows its target seq, or `timeout_s` passed, or Orion fails."""
        deadline = self._clock() + self.config.timeout_s
        pending = dict(targets)
        confirmed: set[str] = set()
        seen: dict[str, Any] = {}
        delay = FIRST_POLL_S
        while True:
            await asyncio.sleep(min(delay, max(0.0, deadline - self._clock())))
            try:
                seen = await self.current(list(pending))
            except UplinkTransient as exc:
                self.errors += 1
                self._set_failing(exc.message)
                return Confirmation(confirmed=frozenset(confirmed), reason=exc.message)
            self._set_failing(None)
            for entity_id, want in list(pending.items()):
                if _same_seq(seen.get(entity_id), want):
                    del pending[entity_id]
                    confirmed.add(entity_id)
            if not pending:
                self._set_lagging(None)
                return Confirmation(confirmed=frozenset(confirmed), reason="")
            if self._clock() >= deadline:
                reason = self._late(pending, seen)
                self._set_lagging(reason)
                return Confirmation(confirmed=frozenset(confirmed), reason=reason)
            delay = min(delay * 2, MAX_POLL_S)

    def _late(self, pending: Mapping[str, int], seen: Mapping[str, Any]) -> str:
        entity_id, want = next(iter(pending.items()))
        cfg = self.config
        if entity_id not in seen:
            where = f"service {cfg.service or '(default)'!r}, path {cfg.service_path!r}"
            example = (
                f"{entity_id} is not in Orion ({where}); check confirm.entity_id, service and service_path "
                "against the agent's provisioning"
            )
        else:
            example = (
                f"{entity_id} has {self.attribute} {_show(seen.get(entity_id))}, published {want}; the agent "
                "may be down or restarting, or refused by Orion"
            )
        return (
            f"{self._where}: not confirmed by Orion within {cfg.timeout_s:g} s for {len(pending)} "
            f"entit{'y' if len(pending) == 1 else 'ies'}, e.g. {example}; republishing from the buffer"
        )

    def _set_failing(self, reason: str | None) -> None:
        if reason is None:
            self._failing.ok("confirmation: Orion at %s answers again", self._url)
        elif not self._failing.fail(
            True, logging.WARNING, "%s; readings stay buffered and are published again", reason
        ):
            self._log.debug("%s", reason)

    def _set_lagging(self, reason: str | None) -> None:
        if reason is None:
            self._lagging.ok("confirmation: entities reach Orion again")
        elif not self._lagging.fail(True, logging.WARNING, "%s", reason):
            self._log.debug("%s", reason)

    # ---- one query ------------------------------------------------------------------------------

    async def current(self, entity_ids: Sequence[str]) -> dict[str, Any]:
        """The sequence attribute's value per entity id Orion has (absent ids are not in Orion); UplinkTransient on failure."""
        found: dict[str, Any] = {}
        for start in range(0, len(entity_ids), QUERY_PAGE):
            page = entity_ids[start : start + QUERY_PAGE]
            body = orjson.dumps({"entities": [{"id": e} for e in page], "attrs": [self.attribute]})
            url = f"{self._url}?options=keyValues&limit={len(page)}"
            resp = await self._post(url, body)
            if resp.status != 200:
                raise UplinkTransient(
                    f"{self._where}: Orion at {self._url} refused the query, got {_refusal(resp)}; "
                    "check confirm.url, service and the credentials",
                    status=resp.status,
                )
            try:
                doc = orjson.loads(resp.body)
                rows = [(row["id"], row.get(self.attribute)) for row in doc]
            except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                raise UplinkTransient(
                    f"{self._where}: Orion at {self._url} answered the query with something "
                    f"that is not a list of entities, got {resp.body[:200]!r}"
                ) from None
            for entity_id, value in rows:
                # two entity types sharing an id: either may be the agent's, so a match in one counts
                if entity_id not in found or value is not None:
                    found[entity_id] = value
        return found

    async def _post(self, url: str, body: bytes) -> HttpResponse:
        if self._session is None:
            await self.start()  # deliver() without start(), as after close(): open it now
        assert self._session is not None
        for attempt in (1, 2):
            headers = dict(self._headers)
            token = ""
            if self._tokens is not None:
                token = await self._tokens.token()
                name, value = self._tokens.header(token)
                headers[name] = value
            resp = await post(self._session, url, body=body, headers=headers, where=self._where)
            if resp.status in (401, 403) and self._tokens is not None and attempt == 1:
                self._tokens.invalidate(token)  # revoked or rotated: fetch a new one once
                continue
            return resp
        raise AssertionError("unreachable")


def _same_seq(value: Any, want: int) -> bool:
    # the agents forward the measure as a number (UltraLight JSON.parses it); a Text-provisioned
    # attribute may still hold it as text
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == want
    return isinstance(value, str) and value == str(want)


def _show(value: Any) -> str:
    return "nothing" if value is None else repr(value)


def _refusal(resp: HttpResponse) -> str:
    try:
        doc = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "error" in doc:
        return f"HTTP {resp.status} {doc['error']}: {doc.get('description', '')}".rstrip(": ")
    text = resp.body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {resp.status}" + (f": {text}" if text else "")
