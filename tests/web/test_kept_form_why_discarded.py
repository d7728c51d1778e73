"""A refused form carried through the login but no longer kept: the login says why, in the user's words.

A 4th refused form from the same browser pushes the oldest out of the web's store at once (three per browser);
the login of that oldest form's tab then said it had been "kept for 10 minutes only, or the admin screen
restarted", though neither had happened. The login now tells too old, pushed out by this browser's newer forms,
pushed out by the whole store's bound, and gone (a restart, or never kept for this browser) apart.
"""

from __future__ import annotations

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, csrf_token, login
from tests.web.test_csrf_stale_form import form_in
from tests.web.test_kept_form_private import ASSIGN, log_in_with

PUSHED_OUT = (
    "ログインの前に送信されたフォームは、その後このブラウザーで断られた新しいフォームを保管したため"
    "（1つのブラウザーにつき3件まで、古いものから破棄）、送信せずに破棄しました。"
    "必要なら元のページを開き直して、もう一度入力してください。"
)
EXPIRED = (
    "ログインの前に送信されたフォームは、保管できる時間（10分）を過ぎたため、送信せずに破棄しました。"
    "必要なら元のページを開き直して、もう一度入力してください。"
)
GONE = (
    "ログインの前に送信されたフォームは、見つかりませんでした（その間に管理画面が再起動した、"
    "またはこのブラウザーのために保管したものではありません）。送信はしていません。"
    "必要なら元のページを開き直して、もう一度入力してください。"
)
RESTARTED = "再起動したため"  # the old sentence's guess, wrong for every case but a restart


async def refused_assignments(env: WebEnv, count: int) -> list[str]:
    """mika's session runs out and she presses send in `count` tabs, one after the other: the login pages."""
    env.add_user("mika", Role.ADMIN)
    await login(env.client, "mika")
    token = await csrf_token(env.client, "/password")
    env.clock.advance(16 * 60)  # past the idle timeout
    pages = []
    for _ in range(count):
        response = await env.client.post("/lockers/assign", data={"csrf_token": token, **ASSIGN})
        assert response.status == 403
        pages.append(await response.text())
        assert 'id="login-form"' in pages[-1]
    return pages


async def flashed_after_login(env: WebEnv, page: str) -> str:
    """The page the browser lands on after logging in as mika through `page` (the flash says what became of the
    form): /form/resend sends it on to the start page when nothing is offered."""
    assert await log_in_with(env, page, "mika") == "/form/resend"
    landed = await env.client.get("/form/resend")
    assert landed.url.path == "/"
    return await landed.text()


async def test_a_form_pushed_out_by_newer_ones_of_the_browser_is_said_as_such(web_env: WebEnv) -> None:
    first, *_ = await refused_assignments(web_env, 4)
    shown = await flashed_after_login(web_env, first)
    assert PUSHED_OUT in shown
    assert RESTARTED not in shown and "10分" not in shown


async def test_a_form_kept_too_long_is_said_as_such_without_a_restart(web_env: WebEnv) -> None:
    (page,) = await refused_assignments(web_env, 1)
    web_env.clock.advance(11 * 60)
    shown = await flashed_after_login(web_env, page)
    assert EXPIRED in shown and RESTARTED not in shown


async def test_a_form_not_kept_for_this_browser_is_said_gone(web_env: WebEnv) -> None:
    """A login page whose reference names no form kept for this browser (another browser's page, one altered):
    not "kept too long"."""
    (page,) = await refused_assignments(web_env, 1)
    ref = dict(form_in(page, "login-form")[1])["resend_ref"]
    shown = await flashed_after_login(web_env, page.replace(ref, "A" * len(ref)))
    assert GONE in shown and "10分" not in shown
