"""Browser security of the UI: CSRF, session fixation and timeouts, roles on the server, headers, escaping, static."""

from __future__ import annotations

import re

import pytest
from yarl import URL

from gateway.accounts.store import Role
from gateway.web.auth import COOKIE
from gateway.web.security import CSP
from tests.web.conftest import PASSWORD, WebEnv, csrf_token, login, post_form


def session_cookie(env: WebEnv) -> str:
    cookies = env.client.session.cookie_jar.filter_cookies(env.server.make_url("/"))
    return cookies[COOKIE].value


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(web_env: WebEnv) -> None:
    web_env.add_user("admin1", Role.ADMIN)
    await login(web_env.client, "admin1")
    data = {"name": "mallory", "role": "admin", "password": "a long enough passphrase 9"}
    missing = await web_env.client.post("/users/add", data=data, allow_redirects=False)
    wrong = await web_env.client.post("/users/add", data={**data, "csrf_token": "x" * 43}, allow_redirects=False)
    header = await web_env.client.post("/users/add", data=data, headers={"X-CSRF-Token": "y"}, allow_redirects=False)
    for response in (missing, wrong, header):
        assert response.status == 403
    for response in (missing, wrong):  # a form: the page says it was not processed (test_csrf_stale_form)
        assert "フォームの有効期限が切れていました" in await response.text()
    assert web_env.accounts.get_user("mallory") is None
    # the right token, as a header, works
    token = await csrf_token(web_env.client, "/users")
    ok = await web_env.client.post("/users/add", data=data, headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert ok.status == 302
    assert web_env.accounts.get_user("mallory") is not None


async def test_login_without_csrf_token_is_refused(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    await web_env.client.get("/login")
    response = await web_env.client.post("/login", data={"name": "alice", "password": PASSWORD})
    assert response.status == 403
    assert web_env.actions() == []


async def test_a_form_without_a_live_session_is_not_processed_and_says_why(web_env: WebEnv) -> None:
    """No cookie at all (a cross-site form, or this process restarted): nothing done, back to the login page."""
    web_env.add_user("alice", Role.VIEWER)
    response = await web_env.client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrf_token": "stale"}, allow_redirects=False
    )
    assert response.status == 302 and response.headers["Location"] == "/login"
    page = await (await web_env.client.get("/login")).text()
    assert "画面を開いてから時間がたったため、送信した内容は処理されませんでした。" in page
    assert web_env.actions() == []


async def test_login_page_left_open_past_the_idle_timeout_still_logs_in(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    token = await csrf_token(web_env.client)
    web_env.clock.advance(60 * 60)
    response = await web_env.client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token}, allow_redirects=False
    )
    assert response.status == 302 and response.headers["Location"] == "/"


async def test_session_fixation_cookie_changes_at_login(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    await web_env.client.get("/login")
    before = session_cookie(web_env)
    await login(web_env.client, "alice")
    after = session_cookie(web_env)
    assert before != after
    # a planted cookie (the one from before login) is not logged in
    attacker = await web_env.browser()
    attacker.session.cookie_jar.update_cookies({COOKIE: before}, web_env.server.make_url("/"))
    response = await attacker.get("/password", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"].startswith("/login")


async def test_cookie_attributes(web_env: WebEnv) -> None:
    response = await web_env.client.get("/login")
    cookie = response.cookies[COOKIE]
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert len(cookie.value) >= 43  # 256 bits, URL-safe base64


async def test_idle_timeout(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    await login(web_env.client, "alice")
    web_env.clock.advance(14 * 60)
    assert (await web_env.client.get("/password", allow_redirects=False)).status == 200
    web_env.clock.advance(14 * 60)  # active 14 minutes ago: still in
    assert (await web_env.client.get("/password", allow_redirects=False)).status == 200
    web_env.clock.advance(15 * 60 + 1)
    response = await web_env.client.get("/password", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/login?next=/password"
    page = await (await web_env.client.get("/login")).text()
    assert "一定時間操作がなかったか、ログインの有効期間が過ぎたため、ログアウトしました。" in page


async def test_absolute_lifetime(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    await login(web_env.client, "alice")
    for _ in range(47):  # busy all day, a click every 10 minutes, up to 7 h 50 min
        web_env.clock.advance(10 * 60)
        assert (await web_env.client.get("/password", allow_redirects=False)).status == 200
    web_env.clock.advance(9 * 60)  # 7 h 59 min
    assert (await web_env.client.get("/password", allow_redirects=False)).status == 200
    web_env.clock.advance(2 * 60)  # 8 h 1 min after login, active a moment ago
    response = await web_env.client.get("/password", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"].startswith("/login")


async def test_forced_password_change(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.ADMIN, must_change=True)
    response = await login(web_env.client, "alice")
    assert response.headers["Location"] == "/password"
    # every other page sends them back to /password until they change it
    for path in ("/users", "/audit"):
        other = await web_env.client.get(path, allow_redirects=False)
        assert other.status == 302 and other.headers["Location"] == "/password"
    bad = await post_form(
        web_env.client,
        "/password",
        {"current": PASSWORD, "new": "alice1234567", "confirm": "alice1234567"},
        token_from="/password",
    )
    text = await bad.text()
    assert bad.status == 400
    assert "<li>パスワードにユーザー名を含めることはできません。</li>" in text
    short = await post_form(
        web_env.client, "/password", {"current": PASSWORD, "new": "short", "confirm": "short"}, token_from="/password"
    )
    assert "<li>パスワードは 12 文字以上にしてください。</li>" in await short.text()
    new = "a much better passphrase 7"
    ok = await post_form(
        web_env.client, "/password", {"current": PASSWORD, "new": new, "confirm": new}, token_from="/password"
    )
    assert ok.status == 302 and ok.headers["Location"] == "/"
    assert (await web_env.client.get("/users", allow_redirects=False)).status == 200
    assert "user.password" in web_env.actions()


async def test_a_privileged_password_about_to_expire_is_announced(web_env: WebEnv) -> None:
    web_env.add_user("tech", Role.TECHNICIAN)
    web_env.clock.advance(170 * 86400)  # 182-day rule: expires 2027-06-01 09:00 JST, 12 days from now
    assert (await login(web_env.client, "tech")).headers["Location"] == "/"
    page = await (await web_env.client.get("/password")).text()
    assert "パスワードの有効期限は 2027-06-01 09:00:00 JST です。" in page


async def test_expired_password_forces_a_change(web_env: WebEnv) -> None:
    web_env.add_user("tech", Role.TECHNICIAN)
    web_env.add_user("view", Role.VIEWER)
    web_env.clock.advance(183 * 86400)
    assert (await login(web_env.client, "tech")).headers["Location"] == "/password"
    other = await web_env.browser()
    assert (await login(other, "view")).headers["Location"] == "/"  # viewers' passwords do not expire


async def test_viewer_refused_an_admin_page_and_an_admin_post(web_env: WebEnv) -> None:
    web_env.add_user("view", Role.VIEWER)
    web_env.add_user("tech", Role.TECHNICIAN)
    await login(web_env.client, "view")
    page = await web_env.client.get("/users")
    assert page.status == 403
    assert "<h1>アクセスできません</h1>" in await page.text()
    token = await csrf_token(web_env.client, "/password")
    post = await web_env.client.post(
        "/users/role", data={"csrf_token": token, "name": "view", "role": "admin"}, allow_redirects=False
    )
    assert post.status == 403
    assert web_env.accounts.get_user("view").role is Role.VIEWER  # type: ignore[union-attr]
    tech = await web_env.browser()
    await login(tech, "tech")
    assert (await tech.get("/audit")).status == 403


async def test_not_logged_in_goes_to_login(web_env: WebEnv) -> None:
    response = await web_env.client.get("/users", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/login?next=/users"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\t/evil.example/",
        "/\r\n/evil.example/",
        "/ /evil.example/",
        "/\\evil.example/",
        "https://evil.example/",
    ],
)
async def test_open_redirect_after_login_refused(web_env: WebEnv, target: str) -> None:
    web_env.add_user("alice", Role.VIEWER)
    response = await login(web_env.client, "alice", next=target)
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"name=\xff\xfe&password=x"),
        ("application/x-www-form-urlencoded; charset=x-bogus", b"name=a&password=x"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\r\n--b--\r\n',
        ),
    ],
    ids=["not-utf8", "unknown-charset", "multipart-not-utf8"],
)
@pytest.mark.parametrize("with_header", [False, True], ids=["token-in-form", "token-in-header"])
async def test_a_form_that_is_not_text_is_a_400_not_a_500(
    web_env: WebEnv, content_type: str, body: bytes, with_header: bool
) -> None:
    headers = {"Content-Type": content_type}
    if with_header:  # the CSRF check passes on the header; the form is still read before the handler
        page = await web_env.client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token
        headers["X-CSRF-Token"] = token.group(1)
    response = await web_env.client.post("/login", data=body, headers=headers, allow_redirects=False)
    assert response.status == 400 and "form data is not UTF-8 text" in await response.text()


async def test_a_local_path_is_where_login_goes_on_to(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    response = await login(web_env.client, "alice", next="/live?lane=alert")
    assert response.headers["Location"] == "/live?lane=alert"


async def test_security_headers_on_pages_errors_and_static(web_env: WebEnv) -> None:
    for path, status in (("/login", 200), ("/nowhere", 404), ("/static/app.css", 200)):
        response = await web_env.client.get(path)
        assert response.status == status
        assert response.headers["Content-Security-Policy"] == CSP
        assert CSP == "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    assert (await web_env.client.get("/login")).headers["Cache-Control"] == "no-store"
    not_found = await web_env.client.get("/nowhere")
    assert "<h1>ページが見つかりません</h1>" in await not_found.text()


@pytest.mark.parametrize(
    "raw",
    [
        "/static/../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/..%5c..%5cetc%5cpasswd",
        "/static/%252e%252e/%252e%252e/etc/passwd",
        "/static//etc/passwd",
        "/static/../app.py",
    ],
)
async def test_static_path_traversal_refused(web_env: WebEnv, raw: str) -> None:
    response = await web_env.client.get(URL(raw, encoded=True))
    body = await response.read()
    assert response.status in (400, 403, 404)
    assert b"root:" not in body and b"build_app" not in body


async def test_script_in_a_user_name_is_inert(web_env: WebEnv) -> None:
    """User names cannot hold markup; the login form echoes what was typed, and audit shows it: both escaped."""
    web_env.add_user("admin1", Role.ADMIN)
    evil = '<script>alert("x")</script>'
    response = await login(web_env.client, evil, "whatever password")
    text = await response.text()
    assert "<script>alert" not in text
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in text
    await login(web_env.client, "admin1")
    web_env.audit.append(actor="admin1", action="login.failed", target=evil, detail={"name": evil}, at=web_env.clock())
    audit = await (await web_env.client.get("/audit")).text()
    assert "<script>alert" not in audit
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in audit


async def test_a_removed_or_disabled_user_is_out_at_the_next_click(web_env: WebEnv) -> None:
    web_env.add_user("admin1", Role.ADMIN)
    web_env.add_user("view", Role.VIEWER)
    web_env.add_user("tech", Role.TECHNICIAN)
    await login(web_env.client, "view")
    other = await web_env.browser()
    await login(other, "tech")
    web_env.accounts.remove_user("view")  # from the CLI, say: the web's session table never heard of it
    web_env.accounts.set_disabled("tech", True)
    for browser in (web_env.client, other):
        response = await browser.get("/password", allow_redirects=False)
        assert response.status == 302 and response.headers["Location"].startswith("/login")


async def test_a_role_change_applies_at_the_next_click(web_env: WebEnv) -> None:
    web_env.add_user("admin1", Role.ADMIN)
    web_env.add_user("admin2", Role.ADMIN)
    await login(web_env.client, "admin2")
    assert (await web_env.client.get("/users")).status == 200
    web_env.accounts.set_role("admin2", Role.VIEWER)
    assert (await web_env.client.get("/users")).status == 403


async def test_policy_errors_in_english(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    web_env.client.session.headers["Accept-Language"] = "en"
    await login(web_env.client, "alice")
    response = await post_form(
        web_env.client,
        "/password",
        {"current": PASSWORD, "new": "password", "confirm": "password"},
        token_from="/password",
    )
    text = await response.text()
    assert "<li>The password must be at least 12 characters long.</li>" in text
    assert "<li>This password is too common. Please choose one that is hard to guess.</li>" in text
    wrong = await post_form(
        web_env.client, "/password", {"current": "not it at all", "new": "x", "confirm": "y"}, token_from="/password"
    )
    assert "<li>The new password and its confirmation differ.</li>" in await wrong.text()
    wrong = await post_form(
        web_env.client,
        "/password",
        {"current": "not it at all", "new": "a fine passphrase 8", "confirm": "a fine passphrase 8"},
        token_from="/password",
    )
    assert "<li>The current password is incorrect.</li>" in await wrong.text()
