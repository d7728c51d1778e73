"""A masked value goes back into the element it was masked in, known by its name, never by its position.

Regression of a review: removing the first of two `[[uplinks]]` in /config gave the second the first one's
masked values (by array position); the vendor's OAuth2 client id and secret were posted to the city's identity
server, and the diff, computed on masked texts, showed only the deletion. `token_url` was masked at all because
its name has "token" in it: a URL is no secret.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from gateway.accounts.store import Role
from gateway.web.viewmodels.configtext import MASKED
from tests.support.orion_double import TOKEN_PATH, LoggedRequest, OrionDouble
from tests.web.pages_harness import Client, config_text, gateway_web, until
from tests.web.test_pages_config_limits import BASE, editor_text, flashes, found, post

DIFF = re.compile(r'<span class="diff-(add|del)">([^<]*)</span>')


def _oauth_uplinks(data_dir: Path, city: str, vendor: str) -> str:
    return f"""[gateway]
id = "gw-web"
data_dir = "{data_dir}"

[[adapters]]
name = "gauges"
type = "simulated"
entities = 3
rate = 20.0
id_prefix = "urn:ngsi-ld:WaterObserved:w-"

[[uplinks]]
name = "city"
type = "orion"
url = "{city}"
[uplinks.oauth2]
token_url = "{city}{TOKEN_PATH}"
client_id = "city-gw"
client_secret = "env:EGW_TEST_CITY_SECRET"

[[uplinks]]
name = "vendor"
type = "orion"
url = "{vendor}"
[uplinks.oauth2]
token_url = "{vendor}{TOKEN_PATH}"
client_id = "vendor-gw"
client_secret = "env:EGW_TEST_VENDOR_SECRET"
"""


def _agent(name: str, port: int, apikey: str) -> str:
    # an IoT Agent uplink's apikey is plain text in the config, so the editor masks it
    return (
        f'[[uplinks]]\nname = "{name}"\ntype = "mqtt"\nhost = "127.0.0.1"\nport = {port}\n'
        f'format = "iota-json"\napikey = "{apikey}"\n'
    )


def _agents(tmp_path: Path, url: str) -> str:
    return (
        config_text(tmp_path / "data", url)
        + "\n"
        + _agent("agent-a", 9, "k-aaaa1111")
        + "\n"
        + _agent("agent-b", 7, "k-bbbb2222")
    )


def _block(text: str, name: str) -> str:
    start = text.index(f'[[uplinks]]\nname = "{name}"')
    end = text.find("\n[[", start + 1)
    return text[start : len(text) if end < 0 else end + 1]


def _client_ids(requests: list[LoggedRequest]) -> list[str]:
    ids = []
    for r in requests:
        if r.path == TOKEN_PATH:
            auth = r.headers.get("Authorization", "")
            ids.append(base64.b64decode(auth[6:]).decode().split(":")[0] if auth else r.body.decode())
    return ids


async def _apply(tech: Client, page: str, text: str) -> tuple[int, str]:
    base = BASE.search(page)
    assert base
    return await post(tech, "/config/apply", {"text": text, "base": base.group(1), "comment": ""})


async def test_removing_the_first_uplink_leaves_the_second_its_own_oauth2_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGW_TEST_CITY_SECRET", "city-s3cret")
    monkeypatch.setenv("EGW_TEST_VENDOR_SECRET", "vendor-s3cret")
    async with OrionDouble() as city, OrionDouble() as vendor:
        city.require_oauth("city-gw", "city-s3cret")
        vendor.require_oauth("vendor-gw", "vendor-s3cret")
        running = _oauth_uplinks(tmp_path / "data", city.url, vendor.url)
        async with gateway_web(tmp_path, city.url, text=running) as env:
            tech = await env.browser("taro", Role.TECHNICIAN)
            page = await (await tech.get("/config")).text()
            shown = editor_text(page)
            edited = shown.replace(_block(shown, "city"), "")
            status, _ = await _apply(tech, page, edited)
            assert status == 303
            assert env.config_path.read_text() == running.replace(_block(running, "city"), "")
            await until(lambda: "vendor-gw" in _client_ids(vendor.requests), "the vendor's token request", 15)
            assert "vendor-gw" not in _client_ids(city.requests)
            # a URL and a reference are no secrets: the editor shows them as the file has them
            assert f'token_url = "{vendor.url}{TOKEN_PATH}"' in shown
            assert 'client_secret = "env:EGW_TEST_VENDOR_SECRET"' in shown
            assert MASKED not in shown


async def test_reordered_uplinks_keep_their_own_masked_apikeys(orion_double: OrionDouble, tmp_path: Path) -> None:
    running = _agents(tmp_path, orion_double.url)
    async with gateway_web(tmp_path, orion_double.url, text=running) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        shown = editor_text(page)
        assert "k-aaaa1111" not in page and "k-bbbb2222" not in page
        a, b = _block(shown, "agent-a"), _block(shown, "agent-b")
        status, _ = await _apply(tech, page, shown.replace(a + b, b + "\n" + a))
        assert status == 303
        written = env.config_path.read_text()
        assert written.index('name = "agent-b"') < written.index('name = "agent-a"')
        assert _block(written, "agent-a").rstrip("\n") == _agent("agent-a", 9, "k-aaaa1111").rstrip("\n")
        assert _block(written, "agent-b").rstrip("\n") == _agent("agent-b", 7, "k-bbbb2222").rstrip("\n")


async def test_removing_the_first_agent_leaves_the_second_its_own_apikey(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    running = _agents(tmp_path, orion_double.url)
    async with gateway_web(tmp_path, orion_double.url, text=running) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        shown = editor_text(page)
        status, _ = await _apply(tech, page, shown.replace(_block(shown, "agent-a"), ""))
        assert status == 303
        assert env.config_path.read_text() == running.replace(_block(running, "agent-a"), "")


async def test_a_masked_value_whose_element_is_gone_is_refused_naming_the_key(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    running = _agents(tmp_path, orion_double.url)
    async with gateway_web(tmp_path, orion_double.url, text=running) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        shown = editor_text(page)
        # agent-a renamed and pointed elsewhere: which apikey it should have, the editor cannot know
        edited = shown.replace(
            'name = "agent-a"\ntype = "mqtt"\nhost = "127.0.0.1"\nport = 9',
            'name = "agent-c"\ntype = "mqtt"\nhost = "127.0.0.1"\nport = 11',
        )
        assert edited != shown
        status, answer = await _apply(tech, page, edited)
        assert status == 422
        message = (
            "伏せ字（********）のままの値を元に戻せません: uplinks[1].apikey。"
            "その要素の name が変わったか、要素がなくなったため、どの値を戻すか決められません。"
            "値を入力し直してください。検証も適用もしていません。"
        )
        assert flashes(answer) == [("error", message)]
        line = edited.splitlines().index('apikey = "********"') + 1
        assert found(answer) == [("uplinks[1].apikey", line, "伏せ字のままでは戻せません。値を入力してください。")]
        assert editor_text(answer) == edited
        assert env.config_path.read_text() == running
        assert env.services.audit.entries(action="config.apply") == []
        status, answer = await post(tech, "/config/check", {"text": edited})
        assert found(answer) == [("uplinks[1].apikey", line, "伏せ字のままでは戻せません。値を入力してください。")]
        assert "問題はありません" not in answer
        # in English too
        status, answer = await post(tech, "/config/check", {"text": edited}, lang="en")
        assert flashes(answer) == [
            (
                "error",
                "A masked value (********) cannot be put back: uplinks[1].apikey. The name of its element changed or "
                "the element is gone, so which value belongs there is unknown. Type the value again. Nothing was "
                "checked or applied.",
            )
        ]


async def test_the_diff_shows_a_masked_value_that_lands_in_another_element(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    running = _agents(tmp_path, orion_double.url)
    async with gateway_web(tmp_path, orion_double.url, text=running) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        shown = editor_text(page)
        # the names swapped, each host kept: each apikey follows its name, so it moves to the other host
        swapped = (
            shown.replace('name = "agent-a"', 'name = "tmp"')
            .replace('name = "agent-b"', 'name = "agent-a"')
            .replace('name = "tmp"', 'name = "agent-b"')
        )
        status, answer = await post(tech, "/config/check", {"text": swapped})
        assert status == 200
        changed = [(kind, text) for kind, text in DIFF.findall(answer)]
        assert (
            "del",
            "-apikey = &#34;********&#34;  # ← uplinks[name=&#34;agent-a&#34;].apikey",
        ) in changed
        assert (
            "add",
            "+apikey = &#34;********&#34;  # ← uplinks[name=&#34;agent-b&#34;].apikey",
        ) in changed
        # unchanged masked values make no diff line
        status, answer = await post(tech, "/config/check", {"text": shown.replace("entities = 3", "entities = 4")})
        assert [text for _, text in DIFF.findall(answer)] == ["-entities = 3", "+entities = 4"]
