"""The config page against a real gateway: errors at their key paths, diff, apply and rollback changing what runs."""

from __future__ import annotations

import html
import re
from pathlib import Path

from gateway.accounts.store import Role
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import gateway_web, until

TEXTAREA = re.compile(r'<textarea id="config-text"[^>]*>(.*?)</textarea>', re.S)
BASE = re.compile(r'name="base" value="([0-9a-f]*)"')


def editor_text(page: str) -> str:
    match = TEXTAREA.search(page)
    assert match, "no editor on the page"
    # a browser drops the newline right after <textarea>: the page puts one there, so a text that starts
    # with an empty line keeps it
    return html.unescape(match.group(1).removeprefix("\n"))


async def test_check_shows_each_error_at_its_key_path_and_line(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        text = editor_text(page)
        assert text == env.config_path.read_text()
        broken = text.replace("entities = 3", "entities = 0").replace("rate = 20.0", "rate = -1")
        response = await tech.post(
            "/config/check", data={"csrf_token": await csrf_token(tech, "/config"), "text": broken}
        )
        assert response.status == 200
        page = await response.text()
        lines = broken.splitlines()
        found = re.findall(r'<li data-path="([^"]*)" data-line="(\d+)">.*?<span class="message">([^<]*)</span>', page)
        assert [(p, lines[int(n) - 1]) for p, n, _ in found] == [
            ("adapters[0].entities", "entities = 0"),
            ("adapters[0].rate", "rate = -1"),
        ]
        assert found[0][2] == "input should be greater than or equal to 1, got 0"
        marked = re.findall(r'<li data-line="(\d+)"><span class="lineno">\d+</span> <code>([^<]*)</code></li>', page)
        assert [(int(n), html.unescape(code)) for n, code in marked] == [
            (int(n), lines[int(n) - 1]) for _, n, _ in found
        ]  # beside the editor, each marked line as the text has it
        assert '<pre id="config-diff" class="diff">' in page
        assert '<span class="diff-add">+entities = 0</span>' in page
        assert editor_text(page) == broken  # the technician's text stays in the editor
        assert env.config_path.read_text() == text  # nothing written


async def test_a_viewer_is_refused_the_config_page_and_apply(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        viewer = await env.browser("mika", Role.VIEWER)
        assert (await viewer.get("/config")).status == 403
        token = await csrf_token(viewer, "/")
        response = await viewer.post("/config/apply", data={"csrf_token": token, "text": "[gateway]\n"})
        assert response.status == 403
        response = await viewer.post("/config/rollback", data={"csrf_token": token, "version": "1"})
        assert response.status == 403
        assert env.services.audit.entries(action="config.apply") == []


async def test_apply_and_rollback_change_what_the_gateway_does(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        original = env.config_path.read_text()
        await until(lambda: len(env.runtime.gateway.latest) == 3, "three entities")
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        base = BASE.search(page)
        assert base
        five = editor_text(page).replace("entities = 3", "entities = 5")
        form = {
            "csrf_token": await csrf_token(tech, "/config"),
            "text": five,
            "base": base.group(1),
            "comment": "2 more",
        }
        response = await tech.post("/config/apply", data=form, allow_redirects=False)
        assert (response.status, response.headers.get("Location")) == (303, "/config")
        assert env.config_path.read_text() == five
        await until(lambda: len(env.runtime.gateway.latest) == 5, "five entities after the apply")
        (entry,) = env.services.audit.entries(action="config.apply")
        assert (entry.actor, entry.detail["added"], entry.detail["removed"], entry.detail["comment"]) == (
            "taro",
            1,
            1,
            "2 more",
        )
        page = await (await tech.get("/config")).text()
        assert "設定を適用しました（バージョン 2）。" in page
        versions = re.findall(
            r'<tr class="config-version" data-version="(\d+)">.*?</td>\s*<td>[^<]*</td><td>([^<]*)</td>', page, re.S
        )
        assert versions == [("2", "taro"), ("1", "file")]
        assert page.count('class="rollback"') == 2

        # an apply from an editor opened before that change is refused: it would undo it unseen
        stale = {**form, "text": five.replace("entities = 5", "entities = 4")}
        response = await tech.post("/config/apply", data=stale, allow_redirects=False)
        assert response.status == 409
        assert env.config_path.read_text() == five

        token = await csrf_token(tech, "/config")
        response = await tech.post(
            "/config/rollback", data={"csrf_token": token, "version": "1"}, allow_redirects=False
        )
        assert response.status == 303
        assert env.config_path.read_text() == original
        assert env.runtime.reloads == 2
        assert getattr(env.runtime.gateway.config.adapters[0], "entities", None) == 3
        (entry,) = env.services.audit.entries(action="config.rollback")
        assert (entry.actor, entry.target, entry.detail["to"]) == ("taro", "1", 1)
        page = await (await tech.get("/config")).text()
        assert "バージョン 1 に戻しました（新しいバージョン 3）。" in page

        # the download is the running file, as an attachment; the version page shows a diff
        response = await tech.get("/config/download")
        assert response.headers["Content-Disposition"] == 'attachment; filename="gateway.toml"'
        assert response.content_type == "text/plain"
        assert await response.text() == original
        page = await (await tech.get("/config/versions/2")).text()
        assert '<span class="diff-add">+entities = 5</span>' in page


async def test_an_uploaded_file_lands_in_the_editor(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        uploaded = "\ufeff" + env.config_path.read_text().replace("entities = 3", "entities = 7")
        from aiohttp import FormData

        form = FormData()
        form.add_field("csrf_token", await csrf_token(tech, "/config"))
        form.add_field("config_file", uploaded.encode("utf-8"), filename="gw.toml", content_type="text/plain")
        response = await tech.post("/config/upload", data=form)
        assert response.status == 200
        page = await response.text()
        assert editor_text(page) == uploaded.removeprefix("\ufeff")
        assert "ファイルをエディタに読み込みました。検証してから適用してください。" in page
        assert '<span class="diff-add">+entities = 7</span>' in page
        assert "entities = 7" not in env.config_path.read_text()


async def test_masked_secrets_are_kept_when_a_masked_text_is_applied(orion_double: OrionDouble, tmp_path: Path) -> None:
    from tests.web.pages_harness import config_text

    text = config_text(tmp_path / "data", orion_double.url) + (
        "\n# a second uplink to a broker that is not there: it retries, the gateway runs on\n"
        "[[uplinks]]\n"
        'name = "agent"\n'
        'type = "mqtt"\n'
        'host = "127.0.0.1"\n'
        "port = 9\n"
        'format = "iota-json"\n'
        'apikey = "k-4f1c9e2a7b"\n'
    )
    async with gateway_web(tmp_path, orion_double.url, text=text) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        assert "k-4f1c9e2a7b" not in page
        shown = editor_text(page)
        assert 'apikey = "********"' in shown
        download = await (await tech.get("/config/download")).text()
        assert download == shown
        base = BASE.search(page)
        assert base
        edited = shown.replace("entities = 3", "entities = 4")
        form = {"csrf_token": await csrf_token(tech, "/config"), "text": edited, "base": base.group(1)}
        response = await tech.post("/config/apply", data=form, allow_redirects=False)
        assert response.status == 303, await response.text()
        assert env.config_path.read_text() == text.replace("entities = 3", "entities = 4")
        (entry,) = env.services.audit.entries(action="config.apply")
        assert "k-4f1c9e2a7b" not in str(entry.detail)
