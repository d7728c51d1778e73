"""The adapter against a real aiohttp server on loopback: conditional GET, duplicates, failures, cadence."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.http_poll.adapter import HttpPollAdapter
from adapters.http_poll.config import HttpPollConfig
from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.records import Reading
from gateway.secrets import SecretStore
from tests.adapters.http_poll.peers import DocServer, self_signed, serve, server_tls, wait_for

NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 10:00 JST
LOGGER = "adapters.http_poll.adapter"


def river_doc(*stations: tuple[str, Any, str]) -> bytes:
    return json.dumps(
        {"観測所": [{"観測所番号": code, "水位": level, "観測時刻": at} for code, level, at in stations]},
        ensure_ascii=False,
    ).encode()


def config(url: str, **overrides: Any) -> HttpPollConfig:
    section: dict[str, Any] = {
        "name": "river",
        "type": "http_poll",
        "url": url,
        "interval_s": 0.05,
        "timeout_s": 0.05,
        "mappings": [
            {
                "items": "観測所",
                "entity_id": "urn:ngsi-ld:WaterObserved:{観測所番号}",
                "entity_type": "WaterObserved",
                "null_values": ["欠測"],
                "timestamp": {"path": "観測時刻", "format": "local"},
                "attributes": [{"path": "水位", "name": "waterLevel", "unit": "MTR"}],
            }
        ],
    }
    section.update(overrides)
    return HttpPollConfig.model_validate(section)


class Collector:
    """The gateway's emit as the adapter sees it: resolves once the reading is 'committed'."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)

    def levels(self) -> list[tuple[str, Any, str]]:
        return [(r.entity_id, r.attributes["waterLevel"].value, r.observed_at.isoformat()) for r in self.readings]


@asynccontextmanager
async def running(
    cfg: HttpPollConfig, data_dir: Path | str = "/nonexistent"
) -> AsyncIterator[tuple[HttpPollAdapter, Collector]]:
    adapter = HttpPollAdapter(cfg, AdapterContext(gateway_id="gw1", data_dir=str(data_dir)), clock=lambda: NOW)
    collector = Collector()
    task = asyncio.create_task(adapter.run(collector))
    try:
        yield adapter, collector
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


async def test_changed_observations_are_emitted_and_unchanged_ones_are_not() -> None:
    # a server without ETag or Last-Modified: only the adapter's memory keeps repeats out
    server = DocServer(body=river_doc(("0431", "2.35", "2026/07/01 09:10"), ("0432", 1.02, "2026/07/01 09:10")))
    async with serve(server), running(config(server.url)) as (adapter, got):
        await wait_for(lambda: adapter.duplicates >= 6, what="three repeated documents")
        assert got.levels() == [
            ("urn:ngsi-ld:WaterObserved:0431", 2.35, "2026-07-01T00:10:00+00:00"),
            ("urn:ngsi-ld:WaterObserved:0432", 1.02, "2026-07-01T00:10:00+00:00"),
        ]
        server.body = river_doc(("0431", "2.41", "2026/07/01 09:20"), ("0432", 1.02, "2026/07/01 09:10"))
        await wait_for(lambda: len(got.readings) == 3, what="the new observation")
        polls = adapter.polls
        await wait_for(lambda: adapter.polls >= polls + 3, what="three more polls")
        assert got.levels()[2:] == [("urn:ngsi-ld:WaterObserved:0431", 2.41, "2026-07-01T00:20:00+00:00")]
        # a corrected value for the same time is new; a stale (cached) older observation is not
        server.body = river_doc(("0431", "2.40", "2026/07/01 09:20"), ("0432", 0.99, "2026/07/01 09:00"))
        await wait_for(lambda: adapter.stale >= 1, what="the stale observation")
        await wait_for(lambda: len(got.readings) == 4, what="the correction")
        polls = adapter.polls
        await wait_for(lambda: adapter.polls >= polls + 2, what="two more polls")
        assert got.levels()[3:] == [("urn:ngsi-ld:WaterObserved:0431", 2.40, "2026-07-01T00:20:00+00:00")]
        assert not server.requests[0].headers.keys() & {"If-None-Match", "If-Modified-Since"}
        assert adapter.failed == {} and adapter.malformed == {}


async def test_etag_makes_the_next_poll_conditional_and_304_emits_nothing() -> None:
    server = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10")), etag='"v1"')
    async with serve(server), running(config(server.url)) as (adapter, got):
        await wait_for(lambda: adapter.not_modified >= 3, what="three 304s")
        assert len(got.readings) == 1
        assert "If-None-Match" not in server.requests[0].headers
        assert [r.headers.get("If-None-Match") for r in server.requests[1:4]] == ['"v1"'] * 3
        assert adapter.duplicates == 0  # a 304 is not even parsed
        server.body, server.etag = river_doc(("0431", 2.50, "2026/07/01 09:20")), '"v2"'
        await wait_for(lambda: len(got.readings) == 2, what="the changed document")
        n = len(server.requests)
        await wait_for(server.wait_requests(n + 1), what="the next poll")
        assert server.requests[n].headers.get("If-None-Match") == '"v2"'
        assert got.levels()[1] == ("urn:ngsi-ld:WaterObserved:0431", 2.5, "2026-07-01T00:20:00+00:00")


async def test_last_modified_makes_the_next_poll_conditional() -> None:
    stamp = "Wed, 01 Jul 2026 00:10:05 GMT"
    server = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10")), last_modified=stamp)
    async with serve(server), running(config(server.url)) as (adapter, got):
        await wait_for(lambda: adapter.not_modified >= 2, what="two 304s")
        assert [(r.headers.get("If-Modified-Since"), r.headers.get("If-None-Match")) for r in server.requests[1:3]] == [
            (stamp, None),
            (stamp, None),
        ]
        assert len(got.readings) == 1


async def test_server_errors_are_counted_logged_once_and_polling_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server = DocServer(body=b"upstream database unavailable", status=503, content_type="text/plain")
    async with serve(server), running(config(server.url)) as (adapter, got):
        await wait_for(lambda: adapter.failed["http_5xx"] >= 4, what="four failed polls")
        assert warnings_of(caplog) == [
            f"polling {server.url} fails (http_5xx): HTTP 503 Service Unavailable, body 'upstream database "
            "unavailable'; retrying every 0.05s"
        ]
        server.status, server.content_type = 200, "application/json"
        server.body = river_doc(("0431", 2.35, "2026/07/01 09:10"))
        await wait_for(lambda: len(got.readings) == 1, what="recovery")
        infos = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
        assert infos[-1] == f"polling {server.url} works again"
        assert len(warnings_of(caplog)) == 1


async def test_connection_refused_is_counted_and_polling_continues(caplog: pytest.LogCaptureFixture) -> None:
    server = DocServer()
    async with serve(server):
        url = server.url  # the port is closed after this block
    async with running(config(url)) as (adapter, _got):
        await wait_for(lambda: adapter.failed["connection"] >= 3, what="three refused connections")
    assert len(warnings_of(caplog)) == 1
    assert warnings_of(caplog)[0].startswith(f"polling {url} fails (connection): ClientConnectorError: ")


async def test_malformed_documents_are_counted_by_reason_and_the_adapter_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server = DocServer(
        body=b"<html><body>\xe3\x83\xa1\xe3\x83\xb3\xe3\x83\x86\xe3\x83\x8a\xe3\x83\xb3\xe3\x82\xb9\xe4\xb8\xad</body></html>"
    )
    async with serve(server), running(config(server.url)) as (adapter, got):
        await wait_for(lambda: adapter.malformed["not_json"] >= 3, what="three non-JSON documents")
        server.body = json.dumps({"観測所": {"0431": 2.35}}, ensure_ascii=False).encode()
        await wait_for(lambda: adapter.malformed["wrong_shape"] >= 2, what="two wrongly shaped documents")
        server.body = river_doc(
            ("0431", 2.35, "2026/07/01 09:10"),
            ("0432", "欠測", "2026/07/01 09:10"),
            ("0433", 1.5, "2026/07/01 9:10 頃"),
        )
        await wait_for(lambda: adapter.malformed["bad_timestamp"] >= 2, what="an item with a bad time")
        assert got.levels() == [("urn:ngsi-ld:WaterObserved:0431", 2.35, "2026-07-01T00:10:00+00:00")]
        assert adapter.malformed["missing_field"] >= 2
        server.body = river_doc(("0431", 2.36, "2026/07/01 09:20"))
        await wait_for(lambda: len(got.readings) == 2, what="a clean document")
        await wait_for(
            lambda: any(r.getMessage() == "documents map cleanly again" for r in caplog.records),
            what="the recovery line",
        )
    # values masked, structure kept (they may be personal data: adapters.jsonmap.errors)
    river_start = (
        '\'{"観測所": [{"観測所番号": "<4 digits>", "水位": <1 digit>.<2 digits>, "観測時刻": '
        '"<4 digits>/<2 digits>/<2 digits> <2 digits>:<2 digits>"}, {"観測所番号": "<4 digits>", "水位": '
        '"<2 letters>", "観測時刻": "<4 digits>/...\''
    )
    assert warnings_of(caplog) == [
        "dropping malformed input (not_json): document: is not JSON (invalid at character 0), got "
        "'<html><body><7 letters></body></html>'; document starts '<html><body><7 letters></body></html>'",
        "dropping malformed input (wrong_shape): 観測所: must be a list of items, got dict {'<4 digits>': <1 digit>.<2 "
        'digits>}; document starts \'{"観測所": {"<4 digits>": <1 digit>.<2 digits>}}\'',
        "dropping malformed input (missing_field): 観測所[1].水位 (attribute waterLevel): is missing, got '欠測'; "
        f"document starts {river_start}",
        "dropping malformed input (bad_timestamp): 観測所[2].観測時刻 (timestamp): must be a local time like "
        "2026/07/01 09:10, got '<4 digits>/<2 digits>/<2 digits> <1 digit>:<2 digits> <1 letter>'; document starts "
        f"{river_start}",
    ]
    debug = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.DEBUG]
    assert sum(m.startswith("dropped (not_json)") for m in debug) >= 3
    # what status.json gets (through the supervisor): the counters, malformed by reason
    diagnostics = adapter.diagnostics()
    assert (diagnostics["emitted"], sorted(diagnostics["malformed"])) == (
        2,
        ["bad_timestamp", "missing_field", "not_json", "wrong_shape"],
    )


async def test_slow_responses_time_out_and_the_next_poll_still_happens() -> None:
    server = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10")), delay_s=0.3)
    cfg = config("http://127.0.0.1:1/x", interval_s=0.1, timeout_s=0.05)
    async with serve(server):
        cfg = cfg.model_copy(update={"url": server.url})
        async with running(cfg) as (adapter, got):
            await wait_for(lambda: adapter.failed["timeout"] >= 3, what="three timeouts")
            assert len(server.requests) >= 3 and got.readings == []
            server.delay_s = 0
            await wait_for(lambda: len(got.readings) == 1, what="a prompt answer")


async def test_polls_keep_a_fixed_cadence_one_at_a_time() -> None:
    # each answer takes 30 ms: sleeping the interval after each poll would give 80 ms periods
    server = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10")), delay_s=0.03)
    async with serve(server), running(config(server.url)) as (_adapter, _got):
        await wait_for(server.wait_requests(21), what="21 polls")
    times = [r.at for r in server.requests[:21]]
    period = (times[20] - times[0]) / 20
    assert 0.045 < period < 0.065, period
    assert server.max_in_flight == 1


async def test_secret_header_and_env_parameter_are_sent_and_kept_out_of_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(tmp_path).set("portal-key", "k3y-0123456789")
    monkeypatch.setenv("RIVER_APP_ID", "app-98765")
    server = DocServer(body=b'{"error": "key k3y-0123456789 is not allowed"}', status=403)
    cfg_url = "http://127.0.0.1:1/x"
    async with serve(server):
        cfg = config(
            cfg_url,
            headers={"X-Api-Key": "secret:portal-key", "Accept": "application/json"},
            params={"appid": "env:RIVER_APP_ID", "pref": "43"},
        ).model_copy(update={"url": server.url})
        async with running(cfg, tmp_path) as (adapter, _got):
            await wait_for(lambda: adapter.failed["http_status"] >= 2, what="two refusals")
    first = server.requests[0]
    assert (first.headers["X-Api-Key"], first.headers["Accept"]) == ("k3y-0123456789", "application/json")
    assert first.query == {"appid": "app-98765", "pref": "43"}
    assert warnings_of(caplog) == [
        f'polling {server.url} fails (http_status): HTTP 403 Forbidden, body \'{{"error": "key *** is not '
        "allowed\"}'; retrying every 0.05s"
    ]
    assert all("k3y-0123456789" not in r.getMessage() and "app-98765" not in r.getMessage() for r in caplog.records)


async def test_shift_jis_documents_are_decoded_by_their_charset() -> None:
    body = json.dumps(
        {"観測所": [{"観測所番号": "0431", "水位": 2.35, "観測時刻": "2026年7月1日 9時10分"}]}, ensure_ascii=False
    ).encode("cp932")
    server = DocServer(body=body, charset="Shift_JIS")
    async with serve(server), running(config(server.url)) as (_adapter, got):
        await wait_for(lambda: len(got.readings) == 1, what="the reading")
    assert got.levels() == [("urn:ngsi-ld:WaterObserved:0431", 2.35, "2026-07-01T00:10:00+00:00")]


async def test_readings_the_buffer_refuses_are_counted_and_polling_goes_on() -> None:
    server = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10"), ("0432", 1.0, "2026/07/01 09:10")))
    stored: list[str] = []

    async def picky_emit(reading: Reading) -> None:
        if reading.entity_id.endswith("0432"):
            raise ReadingError(f"{reading.entity_id}.waterLevel: refused by the test buffer")
        stored.append(reading.entity_id)

    async with serve(server):
        adapter = HttpPollAdapter(
            config(server.url), AdapterContext(gateway_id="gw1", data_dir="/x"), clock=lambda: NOW
        )
        task = asyncio.create_task(adapter.run(picky_emit))
        await wait_for(lambda: adapter.malformed["rejected"] >= 3, what="three refusals")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # the accepted one is remembered and sent once; the refused one is tried again with each document
    assert stored == ["urn:ngsi-ld:WaterObserved:0431"]
    assert adapter.emitted == 1


async def test_https_with_a_private_ca_and_a_refused_certificate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed(tmp_path)
    server = DocServer(body=river_doc(("0431", 2.35, "2026/07/01 09:10")))
    async with serve(server, ssl_context=server_tls(cert, key)):
        # a TLS handshake on a loaded CI machine can outlast the 50 ms the shared config allows
        slow_ok = {"interval_s": 0.3, "timeout_s": 0.3}
        trusted = config(server.url, tls={"ca_file": str(cert)}, **slow_ok)
        async with running(trusted) as (adapter, got):
            await wait_for(lambda: len(got.readings) == 1, what="a reading over https")
        untrusted = config(server.url, **slow_ok)  # the system CAs do not know this certificate
        async with running(untrusted) as (adapter, got):
            await wait_for(lambda: adapter.failed["tls"] >= 2, what="two refused handshakes")
        assert got.readings == []
        assert "CERTIFICATE_VERIFY_FAILED" in warnings_of(caplog)[0]
        unchecked = config(server.url, tls={"verify": "off"}, **slow_ok)
        async with running(unchecked) as (adapter, got):
            await wait_for(lambda: len(got.readings) == 1, what="a reading without checks")
        assert warnings_of(caplog)[-1] == f"TLS certificate checks are off for {server.url}; use ca_file instead"


async def test_documents_over_max_bytes_are_refused() -> None:
    padding = "x" * 2000
    server = DocServer(body=json.dumps({"観測所": [], "padding": padding}).encode())
    async with serve(server), running(config(server.url, max_bytes=1024)) as (adapter, got):
        await wait_for(lambda: adapter.failed["too_large"] >= 2, what="two refused documents")
        server.body = river_doc(("0431", 2.35, "2026/07/01 09:10"))
        await wait_for(lambda: len(got.readings) == 1, what="a small document")


CARD, IDM, MAC = "0012345678901", "01 2E 44 55 66 77 88 99", "AABBCCDDEEFF"


def personal_data_in(text: str) -> list[str]:
    """The card, 3+ bytes of the IDm or 6+ characters of the MAC found in `text` (any case)."""
    idm = IDM.split()
    pieces = (
        {CARD}
        | {sep.join(idm[i : i + n]) for sep in (" ", "") for n in range(3, 9) for i in range(9 - n)}
        | {MAC[i : i + n] for n in range(6, 13) for i in range(13 - n)}
    )
    return sorted(p for p in pieces if p.lower() in text.lower())


async def test_malformed_documents_are_logged_by_shape_without_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    gate = config(
        "http://127.0.0.1:1/x",
        mappings=[
            {
                "entity_id": "urn:ngsi-ld:Device:gate-{reader}",
                "entity_type": "Device",
                "attributes": [
                    {"path": "card", "name": "cardRead", "type": "Text"},
                    {"path": "mac", "name": "macAddress", "type": "Text", "missing": "skip"},
                ],
            }
        ],
    )
    server = DocServer(body=b'{"card":"0012345678901","mac":"AABBCCDDEEFF",}')
    last_errors: list[str] = []
    async with serve(server), running(gate.model_copy(update={"url": server.url})) as (adapter, _got):
        await wait_for(lambda: adapter.malformed["not_json"] >= 1, what="the document that is not JSON")
        last_errors.append(adapter.diagnostics()["last_error"])
        server.body = b'[{"card":"0012345678901"}]'
        await wait_for(lambda: adapter.malformed["wrong_shape"] >= 1, what="the list instead of an object")
        last_errors.append(adapter.diagnostics()["last_error"])
        server.body = b'{"reader":"2f","card":{"idm":"01 2E 44 55 66 77 88 99"}}'
        await wait_for(lambda: adapter.malformed["wrong_type"] >= 1, what="the object instead of a string")
        last_errors.append(adapter.diagnostics()["last_error"])
    assert last_errors == [
        # the whole document is masked, then cut around the error
        'not_json: document: is not JSON (invalid at character 44), got \'{"card":"<13 digits>","mac":"<12 letters>",}\'',
        "wrong_shape: document: must be a JSON object (one item), got list [{'card': '<13 digits>'}]",
        "wrong_type: card (attribute cardRead): must be a string, got dict {'idm': '<2 digits> <2 chars> <2 digits> "
        "<2 digits> <2 digits> <2 digits> ...",
    ]
    assert warnings_of(caplog) == [
        f"dropping malformed input ({error.replace(': ', '): ', 1)}; document starts {start}"
        for error, start in zip(
            last_errors,
            [
                '\'{"card":"<13 digits>","mac":"<12 letters>",}\'',
                '\'[{"card":"<13 digits>"}]\'',
                '\'{"reader":"<2 chars>","card":{"idm":"<2 digits> <2 chars> <2 digits> <2 digits> '
                "<2 digits> <2 digits> <2 digits> <2 digits>\"}}'",
            ],
            strict=True,
        )
    ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert personal_data_in(logged + "\n".join(last_errors)) == []


async def test_an_error_page_is_masked_before_it_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    # cut first, the MAC would end as aa:bb:cc:dd:e, which no pattern recognises, and show in clear
    body = ("x" * 186 + " aa:bb:cc:dd:ee:ff taro.yamada@example.jp").encode()
    server = DocServer(body=body, status=500)
    async with serve(server), running(config(server.url)) as (adapter, _got):
        await wait_for(lambda: adapter.failed["http_5xx"] >= 1, what="the error page")
        last_error = adapter.diagnostics()["last_error"]
    assert last_error == f"http_5xx: HTTP 500 Internal Server Error, body '{'x' * 186} aa:bb:cc:*** ...'"
    assert warnings_of(caplog) == [
        f"polling {server.url} fails (http_5xx): {last_error.removeprefix('http_5xx: ')}; retrying every 0.05s"
    ]
    assert all("dd:e" not in r.getMessage() and "taro" not in r.getMessage() for r in caplog.records)
