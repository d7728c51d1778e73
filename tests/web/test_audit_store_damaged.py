"""A damaged audit.db: the UI stays usable, says what is wrong, and never answers a done action with a 500.

Regression of a review: /audit answered a bare 500; a config apply that was written and reloaded answered 500
with no audit entry; an admin could not even log in to see the problem.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.accounts.store import Role
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from tests.support.orion_double import OrionDouble
from tests.web.conftest import PASSWORD, WebEnv, csrf_token, login, post_form
from tests.web.pages_harness import gateway_web, until
from tests.web.test_pages_config_limits import BASE, editor_text, flashes
from tests.web.test_wifi_pages import MAC, T0

# the store's own refusal, as gateway.storage.files words it: the page shows it as it is
DAMAGED = 'not an SQLite database, got SQLite\'s "file is not a database"'
LOGGER = "gateway.web.pages.audit"


def damage(state_dir: Path) -> None:
    (state_dir / "audit.db").write_bytes(b"garbage" * 1000)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The page's ERROR lines, from its own logger: a gateway started in the test replaces the root's handlers."""
    errors = _Errors()
    logging.getLogger(LOGGER).addHandler(errors)
    try:
        yield errors.messages
    finally:
        logging.getLogger(LOGGER).removeHandler(errors)


async def test_the_audit_page_says_the_store_cannot_be_read(web_env: WebEnv) -> None:
    web_env.add_user("root1", Role.ADMIN)
    await login(web_env.client, "root1")
    damage(web_env.state_dir)
    response = await web_env.client.get("/audit")
    assert response.status == 503
    page = html.unescape(await response.text())
    (shown,) = re.findall(r'<p id="audit-error" class="verdict bad" role="alert">([^<]*)</p>', page)
    assert shown.startswith(f"監査ログを読めません: audit log {web_env.state_dir / 'audit.db'}: {DAMAGED}; ")
    assert 'id="audit-filter"' in page  # the filter stays, for when the file is restored
    assert (await web_env.client.get("/users")).status == 200


async def test_an_admin_logs_in_and_is_told_the_login_was_not_recorded(web_env: WebEnv, logged: list[str]) -> None:
    web_env.add_user("root1", Role.ADMIN)
    damage(web_env.state_dir)
    response = await login(web_env.client, "root1")
    assert (response.status, response.headers["Location"]) == (302, "/")
    page = await (await web_env.client.get("/")).text()
    ((kind, text),) = flashes(page)
    assert kind == "error"
    assert text.startswith(f"ログインしましたが、監査ログに記録できませんでした: audit log {web_env.state_dir}")
    assert [m.split(": audit log")[0] for m in logged] == ["web: login was not audited"]
    assert (await web_env.client.get("/audit")).status == 503  # and can see what is wrong
    response = await post_form(web_env.client, "/logout", {}, token_from="/")
    assert response.status == 302


async def test_a_failed_login_is_answered_as_always_and_logged(web_env: WebEnv, logged: list[str]) -> None:
    web_env.add_user("root1", Role.ADMIN)
    damage(web_env.state_dir)
    response = await login(web_env.client, "root1", "wrong password, long enough")
    assert response.status == 401
    page = await response.text()
    assert "ユーザー名またはパスワードが正しくありません。" in page
    assert "audit log" not in page and "audit.db" not in page  # a stranger learns nothing of the box
    assert [m.split(": audit log")[0] for m in logged] == ["web: login.failed was not audited"]


async def test_a_user_added_says_it_was_not_recorded(web_env: WebEnv, logged: list[str]) -> None:
    web_env.add_user("root1", Role.ADMIN)
    await login(web_env.client, "root1")
    damage(web_env.state_dir)
    form = {"name": "bob", "role": "technician", "password": PASSWORD}
    response = await post_form(web_env.client, "/users/add", form, token_from="/users")
    assert (response.status, response.headers["Location"]) == (302, "/users")
    assert web_env.accounts.get_user("bob") is not None
    page = await (await web_env.client.get("/users")).text()
    found = flashes(page)
    assert found[0] == ("success", "ユーザー bob を追加しました。")
    assert found[1][0] == "error"
    assert found[1][1].startswith("操作は完了しましたが、監査ログに記録できませんでした: audit log ")
    assert len(logged) == 1


async def test_an_apply_written_and_reloaded_says_it_was_not_recorded(
    orion_double: OrionDouble, tmp_path: Path, logged: list[str]
) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/config")).text()
        damage(tmp_path / "web")
        five = editor_text(page).replace("entities = 3", "entities = 5")
        base = BASE.search(page)
        assert base
        form = {"csrf_token": await csrf_token(tech, "/config"), "text": five, "base": base.group(1), "comment": ""}
        response = await tech.post("/config/apply", data=form, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/config")
        assert env.config_path.read_text() == five
        await until(lambda: len(env.runtime.gateway.latest) == 5, "five entities after the apply")
        ((kind, text),) = flashes(await (await tech.get("/config")).text())
        assert kind == "error"
        assert text.startswith(
            "設定を適用しました（バージョン 2）。ゲートウェイは新しい設定で動いています。"
            f"ただし、監査ログに記録できませんでした: audit log {tmp_path / 'web' / 'audit.db'}: {DAMAGED}"
        )
        assert [m.split(": audit log")[0] for m in logged] == ["web: config.apply was not audited"]

        token = await csrf_token(tech, "/config")
        response = await tech.post(
            "/config/rollback", data={"csrf_token": token, "version": "1"}, allow_redirects=False
        )
        assert response.status == 303
        assert "entities = 3" in env.config_path.read_text()
        ((kind, text),) = flashes(await (await tech.get("/config")).text())
        assert (kind, text.split(": audit log")[0]) == (
            "error",
            "バージョン 1 に戻しました（新しいバージョン 3）。ただし、監査ログに記録できませんでした",
        )

        # a download is recorded before the file leaves: not recorded, not sent
        response = await tech.get("/config/download")
        assert response.status == 503
        assert "Content-Disposition" not in response.headers
        ((kind, text),) = flashes(await response.text())
        assert (kind, text.split(": audit log")[0]) == (
            "error",
            "監査ログに記録できないため、ダウンロードしませんでした",
        )


async def test_a_wifi_inquiry_that_cannot_be_recorded_shows_nothing(web_env: WebEnv) -> None:
    store = WifiLogStore(web_env.state_dir.parent, retention_months=1)
    store.apply([SessionEvent(nas="id:ap1", session_id="s1", kind=EventKind.START, time=T0, client_mac=MAC)])
    assert store.signer  # the signing key, made as the gateway makes it at its start
    store.close()
    web_env.add_user("auditor", Role.WIFI_AUDITOR)
    await login(web_env.client, "auditor")
    damage(web_env.state_dir)
    for path in ("/wifi/search", "/wifi/export"):
        response = await post_form(web_env.client, path, {"reference": "R-1", "mac": MAC}, token_from="/wifi")
        assert response.status == 503, path
        assert response.content_type == "text/html"
        page = html.unescape(await response.text())
        assert 'id="wifi-sessions"' not in page and 'class="session"' not in page
        assert "監査ログに記録できないため、照会の結果は表示もエクスポートもしていません: audit log " in page
