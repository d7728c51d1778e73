"""The access log of a flood of refused requests is as short as the spell's own lines: a refusal an open spell
counted is logged at DEBUG, its first (and anything not refused) as before.

Review F1: 300 POST /login from one address gave 295 journal lines `POST /login 429`, 200 forged POST /logout
199 lines `POST /logout 403`, from the access log alone, after the spells had made their own lines few.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from gateway.web import refusals
from gateway.web.app import build_app
from gateway.web.cli import AccessLogger
from gateway.web.config import WebConfig
from tests.web.conftest import Clock, WebEnv, csrf_token, make_services, new_client

FLOOD = 40
ALLOWED = 3


async def start(tmp_path: Path, config: WebConfig | None = None, *, sweep_every_s: float | None = None) -> WebEnv:
    """The UI as `edgegw web` serves it: its own access logger (conftest's server keeps aiohttp's); its sweep of
    ended spells every `sweep_every_s` real seconds instead of a window's."""
    clock = Clock()
    services = make_services(tmp_path, clock, config)
    app = build_app(services, strict_i18n=True)
    if sweep_every_s is not None:
        app[refusals.WATCHED].every_s = sweep_every_s
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger)
    client = await new_client(server)
    return WebEnv(services=services, clock=clock, client=client, app=app, server=server, state_dir=tmp_path / "web")


async def stop(env: WebEnv) -> None:
    """The server's cleanup, which waits for the access log of every request answered."""
    await env.client.close()
    await env.services.control.close()
    await env.services.buffer.close()


def access_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiohttp.access" and r.levelno == level]


def line_of(message: str) -> str:
    """The access line without its address and time: "POST /login 429"."""
    return " ".join(message.split()[1:4])


async def test_a_throttled_flood_is_one_access_line_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    env = await start(tmp_path, WebConfig(address_attempts_per_minute=ALLOWED))
    token = await csrf_token(env.client)
    form = {"csrf_token": token, "name": "admin", "password": "wrong guess 123456"}
    statuses = [(await env.client.post("/login", data=form)).status for _ in range(ALLOWED + FLOOD)]
    assert statuses == [401] * ALLOWED + [429] * FLOOD
    await stop(env)
    info = [line_of(m) for m in access_lines(caplog, logging.INFO)]
    # the tries let through and the refusal that opened the spell, as before; the rest counted
    assert info == ["POST /login 401"] * ALLOWED + ["POST /login 429"]
    debug = [line_of(m) for m in access_lines(caplog, logging.DEBUG)]
    assert debug.count("POST /login 429") == FLOOD - 1


async def test_a_forged_logout_flood_is_one_access_line_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    env = await start(tmp_path)
    for _ in range(FLOOD):
        assert (await env.client.post("/logout", headers={"X-CSRF-Token": "forged"})).status == 403
    env.clock.advance(60)  # a window on: the next refusal opens a spell of its own, and is at INFO again
    assert (await env.client.post("/logout", headers={"X-CSRF-Token": "forged"})).status == 403
    await stop(env)
    assert [line_of(m) for m in access_lines(caplog, logging.INFO)] == ["POST /logout 403"] * 2
    assert [line_of(m) for m in access_lines(caplog, logging.DEBUG)] == ["POST /logout 403"] * (FLOOD - 1)


async def test_a_request_not_refused_is_logged_as_before(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    env = await start(tmp_path)
    await env.client.get("/login")
    await env.client.get("/nowhere")
    token = await csrf_token(env.client)
    await env.client.post("/login", data={"csrf_token": token, "name": "admin", "password": "wrong guess 123456"})
    await stop(env)
    assert [line_of(m) for m in access_lines(caplog, logging.INFO)] == ["GET /nowhere 404", "POST /login 401"]
