"""The `ngsi-ld` uplink: Readings → `POST /ngsi-ld/v1/entityOperations/upsert?options=update` on an NGSI-LD broker.

Shares the v2 uplink's batch engine (split on 413, bisect on 400, retry on 5xx). What differs: the
@context goes in a Link header or in each entity, a request never holds the same entity twice
(brokers refuse or merge such batches, which would lose the older observation), and a 207
Multi-Status answer is sorted per entity: 4xx problems are rejected, anything else retried.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from gateway.configbase import HttpUrl
from gateway.ngsi import ld
from gateway.records import Reading
from gateway.uplinks.api import DELIVERED, Outcome, Status, UplinkConfig
from gateway.uplinks.http_client import HttpResponse
from gateway.uplinks.http_batch import BatchItem, HttpBatchUplink, HttpUplinkConfig, Service

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"


class ContextMode(enum.Enum):
    LINK = "link"  # Link header, Content-Type application/json: smaller bodies
    INLINE = "inline"  # "@context" in every entity, Content-Type application/ld+json


class NgsiLdConfig(HttpUplinkConfig):
    """`[[uplinks]] type = "ngsi-ld"`: an NGSI-LD broker (Orion-LD, Scorpio, Stellio)."""

    context: HttpUrl = CORE_CONTEXT
    context_mode: ContextMode = ContextMode.LINK
    tenant: Service | None = None  # NGSILD-Tenant; omitted: the broker's default tenant


def _problem_text(problem: Any) -> str:
    if not isinstance(problem, dict):
        return repr(problem)[:300]
    kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
    parts = [p for p in (str(problem.get("title", "")), str(problem.get("detail", ""))) if p]
    status = problem.get("status")
    return f"HTTP {status} {kind}: {' - '.join(parts)}".strip()


class NgsiLdUplink(HttpBatchUplink):
    """Delivers Readings to an NGSI-LD broker with batch upserts."""

    config_model: ClassVar[type[UplinkConfig]] = NgsiLdConfig
    path = "/ngsi-ld/v1/entityOperations/upsert?options=update"
    broker = "the NGSI-LD broker"

    @property
    def _ld(self) -> NgsiLdConfig:
        assert isinstance(self.config, NgsiLdConfig)
        return self.config

    def _entity(self, reading: Reading) -> dict[str, Any]:
        inline = self._ld.context_mode is ContextMode.INLINE
        return ld.to_ld_entity(reading, encoding=self.config.value_encoding, context=self._ld.context if inline else None)

    def _body(self, entities: Sequence[bytes]) -> bytes:
        return ld.ld_upsert_body(entities)

    def _fixed_headers(self) -> dict[str, str]:
        cfg = self._ld
        if cfg.context_mode is ContextMode.INLINE:
            headers = {"Content-Type": "application/ld+json"}
        else:
            headers = {
                "Content-Type": "application/json",
                "Link": f'<{cfg.context}>; rel="{_CONTEXT_REL}"; type="application/ld+json"',
            }
        if cfg.tenant is not None:
            headers["NGSILD-Tenant"] = cfg.tenant
        return headers

    def _segments(self, items: list[BatchItem]) -> list[list[BatchItem]]:
        out: list[list[BatchItem]] = [[]]
        seen: set[str] = set()
        for item in items:
            if item.entity_id in seen:
                out.append([])
                seen.clear()
            out[-1].append(item)
            seen.add(item.entity_id)
        return [s for s in out if s]

    def _refusal(self, resp: HttpResponse) -> str:
        try:
            doc = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return super()._refusal(resp)
        if isinstance(doc, dict) and "title" in doc:
            return _problem_text({"status": resp.status, **doc})
        return super()._refusal(resp)

    def _on_success(self, items: list[BatchItem], resp: HttpResponse, outcomes: list[Outcome | None]) -> None:
        if resp.status != 207:
            super()._on_success(items, resp, outcomes)
            return
        try:
            doc = orjson.loads(resp.body)
            success = set(doc.get("success", []))
            errors = {e["entityId"]: e.get("error") for e in doc.get("errors", [])}
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            self._down(f"{self.broker} answered 207 with an unreadable body, got {resp.body[:200]!r}")
        retry_reason = ""
        for item in items:
            if item.entity_id in success:
                outcomes[item.position] = DELIVERED
                continue
            problem = errors.get(item.entity_id)
            status = problem.get("status") if isinstance(problem, dict) else None
            text = _problem_text(problem) if problem is not None else "no result for this entity in the 207 answer"
            if isinstance(status, int) and 400 <= status < 500 and status not in (401, 403, 408, 429):
                outcomes[item.position] = Outcome(
                    Status.REJECTED, f"{self.name}: {self.broker} refused entity {item.entity_id}, got {text}"
                )
            else:
                retry_reason = retry_reason or f"{self.broker} could not write entity {item.entity_id}, got {text}"
        if retry_reason:
            # a later request could hold a newer reading of the entity to retry: keep per-entity order
            self._down(retry_reason)
