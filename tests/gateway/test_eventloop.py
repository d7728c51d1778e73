"""gateway.eventloop: `edgegw run` runs on uvloop unless EDGEGW_EVENT_LOOP says asyncio."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import uvloop

from gateway.eventloop import ENV, loop_factory


def _loop_type(monkeypatch: pytest.MonkeyPatch, value: str | None) -> type[asyncio.AbstractEventLoop]:
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    loop = loop_factory()()
    try:
        return type(loop)
    finally:
        loop.close()


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert _loop_type(monkeypatch, None) is uvloop.Loop
    assert _loop_type(monkeypatch, "uvloop") is uvloop.Loop
    assert caplog.records == []


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    loop_type = _loop_type(monkeypatch, "asyncio")
    assert issubclass(loop_type, asyncio.BaseEventLoop) and not issubclass(loop_type, uvloop.Loop)


def test_an_unknown_choice_is_named_and_uvloop_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.eventloop"):
        assert _loop_type(monkeypatch, "libuv") is uvloop.Loop
    assert [r.getMessage() for r in caplog.records] == [
        "EDGEGW_EVENT_LOOP='libuv' is neither uvloop nor asyncio: running on uvloop"
    ]


def test_asyncio_where_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an `import uvloop` without the package meets
    with caplog.at_level(logging.WARNING, logger="gateway.eventloop"):
        loop_type = _loop_type(monkeypatch, None)
    assert issubclass(loop_type, asyncio.BaseEventLoop)
    assert [r.getMessage() for r in caplog.records] == ["uvloop is not installed: running on asyncio's own event loop"]
