"""The admin web UI in real Chromium against a real gateway: what a librarian or a technician sees.

One gateway subprocess and one browser serve the whole module; each test gets a UI of its own (fresh
accounts, audit log and clock) and a browser without cookies. Time in the UI is moved, never slept:
lockout release, idle timeout and password age.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from gateway.accounts.store import Role
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.web.render import jst
from tests.e2e.harness import Receiver
from tests.support.mosquitto import MosquittoBroker
from tests.web_browser.harness import (
    ARTIFACTS,
    UiLoop,
    absent,
    alert_open,
    chromium,
    element,
    forget_everything,
    page_text,
    wait_for,
)
from tests.web_browser.stack import (
    GATEWAY_ID,
    IDLE_MINUTES,
    LOCKOUT_FAILURES,
    LOCKOUT_MINUTES,
    NEW_PASSWORD,
    PASSWORD,
    SEEDED_ID,
    SEEDED_REASON,
    STATION_ID,
    STATION_NAME,
    Gateway,
    Ui,
    start_ui,
)

pytestmark = pytest.mark.e2e

CATALOGS = Path(__file__).resolve().parents[2] / "gateway" / "web" / "catalogs"


def catalog(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for part in sorted((CATALOGS / lang).glob("*.json")):
        merged.update(json.loads(part.read_text(encoding="utf-8")))
    return merged


def message(key: str, lang: str = "ja", **params: Any) -> str:
    """The text the page shows for `key`, as the catalog says it."""
    text = catalog(lang)[key]
    return text.format(**params) if params else text


@pytest.fixture(scope="module")
def gateway(ui_loop: UiLoop, mosquitto: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gateway"), ui_loop, mosquitto.port)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def receiver(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Receiver]:
    """The platform's side of the MQTT uplink: what the gateway delivers."""
    rx = Receiver(mosquitto.port, topic=f"edgegw/{GATEWAY_ID}/#", client_id=f"rx-{tmp_path.name}")
    yield rx
    rx.close()


@pytest.fixture
def ui(ui_loop: UiLoop, gateway: Gateway, tmp_path: Path) -> Iterator[Ui]:
    instance = start_ui(ui_loop, gateway, tmp_path / "web")
    yield instance
    instance.stop()


def log_in(driver: webdriver.Chrome, ui: Ui, name: str, password: str = PASSWORD) -> None:
    driver.get(ui.url("/login"))
    form = element(driver, "#login-form")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "password").send_keys(password)
    element(driver, "#login-submit").click()


def at_path(driver: webdriver.Chrome, path: str) -> bool:
    return urlsplit(str(driver.current_url)).path == path


def post_from_page(driver: webdriver.Chrome, path: str, fields: dict[str, str]) -> int:
    """POST a form to `path` with the page's own CSRF token, as a crafted request would; the HTTP status."""
    script = """
        const [path, fields, done] = arguments;
        const token = document.querySelector('input[name=csrf_token]').value;
        const body = new URLSearchParams({...fields, csrf_token: token});
        fetch(path, {method: 'POST', body, credentials: 'same-origin', redirect: 'manual'})
            .then(r => done(r.status), e => done(String(e)));
    """
    status = driver.execute_async_script(script, path, fields)
    assert isinstance(status, int), status
    return status


def set_editor_text(driver: webdriver.Chrome, text: str) -> None:
    editor = element(driver, "textarea#config-text")
    # send_keys types character by character (and an editor may auto-indent): set the value at once
    driver.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        editor,
        text,
    )


# --- logging in ------------------------------------------------------------------------------------


def test_login_shows_the_dashboard_and_the_last_login(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    assert element(driver, "#last-login").text == "\n".join(
        [message("last_login.first"), message("last_login.failures", count=0)]
    )
    wait_for(lambda: at_path(driver, "/"), "the dashboard after login")
    assert GATEWAY_ID in element(driver, "#dashboard").text
    # the session cookie as the browser keeps it: never readable by scripts, never sent cross-site or in clear
    cookies = driver.get_cookies()
    assert cookies and all(c["httpOnly"] and c["secure"] and c["sameSite"] == "Strict" for c in cookies), cookies
    first = ui.accounts.get_user("tanaka")
    assert first is not None and first.last_login_at is not None
    element(driver, "#logout-submit").click()
    wait_for(lambda: at_path(driver, "/login"), "the login page after logout")
    assert element(driver, ".flash").text == message("logout.done")

    ui.clock.advance(3600)
    log_in(driver, ui, "tanaka")
    assert element(driver, "#last-login").text == "\n".join(
        [
            message("last_login.previous", time=jst(first.last_login_at), address="127.0.0.1"),
            message("last_login.failures", count=0),
        ]
    )
    assert [a for a in ui.actions() if a[1] in ("login", "logout")] == [
        ("tanaka", "login"),
        ("tanaka", "logout"),
        ("tanaka", "login"),
    ]


def test_a_wrong_password_says_so_without_telling_which_part_was_wrong(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka", "not-the-password")
    wrong_password = element(driver, "#login-error").text
    log_in(driver, ui, "nobody", PASSWORD)
    unknown_user = element(driver, "#login-error").text
    assert wrong_password == unknown_user == message("login.bad_credentials")
    assert absent(driver, "#last-login")


def test_lockout_after_n_failures_is_released_after_m_minutes(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    for _ in range(LOCKOUT_FAILURES):
        log_in(driver, ui, "tanaka", "not-the-password")
        element(driver, "#login-error")
    locked = ui.accounts.get_user("tanaka")
    assert locked is not None and locked.locked_until is not None
    assert abs(locked.locked_until - ui.clock() - LOCKOUT_MINUTES * 60) < 30
    # the right password now: still refused, the account is locked, and the page says until when
    locked_text = message("login.locked", until=jst(locked.locked_until))
    log_in(driver, ui, "tanaka")
    assert element(driver, "#login-error").text == locked_text
    assert ("tanaka", "lockout") in ui.actions()

    ui.clock.advance(LOCKOUT_MINUTES * 60 - 30)
    log_in(driver, ui, "tanaka")
    assert element(driver, "#login-error").text == locked_text

    ui.clock.advance(31)
    log_in(driver, ui, "tanaka")
    # what happened meanwhile is shown at once: every failed attempt since the last login
    assert element(driver, "#last-login").text == "\n".join(
        [message("last_login.first"), message("last_login.failures", count=LOCKOUT_FAILURES + 2)]
    )
    element(driver, "#dashboard")


def test_idle_timeout_sends_the_user_back_to_login(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    element(driver, "#dashboard")
    ui.clock.advance(IDLE_MINUTES * 60 - 60)
    driver.get(ui.url("/live"))
    element(driver, "#latest")  # activity: the session lives on
    ui.clock.advance(IDLE_MINUTES * 60 + 1)
    driver.get(ui.url("/"))
    element(driver, "#login-form")
    assert at_path(driver, "/login")
    assert element(driver, ".flash").text == message("session.expired")


def test_an_expired_password_must_be_changed_before_anything_else(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("sato", Role.TECHNICIAN)
    ui.clock.advance((ui.config.password_max_age_days + 1) * 86400)
    log_in(driver, ui, "sato")
    wait_for(lambda: at_path(driver, "/password"), "the forced password change")
    driver.get(ui.url("/live"))  # no way around it
    wait_for(lambda: at_path(driver, "/password"), "the password page again")

    form = element(driver, "#password-form")
    form.find_element(By.NAME, "current").send_keys(PASSWORD)
    form.find_element(By.NAME, "new").send_keys(NEW_PASSWORD)
    form.find_element(By.NAME, "confirm").send_keys(NEW_PASSWORD)
    element(driver, "#password-submit").click()
    element(driver, "#dashboard")
    assert ("sato", "user.password") in ui.actions()

    # and the new password is the one that works
    forget_everything(driver)
    log_in(driver, ui, "sato", NEW_PASSWORD)
    element(driver, "#dashboard")


def test_a_new_account_made_with_must_change_is_forced_to_the_password_page(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("suzuki", Role.VIEWER, must_change=True)
    log_in(driver, ui, "suzuki")
    element(driver, "#password-form")
    assert at_path(driver, "/password")


# --- configuration ---------------------------------------------------------------------------------


def test_a_viewer_sees_no_apply_button_and_a_crafted_apply_is_refused(
    driver: webdriver.Chrome, ui: Ui, gateway: Gateway
) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    element(driver, "#dashboard")
    assert absent(driver, "#nav-config")
    driver.get(ui.url("/config"))
    assert absent(driver, "#config-apply")
    assert message("error.403.title") in page_text(driver)
    before = gateway.config_path.read_text()
    status = post_from_page(driver, "/config/apply", {"text": gateway.config_text(river="hacked"), "comment": ""})
    assert status == 403
    assert gateway.config_path.read_text() == before
    assert not [a for a in ui.actions() if a[1] == "config.apply"]

    # the buffer page: readable, but no retry or discard for a viewer, and a crafted one refused too
    driver.get(ui.url("/buffer"))
    element(driver, "#dead-letters")
    assert absent(driver, "#retry") and absent(driver, "#discard")
    assert post_from_page(driver, "/buffer/retry", {"ids": "platform:1"}) == 403
    assert not [a for a in ui.actions() if a[1].startswith("dead_letter.")]


def test_a_config_error_is_shown_at_its_key_path(driver: webdriver.Chrome, ui: Ui, gateway: Gateway) -> None:
    ui.add_user("sato", Role.TECHNICIAN)
    log_in(driver, ui, "sato")
    element(driver, "#dashboard")
    driver.get(ui.url("/config"))
    text = element(driver, "textarea#config-text").get_attribute("value") or ""
    assert f'id = "{GATEWAY_ID}"' in text
    broken = text.replace("entities = 2", "entities = 0")
    set_editor_text(driver, broken)
    element(driver, "#config-check").click()
    error = element(driver, '#config-errors li[data-path="adapters[0].entities"]')
    # the very line `edgegw check-config` gives, and where it is in the text
    with pytest.raises(ConfigError) as expected:
        parse_config(tomllib.loads(broken))
    [line] = [e for e in expected.value.errors if e.startswith("adapters[0].entities: ")]
    number = broken.splitlines().index("entities = 0") + 1
    assert error.text == f"{line} {message('config.at_line', line=number)}"
    assert absent(driver, "#config-ok")
    assert "entities = 2" in gateway.config_path.read_text()  # a check writes nothing


def test_apply_and_rollback_change_what_the_running_gateway_does(
    driver: webdriver.Chrome, ui: Ui, gateway: Gateway
) -> None:
    ui.add_user("sato", Role.TECHNICIAN)
    log_in(driver, ui, "sato")
    element(driver, "#dashboard")
    driver.get(ui.url("/config"))
    text = element(driver, "textarea#config-text").get_attribute("value") or ""
    set_editor_text(driver, text.replace('name = "river"', 'name = "kumagawa"'))
    element(driver, "#config-check").click()
    # checked: no problem, and the diff against the running file is the one line changed
    assert element(driver, "#config-ok").text == message("config.check_ok")
    diff = element(driver, "#config-diff")
    assert [e.text for e in diff.find_elements(By.CSS_SELECTOR, ".diff-del, .diff-add")] == [
        '-name = "river"',
        '+name = "kumagawa"',
    ]
    element(driver, "#config-apply").click()
    # the first apply also records the file as it was (version 1), so this is version 2
    assert element(driver, ".flash").text == message("config.applied", version=2)
    assert 'name = "kumagawa"' in gateway.config_path.read_text()

    # the reloaded gateway runs the renamed adapter: its entities show in the live values
    driver.get(ui.url("/live"))
    wait_for(
        lambda: driver.find_elements(
            By.CSS_SELECTOR, 'tr.entity[data-entity-id^="urn:ngsi-ld:WaterObserved:kumagawa-"]'
        ),
        "an entity of the applied adapter in the live values",
    )
    driver.get(ui.url("/"))
    wait_for(lambda: "kumagawa" in element(driver, "#adapters").text, "the applied adapter on the dashboard")

    driver.get(ui.url("/config/versions"))
    rows = element(driver, "#config-versions").find_elements(By.CSS_SELECTOR, "tr")
    assert any("sato" in row.text for row in rows)
    # the oldest version is the file as it was before the first apply (actor "file")
    original = [row for row in rows if row.find_elements(By.CSS_SELECTOR, ".rollback")][-1]
    original.find_element(By.CSS_SELECTOR, ".rollback").click()
    assert element(driver, ".flash").text == message("config.rolled_back", target=1, version=3)
    assert 'name = "river"' in gateway.config_path.read_text()
    driver.get(ui.url("/"))
    wait_for(
        lambda: "river" in element(driver, "#adapters").text and "kumagawa" not in element(driver, "#adapters").text,
        "the rolled back adapter on the dashboard",
    )
    assert [a for a in ui.actions() if a[1].startswith("config.")] == [
        ("sato", "config.apply"),
        ("sato", "config.rollback"),
    ]


# --- buffer, live values, dashboard ----------------------------------------------------------------


def test_a_dead_letter_is_retried_from_the_buffer_page(driver: webdriver.Chrome, ui: Ui, receiver: Receiver) -> None:
    ui.add_user("sato", Role.TECHNICIAN)
    log_in(driver, ui, "sato")
    element(driver, "#dashboard")
    driver.get(ui.url("/buffer"))
    table = element(driver, "#dead-letters")
    assert SEEDED_ID in table.text and SEEDED_REASON in table.text
    table.find_element(By.CSS_SELECTOR, "input[name=ids]").click()
    wait_for(lambda: receiver.messages > 0, "the platform's subscriber receiving the gateway's readings")
    element(driver, "#retry").click()
    assert element(driver, ".flash").text == message("dead_letter.retry.done", count=1)
    assert SEEDED_ID not in element(driver, "#dead-letters").text
    assert message("buffer.empty") in element(driver, "#dead-letters").text
    assert ("sato", "dead_letter.retry") in ui.actions()
    # and the gateway delivers it this time: the platform receives the seeded entity
    wait_for(lambda: SEEDED_ID in receiver.by_entity, "the retried reading at the MQTT broker")


def test_live_values_and_the_dashboard_update_without_a_reload(
    driver: webdriver.Chrome, ui: Ui, gateway: Gateway
) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    element(driver, "#dashboard")
    driver.execute_script("window.stillTheSamePage = true;")
    uplinks = element(driver, "#uplinks").text
    assert "platform" in uplinks
    # the dashboard's live parts change under the same page (uptime, counts)
    first = element(driver, "#dashboard").text
    wait_for(lambda: element(driver, "#dashboard").text != first, "the dashboard changing", timeout=15)
    assert driver.execute_script("return window.stillTheSamePage === true;")

    driver.get(ui.url("/live"))
    driver.execute_script("window.stillTheSamePage = true;")
    row_css = f'tr.entity[data-entity-id="{STATION_ID}"]'
    before = element(driver, row_css).text
    assert "2.35" in before
    gateway.stations.level = 3.05
    wait_for(lambda: "3.05" in element(driver, row_css).text, "the station's new level on the same page", timeout=15)
    assert driver.execute_script("return window.stillTheSamePage === true;")

    # the filter narrows the table to the matching entities
    element(driver, "#latest-filter").send_keys("station-")
    wait_for(
        lambda: (
            [r.get_attribute("data-entity-id") for r in driver.find_elements(By.CSS_SELECTOR, "tr.entity")]
            == [STATION_ID]
        ),
        "only the station left after filtering",
    )


def test_a_station_name_holding_a_script_tag_is_shown_as_text(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    element(driver, "#dashboard")
    driver.get(ui.url("/live"))
    row = element(driver, f'tr.entity[data-entity-id="{STATION_ID}"]')
    wait_for(lambda: STATION_NAME in row.text, "the station name as text")
    assert not alert_open(driver)
    assert driver.execute_script("return document.querySelectorAll('#latest script').length;") == 0
    # and after a refresh by polling, still text
    driver.refresh()
    row = element(driver, f'tr.entity[data-entity-id="{STATION_ID}"]')
    wait_for(lambda: STATION_NAME in row.text, "the station name as text after reload")
    assert not alert_open(driver)


# --- languages -------------------------------------------------------------------------------------


def rendering_fonts(driver: webdriver.Chrome, css: str) -> dict[str, int]:
    """Font family → glyphs Chromium actually drew of the element's text (not what the CSS asked for)."""
    driver.execute_cdp_cmd("DOM.enable", {})
    driver.execute_cdp_cmd("CSS.enable", {})
    root = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1})
    node = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root["root"]["nodeId"], "selector": css})
    fonts = driver.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
    return {str(f["familyName"]): int(f["glyphCount"]) for f in fonts["fonts"]}


def test_the_dashboard_renders_in_japanese_with_a_japanese_font(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    dashboard = element(driver, "#dashboard")
    assert driver.execute_script("return document.documentElement.lang;") == "ja"
    assert message("nav.dashboard") in page_text(driver)
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", dashboard.text)
    # every glyph of the menu's first word drawn by a Japanese font (Debian's IPA Gothic here), none as tofu
    fonts = rendering_fonts(driver, "#nav-dashboard")
    assert sum(fonts.values()) == len(message("nav.dashboard")), fonts
    assert all(re.search(r"IPA|CJK|JP", family) for family in fonts), fonts
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "web-dashboard-ja.png"))


def test_an_english_browser_gets_english_pages(ui: Ui, tmp_path: Path) -> None:
    driver = chromium(tmp_path / "profile-en", lang="en")
    try:
        driver.get(ui.url("/login"))
        element(driver, "#login-form")
        assert driver.execute_script("return document.documentElement.lang;") == "en"
        assert message("login.title", "en") in page_text(driver)
    finally:
        driver.quit()


def test_the_language_switch_turns_the_same_page_english(driver: webdriver.Chrome, ui: Ui) -> None:
    ui.add_user("tanaka", Role.VIEWER)
    log_in(driver, ui, "tanaka")
    element(driver, "#dashboard")
    assert element(driver, "#nav-live").text == message("nav.live")
    element(driver, "#lang-en").click()
    wait_for(lambda: driver.execute_script("return document.documentElement.lang;") == "en", "the English page")
    assert at_path(driver, "/")
    assert element(driver, "#nav-live").text == message("nav.live", "en")
    assert message("dashboard.title", "en") in page_text(driver)
