"""Malformed payloads are logged by shape, never by value: card numbers, IDms and MACs stay out of every line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mqtt.config import Subscription
from adapters.mqtt.malformed import MalformedTopics
from adapters.mqtt.mapping import Mapper, MappingError
from gateway.logs import RingHandler, component_logger
from tests.adapters.mqtt.casefiles import load_case

NOW = datetime(2026, 7, 1, tzinfo=UTC)
TOPIC = "library/2f/gate"
CARD = "0012345678901"
IDM = "01 2E 44 55 66 77 88 99"
MAC = "AABBCCDDEEFF"
CASE = load_case("malformed_payload_personal_data")
GATE = Mapper(CASE.config.subscriptions, adapter=CASE.config.name)


def personal_pieces() -> set[str]:
    """Every piece of the reproducers' personal data that would identify it: the card, 3+ bytes of the IDm
    (spaced or not), 6+ characters of the MAC (bare or with colons)."""
    idm = IDM.split()
    colon_mac = ":".join(MAC[i : i + 2] for i in range(0, 12, 2))
    return (
        {CARD}
        | {" ".join(idm[i : i + n]) for n in range(3, 9) for i in range(9 - n)}
        | {"".join(idm[i : i + n]) for n in range(3, 9) for i in range(9 - n)}
        | {MAC[i : i + n] for n in range(6, 13) for i in range(13 - n)}
        | {colon_mac[i : i + n] for n in range(6, 18) for i in range(18 - n)}
    )


PIECES = {p.lower() for p in personal_pieces()}


def leaked(text: str) -> list[str]:
    low = text.lower()
    return sorted(p for p in PIECES if p in low)


@contextmanager
def ring() -> Iterator[tuple[MalformedTopics, RingHandler]]:
    """MalformedTopics logging into a RingHandler: the records as the web UI's log page gets them."""
    logger = logging.getLogger("tests.adapters.mqtt.personal_data")
    handler = RingHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield MalformedTopics(component_logger(logger.name, CASE.config.name)), handler
    finally:
        logger.removeHandler(handler)


def map_and_log(topics: MalformedTopics, topic: str, payload: bytes) -> str | None:
    """The MappingError's text (also handed to the adapter's malformed log), or None if the payload mapped."""
    try:
        GATE.map(topic, payload, NOW)
    except MappingError as exc:
        topics.bad(exc.topic, exc.reason.value, str(exc))
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("payload", "names_the_problem"),
    [
        # trailing comma: not JSON; the old excerpt quoted 40 bytes and cut the MAC to AABBCCDDE
        (
            b'{"card":"0012345678901","mac":"AABBCCDDEEFF",}',
            "library/2f/gate: payload is not JSON (invalid at character 44), got "
            '\'{"card":"<13 digits>","mac":"<12 letters>",}\'',
        ),
        (
            b'[{"card":"0012345678901"}]',
            "library/2f/gate: payload must be a JSON object, got list [{'card': '<13 digits>'}]",
        ),
        (
            b'{"card":{"idm":"01 2E 44 55 66 77 88 99"}}',
            "library/2f/gate: payload.card (attribute cardRead) must be a string, got dict {'idm': '<2 digits> "
            "<2 chars> <2 digits> <2 digits> <2 digits> <2 digits> ...",
        ),
        # the old 40-byte cut left aa:bb:cc:dd:ee, which no MAC pattern recognises
        (
            b'{"reader":"gate-1","mac":"aa:bb:cc:dd:ee:ff","card":1',
            "library/2f/gate: payload is not JSON (invalid at character 53), got "
            '\'...<2 letters>:<2 letters>:<2 letters>:<2 letters>:<2 letters>","card":<1 digit>\'',
        ),
    ],
)
def test_the_reviews_reproducers_log_where_and_what_shape_but_no_personal_data(
    payload: bytes, names_the_problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ring() as (topics, handler):
        message = map_and_log(topics, TOPIC, payload)
    assert message == names_the_problem
    lines = [line["message"] for line in handler.lines()]
    assert [r.getMessage() for r in caplog.records] == lines  # the journal's records, as the ring's
    assert lines == [
        f"dropped a message ({'not_json' if 'not JSON' in message else 'wrong_type'}): {message}",
        f"{TOPIC}: dropping malformed messages ({'not_json' if 'not JSON' in message else 'wrong_type'}), "
        f"e.g. {message}; counted per reason",
    ]
    assert leaked("\n".join(lines)) == []


def test_a_second_warning_after_a_period_quotes_the_masked_example_too() -> None:
    clock = [1000.0]
    logger = logging.getLogger("tests.adapters.mqtt.personal_data")
    handler = RingHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        topics = MalformedTopics(component_logger(logger.name, "library-gate"), clock=lambda: clock[0])
        for payload in (b'{"card":"0012345678901",}', b'{"mac":"AABBCCDDEEFF"'):
            map_and_log(topics, TOPIC, payload)
            clock[0] += 301
    finally:
        logger.removeHandler(handler)
    warnings = [line["message"] for line in handler.lines(level="warning")]
    assert len(warnings) == 2 and warnings[1].startswith(f"{TOPIC}: still dropping malformed messages, 1 since")
    assert leaked("\n".join(warnings)) == []


# --- property: a card number anywhere in a payload, valid or not, never reaches the log -----------------

SUBSCRIPTIONS = [
    Subscription.model_validate(
        {
            "topic": "library/+/gate",
            "entity_id": "urn:ngsi-ld:Device:gate-{payload.reader}",
            "entity_type": "Device",
            "timestamp": {"path": "t", "format": "iso8601"},
            "location": {"lat_path": "lat", "lon_path": "lon", "missing": "skip"},
            "attributes": [
                {"path": "card", "name": "cardRead", "type": "Text"},
                {"path": "level", "name": "level", "scale": 0.1, "missing": "skip"},
                {"path": "ok", "name": "ok", "type": "Boolean", "missing": "skip"},
                {"path": "seen", "name": "seen", "type": "DateTime", "missing": "skip"},
                {"path": "extra", "name": "extra", "type": "StructuredValue", "missing": "skip"},
                {"path": "tag.idm", "name": "idm", "type": "Text", "missing": "skip"},
            ],
        }
    ),
    Subscription.model_validate(
        {
            "topic": "library/#",
            "entity_id": "urn:ngsi-ld:Device:{topic[1]}",
            "entity_type": "Device",
            "timestamp": {"path": "ts", "format": "epoch_ms", "missing": "arrival"},
            "attributes": [{"path": "mac", "name": "macAddress", "type": "Text"}],
        }
    ),
]
MAPPER = Mapper(SUBSCRIPTIONS, adapter="library-gate")
KEYS = ["card", "level", "ok", "seen", "extra", "t", "ts", "lat", "lon", "reader", "mac", "idm", "tag", "note"]
OTHER: st.SearchStrategy[object] = st.sampled_from(
    [None, True, 1, 23.5, "gate-1", "2026-07-01T09:00:00+09:00", "", "AB", [], {}, "2026/07/01 25:00", "欠測"]
)
PLACEHOLDER = "\x00value\x00"


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bytes, str]:
    """A JSON-ish payload holding `digits` as a value somewhere: quoted or bare (bare with a leading 0 is
    invalid JSON), at the top, in an object or in a list, then perhaps broken."""
    digits = draw(st.text("0123456789", min_size=8, max_size=20))
    doc: dict[str, object] = draw(st.dictionaries(st.sampled_from(KEYS), OTHER, max_size=6))
    where = draw(st.sampled_from(["top", "object", "list"]))
    key = draw(st.sampled_from(KEYS))
    slot = {"top": PLACEHOLDER, "object": {"idm": PLACEHOLDER}, "list": [1, PLACEHOLDER]}[where]
    doc[key] = slot
    value = f'"{digits}"' if draw(st.booleans()) else digits
    text = orjson.dumps(doc).decode().replace(orjson.dumps(PLACEHOLDER).decode(), value)
    breakage = draw(st.sampled_from(["none", "trailing comma", "cut", "insert", "single quotes", "list"]))
    if breakage == "trailing comma":
        text = text[:-1] + ",}"
    elif breakage == "cut":
        text = text[: draw(st.integers(1, len(text)))]
    elif breakage == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([",", ":", "}", "{", '"', "x", "\x01", "\\"])) + text[at:]
    elif breakage == "single quotes":
        text = text.replace('"', "'")
    elif breakage == "list":
        text = f"[{text}]"
    return text.encode(), digits


@settings(max_examples=300, deadline=None)
@given(case=payloads())
def test_a_card_number_anywhere_in_a_payload_never_reaches_the_log(case: tuple[bytes, str]) -> None:
    payload, digits = case
    logger = logging.getLogger("tests.adapters.mqtt.personal_data.property")
    handler = RingHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        topics = MalformedTopics(component_logger(logger.name, "library-gate"))
        try:
            MAPPER.map(TOPIC, payload, NOW)
        except MappingError as exc:
            topics.bad(exc.topic, exc.reason.value, str(exc))
            assert digits not in str(exc)  # noqa: PT017 -- mapping may succeed: pytest.raises cannot say "may raise"
            assert str(exc).startswith(f"{TOPIC}: ")  # noqa: PT017 -- as above
    finally:
        logger.removeHandler(handler)
    logged = "\n".join(line["message"] for line in handler.lines())
    assert digits not in logged
    assert re.search(r"\d{8}", logged) is None  # nor any 8 digits of it (a payload cut inside the number)
