"""The account pages: first-admin setup link, users (admin), audit log (admin), language switch."""

from __future__ import annotations

import sqlite3

from gateway.accounts.store import Role
from gateway.audit.log import AUDIT_FILE
from tests.web.conftest import PASSWORD, WebEnv, login, post_form

NEW_PASSWORD = "another fine passphrase 3"


async def test_setup_link_creates_the_first_admin_once(web_env: WebEnv) -> None:
    token = web_env.accounts.create_setup_token(now=web_env.clock())
    page = await web_env.client.get(f"/setup/{token}")
    assert page.status == 200 and 'id="setup-form"' in await page.text()
    mismatch = await post_form(
        web_env.client, f"/setup/{token}", {"name": "root1", "password": PASSWORD, "confirm": "other"}
    )
    assert "新しいパスワードと確認用のパスワードが一致しません。" in await mismatch.text()
    done = await post_form(
        web_env.client, f"/setup/{token}", {"name": "root1", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert done.status == 302 and done.headers["Location"] == "/login"
    assert web_env.accounts.get_user("root1").role is Role.ADMIN  # type: ignore[union-attr]
    again = await web_env.client.get(f"/setup/{token}")
    assert again.status == 404
    assert "このセットアップ用リンクは無効です" in await again.text()
    reuse = await post_form(
        web_env.client, f"/setup/{token}", {"name": "evil", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert reuse.status == 404 and web_env.accounts.get_user("evil") is None
    [entry] = web_env.entries("user.add")
    assert (entry.actor, entry.target, entry.detail["via"]) == ("setup", "root1", "setup")


async def test_setup_post_with_a_wrong_token_is_refused_while_a_link_exists(web_env: WebEnv) -> None:
    token = web_env.accounts.create_setup_token(now=web_env.clock())
    form = {"name": "evil", "password": PASSWORD, "confirm": PASSWORD}
    for guess in ("guess", token[:-1] + ("A" if token[-1] != "A" else "B")):
        refused = await post_form(web_env.client, f"/setup/{guess}", form)
        assert refused.status == 404
        assert "このセットアップ用リンクは無効です" in await refused.text()
    assert web_env.accounts.list_users() == [] and web_env.entries("user.add") == []
    done = await post_form(
        web_env.client, f"/setup/{token}", {"name": "root1", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert done.status == 302 and done.headers["Location"] == "/login"
    assert [(u.name, u.role) for u in web_env.accounts.list_users()] == [("root1", Role.ADMIN)]


async def test_setup_link_expires(web_env: WebEnv) -> None:
    token = web_env.accounts.create_setup_token(now=web_env.clock(), ttl_s=3600)
    web_env.clock.advance(3601)
    assert (await web_env.client.get(f"/setup/{token}")).status == 404
    late = await post_form(
        web_env.client, f"/setup/{token}", {"name": "root1", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert late.status == 404 and web_env.accounts.list_users() == []


async def test_admin_manages_users_each_change_audited(web_env: WebEnv) -> None:
    web_env.add_user("admin1", Role.ADMIN)
    await login(web_env.client, "admin1")

    added = await post_form(
        web_env.client, "/users/add", {"name": "bob", "role": "technician", "password": PASSWORD}, token_from="/users"
    )
    assert added.status == 302
    page = await (await web_env.client.get("/users")).text()
    assert '<p class="flash flash-success" role="status">ユーザー bob を追加しました。</p>' in page
    bob = web_env.accounts.get_user("bob")
    assert bob is not None and bob.role is Role.TECHNICIAN and bob.must_change

    await post_form(web_env.client, "/users/role", {"name": "bob", "role": "viewer"}, token_from="/users")
    assert web_env.accounts.get_user("bob").role is Role.VIEWER  # type: ignore[union-attr]

    # bob logs in elsewhere; the admin's reset logs him out there
    bob_browser = await web_env.browser()
    assert (await login(bob_browser, "bob")).status == 302
    await post_form(web_env.client, "/users/password", {"name": "bob", "password": NEW_PASSWORD}, token_from="/users")
    assert (await bob_browser.get("/password", allow_redirects=False)).status == 302

    for _ in range(5):
        await login(bob_browser, "bob", "wrong password!!")
    assert web_env.accounts.get_user("bob").locked(web_env.clock())  # type: ignore[union-attr]
    await post_form(web_env.client, "/users/unlock", {"name": "bob"}, token_from="/users")
    assert not web_env.accounts.get_user("bob").locked(web_env.clock())  # type: ignore[union-attr]

    weak = await post_form(
        web_env.client, "/users/add", {"name": "carol", "role": "viewer", "password": "password"}, token_from="/users"
    )
    assert weak.status == 302
    page = await (await web_env.client.get("/users")).text()
    assert "よく使われるパスワードのため使えません。" in page and web_env.accounts.get_user("carol") is None

    self_remove = await post_form(web_env.client, "/users/remove", {"name": "admin1"}, token_from="/users")
    assert self_remove.status == 302
    assert "ログイン中の自分のアカウントは削除できません。" in await (await web_env.client.get("/users")).text()

    await post_form(web_env.client, "/users/remove", {"name": "bob"}, token_from="/users")
    assert web_env.accounts.get_user("bob") is None

    changes = [
        (e.action, e.actor, e.target)
        for e in reversed(web_env.audit.entries(limit=100))
        if e.action.startswith("user.")
    ]
    assert changes == [
        ("user.add", "admin1", "bob"),
        ("user.role", "admin1", "bob"),
        ("user.password", "admin1", "bob"),
        ("user.unlock", "admin1", "bob"),
        ("user.remove", "admin1", "bob"),
    ]
    assert [e.detail for e in web_env.entries("user.password")] == [{"by": "admin"}]
    assert "lockout" in web_env.actions()


async def test_audit_page_filters_and_shows_verification(web_env: WebEnv) -> None:
    web_env.add_user("admin1", Role.ADMIN)
    web_env.add_user("view", Role.VIEWER)
    await login(web_env.client, "admin1")
    other = await web_env.browser()
    await login(other, "view")
    await post_form(other, "/logout", {}, token_from="/password")

    page = await (await web_env.client.get("/audit")).text()
    assert '<p id="audit-verify" class="verdict ok">監査ログの検証: 改ざんは見つかりませんでした。</p>' in page
    filtered = await (await web_env.client.get("/audit", params={"actor": "view"})).text()
    assert filtered.count('class="entry"') == 2  # view's login and logout
    assert (await (await web_env.client.get("/audit", params={"action": "logout"})).text()).count('class="entry"') == 1

    with sqlite3.connect(web_env.state_dir / AUDIT_FILE) as db:
        db.execute("UPDATE entries SET actor = 'nobody' WHERE actor = 'view'")
    tampered = await (await web_env.client.get("/audit")).text()
    assert 'id="audit-verify" class="verdict bad"' in tampered
    assert "監査ログの検証: 2 件の問題が見つかりました。" in tampered


async def test_language_switch_is_remembered(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    switched = await post_form(web_env.client, "/lang", {"lang": "en", "next": "/login"})
    assert switched.status == 302 and switched.headers["Location"] == "/login"
    page = await (await web_env.client.get("/login")).text()
    assert '<html lang="en">' in page and "<h1>Log in</h1>" in page
    await login(web_env.client, "alice")
    await post_form(web_env.client, "/lang", {"lang": "ja", "next": "/password"}, token_from="/password")
    assert web_env.accounts.get_user("alice").language == "ja"  # type: ignore[union-attr]
    other = await web_env.browser()
    other.session.headers["Accept-Language"] = "en"
    await login(other, "alice")
    assert "<h1>パスワード変更</h1>" in await (await other.get("/password")).text()  # the user's choice wins


async def test_a_missing_file_does_not_swallow_the_next_pages_message(web_env: WebEnv) -> None:
    web_env.add_user("admin1", Role.ADMIN)
    await login(web_env.client, "admin1")
    await post_form(web_env.client, "/users/unlock", {"name": "admin1"}, token_from="/users")
    assert (await web_env.client.get("/favicon.ico")).status == 404
    assert "ユーザー admin1 のロックを解除しました。" in await (await web_env.client.get("/users")).text()
    assert (await web_env.client.get("/static/favicon.svg")).status == 200
