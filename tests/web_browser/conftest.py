"""Fixtures of the browser tests: one Chromium per module, wiped between tests; the app's loop thread.

A test that fails leaves what the browser showed in var/test-artifacts/<test>.png and .html.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException

from tests.web_browser.harness import ARTIFACTS, UiLoop, chromium, forget_everything

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(scope="module")
def ui_loop() -> Iterator[UiLoop]:
    """The loop the apps under test run on, one per module: it outlives the browser (see UiLoop.close)."""
    loop = UiLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def browser(ui_loop: UiLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Japanese Chromium for the whole module: starting one takes about a second."""
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), lang="ja")
    yield driver
    driver.quit()


@pytest.fixture
def driver(browser: webdriver.Chrome, request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    """The module's browser with no cookies or storage left from another test."""
    forget_everything(browser)
    yield browser
    if request.node.stash.get(FAILED, False):
        keep_evidence(browser, request.node.name)
    forget_everything(browser)


def keep_evidence(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        (ARTIFACTS / f"{name}.html").write_text(driver.page_source, encoding="utf-8")
    except WebDriverException:
        pass  # a dialog left open or a crashed tab: the assertion already says what went wrong
