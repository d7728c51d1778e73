"""NGSI-LD 207 Multi-Status answers in every shape brokers send, against the double: an error about the
entity rejects it, one about the broker retries it, and one that says neither can never block a lane."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Fault, Outcome, Status
from gateway.uplinks.ngsi_ld.problems import (
    MAX_TEXT,
    REJECT_TYPES,
    RETRY_TYPES,
    Verdict,
    classify,
)
from gateway.uplinks.ngsi_ld.uplink import (
    UNCLASSIFIED_LIMIT,
    NgsiLdConfig,
    NgsiLdUplink,
)
from tests.support.orion_double import OrionDouble

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
G2 = "urn:ngsi-ld:WaterObserved:g2"


def reading(entity: str, level: float) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
        observed_at=T0 + timedelta(minutes=level),
        source=Source(adapter="gauge"),
    )


BATCH = [reading("g1", 1.0), reading("g2", 2.0), reading("g3", 3.0)]


def make_uplink(url: str, tmp_path: Path) -> NgsiLdUplink:
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": url, "tenant": "kumamoto"}
    return NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def deliver_times(up: NgsiLdUplink, times: int) -> list[list[Outcome]]:
    await up.start()
    try:
        return [await up.deliver(BATCH) for _ in range(times)]
    finally:
        await up.close()


def refused(text: str) -> str:
    return f"ld-main: the NGSI-LD broker refused entity {G2}, got {text}"


def retried(text: str) -> str:
    return f"the NGSI-LD broker could not write entity {G2}, got {text}"


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            {"type": ERRORS + "BadRequestData", "title": "Invalid attribute value"},
            "BadRequestData: Invalid attribute value",
        ),
        ({"type": ERRORS + "InvalidRequest"}, "InvalidRequest"),
        (
            {"type": "OperationNotSupported", "detail": "upsert of a Relationship"},
            "OperationNotSupported: upsert of a Relationship",
        ),
        # Orion-LD's shape: type, title, detail and status
        (
            {"type": ERRORS + "BadRequestData", "title": "Not a JSON object", "detail": "waterLevel", "status": 400},
            "HTTP 400 BadRequestData: Not a JSON object - waterLevel",
        ),
    ],
    ids=["type-and-title", "type-only", "bare-type-with-detail", "orion-ld"],
)
async def test_an_error_about_the_entity_rejects_it_at_once(
    orion_double: OrionDouble, tmp_path: Path, error: dict[str, Any], text: str
) -> None:
    orion_double.ld_entity_error(G2, error)
    [outcomes] = await deliver_times(make_uplink(orion_double.url, tmp_path), 1)
    assert outcomes == [DELIVERED, Outcome(Status.REJECTED, refused(text)), DELIVERED]


@pytest.mark.parametrize(
    ("error", "text"),
    [
        ({"type": ERRORS + "InternalError", "title": "Database error"}, "InternalError: Database error"),
        (
            {"type": ERRORS + "LdContextNotAvailable", "title": "cannot fetch the @context"},
            "LdContextNotAvailable: cannot fetch the @context",
        ),
        # a type about the request wins over a 4xx status
        (
            {"type": "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant ", "title": "no tenant", "status": 404},
            "HTTP 404 NonexistentTenant: no tenant",
        ),
        ({"title": "Service Unavailable", "status": "503"}, "HTTP 503: Service Unavailable"),
    ],
    ids=["internal-error", "context-not-available", "nonexistent-tenant", "status-as-text"],
)
async def test_an_error_about_the_broker_retries_the_entity_every_time(
    orion_double: OrionDouble, tmp_path: Path, error: dict[str, Any], text: str, caplog: pytest.LogCaptureFixture
) -> None:
    orion_double.ld_entity_error(G2, error)
    runs = await deliver_times(make_uplink(orion_double.url, tmp_path), UNCLASSIFIED_LIMIT + 1)
    for outcomes in runs:
        assert outcomes == [DELIVERED, Outcome(Status.RETRY, retried(text)), DELIVERED]
    # the broker answers, so it is not "down": no WARNING per retry (the delivery loop says it once)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("error", "text"),
    [
        ({"title": "Attribute value not allowed"}, "Attribute value not allowed"),
        (["Target entity urn:ngsi-ld:Device:x does not exist"], "Target entity urn:ngsi-ld:Device:x does not exist"),
        (["Invalid entity", "no type"], "Invalid entity; no type"),
        ("Unknown error while creating entity", "Unknown error while creating entity"),
        (None, "an error without a description, got None"),
        ({}, "{}"),
    ],
    ids=["title-only", "list-of-one-string", "list-of-strings", "string", "null", "empty-object"],
)
async def test_an_unclassified_error_is_retried_then_rejected_saying_why(
    orion_double: OrionDouble, tmp_path: Path, error: Any, text: str
) -> None:
    orion_double.ld_entity_error(G2, error)
    runs = await deliver_times(make_uplink(orion_double.url, tmp_path), UNCLASSIFIED_LIMIT)
    for outcomes in runs[:-1]:
        assert outcomes == [DELIVERED, Outcome(Status.RETRY, retried(text)), DELIVERED]
    assert runs[-1] == [
        DELIVERED,
        Outcome(
            Status.REJECTED,
            refused(f"{text} (the same answer {UNCLASSIFIED_LIMIT} times in a row, none saying to retry)"),
        ),
        DELIVERED,
    ]


async def test_an_entity_missing_from_the_answer_is_retried_then_rejected(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.leave_out_ld_entity(G2)
    runs = await deliver_times(make_uplink(orion_double.url, tmp_path), UNCLASSIFIED_LIMIT)
    assert [r.status for r in orion_double.requests] == [207] * UNCLASSIFIED_LIMIT
    assert runs[0][1] == Outcome(Status.RETRY, retried("no result for this entity in the 207 answer"))
    assert runs[-1][1] == Outcome(
        Status.REJECTED,
        refused(
            f"no result for this entity in the 207 answer (the same answer {UNCLASSIFIED_LIMIT} times in a row, "
            "none saying to retry)"
        ),
    )


async def test_a_different_answer_starts_the_count_again(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        orion_double.ld_entity_error(G2, "first answer")
        for _ in range(UNCLASSIFIED_LIMIT - 1):
            assert (await up.deliver(BATCH))[1].status is Status.RETRY
        orion_double.ld_entity_error(G2, "second answer")
        for _ in range(UNCLASSIFIED_LIMIT - 1):
            assert (await up.deliver(BATCH))[1].status is Status.RETRY
        assert (await up.deliver(BATCH))[1].status is Status.REJECTED
    finally:
        await up.close()


async def test_a_207_refusing_every_entity_vouches_for_nothing(orion_double: OrionDouble, tmp_path: Path) -> None:
    for r in BATCH:
        orion_double.ld_entity_error(r.entity_id, {"type": ERRORS + "BadRequestData", "title": "Invalid entity"})
    [outcomes] = await deliver_times(make_uplink(orion_double.url, tmp_path), 1)
    assert {(o.status, o.fault) for o in outcomes} == {(Status.RETRY, Fault.CONFIGURATION)}


async def test_a_207_body_that_is_no_batch_result_is_retried_with_an_error(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.fail(207, body=["not", "a", "batch", "result"], count=1)
    [outcomes] = await deliver_times(make_uplink(orion_double.url, tmp_path), 1)
    assert {(o.status, o.fault) for o in outcomes} == {(Status.RETRY, Fault.CONFIGURATION)}
    assert outcomes[0].reason.startswith("the NGSI-LD broker answered 207 with a body that is not a batch result, got ")


# ---- the classifier alone --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=400),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
error_types = st.sampled_from([*sorted(REJECT_TYPES | RETRY_TYPES), "about:blank", "Whatever"])


@given(json_values)
def test_classify_takes_any_json_and_keeps_the_text_short(error: Any) -> None:
    problem = classify(error)
    assert isinstance(problem.verdict, Verdict)
    assert 0 < len(problem.text) <= MAX_TEXT


@given(
    kind=error_types,
    prefix=st.sampled_from(["", ERRORS, "http://uri.etsi.org/ngsi-ld/errors/"]),
    status=st.none() | st.integers(100, 599),
    rest=st.dictionaries(st.sampled_from(["title", "detail"]), st.text()),
)
def test_a_known_type_decides_else_the_status_else_nothing(
    kind: str, prefix: str, status: int | None, rest: dict[str, str]
) -> None:
    error: dict[str, Any] = {"type": prefix + kind, **rest}
    if status is not None:
        error["status"] = status
    verdict = classify(error).verdict
    if kind in REJECT_TYPES:
        assert verdict is Verdict.REJECT
    elif kind in RETRY_TYPES:
        assert verdict is Verdict.RETRY
    elif status is None:
        assert verdict is Verdict.UNCLASSIFIED
    else:
        assert verdict is (
            Verdict.REJECT if 400 <= status < 500 and status not in (401, 403, 408, 429) else Verdict.RETRY
        )


async def test_an_unclassified_rejection_held_for_want_of_an_accepted_request_is_not_counted_again(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.ld_entity_error(G2, "Unknown error while creating entity")
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        alone = [await up.deliver([BATCH[1]]) for _ in range(UNCLASSIFIED_LIMIT)]
        with_others = await up.deliver(BATCH)
    finally:
        await up.close()
    # alone, nothing vouches for the request: held and retried, the last time as a configuration problem
    assert [o[0].fault for o in alone] == [Fault.TRANSIENT] * (UNCLASSIFIED_LIMIT - 1) + [Fault.CONFIGURATION]
    assert all(o[0].status is Status.RETRY for o in alone)
    # with another entity taken, the count carried on: rejected at once
    assert [o.status for o in with_others] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
    assert with_others[1].reason == refused(
        f"Unknown error while creating entity (the same answer {UNCLASSIFIED_LIMIT + 1} times in a row, none saying to retry)"
    )
