"""The `ngsi-ld` uplink: Readings → `POST /ngsi-ld/v1/entityOperations/upsert?options=update` on an NGSI-LD broker.

Shares the v2 uplink's batch engine (split on 413, bisect on 400, retry on 5xx). What differs: the
@context goes in a Link header or in each entity, a request never holds the same entity twice
(brokers refuse or merge such batches, which would lose the older observation), and a 207
Multi-Status answer is sorted per entity (problems.py): an error about the entity rejects it
(held, like every rejection, until the delivery shows the broker takes our requests), an error about
the broker retries it and stops the batch there, so per-entity order holds. An error that says
neither (no known type, no status: a title, a list of strings, a string, or no result at all for the
entity) is retried, and rejected once the same reading got the same answer UNCLASSIFIED_LIMIT times in
a row, so a broker's unexplained refusal cannot block the lane forever. The count is per reading (its
buffer seq), not per entity, and any other answer about the reading (a delivery above all) ends the
row: passing glitches days apart, or the glitches of an older reading of the entity, never add up to
a dead letter.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import orjson

from gateway import redact
from gateway.adapter_api import AdapterContext
from gateway.configbase import HttpUrl
from gateway.ngsi import ld
from gateway.records import Reading
from gateway.uplinks.api import DELIVERED, UplinkConfig
from gateway.uplinks.http.batch import (
    BatchItem,
    HttpBatchUplink,
    HttpUplinkConfig,
    Run,
    Service,
)
from gateway.uplinks.http.client import HttpResponse
from gateway.uplinks.ngsi_ld.problems import Problem, Verdict, classify, problem_text

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
# Same unclassified answer for the same reading this many times in a row: rejected. At the default
# backoff (1 s doubling to 60 s, full jitter) that is about two minutes of a blocked lane: enough to
# ride out a broker's passing trouble, short enough that the lane moves on.
UNCLASSIFIED_LIMIT = 10
_UNCLASSIFIED_MEMORY = 10_000  # readings remembered; past that the memory starts again

# A reading as the unclassified count knows it: its entity and its buffer seq (None outside the buffer:
# tools and tests, whose readings of one entity then share a count)
_ReadingKey = tuple[str, int | None]


class ContextMode(enum.Enum):
    LINK = "link"  # Link header, Content-Type application/json: smaller bodies
    INLINE = "inline"  # "@context" in every entity, Content-Type application/ld+json


class NgsiLdConfig(HttpUplinkConfig):
    """`[[uplinks]] type = "ngsi-ld"`: an NGSI-LD broker (Orion-LD, Scorpio, Stellio)."""

    context: HttpUrl = CORE_CONTEXT
    context_mode: ContextMode = ContextMode.LINK
    tenant: Service | None = None  # NGSILD-Tenant; omitted: the broker's default tenant


class NgsiLdUplink(HttpBatchUplink):
    """Delivers Readings to an NGSI-LD broker with batch upserts."""

    config_model: ClassVar[type[UplinkConfig]] = NgsiLdConfig
    path = "/ngsi-ld/v1/entityOperations/upsert?options=update"
    api_root = "/ngsi-ld/v1"
    broker = "the NGSI-LD broker"
    success = (201, 204, 207)  # ETSI GS CIM 009 batch upsert: created, updated, or per entity

    def __init__(
        self, config: UplinkConfig, context: AdapterContext, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(config, context, clock=clock)
        # reading -> (the unclassified answer it got, how many times in a row)
        self._unclassified: dict[_ReadingKey, tuple[str, int]] = {}

    @property
    def _ld(self) -> NgsiLdConfig:
        assert isinstance(self.config, NgsiLdConfig)
        return self.config

    def _entity(self, reading: Reading) -> dict[str, Any]:
        inline = self._ld.context_mode is ContextMode.INLINE
        return ld.to_ld_entity(
            reading,
            encoding=self.config.value_encoding,
            context=self._ld.context if inline else None,
            drops=self._drops,
        )

    def _metadata_drops(self) -> ld.MetadataDrops:
        return ld.MetadataDrops(self.name)

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
        doc = self._error_doc(resp)
        if doc is not None and "error" not in doc and ("type" in doc or "title" in doc):
            return problem_text(doc, resp.status)
        return super()._refusal(resp)

    def _on_success(self, items: list[BatchItem], resp: HttpResponse, run: Run) -> None:
        if resp.status != 207:
            super()._on_success(items, resp, run)
            if self._unclassified:
                for item in items:
                    self._unclassified.pop(_key(run, item), None)
            return
        try:
            doc = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            self._refused(
                f"{self.broker} answered 207 with a body that is not a batch result, got {redact.text(resp.body[:4096].decode('utf-8', 'replace'))[:200]!r}; "
                "nothing is dead-lettered, check that url points at an NGSI-LD broker"
            )
        success = {_entity_id(s) for s in _as_list(doc.get("success"))}
        errors: dict[str, object] = {}
        for entry in _as_list(doc.get("errors")):
            if isinstance(entry, dict) and isinstance(entry.get("entityId"), str):
                errors.setdefault(entry["entityId"], entry.get("error"))
        if success & {item.entity_id for item in items}:
            run.accept()
        retry_reason = ""
        for item in items:
            eid = item.entity_id
            key = _key(run, item)
            if eid in success:
                run.outcomes[item.position] = DELIVERED
                self._unclassified.pop(key, None)
                continue
            if eid in errors:
                problem = classify(errors[eid])
            else:
                problem = Problem(verdict=Verdict.UNCLASSIFIED, text="no result for this entity in the 207 answer")
            verdict, text = problem.verdict, problem.text
            if verdict is Verdict.UNCLASSIFIED:
                verdict, text = self._repeated(key, text)
            else:
                self._unclassified.pop(key, None)  # an answer that says what to do ends the row
            if verdict is Verdict.REJECT:
                run.refuse(item.position, f"{self.name}: {self.broker} refused entity {eid}, got {text}", text)
            else:
                retry_reason = retry_reason or f"{self.broker} could not write entity {eid}, got {text}"
        if retry_reason:
            # a later request could hold a newer reading of the entity to retry: keep per-entity order
            self._retry_later(retry_reason)

    def _repeated(self, key: _ReadingKey, text: str) -> tuple[Verdict, str]:
        """Retry an unclassified answer; reject it once the reading got the same one UNCLASSIFIED_LIMIT times.

        The count goes on until the reading is delivered or gets another answer: a rejection held for
        want of an accepted request (gateway.uplinks.http.batch.Run) must not start it again.
        """
        previous, count = self._unclassified.get(key, ("", 0))
        count = count + 1 if previous == text else 1
        if key not in self._unclassified and len(self._unclassified) >= _UNCLASSIFIED_MEMORY:
            self._unclassified.clear()
        self._unclassified[key] = (text, count)
        if count >= UNCLASSIFIED_LIMIT:
            return Verdict.REJECT, f"{text} (the same answer {count} times in a row, none saying to retry)"
        return Verdict.RETRY, text


def _key(run: Run, item: BatchItem) -> _ReadingKey:
    return item.entity_id, run.batch[item.position].seq


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _entity_id(entry: object) -> str:
    """A success entry: the entity id, or (some brokers) an object holding it."""
    if isinstance(entry, dict):
        entry = entry.get("entityId", entry.get("id"))
    return entry if isinstance(entry, str) else ""
