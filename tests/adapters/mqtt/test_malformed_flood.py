"""Malformed messages on many topics at once: at most 20 WARNINGs a minute and one line for the rest.

Regression (review 3, finding 5c): `mqtt_flood.py 20000 'not json'` against `sensors/#` made 9,911 WARNINGs
for 9,911 messages, a first line per new topic; with more topics in play than the 1,024 kept, the ones
that left the table came back as new and it never stopped. Every message is still counted.
"""

from __future__ import annotations

import logging

import pytest

from adapters.mqtt.malformed import PERIOD_S, TOPICS_KEPT, WARNINGS_SAID, WARNINGS_WINDOW_S, MalformedTopics
from gateway.logs import component_logger
from tests.adapters.mqtt.peers import Sink, counter_config, publish, running, wait_for
from tests.support.mosquitto import MosquittoBroker

LOGGER = "tests.adapters.mqtt.malformed_flood"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def example(topic: str) -> str:
    return f"e.g. {topic}: payload is not JSON (invalid at character 0), got '<3 letters> <4 letters>'"


async def test_a_flood_over_new_topics_is_twenty_lines_and_a_summary(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.mqtt.adapter")
    clock = FakeClock()
    flood = [(f"test/dev{i:05d}", b"not json") for i in range(2000)]
    async with running(counter_config(mosquitto_private, "flood"), Sink(), clock=clock) as adapter:
        await publish(mosquitto_private, flood)
        await wait_for(lambda: adapter.received == 2000 and adapter.in_flight == 0, what="the flood acked")
        assert adapter.malformed == {"not_json": 2000}  # every message counted
        said = warnings(caplog)
        assert said == [
            f"test/dev{i:05d}: dropping malformed messages (not_json), {example(f'test/dev{i:05d}')}; counted per reason"
            for i in range(WARNINGS_SAID)
        ]
        clock.now += WARNINGS_WINDOW_S  # the next minute: its first message says what the last one left out
        await publish(mosquitto_private, [("test/late", b"not json")])
        await wait_for(lambda: adapter.received == 2001 and adapter.in_flight == 0, what="the next one")
    assert warnings(caplog)[WARNINGS_SAID:] == [
        "dropping malformed messages on 1980 more topics in the last 60 s, not each said (at most 20 lines in 60 s; "
        "not_json 1980): counted per reason and topic, the worst in diagnostics' malformed_topics",
        f"test/late: dropping malformed messages (not_json), {example('test/late')}; counted per reason",
    ]


@pytest.fixture
def topics(caplog: pytest.LogCaptureFixture) -> tuple[MalformedTopics, FakeClock]:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    return MalformedTopics(component_logger(LOGGER, "sensors"), clock=clock), clock


def test_more_topics_than_kept_stay_within_the_budget_for_good(
    topics: tuple[MalformedTopics, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    """1,500 devices sending junk every minute for an hour: the 476 that leave the table each minute come back
    as new topics, and yet each minute is at most 20 lines and one summary."""
    bad, clock = topics
    devices = TOPICS_KEPT + 476
    per_minute: list[int] = []
    for minute in range(60):
        clock.now = 1000.0 + 60 * minute
        before = len(warnings(caplog))
        for i in range(devices):
            bad.bad(f"sensors/dev{i:05d}/state", "not_json", "sensors/…: payload is not JSON")
        per_minute.append(len(warnings(caplog)) - before)
    assert per_minute[0] == WARNINGS_SAID
    assert max(per_minute) == WARNINGS_SAID + 1  # the summary of the minute before opens each next one
    assert len(warnings(caplog)) <= 60 * (WARNINGS_SAID + 1)


def test_a_topic_left_out_is_said_a_period_on_with_its_count(
    topics: tuple[MalformedTopics, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    bad, clock = topics
    for i in range(WARNINGS_SAID + 1):
        bad.bad(f"s/{i}", "not_json", f"s/{i}: junk")
    assert len(warnings(caplog)) == WARNINGS_SAID  # s/20 left out
    clock.now += 100
    bad.bad("s/20", "wrong_type", "s/20: junk again")  # within its period: counted, not due
    clock.now += PERIOD_S - 100
    bad.bad("s/20", "not_json", "s/20: junk still")
    assert warnings(caplog)[WARNINGS_SAID:] == [
        "dropping malformed messages on 1 more topics in the last 100 s, not each said (at most 20 lines in 60 s; "
        "not_json 1): counted per reason and topic, the worst in diagnostics' malformed_topics",
        "s/20: dropping malformed messages, 3 in 300 s (not_json 2, wrong_type 1), e.g. s/20: junk still; "
        "counted per reason",
    ]
    assert bad.top()["s/20"] == {"malformed": 3, "last_reason": "not_json"}


def test_an_episode_never_said_ends_unsaid(
    topics: tuple[MalformedTopics, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    bad, clock = topics
    for i in range(WARNINGS_SAID + 1):
        bad.bad(f"s/{i}", "not_json", f"s/{i}: junk")
    clock.now += PERIOD_S
    bad.good("s/0")
    bad.good("s/20")
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["s/0: payloads map again"]
    assert "s/20" not in bad.open
