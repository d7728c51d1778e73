"""The `ngsi-ld` uplink: Readings → `POST /ngsi-ld/v1/entityOperations/upsert?options=update` on an NGSI-LD broker.

Shares the v2 uplink's batch engine (split on 413, bisect on 400, retry on 5xx). What differs: the
@context goes in a Link header or in each entity, a request never holds the same entity twice
(brokers refuse or merge such batches, which would lose the older observation), and a 207
Multi-Status answer is sorted per entity (problems.py): an error about the entity rejects it
(held, like every rejection, until the delivery shows the broker takes our requests), an error about
the broker retries it and stops the batch there, so per-entity order holds. An error that says
neither (no known type, no status: a title, a list of strings, a string, or no result at all for the
entity) is retried, and rejected once the same entity got the same answer UNCLASSIFIED_LIMIT times in
a row, so a broker's unexplained refusal cannot block the lane forever. Any other answer about the
entity (a delivery above all) ends the row, so passing glitches days apart never add up to a dead
letter. The count is the entity's, not a reading's: with `catch_up = "latest-state"` each try sends
its newest reading, and a count per reading would start again with every reading that came meanwhile
and block the lane for as long as the gauge sends. Once a reading is rejected, a newer one of the
entity starts a row of its own: it is not dead-lettered for the older one's answers.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
# Same unclassified answer for the same entity this many times in a row: rejected. At the default
# backoff (1 s doubling to 60 s, full jitter) that is about two minutes of a blocked lane: enough to
# ride out a broker's passing trouble, short enough that the lane moves on.
UNCLASSIFIED_LIMIT = 10
_UNCLASSIFIED_MEMORY = 10_000  # entities remembered; past that the memory starts again


@dataclass(frozen=True, slots=True)
class _Row:
    """An entity's unclassified answers in a row: the answer, how many times, and whether the row rejected the
    reading of buffer seq `seq`: that reading held and sent again stays rejected, and so does an older one of the
    entity; a newer one starts afresh."""

    text: str
    count: int
    rejected: bool = False
    seq: int | None = None


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
        # entity id -> its unclassified answers in a row
        self._unclassified: dict[str, _Row] = {}

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
                    self._unclassified.pop(item.entity_id, None)
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
            if eid in success:
                run.outcomes[item.position] = DELIVERED
                self._unclassified.pop(eid, None)
                continue
            if eid in errors:
                problem = classify(errors[eid])
            else:
                problem = Problem(verdict=Verdict.UNCLASSIFIED, text="no result for this entity in the 207 answer")
            verdict, text = problem.verdict, problem.text
            if verdict is Verdict.UNCLASSIFIED:
                verdict, text = self._repeated(eid, run.batch[item.position].seq, text)
            else:
                self._unclassified.pop(eid, None)  # an answer that says what to do ends the row
            if verdict is Verdict.REJECT:
                run.refuse(item.position, f"{self.name}: {self.broker} refused entity {eid}, got {text}", text)
            else:
                retry_reason = retry_reason or f"{self.broker} could not write entity {eid}, got {text}"
        if retry_reason:
            # a later request could hold a newer reading of the entity to retry: keep per-entity order
            self._retry_later(retry_reason)

    def _repeated(self, entity_id: str, seq: int | None, text: str) -> tuple[Verdict, str]:
        """Retry an unclassified answer about the reading `seq` of `entity_id`; reject it once the entity got the
        same one UNCLASSIFIED_LIMIT times in a row.

        The count goes on until the entity is delivered or gets another answer. After a rejection, that reading
        and any older one of the entity are rejected at once (held for want of an accepted request, see
        gateway.uplinks.http.batch.Run, or promoted by latest-state), and a newer reading starts a row of its own.
        """
        row = self._unclassified.get(entity_id)
        if row is not None and row.rejected and seq is not None and row.seq is not None and seq <= row.seq:
            # that reading held and sent again, or an older one promoted after it (latest-state): rejected with it,
            # or each would start a row of its own and the lane never move
            return (
                Verdict.REJECT,
                f"{text} (the entity got the same answer {row.count} times in a row, none saying to retry)",
            )
        # a newer reading after a rejection starts afresh; readings without a seq (tools) are one, as ever
        newer = row is not None and row.rejected and seq is not None and row.seq is not None and seq > row.seq
        fresh = row is None or row.text != text or newer
        count = 1 if fresh or row is None else row.count + 1
        if row is None and len(self._unclassified) >= _UNCLASSIFIED_MEMORY:
            self._unclassified.clear()
        if count >= UNCLASSIFIED_LIMIT:
            self._unclassified[entity_id] = _Row(text, count, rejected=True, seq=seq)
            return Verdict.REJECT, f"{text} (the same answer {count} times in a row, none saying to retry)"
        self._unclassified[entity_id] = _Row(text, count)
        return Verdict.RETRY, text


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _entity_id(entry: object) -> str:
    """A success entry: the entity id, or (some brokers) an object holding it."""
    if isinstance(entry, dict):
        entry = entry.get("entityId", entry.get("id"))
    return entry if isinstance(entry, str) else ""
